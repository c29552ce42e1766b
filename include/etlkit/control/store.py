"""The control database's connection, and the control tables ``etl.audit`` and ``etl.task_log``.

:class:`ControlStore` owns the ``etl_control`` connection: its transactions, the DDL of every
control table (``sql/postgres/control/*.sql``) and the SQL of ``etl.audit`` and ``etl.task_log``
(the audit gate, the task-log listener, the CLI and the UI go through it). The other control tables
each have one module in this package that owns their SQL, built on :meth:`ControlStore.query` and
:meth:`ControlStore.transaction`:

- :mod:`.ledger`: ``etl.extract_state``, ``landed_object``, ``processed_object``, ``row_version``,
  ``row_version_base``, ``row_version_object``, ``current_state``;
- :mod:`.source_files`: ``etl.source_file``;
- :mod:`.file_status`: ``etl.file_status``;
- :mod:`.schema_changes`: ``etl.source_schema`` and ``etl.schema_change``;

No module outside this package writes SQL naming an ``etl.*`` table
(``tests/unit/test_control_ownership.py`` holds that).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from include.etlkit.paths import sql_file

CONTROL_CONN_ID = "etl_control"
KILLED_TRY = "the try ended without reporting: its process was killed (SIGKILL, out of memory) or lost"


class ControlPlaneUnavailable(RuntimeError):
    """The control database cannot be reached; tasks must not run ungated."""


@dataclass(frozen=True)
class AuditDecision:
    """Whether a task may run, and if not, why (the reason lands in its task-log row)."""

    allowed: bool
    reason: str | None = None
    registered: bool = False  # the row was missing and has just been added (enabled)


@dataclass(frozen=True)
class TaskTry:
    """The identity of one try of one task instance: the key of its ``etl.task_log`` row."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int


