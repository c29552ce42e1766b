"""The control plane: ``etl.audit`` decides which tasks may run, ``etl.task_log`` records every try.

- :mod:`.store`: the control tables behind one class.
- :mod:`.gate`: the audit check every task runs first (installed by a cluster policy).
- :mod:`.accounting`: operators report rows in/out/rejected for the task-log row.
- :mod:`.listener`: writes one ``etl.task_log`` row per try (registered by the plugin).
- :mod:`.cli`: list, enable, disable, sync and show the log (``python -m include.etlkit.control``).
"""
