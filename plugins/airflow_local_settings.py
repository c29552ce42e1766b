"""Cluster policies (loaded by Airflow from the plugins folder, locally and from MWAA's plugins.zip).

``task_policy`` installs the ``etl.audit`` gate on every task of every DAG as Airflow parses it, so a
task checks whether it may run when it runs, whichever operator it is and whichever DAG it is in.
The check itself does no I/O here: it happens in the worker, right before ``execute``. It hooks in
through the operator's public ``pre_execute`` (the method of an ordinary task, the ``partial``
argument of a mapped one); :mod:`include.etlkit.control.gate` says why not elsewhere.
"""

from __future__ import annotations


def task_policy(task) -> None:
    # Imported lazily: the dags folder that holds ``include`` is on sys.path only while parsing.
    from include.etlkit.control.gate import apply_audit_gate

    apply_audit_gate(task)
