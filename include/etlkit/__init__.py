"""etlkit: the framework behind the project's pipelines.

Hooks own connections, operators own one step each, and the control plane (``etlkit.control``)
gates and logs every task. DAG files under ``dags/`` stay thin and import from here.
"""
