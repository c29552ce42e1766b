"""The control plane: the one owner of the ``etl.*`` control tables and their SQL.

- :mod:`.store`: the control database's connection (:class:`ControlStore`), the DDL of every
  control table, and ``etl.audit`` / ``etl.task_log``;
- :mod:`.ledger`: ``etl.extract_state``, ``landed_object``, ``processed_object``, ``row_version``,
  ``row_version_base``, ``row_version_object``, ``current_state``;
- :mod:`.source_files`: ``etl.source_file`` (the versions of dropped files);
- :mod:`.file_status`: ``etl.file_status`` (validated files and their rows);
- :mod:`.schema_changes`: ``etl.source_schema`` and ``etl.schema_change``;
- :mod:`.gate`: the audit check every task runs first (installed by a cluster policy);
- :mod:`.accounting`: operators report rows in/out/rejected for the task-log row;
- :mod:`.listener`: writes one ``etl.task_log`` row per try (registered by the plugin);
- :mod:`.cli`: list, enable, disable, sync and show the log (``python -m include.etlkit.control``).

Other modules call these interfaces; none writes SQL naming an ``etl.*`` table
(``tests/unit/test_control_ownership.py``).
"""
