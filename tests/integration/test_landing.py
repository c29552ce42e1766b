"""The one landing path (``include.etlkit.extract.landing``) on the real local S3 and PostgreSQL.

Every extract kind lands through :class:`Landing`; the per-kind tests (``test_*_extract.py``) show
their keys and ledger rows. These show what the path itself promises: one layout for every kind, the
state advanced even when nothing landed, and a dropped file's ledger and ``etl.source_file`` rows
written together or not at all.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import pytest

from include.etlkit.control import ledger as ledger_module
from include.etlkit.control.accounting import take_outcome
from include.etlkit.control.ledger import Ledger
from include.etlkit.extract.files import RemoteFile
from include.etlkit.extract.landing import Landing
from include.etlkit.storage import content_key, file_sha256
from include.etlkit.windows import ExtractWindow
from tests.conftest import TaskInstanceStub, bucket_keys, s3_client

pytestmark = pytest.mark.integration

WINDOW = ExtractWindow(datetime(2025, 3, 1, 9), datetime(2025, 3, 1, 10))
LOG = logging.getLogger(__name__)


def landing(source: str, name: str, bucket: str) -> Landing:
    return Landing(source=source, name=name, bucket=bucket, window=WINDOW, run_id="run_1", log=LOG)


def landed_rows(control, source: str) -> list[tuple]:
    return control.query(
        "SELECT key, table_name, mode, rows, window_start, window_end, run_id FROM etl.landed_object "
        "WHERE source = %s ORDER BY key",
        (source,),
    )


def source_file_rows(control, source: str) -> list[tuple]:
    return control.query(
        "SELECT remote_path, status, landed_key FROM etl.source_file WHERE source = %s", (source,)
    )


def test_a_landed_file_gets_the_layout_every_kind_shares(tmp_path, bucket, source_name, control_plane):
    local = tmp_path / "rates.ndjson"
    local.write_bytes(b'{"a":1}\n{"a":2}\n')

    stored = landing(source_name, "rates", bucket).land(
        local, rows=2, mode="incremental", advance_state=True, suffix=".ndjson"
    )

    expected = content_key(f"{source_name}/rates/2025/03/01", "rates", file_sha256(local), ".ndjson")
    assert stored is not None and stored.key == expected and stored.created
    assert bucket_keys(s3_client(), bucket, source_name) == [expected]
    assert landed_rows(control_plane, source_name) == [
        (expected, "rates", "incremental", 2, WINDOW.lower, WINDOW.upper, "run_1")
    ]
    assert Ledger(control_plane).landed_until(source_name, "rates") == WINDOW.upper


def test_nothing_to_land_stores_nothing_but_moves_the_state(bucket, source_name, control_plane):
    stored = landing(source_name, "orders", bucket).land(None, rows=0, mode="incremental", advance_state=True)

    assert stored is None
    assert bucket_keys(s3_client(), bucket, source_name) == []
    assert landed_rows(control_plane, source_name) == []
    assert Ledger(control_plane).landed_until(source_name, "orders") == WINDOW.upper


def test_a_dropped_file_and_its_sender_are_recorded_together_or_not_at_all(
    tmp_path: Path, bucket, source_name, control_plane, monkeypatch
):
    local = tmp_path / "sales.csv"
    local.write_bytes(b"id,amount\n1,2.50\n")
    remote = RemoteFile("/sales/sales.csv", local.stat().st_size, datetime(2025, 3, 1, 8))
    drop = landing(source_name, "sales", bucket)

    def crash(*args, **kwargs):
        raise RuntimeError("worker lost between the two records")

    monkeypatch.setattr(ledger_module, "write_source_file", crash)
    with pytest.raises(RuntimeError, match="worker lost"):
        drop.land(
            local, rows=1, mode="file", advance_state=False, suffix=".csv", file_name="sales", remote=remote
        )
    # The object is in the bucket, but no ledger names it: nothing downstream sees a file without sender.
    assert len(bucket_keys(s3_client(), bucket, source_name)) == 1
    assert landed_rows(control_plane, source_name) == []
    assert source_file_rows(control_plane, source_name) == []

    monkeypatch.undo()
    stored = drop.land(
        local, rows=1, mode="file", advance_state=False, suffix=".csv", file_name="sales", remote=remote
    )

    assert stored is not None and not stored.created  # the retry finds the same key
    assert [row[0] for row in landed_rows(control_plane, source_name)] == [stored.key]
    assert source_file_rows(control_plane, source_name) == [("/sales/sales.csv", "landed", stored.key)]
    assert Ledger(control_plane).landed_until(source_name, "sales") is None  # drops move no state


def test_the_try_reports_its_counts_through_the_landing_path():
    ti = TaskInstanceStub("landing_dag", "report", "run_1")
    take_outcome(ti)

    Landing.report({"ti": ti}, rows_in=5, rows_out=4, rows_rejected=1)

    outcome = take_outcome(ti)
    assert (outcome.rows_in, outcome.rows_out, outcome.rows_rejected) == (5, 4, 1)
