"""Wait for a partner's S3 drop to hold a file not landed yet, without holding a worker slot.

:class:`S3DropSensor` succeeds as soon as the drop prefix holds at least one settled object matching
the patterns whose version (:mod:`include.etlkit.extract.s3_drop`) is not ``landed`` in
``etl.source_file``. Only the worker reads the ledger: when nothing is new it hands the trigger the
fingerprints of the versions present and already landed, and defers. :class:`S3DropTrigger` lists the
prefix every ``poke_interval`` seconds and fires once it sees a settled version outside that set; the
sensor resumes on a worker, checks the ledger again (a run may have landed the file meanwhile) and
either succeeds, returning the ``s3://`` paths of the new objects, or defers again with the new set.

Why not the amazon provider's ``S3KeySensor(deferrable=True)`` / ``S3KeyTrigger``: that trigger
fires as soon as *any* key matches, and the drop always holds the files already landed (landed data
is immutable, drops are never deleted), so it would fire at once on every deferral and the worker's
``check_fn`` would re-defer in a tight loop, each cycle costing a worker slot. "New, not yet landed"
needs the ledger's answer inside the trigger's condition, hence a trigger of our own.

Why the trigger lists in a thread (``asyncio.to_thread``) rather than with the provider's async hook
(``S3Hook.get_async_conn``, on ``aiobotocore``, which the project installs for the SQS watcher of
event-driven drops): one LIST call per poke in the triggerer's default thread pool never blocks its
event loop, and the trigger runs exactly the listing code the extract and the worker use
(:func:`~include.etlkit.extract.s3_drop.list_drop`), so all three agree on what a version is.

The trigger also ends itself at the sensor's deadline (``timeout`` from the first poke, carried across
re-deferrals), so the sensor times out even where the triggerer does not enforce deferral timeouts
(``dag.test()`` runs triggers inline); a timeout fails the task, or skips it with ``soft_fail=True``.
The trigger class must be importable by the triggerer: on MWAA the ``dags/`` folder (holding
``include/``) must be on its ``sys.path``.

**Woken by S3 events** (``events:`` on the feed, :mod:`include.etlkit.pipelines.events`): the DAG
also runs on each arrival announced through SQS. Such a run must not sit out the polling timeout when
the event's file is already landed (duplicate events, an arrival another run took): it waits at most
``event_timeout`` seconds beyond ``settle_seconds``, then skips (``soft_fail``), and the next event or
the cron fallback takes over.

**A bounded listing** (``listing_margin_hours``, ``date_folders``): the sensor and its trigger list
from the feed's LastModified high-water mark, as the extract does (:mod:`include.etlkit.extract.s3_drop`),
so neither the listing nor the trigger's ``known`` set grows with every file ever delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from include.etlkit.extract.files import SourceFileLedger, unsettled
from include.etlkit.extract.s3_drop import (
    DEFAULT_IGNORE_PATTERNS,
    DEFAULT_PATTERNS,
    DEFAULT_SETTLE_SECONDS,
    DropObject,
    ListingBound,
    S3DropError,
    list_drop,
    listing_bound,
    normalise_prefix,
)

# The run type of a run an Asset event (here: an S3 arrival through SQS) started.
ASSET_TRIGGERED = "asset_triggered"


def _s3_client(aws_conn_id: str) -> Any:
    from include.etlkit.storage import s3_client

    return s3_client(aws_conn_id)


class S3DropTrigger(BaseTrigger):
    """Fire once the drop holds a settled version whose fingerprint is not in ``known``.

    :param known: fingerprints (:attr:`DropObject.fingerprint`) of the versions present and already
        landed when the sensor deferred: about 20 bytes each in the trigger's stored kwargs.
    :param deadline: ISO time (UTC) at which to give up with a ``timeout`` event; None waits forever.
    :param listed_since: ISO time (naive UTC): list only objects modified since (a bounded listing).
    :param date_folders: with ``listed_since``, the drop's date folder format (``StartAfter``).
    """

    def __init__(
        self,
        *,
        drop_bucket: str,
        drop_prefix: str,
        patterns: Sequence[str],
        ignore_patterns: Sequence[str],
        known: Sequence[str],
        settle_seconds: float,
        aws_conn_id: str = "aws_default",
        poke_interval: float = 60,
        deadline: str | None = None,
        listed_since: str | None = None,
        date_folders: str | None = None,
    ) -> None:
        super().__init__()
        self.drop_bucket = drop_bucket
        self.drop_prefix = drop_prefix
        self.patterns = list(patterns)
        self.ignore_patterns = list(ignore_patterns)
        self.known = sorted(known)
        self.settle_seconds = settle_seconds
        self.aws_conn_id = aws_conn_id
        self.poke_interval = poke_interval
        self.deadline = deadline
        self.listed_since = listed_since
        self.date_folders = date_folders

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "drop_bucket": self.drop_bucket,
                "drop_prefix": self.drop_prefix,
                "patterns": self.patterns,
                "ignore_patterns": self.ignore_patterns,
                "known": self.known,
                "settle_seconds": self.settle_seconds,
                "aws_conn_id": self.aws_conn_id,
                "poke_interval": self.poke_interval,
                "deadline": self.deadline,
                "listed_since": self.listed_since,
                "date_folders": self.date_folders,
            },
        )

    def new_objects(self, client: Any) -> list[DropObject]:
        """The settled versions in the drop that were not known to be landed (a blocking call)."""
        known = set(self.known)
        since = datetime.fromisoformat(self.listed_since) if self.listed_since else None
        bound = ListingBound(since=since, date_folders=self.date_folders)
        listed = list_drop(
            client, self.drop_bucket, self.drop_prefix, self.patterns, self.ignore_patterns, bound
        )
        return [o for o in listed if o.fingerprint not in known and not unsettled(o, self.settle_seconds)]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        where = f"s3://{self.drop_bucket}/{self.drop_prefix}"
        deadline = datetime.fromisoformat(self.deadline) if self.deadline else None
        try:
            client = await asyncio.to_thread(_s3_client, self.aws_conn_id)
            while True:
                new = await asyncio.to_thread(self.new_objects, client)
                if new:
                    self.log.info("%d new object(s) under %s", len(new), where)
                    yield TriggerEvent(
                        {"status": "success", "new": [o.path for o in new], "deadline": self.deadline}
                    )
                    return
                wait = self.poke_interval
                if deadline is not None:
                    left = (deadline - datetime.now(UTC)).total_seconds()
                    if left <= 0:
                        yield TriggerEvent({"status": "timeout", "message": f"nothing new under {where}"})
                        return
                    wait = min(wait, left)
                self.log.info("nothing new under %s; next look in %.0fs", where, wait)
                await asyncio.sleep(wait)
        except Exception as exc:  # the event carries it to the worker, where the task fails with it
            yield TriggerEvent({"status": "error", "message": f"cannot list {where}: {exc}"})


class S3DropSensor(BaseSensorOperator):
    """Succeed once the S3 drop holds a settled object matching ``patterns`` that is not landed yet.

    Returns (and pushes to XCom) the ``s3://`` paths of the new objects. Pair it with the
    :class:`~include.etlkit.extract.s3_drop.S3DropExtractOperator` of the same ``source``, drop and
    patterns; give both the same ``settle_seconds`` so the sensor never wakes a run that would leave
    every file for later.

    :param source: the source name the extract records its files under in ``etl.source_file``.
    :param name: the feed name (for the log; the ledger's file identity does not involve it).
    :param drop_bucket: the bucket of the drop (templated).
    :param drop_prefix: the prefix partners write to (templated; read recursively).
    :param deferrable: wait in the triggerer (default) rather than poking from a worker.
    :param poke_interval: seconds between two listings, in either mode.
    :param timeout: seconds from the first poke before the sensor fails (or skips, ``soft_fail``).
    :param event_timeout: in a run an Asset event started (an S3 arrival), seconds to wait beyond
        ``settle_seconds`` instead of ``timeout``.
    :param listing_margin_hours: list from the feed's high-water mark, as the extract does.
    :param date_folders: the drop's date folder format, as the extract's.
    """

    template_fields: Sequence[str] = ("source", "drop_bucket", "drop_prefix")
    ui_color = "#e8f0d8"

    def __init__(
        self,
        *,
        source: str,
        name: str,
        drop_bucket: str,
        drop_prefix: str,
        patterns: Sequence[str] = DEFAULT_PATTERNS,
        ignore_patterns: Sequence[str] = DEFAULT_IGNORE_PATTERNS,
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
        aws_conn_id: str = "aws_default",
        deferrable: bool = True,
        poke_interval: float = 60,
        event_timeout: float = 120,
        listing_margin_hours: float | None = None,
        date_folders: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        if not patterns:
            raise ValueError("patterns cannot be empty: say which files to wait for")
        self.source = source
        self.name = name
        self.drop_bucket = drop_bucket
        self.drop_prefix = drop_prefix
        self.patterns = tuple(patterns)
        self.ignore_patterns = tuple(ignore_patterns)
        self.settle_seconds = settle_seconds
        self.aws_conn_id = aws_conn_id
        self.deferrable = deferrable
        self.event_timeout = event_timeout
        self.listing_margin_hours = listing_margin_hours
        self.date_folders = date_folders
        self._bound = ListingBound()

    @property
    def where(self) -> str:
        return f"s3://{self.drop_bucket}/{normalise_prefix(self.drop_prefix)}"

    def check(self) -> tuple[list[DropObject], list[str]]:
        """The settled, not-landed objects; and the fingerprints of the landed ones present."""
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = normalise_prefix(self.drop_prefix)
        if self.listing_margin_hours is not None:
            from include.etlkit.control.ledger import Ledger

            mark = Ledger().landed_until(self.source, self.name)
            self._bound = listing_bound(mark, self.listing_margin_hours, self.date_folders)
        try:
            seen = list_drop(
                _s3_client(self.aws_conn_id),
                self.drop_bucket,
                prefix,
                self.patterns,
                self.ignore_patterns,
                self._bound,
            )
        except (ClientError, BotoCoreError) as exc:
            raise S3DropError(f"cannot list {self.where} (connection {self.aws_conn_id!r}): {exc}") from exc
        landed = SourceFileLedger().landed_versions(self.source, [o.path for o in seen])
        new = [o for o in seen if o.version not in landed and not unsettled(o, self.settle_seconds)]
        known = [o.fingerprint for o in seen if o.version in landed]
        self.log.info(
            "%s/%s: %d object(s) under %s, %d landed, %d new and settled",
            self.source,
            self.name,
            len(seen),
            self.where,
            len(known),
            len(new),
        )
        return new, known

    def poke(self, context: Any) -> PokeReturnValue | bool:
        new, _ = self.check()
        return PokeReturnValue(is_done=True, xcom_value=[o.path for o in new]) if new else False

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        return self._wait(datetime.now(UTC) + timedelta(seconds=self.wait_seconds(context)))

    def wait_seconds(self, context: Any) -> float:
        """``timeout``; or, in a run an S3 arrival woke, only long enough for a new file to settle."""
        dag_run = context.get("dag_run")
        if dag_run is not None and str(getattr(dag_run, "run_type", "")) == ASSET_TRIGGERED:
            return min(float(self.timeout), self.settle_seconds + self.event_timeout)
        return float(self.timeout)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> list[str]:
        """Resume after the trigger fired: make sure with the ledger, else wait again."""
        status = event.get("status")
        if status == "error":
            raise S3DropError(event["message"])
        if status == "timeout":
            self._timed_out(event["message"])
        return self._wait(datetime.fromisoformat(event["deadline"]))

    def _wait(self, deadline: datetime) -> list[str]:
        new, known = self.check()
        if new:
            return [o.path for o in new]
        left = (deadline - datetime.now(UTC)).total_seconds()
        if left <= 0:
            self._timed_out(f"nothing new under {self.where}")
        self.defer(
            trigger=S3DropTrigger(
                drop_bucket=self.drop_bucket,
                drop_prefix=normalise_prefix(self.drop_prefix),
                patterns=self.patterns,
                ignore_patterns=self.ignore_patterns,
                known=known,
                settle_seconds=self.settle_seconds,
                aws_conn_id=self.aws_conn_id,
                poke_interval=self.poke_interval,
                deadline=deadline.isoformat(),
                listed_since=self._bound.since.isoformat() if self._bound.since else None,
                date_folders=self._bound.date_folders,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=left),
        )

    def _timed_out(self, why: str) -> None:
        message = f"{why} after timeout={self.timeout:g}s"
        if self.soft_fail:
            raise AirflowSkipException(f"{message} (soft_fail)")
        raise AirflowSensorTimeout(message)
