"""An incremental landing's row versions wait in its object until folded (issue 11), on the real
PostgreSQL (source and control plane) and the local S3.

A table's first landing is its row-version baseline (``etl.row_version_base``); each later landing
is one row in ``etl.row_version_object`` naming the object, not one ``etl.row_version`` row per
landed row. ``Ledger.fold_versions`` copies the waiting objects' versions into ``etl.row_version``
oldest first, by the rule they were upserted with as they landed (the newer cursor wins; on an equal
cursor, the later landing); the reconciliations fold before they read, and an extract folds once
more than ``FOLD_AFTER_WAITING`` objects wait.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.etlkit.control.ledger import DELETED_VERSION, Ledger, VersionColumns, landed_versions
from include.etlkit.extract import landing as landing_module
from include.etlkit.extract.landing import land_deletions
from include.etlkit.extract.reconcile import PostgresReconcileOperator
from include.etlkit.row_identity import ROW_HASH
from include.etlkit.storage import ImmutableStore
from include.etlkit.windows import ExtractWindow
from tests.conftest import TaskTry
from tests.integration import test_postgres_extract as pg
from tests.integration.test_postgres_extract import CONN_ID, FIRST_INTERVAL, HALF_HOUR, TABLE, source_hashes

# The PostgreSQL extract tests' fixtures: a seeded throwaway source table, S3 and the extract.
source_db = pg.source_db
source = pg.source
s3 = pg.s3
extract = pg.extract

pytestmark = pytest.mark.integration

COLUMNS = VersionColumns(key="customer_id", hash=ROW_HASH, cursor="last_updated")


def at(n: int, minutes: int = 10) -> str:
    """A cursor inside the ``n``-th interval's window (the extract fixture's intervals)."""
    return (FIRST_INTERVAL + n * HALF_HOUR + timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")


def waiting(control, source_name: str) -> list[tuple]:
    return control.query(
        "SELECT key, key_column, hash_column, cursor_column FROM etl.row_version_object "
        "WHERE source = %s AND table_name = %s ORDER BY seq",
        (source_name, TABLE),
    )


def versions(control, source_name: str) -> dict[str, tuple]:
    """``etl.row_version`` itself: key -> (hash, cursor, landed object)."""
    rows = control.query(
        "SELECT row_key, row_hash, last_updated, landed_key FROM etl.row_version "
        "WHERE source = %s AND table_name = %s",
        (source_name, TABLE),
    )
    return {key: tuple(rest) for key, *rest in rows}


def reconcile(n: int, *, source_name: str, bucket: str) -> dict[str, Any]:
    operator = PostgresReconcileOperator(
        task_id=f"reconcile_{TABLE}",
        table={"name": TABLE, "key": "customer_id"},
        source=source_name,
        conn_id=CONN_ID,
        bucket=bucket,
    )
    start = FIRST_INTERVAL + n * HALF_HOUR
    task = TaskTry(operator, "fold_test", f"reconcile__{start.isoformat()}", (start, start + HALF_HOUR))
    result = task.execute()
    result["reported"] = task.outcome
    return result


def land_versions(source_name: str, bucket: str, rows: list[tuple[int, str, datetime]], n: int) -> str:
    """Land an object carrying only row versions (key, identity, cursor) as a table extract records
    it; return its key. Lets a test choose versions no real source sequence would produce."""
    table = pa.table(
        {
            COLUMNS.key: pa.array([r[0] for r in rows], pa.int32()),
            COLUMNS.hash: pa.array([r[1] for r in rows], pa.string()),
            COLUMNS.cursor: pa.array([r[2] for r in rows], pa.timestamp("us")),
        }
    )
    window = ExtractWindow(None, datetime(2024, 11, 15, 10) + n * HALF_HOUR)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "v.parquet"
        pq.write_table(table, local)
        stored = ImmutableStore().create_file(bucket, f"{source_name}/{TABLE}/{n}", TABLE, local, ".parquet")
        Ledger().record_landing(
            source=source_name,
            table_name=TABLE,
            window=window,
            run_id=f"manual__{n}",
            stored=stored,
            rows=len(rows),
            mode="incremental",
            row_versions=landed_versions(local, COLUMNS),
            version_columns=COLUMNS,
        )
    return stored.key


def test_an_increment_records_one_waiting_object_and_a_fold_copies_its_versions_once(
    extract, source, source_name, control_plane
):
    first = extract(0)
    before = Ledger().row_hashes(source_name, TABLE)
    source.execute(
        f"UPDATE {TABLE} SET note = 'changed', last_updated = %s WHERE customer_id IN (1, 3)", (at(2),)
    )

    increment = extract(2)

    assert increment["rows"] == 2
    # One ledger row naming the landed object, as the baseline is; no row per landed row.
    assert waiting(control_plane, source_name) == [
        (increment["key"], "customer_id", ROW_HASH, "last_updated")
    ]
    assert versions(control_plane, source_name) == {}
    assert Ledger().waiting_versions(source_name, TABLE) == 1

    assert Ledger().fold_versions(source_name, TABLE) == 1

    assert waiting(control_plane, source_name) == []
    folded = versions(control_plane, source_name)
    assert sorted(folded) == ["1", "3"]
    assert {v[1:] for v in folded.values()} == {(datetime.fromisoformat(at(2)), increment["key"])}
    # Folding again finds nothing and changes nothing.
    assert Ledger().fold_versions(source_name, TABLE) == 0
    assert versions(control_plane, source_name) == folded
    after = Ledger().row_hashes(source_name, TABLE)
    assert after == source_hashes(source)
    assert after["2"] == before["2"] and after["1"] != before["1"] and after["3"] != before["3"]
    assert control_plane.query(  # the baseline stays the first snapshot
        "SELECT key FROM etl.row_version_base WHERE source = %s", (source_name,)
    ) == [(first["key"],)]


def test_a_fold_applies_objects_oldest_first_and_the_newer_cursor_wins(bucket, source_name, control_plane):
    t1, t2, t3 = (datetime(2024, 11, 15, 10 + h) for h in range(3))
    base = land_versions(source_name, bucket, [(1, "base1", t1), (2, "base2", t1), (3, "base3", t1)], 0)
    a = land_versions(source_name, bucket, [(1, "a1", t2), (2, "a2", t2)], 1)
    # Landed later, older cursor for key 1 (a backfill): loses; equal cursor for key 2 (a silent
    # change found by the reconciliation): the later landing wins; key 4 is new.
    b = land_versions(source_name, bucket, [(1, "b1-stale", t1), (2, "b2", t2), (4, "b4", t3)], 2)
    c = land_versions(source_name, bucket, [(4, "c4-stale", t2)], 3)
    assert control_plane.query("SELECT key FROM etl.row_version_base WHERE source = %s", (source_name,)) == [
        (base,)
    ]
    assert [row[0] for row in waiting(control_plane, source_name)] == [a, b, c]

    assert Ledger().fold_versions(source_name, TABLE) == 3

    assert versions(control_plane, source_name) == {
        "1": ("a1", t2, a),
        "2": ("b2", t2, b),
        "4": ("b4", t3, b),
    }
    assert Ledger().row_hashes(source_name, TABLE) == {"1": "a1", "2": "b2", "3": "base3", "4": "b4"}


def test_two_folds_at_once_apply_each_object_exactly_once(bucket, source_name, control_plane):
    t = datetime(2024, 11, 15, 10)
    land_versions(source_name, bucket, [(1, "base", t)], 0)
    keys = [
        land_versions(source_name, bucket, [(1, f"v{i}", t + timedelta(minutes=i))], i) for i in range(1, 9)
    ]

    # While another session holds the table's lock, a fold waits for it.
    lock = f"etl.row_version_object:{source_name}:{TABLE}"
    results: list[int] = []
    errors: list[BaseException] = []

    def fold() -> None:
        try:
            results.append(Ledger().fold_versions(source_name, TABLE))
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)

    with control_plane.transaction() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock,))
        blocked = threading.Thread(target=fold)
        blocked.start()
        blocked.join(1.5)
        assert blocked.is_alive() and len(waiting(control_plane, source_name)) == 8
    blocked.join(60)
    assert not blocked.is_alive() and not errors and results == [8]

    # Two folds started together over new objects: together they fold each one once.
    more = [
        land_versions(source_name, bucket, [(1, f"w{i}", t + timedelta(hours=1, minutes=i))], 10 + i)
        for i in range(6)
    ]
    start = threading.Barrier(2)
    results.clear()

    def race() -> None:
        start.wait()
        fold()

    threads = [threading.Thread(target=race) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and sorted(results)[1] > 0 and sum(results) == 6
    assert waiting(control_plane, source_name) == []
    assert versions(control_plane, source_name) == {"1": ("w5", t + timedelta(hours=1, minutes=5), more[-1])}
    assert keys[-1] not in {v[2] for v in versions(control_plane, source_name).values()}


def test_a_fold_that_fails_leaves_its_object_waiting_and_applies_nothing(bucket, source_name, control_plane):
    t = datetime(2024, 11, 15, 10)
    land_versions(source_name, bucket, [(1, "base", t)], 0)
    key = land_versions(source_name, bucket, [(1, "gone", t + timedelta(hours=1))], 1)
    ImmutableStore().client.delete_object(Bucket=bucket, Key=key)  # what no landed object should suffer

    with pytest.raises(Exception, match=r"NoSuchKey|Not Found|404"):
        Ledger().fold_versions(source_name, TABLE)

    assert [row[0] for row in waiting(control_plane, source_name)] == [key]
    assert versions(control_plane, source_name) == {}


def test_the_reconciliation_sees_waiting_increments_and_records_deletions_after_them(
    extract, bucket, source, source_name, control_plane
):
    extract(0)
    assert reconcile(0, source_name=source_name, bucket=bucket)["changed"] == 0
    # Increments: row 1 changed, row 3 changed, a new row 4; each waits in its object.
    source.execute(f"UPDATE {TABLE} SET name = 'Changed', last_updated = %s WHERE customer_id = 1", (at(1),))
    assert extract(1)["rows"] == 1
    source.execute(f"UPDATE {TABLE} SET note = 'x', last_updated = %s WHERE customer_id = 3", (at(2),))
    pg.insert_rows(
        source, [{**pg.SEED_ROWS[0], "customer_id": 4, "last_updated": datetime.fromisoformat(at(2))}]
    )
    assert extract(2)["rows"] == 2
    assert len(waiting(control_plane, source_name)) == 2 and versions(control_plane, source_name) == {}
    # Then, unseen by any increment: row 2 changed in place (cursor untouched) and row 3 deleted.
    source.execute(f"UPDATE {TABLE} SET balance = 99 WHERE customer_id = 2")
    source.execute(f"DELETE FROM {TABLE} WHERE customer_id = 3")

    result = reconcile(3, source_name=source_name, bucket=bucket)

    # Neither the increments' rows re-landed nor the new row taken for a deletion: only the silent
    # change and the real deletion.
    assert (result["changed"], result["deleted"], result["rows"]) == (1, 1, 1)
    held = versions(control_plane, source_name)
    assert held["3"][0] == DELETED_VERSION  # recorded after the increment that changed row 3
    assert (
        held["1"][2] != held["4"][2] and "2" not in held
    )  # row 2's version waits, landed by the reconciliation
    assert [row[0] for row in waiting(control_plane, source_name)] == [result["key"]]
    assert Ledger().row_hashes(source_name, TABLE) == source_hashes(source)
    again = reconcile(4, source_name=source_name, bucket=bucket)
    assert (again["changed"], again["deleted"]) == (0, 0)


def test_an_extract_folds_once_more_than_the_bound_wait(
    extract, source, source_name, control_plane, monkeypatch, capfd
):
    """A table nobody reconciles keeps at most FOLD_AFTER_WAITING waiting objects."""
    monkeypatch.setattr(landing_module, "FOLD_AFTER_WAITING", 2)
    extract(0)
    for n in (1, 2):
        source.execute(
            f"UPDATE {TABLE} SET loyalty_points = %s, last_updated = %s WHERE customer_id = 2", (n, at(n))
        )
        extract(n)
    assert len(waiting(control_plane, source_name)) == 2

    source.execute(
        f"UPDATE {TABLE} SET loyalty_points = 3, last_updated = %s WHERE customer_id = 1", (at(3),)
    )
    third = extract(3)

    assert waiting(control_plane, source_name) == []  # three waited: more than two, all folded
    assert {k: v[2] for k, v in versions(control_plane, source_name).items()}["1"] == third["key"]
    assert Ledger().row_hashes(source_name, TABLE) == source_hashes(source)

    # A fold that fails there is logged, not raised: the landing is recorded, its object waits.
    def broken(*args, **kwargs):
        raise RuntimeError("S3 is away")

    monkeypatch.setattr(Ledger, "fold_versions", broken)
    for n in (4, 5, 6):
        source.execute(
            f"UPDATE {TABLE} SET loyalty_points = %s, last_updated = %s WHERE customer_id = 3", (n, at(n))
        )
        assert extract(n)["rows"] == 1
    assert len(waiting(control_plane, source_name)) == 3
    captured = capfd.readouterr()
    assert "folding them failed" in captured.out + captured.err
    monkeypatch.undo()
    assert Ledger().row_hashes(source_name, TABLE) == source_hashes(source)
    assert waiting(control_plane, source_name) == []


def test_versions_given_row_by_row_and_tombstones_come_after_waiting_objects(
    bucket, source_name, control_plane
):
    """Versions written straight into etl.row_version (a key whose text Arrow would write otherwise,
    deletions) are landed after the objects waiting: those are folded first."""
    t = datetime(2024, 11, 15, 10)
    land_versions(source_name, bucket, [(1, "base", t), (2, "base", t)], 0)
    land_versions(source_name, bucket, [(1, "waiting", t + timedelta(hours=1))], 1)
    # The deletion is seen at the waiting version's own cursor: folded after it, that version would win.
    window = ExtractWindow(None, t + timedelta(hours=1))

    land_deletions(
        source=source_name,
        table=TABLE,
        key="customer_id",
        keys=["1"],
        bucket=bucket,
        window=window,
        run_id="reconcile__x",
        log=logging.getLogger(__name__),
    )

    assert waiting(control_plane, source_name) == []
    # The waiting version (cursor 11:00) was folded before the deletion (seen at 11:00) overrode it.
    assert versions(control_plane, source_name)["1"][0] == DELETED_VERSION
    assert Ledger().row_hashes(source_name, TABLE) == {"2": "base"}
