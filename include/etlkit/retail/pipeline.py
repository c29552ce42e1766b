"""Retail's own step in its load DAG: partner customers unified with the known ones.

Everything else about retail (feeds, schemas, loads, warehouse steps, checks) is declared in
``include/config/retail.yaml`` and built by :mod:`include.etlkit.pipelines.pipeline`; the matching
thresholds are a setting of that file (``customer_matching``).
"""

from __future__ import annotations

from include.etlkit.pipelines.pipeline import Pipeline
from include.etlkit.retail.customers import UnifyCustomersOperator


def unify_customers(retail: Pipeline) -> UnifyCustomersOperator:
    """Match the partner records not decided yet: same id, new id, or the review table.

    The warehouse is the one ``warehouse_conn_id`` names when the task runs.
    """
    thresholds = retail.config.settings.get("customer_matching", {})
    return UnifyCustomersOperator(task_id="unify_customers", **thresholds)
