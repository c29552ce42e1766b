"""Command line for the control plane: ``python -m include.etlkit.control <command>``.

Commands: ``init`` (create the control tables), ``sync`` (register every task of the DAG folder in
``etl.audit``, enabled unless ``--disabled``; existing switches are never changed), ``list``,
``enable``, ``disable`` and ``log`` (recent ``etl.task_log`` rows). It uses the ``etl_control``
Airflow connection, so it runs wherever Airflow's connections resolve (``make control ARGS=...``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from include.etlkit.control.store import ControlPlaneUnavailable, ControlStore


def dag_tasks(dags_folder: str | None = None) -> list[tuple[str, str]]:
    """Every (dag_id, task_id) of the DAG folder, failing loudly on import errors."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=dags_folder)
    if bag.import_errors:
        errors = "\n".join(f"{path}: {err}" for path, err in bag.import_errors.items())
        raise SystemExit(f"DAG import errors, nothing registered:\n{errors}")
    return [(dag.dag_id, task_id) for dag in bag.dags.values() for task_id in dag.task_ids]


def _cell(value: object, width: int = 100) -> str:
    """One line per row: multi-line errors show their first line (the full text is in the table)."""
    if value is None:
        return ""
    text = str(value).strip().splitlines()[0] if str(value).strip() else ""
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.etlkit.control", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create the etl schema and control tables (idempotent)")
    sync = sub.add_parser("sync", help="register the DAG folder's tasks in etl.audit")
    sync.add_argument("--dags-folder", help="default: Airflow's [core] dags_folder")
    sync.add_argument("--disabled", action="store_true", help="register new tasks disabled")
    listing = sub.add_parser("list", help="show etl.audit")
    listing.add_argument("--dag")
    for name in ("enable", "disable"):
        switch = sub.add_parser(name, help=f"{name} one task, or every task of a DAG")
        switch.add_argument("dag_id")
        switch.add_argument("task_id", nargs="?")
        switch.add_argument(
            "--reason",
            help="recorded in etl.audit (why it was switched); a disabled task's skips quote it",
        )
    runs = sub.add_parser("runs", help="a DAG's last runs, feed by feed: status, rows, duration")
    runs.add_argument("dag_id")
    runs.add_argument("--runs", type=int, default=5)
    show = sub.add_parser("log", help="show recent etl.task_log rows")
    show.add_argument("--dag")
    show.add_argument("--limit", type=int, default=20)
    args = parser.parse_args(argv)

    store = ControlStore()
    try:
        if args.command == "init":
            store.ensure_tables()
            print("etl.audit and etl.task_log are in place")
        elif args.command == "sync":
            tasks = dag_tasks(args.dags_folder)
            added = store.register(tasks, enabled=not args.disabled)
            print(f"{len(tasks)} tasks found, {added} newly registered in etl.audit")
        elif args.command == "list":
            rows = store.audit_rows(args.dag)
            print(_table(["dag_id", "task_id", "enabled", "reason", "updated_at", "updated_by"], rows))
        elif args.command in ("enable", "disable"):
            enabled = args.command == "enable"
            changed = store.set_enabled(args.dag_id, args.task_id, enabled, getattr(args, "reason", None))
            if not changed:
                print(f"no etl.audit row for {args.dag_id} {args.task_id or '(any task)'}", file=sys.stderr)
                return 1
            print(f"{args.command}d {changed} task(s)")
        elif args.command == "runs":
            rows = store.last_runs(args.dag_id, args.runs)
            headers = [
                "run_id",
                "task_id",
                "status",
                "tries",
                "rows_in",
                "rows_out",
                "rejected",
                "seconds",
                "started_at",
            ]
            print(_table(headers, rows))
        elif args.command == "log":
            rows = store.recent_log(dag_id=args.dag, limit=args.limit)
            headers = [
                "dag_id",
                "task_id",
                "run_id",
                "try",
                "status",
                "rows_in",
                "rows_out",
                "rejected",
                "started_at",
                "ended_at",
                "seconds",
                "error",
            ]
            print(_table(headers, rows))
    except ControlPlaneUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