class ControlStore:
    """Reads and writes the control tables through the ``etl_control`` Airflow connection."""

    def __init__(self, conn_id: str = CONTROL_CONN_ID) -> None:
        self.conn_id = conn_id

    def _hook(self):
        # Imported here: this module is also imported by the listener plugin in processes
        # (API server, scheduler) that never touch the control tables.
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return PostgresHook(postgres_conn_id=self.conn_id)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor whose statements commit together, or not at all."""
        try:
            conn = self._hook().get_conn()
        except Exception as exc:
            raise ControlPlaneUnavailable(
                f"cannot reach the control database (Airflow connection {self.conn_id!r}): {exc}"
            ) from exc
        try:
            with conn.cursor() as cur:
                yield cur
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold the control database's advisory lock ``name`` for the block: one holder at a time.

        A session lock on a connection of its own, so it lasts across the transactions the block
        makes, and PostgreSQL releases it by itself if the process dies. Another holder waits.
        """
        try:
            conn = self._hook().get_conn()
        except Exception as exc:
            raise ControlPlaneUnavailable(
                f"cannot reach the control database (Airflow connection {self.conn_id!r}): {exc}"
            ) from exc
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (name,))
            try:
                yield
            finally:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (name,))
        finally:
            conn.close()

    def query(self, sql: str, parameters: Sequence[Any] | None = None) -> list[tuple]:
        """Run one statement in its own transaction and return its rows (empty when it has none).

        The control package's primitive: each control table's module writes its SQL on top of it.
        Tests use it to inspect what the control plane recorded.
        """
        with self.transaction() as cur:
            cur.execute(sql, parameters)
            return cur.fetchall() if cur.description is not None else []

    # -- schema -----------------------------------------------------------------------------------

    def ensure_tables(self) -> None:
        """Apply the control-plane DDL (idempotent): ``etl.sql`` first, then the other files in order."""
        first = sql_file("postgres", "control", "etl.sql")
        others = sorted(p for p in first.parent.glob("*.sql") if p != first)
        with self.transaction() as cur:
            for path in (first, *others):
                cur.execute(path.read_text())

    # -- etl.audit --------------------------------------------------------------------------------

    def decide(self, dag_id: str, task_id: str) -> AuditDecision:
        """Whether the task may run, by its row alone (a missing row: not registered, not allowed)."""
        rows = self.query(
            "SELECT enabled, reason FROM etl.audit WHERE dag_id = %s AND task_id = %s", (dag_id, task_id)
        )
        if not rows:
            return AuditDecision(
                False,
                f"etl.audit: {dag_id}.{task_id} is not registered "
                "(register it with `python -m include.etlkit.control sync`)",
            )
        return self._decision(dag_id, task_id, *rows[0])

    def admit(self, dag_id: str, task_id: str, *, registered_by: str) -> AuditDecision:
        """The gate's question: may the task run now? A task with no row is registered and may.

        A task deployed since the last ``control sync`` has no row: it is registered (enabled,
        ``updated_by`` saying so) in the same transaction that reads the row, so two first runs
        racing register it once, and a row someone disabled in the meantime is never overwritten.
        """
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO etl.audit (dag_id, task_id, enabled, updated_by) VALUES (%s, %s, true, %s) "
                "ON CONFLICT (dag_id, task_id) DO NOTHING RETURNING 1",
                (dag_id, task_id, registered_by),
            )
            registered = cur.fetchone() is not None
            cur.execute(
                "SELECT enabled, reason FROM etl.audit WHERE dag_id = %s AND task_id = %s", (dag_id, task_id)
            )
            enabled, reason = cur.fetchone()
        decision = self._decision(dag_id, task_id, enabled, reason)
        if registered:
            return AuditDecision(
                decision.allowed, f"etl.audit: {dag_id}.{task_id} registered at its first run", True
            )
        return decision

    @staticmethod
    def _decision(dag_id: str, task_id: str, enabled: bool, reason: str | None) -> AuditDecision:
        if not enabled:
            why = f": {reason}" if reason else ""
            return AuditDecision(False, f"etl.audit: {dag_id}.{task_id} is disabled{why}")
        return AuditDecision(True)

    def register(self, tasks: Iterable[tuple[str, str]], *, enabled: bool = True) -> int:
        """Add audit rows for tasks that have none; existing rows (and their switches) are kept."""
        pairs = sorted(set(tasks))
        if not pairs:
            return 0
        rows = self.query(
            "INSERT INTO etl.audit (dag_id, task_id, enabled) "
            "SELECT d, t, %s FROM unnest(%s::text[], %s::text[]) AS x(d, t) "
            "ON CONFLICT (dag_id, task_id) DO NOTHING RETURNING 1",
            (enabled, [d for d, _ in pairs], [t for _, t in pairs]),
        )
        return len(rows or [])

    def set_enabled(
        self,
        dag_id: str,
        task_id: str | None,
        enabled: bool,
        reason: str | None = None,
        *,
        updated_by: str | None = None,
    ) -> int:
        """Switch one task (or every task of a DAG when ``task_id`` is None); returns rows changed.

        ``updated_by`` names who made the change (the UI passes the Airflow user); without it the
        row records the database user, which is what the CLI knows.
        """
        rows = self.query(
            "UPDATE etl.audit SET enabled = %s, reason = %s, updated_at = now(), "
            "updated_by = coalesce(%s::text, current_user) "
            "WHERE dag_id = %s AND (%s::text IS NULL OR task_id = %s) RETURNING 1",
            (enabled, reason, updated_by, dag_id, task_id, task_id),
        )
        return len(rows or [])

    def last_runs(self, dag_id: str, runs: int = 5) -> list[tuple]:
        """A DAG's last ``runs`` runs, task by task (the latest try of each): run, task, status, tries,
        rows in, out and rejected, seconds and the start; newest run first."""
        return self.query(
            "WITH recent AS (SELECT run_id, min(started_at) AS run_started FROM etl.task_log "
            "WHERE dag_id = %s GROUP BY run_id ORDER BY run_started DESC LIMIT %s), "
            "latest AS (SELECT DISTINCT ON (l.run_id, l.task_id, l.map_index) l.*, "
            "count(*) OVER (PARTITION BY l.run_id, l.task_id, l.map_index) AS tries "
            "FROM etl.task_log AS l JOIN recent USING (run_id) WHERE l.dag_id = %s "
            "ORDER BY l.run_id, l.task_id, l.map_index, l.try_number DESC) "
            "SELECT latest.run_id, task_id, status, tries, rows_in, rows_out, rows_rejected, "
            "duration_seconds, started_at FROM latest JOIN recent USING (run_id) "
            "ORDER BY recent.run_started DESC, task_id",
            (dag_id, runs, dag_id),
        )

    def audit_rows(self, dag_id: str | None = None) -> list[tuple]:
        return self.query(
            "SELECT dag_id, task_id, enabled, reason, updated_at, updated_by FROM etl.audit "
            "WHERE %s::text IS NULL OR dag_id = %s ORDER BY dag_id, task_id",
            (dag_id, dag_id),
        )

    # -- etl.task_log -----------------------------------------------------------------------------

    def log_started(
        self,
        key: TaskTry,
        *,
        started_at: datetime,
        operator: str | None,
        hostname: str | None,
        logical_date: datetime | None,
        data_interval: tuple[datetime | None, datetime | None],
    ) -> None:
        """Open the try's row; a try resumed after deferral keeps its first start time.

        An earlier try of the same task instance still ``running`` never reported its end: its process
        was killed (SIGKILL, the OOM killer, a lost worker). It is closed here as failed, with that
        reason, so no row stays ``running`` forever.
        """
        with self.transaction() as cur:
            cur.execute(
                "UPDATE etl.task_log SET status = 'failed', ended_at = %s, error = %s, "
                "duration_seconds = round(extract(epoch FROM %s::timestamptz - started_at)::numeric, 3) "
                "WHERE dag_id = %s AND task_id = %s AND run_id = %s AND map_index = %s "
                "AND try_number < %s AND status = 'running'",
                (
                    started_at,
                    KILLED_TRY,
                    started_at,
                    key.dag_id,
                    key.task_id,
                    key.run_id,
                    key.map_index,
                    key.try_number,
                ),
            )
            cur.execute(
                "INSERT INTO etl.task_log (dag_id, task_id, run_id, map_index, try_number, status, operator, "
                "started_at, hostname, logical_date, data_interval_start, data_interval_end) "
                "VALUES (%s, %s, %s, %s, %s, 'running', %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (dag_id, task_id, run_id, map_index, try_number) "
                "DO UPDATE SET status = 'running', ended_at = NULL, error = NULL",
                (
                    key.dag_id,
                    key.task_id,
                    key.run_id,
                    key.map_index,
                    key.try_number,
                    operator,
                    started_at,
                    hostname,
                    logical_date,
                    *data_interval,
                ),
            )

    def log_finished(
        self,
        key: TaskTry,
        *,
        status: str,
        ended_at: datetime,
        started_at: datetime,
        rows_in: int | None = None,
        rows_out: int | None = None,
        rows_rejected: int | None = None,
        error: str | None = None,
    ) -> None:
        """Close the try's row (creating it if the start was never logged)."""
        self.query(
            "INSERT INTO etl.task_log AS l (dag_id, task_id, run_id, map_index, try_number, status, "
            "started_at, ended_at, rows_in, rows_out, rows_rejected, error, duration_seconds) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
            "round(extract(epoch FROM %s::timestamptz - %s::timestamptz)::numeric, 3)) "
            "ON CONFLICT (dag_id, task_id, run_id, map_index, try_number) DO UPDATE SET "
            "status = EXCLUDED.status, ended_at = EXCLUDED.ended_at, "
            "rows_in = EXCLUDED.rows_in, rows_out = EXCLUDED.rows_out, "
            "rows_rejected = EXCLUDED.rows_rejected, error = EXCLUDED.error, "
            "duration_seconds = round(extract(epoch FROM EXCLUDED.ended_at - l.started_at)::numeric, 3)",
            (
                key.dag_id,
                key.task_id,
                key.run_id,
                key.map_index,
                key.try_number,
                status,
                started_at,
                ended_at,
                rows_in,
                rows_out,
                rows_rejected,
                error,
                ended_at,
                started_at,
            ),
        )

    def recent_log(self, *, dag_id: str | None = None, limit: int = 20) -> list[tuple]:
        return self.query(
            "SELECT dag_id, task_id, run_id, try_number, status, rows_in, rows_out, rows_rejected, "
            "started_at, ended_at, duration_seconds, error FROM etl.task_log "
            "WHERE %s::text IS NULL OR dag_id = %s ORDER BY started_at DESC, log_id DESC LIMIT %s",
            (dag_id, dag_id, limit),
        )

    def latest_try_statuses(self, dag_id: str) -> list[tuple[str, str]]:
        """``(task_id, status)`` of each task's last try in the DAG's most recent run."""
        return self.query(
            "SELECT DISTINCT ON (task_id) task_id, status FROM etl.task_log WHERE dag_id = %s "
            "AND run_id = (SELECT run_id FROM etl.task_log WHERE dag_id = %s "
            "ORDER BY started_at DESC LIMIT 1) "
            "ORDER BY task_id, try_number DESC",
            (dag_id, dag_id),
        )

    def log_summary(self) -> list[tuple]:
        """Per DAG and status: tries, and the sums of rows in, out and rejected."""
        return self.query(
            "SELECT dag_id, status, count(*), sum(rows_in), sum(rows_out), sum(rows_rejected) "
            "FROM etl.task_log GROUP BY 1, 2 ORDER BY 1, 2"
        )

    def logged_dags(self) -> list[str]:
        """Every DAG with at least one logged try, by name."""
        return [dag_id for (dag_id,) in self.query("SELECT DISTINCT dag_id FROM etl.task_log ORDER BY 1")]

    def recent_failures(self, limit: int = 10) -> list[tuple]:
        """The last ``limit`` failed tries, newest first: DAG, task, run, try, when it ended, error."""
        return self.query(
            "SELECT dag_id, task_id, run_id, try_number, coalesce(ended_at, started_at), error "
            "FROM etl.task_log WHERE status = 'failed' "
            "ORDER BY coalesce(ended_at, started_at) DESC, log_id DESC LIMIT %s",
            (limit,),
        )
