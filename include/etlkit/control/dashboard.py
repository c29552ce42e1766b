"""What the Dashboard page shows: the pipelines' health and the business marts as charts.

Two sources, each through its one interface:

- **pipeline health** from the control plane (:class:`ControlStore`, :class:`FreshnessWatch`): rows
  in, out (loaded) and rejected per task for each DAG's last runs, each declared feed's last landing
  against its ``freshness_hours``, and the last failed tries with their (masked) errors;
- **business charts** from the ``mart`` views of the warehouse in force (``warehouse_conn_id``
  Variable, :func:`~include.etlkit.load.warehouse.warehouse_for`), one query file of
  ``sql/dashboard/`` per chart, so the page and a BI tool (QuickSight, Metabase) chart the same
  figures. The queries only read; on PostgreSQL the transaction is declared read-only as well.

A chart whose query fails (a mart not created yet, the warehouse down) carries its error instead of
its panels: the rest of the page still renders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from markupsafe import Markup

from include.etlkit.control.charts import Panel, draw
from include.etlkit.control.freshness import FreshnessRule, FreshnessWatch, declared_rules
from include.etlkit.control.store import ControlStore
from include.etlkit.paths import SQL_DIR
from include.etlkit.redaction import redact

DASHBOARD_SQL = SQL_DIR / "dashboard"
DEFAULT_RUNS = 3  # each DAG's last runs shown task by task
DEFAULT_FAILURES = 10
MAX_ERROR_CHARS = 300
RUN_COLUMNS = (
    "run_id",
    "task_id",
    "status",
    "tries",
    "rows_in",
    "rows_out",
    "rows_rejected",
    "duration_seconds",
    "started_at",
)
FAILURE_COLUMNS = ("dag_id", "task_id", "run_id", "try_number", "failed_at", "error")


@dataclass(frozen=True)
class ChartSpec:
    """One chart: its query file in ``sql/dashboard/`` and which columns it draws.

    ``panel`` columns split the rows into one small chart each (a currency, say: amounts in two
    currencies never share an axis); no panel columns draw one panel titled ``unit``. A point's
    label joins the ``label`` columns (a name, then what tells two of that name apart).
    """

    name: str
    title: str
    query: str
    kind: str  # "bars" or "line" (charts.draw)
    label: tuple[str, ...]
    value: str
    panel: tuple[str, ...] = ()
    unit: str = ""
    max_points: int | None = None  # per panel, after the query's own order
    note: str = ""


CHARTS = (
    ChartSpec(
        "monthly_sales",
        "Monthly sales by currency",
        "monthly_revenue_trend.sql",
        "line",
        label=("sales_month",),
        value="total_value",
        panel=("currency_code",),
        note="Revenue per month of the orders' creation, each order once at its latest version.",
    ),
    ChartSpec(
        "top_designs",
        "Top designs by sales value",
        "top_designs_by_value.sql",
        "bars",
        label=("design_name", "design_id"),
        value="total_value",
        panel=("currency_code",),
        note="The 10 best-selling designs (name · design id) in each currency, over all months.",
    ),
    ChartSpec(
        "sales_by_staff",
        "Sales by staff",
        "sales_by_staff.sql",
        "bars",
        label=("staff_name",),
        value="total_value",
        panel=("currency_code",),
        max_points=10,
        note="Revenue per sales person over all months, the 10 best in each currency.",
    ),
    ChartSpec(
        "payments_ageing",
        "Outstanding payments ageing",
        "outstanding_payments_ageing.sql",
        "bars",
        label=("ageing_bucket",),
        value="outstanding_amount",
        panel=("currency_code", "payment_type_name"),
        note="Unpaid amounts by days past their payment date, as of today.",
    ),
    ChartSpec(
        "sales_team_incentives",
        "Retail sales-team incentives",
        "retail_sales_team_incentives.sql",
        "bars",
        label=("full_name", "store_id"),
        value="incentive_gbp",
        unit="GBP",
        note="1% of a month's sales for each store's top seller of the month, summed over months "
        "(name · store).",
    ),
)


@dataclass
class Chart:
    """A chart's panels, or the error that kept it from having any."""

    spec: ChartSpec
    panels: list[Panel] = field(default_factory=list)
    error: str | None = None

    @property
    def has_data(self) -> bool:
        return any(panel.points for panel in self.panels)

    def svgs(self) -> list[tuple[str, Markup]]:
        """``(panel title, svg)`` for every panel with points."""
        return [(p.title, draw(self.spec.kind, p, i)) for i, p in enumerate(self.panels) if p.points]


@dataclass(frozen=True)
class Health:
    runs: dict[str, list[dict[str, Any]]]  # DAG -> its last runs, task by task (latest try)
    freshness: list[dict[str, Any]]
    failures: list[dict[str, Any]]


def masked(error: str | None) -> str:
    """An error as the page shows it: secrets masked, first line only, bounded."""
    if not error:
        return ""
    text = redact(error).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


def _label(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return "" if value is None else str(value)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float | Decimal) else 0.0


def panels(spec: ChartSpec, columns: Sequence[str], rows: Sequence[tuple]) -> list[Panel]:
    """The query's rows split into panels by ``spec.panel``, one point per row, in the query's order.

    Nothing is added up here: the query has aggregated already, and two rows with one label (two
    designs of the same name) stay two points, told apart by the label's further columns.
    """
    index = {name: i for i, name in enumerate(columns)}
    missing = [c for c in (*spec.label, spec.value, *spec.panel) if c not in index]
    if missing:
        raise ValueError(f"{spec.query} returns no column {', '.join(missing)}")
    grouped: dict[str, list[tuple[str, float]]] = {}
    for row in rows:
        title = " · ".join(_label(row[index[c]]) for c in spec.panel) or spec.unit
        label = " · ".join(_label(row[index[c]]) for c in spec.label)
        grouped.setdefault(title, []).append((label, _number(row[index[spec.value]])))
    return [Panel(title, points[: spec.max_points]) for title, points in grouped.items()]


def warehouse_name() -> str:
    """The connection id of the warehouse in force, for the page's caption."""
    from include.etlkit.load.warehouse import warehouse_conn_id

    try:
        return warehouse_conn_id()
    except Exception:  # the Variable store is down: the charts will say why
        return "unknown"


def _warehouse() -> Any:
    from include.etlkit.load.warehouse import warehouse_for

    return warehouse_for()


def chart(warehouse: Any, spec: ChartSpec) -> Chart:
    """Run ``spec``'s query on ``warehouse`` (read-only) and split its rows into panels."""
    from include.etlkit.load.warehouse import fetch_all

    try:
        query = (DASHBOARD_SQL / spec.query).read_text()
        with warehouse.session() as cur:
            if warehouse.dialect == "postgres":
                cur.execute("SET TRANSACTION READ ONLY")
            columns, rows = fetch_all(cur, query)
        return Chart(spec, panels(spec, columns, rows))
    except Exception as exc:  # one chart's failure must not break the page
        return Chart(spec, error=masked(f"{type(exc).__name__}: {exc}"))


def business_charts(warehouse_factory: Callable[[], Any] = _warehouse) -> list[Chart]:
    """Every chart of :data:`CHARTS`, from the warehouse in force."""
    try:
        warehouse = warehouse_factory()
    except Exception as exc:
        error = masked(f"the warehouse is unavailable: {type(exc).__name__}: {exc}")
        return [Chart(spec, error=error) for spec in CHARTS]
    return [chart(warehouse, spec) for spec in CHARTS]


def freshness(
    watch: FreshnessWatch, rules: Sequence[FreshnessRule], now: datetime | None = None
) -> list[dict[str, Any]]:
    """Each declared feed: its interval, last landing, age in hours and state (fresh, stale, never)."""
    now = now or datetime.now(UTC)
    feeds = []
    for age in watch.ages(rules) if rules else []:
        hours = (now - age.last_landed).total_seconds() / 3600 if age.last_landed else None
        state = "never landed" if age.last_landed is None else ("stale" if age.stale(now) else "fresh")
        feeds.append(
            {
                "source": age.rule.source,
                "feed": age.rule.feed,
                "max_age_hours": age.rule.max_age_hours,
                "last_landed": age.last_landed,
                "age_hours": None if hours is None else round(hours, 1),
                "state": state,
            }
        )
    return feeds


def pipeline_health(
    store: ControlStore,
    rules: Sequence[FreshnessRule] | None = None,
    *,
    runs: int = DEFAULT_RUNS,
    failures: int = DEFAULT_FAILURES,
    now: datetime | None = None,
) -> Health:
    """The control plane's view of the pipelines (``rules``: the declared freshness by default)."""
    last_runs = {
        dag: [dict(zip(RUN_COLUMNS, row, strict=True)) for row in store.last_runs(dag, runs)]
        for dag in store.logged_dags()
    }
    failed = [dict(zip(FAILURE_COLUMNS, row, strict=True)) for row in store.recent_failures(failures)]
    for row in failed:
        row["error"] = masked(row["error"])
    rules = declared_rules() if rules is None else rules
    return Health(last_runs, freshness(FreshnessWatch(store), rules, now), failed)
