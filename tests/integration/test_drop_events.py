"""Event-driven drops end to end on moto's S3 and SQS: a partner's file becomes a loaded file with no polling.

The ingestion bucket sends ``s3:ObjectCreated:*`` notifications for ``drops/partners/`` to an SQS
queue (as ``infra/terraform/events.tf`` sets up in AWS), and ``AIRFLOW__ETLKIT__RETAIL_DROPS_QUEUE_URL``
names the queue, so ``retail_drops`` parses with an ``AssetWatcher`` on it. The watcher's own trigger
(the common-messaging ``MessageQueueTrigger``, taken from the parsed DAG) runs against moto until it
yields the arrival, as the triggerer would; then ``retail_drops``, ``retail_transform`` and
``retail_load`` run with ``dag.test()``. Duplicated, lost and out-of-order messages land each file
version exactly once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import psycopg
import pytest

from include.etlkit.control.cli import dag_tasks
from include.etlkit.control.ledger import Ledger
from include.etlkit.control.store import ControlStore
from include.etlkit.sensors.s3_drop import S3DropSensor, S3DropTrigger
from infra.local import settings
from tests.conftest import load_dag, s3_client
from tests.integration.airflow_server import dsn

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_IDS = ("retail_drops", "retail_transform", "retail_load")
DROP = "drops/partners/acme/"
HEADER = "partner_customer_ref,full_name,address,postcode,phone_number,email,signed_up_on\n"
WAREHOUSE_DB = settings.database("warehouse")


def customers(*rows: tuple[str, str]) -> bytes:
    lines = []
    for ref, name in rows:
        number = int(ref.split("-")[1])
        lines.append(f"{ref},{name},{number} High Street,N1 1AA,020 7946 00{number:02d},,2024-11-0{number}")
    return (HEADER + "\n".join(lines) + "\n").encode()


def _query(sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn(WAREHOUSE_DB)) as conn:
        return conn.execute(sql, params).fetchall()


@dataclass
class Arrivals:
    dags: dict[str, Any]
    bucket: str
    queue_url: str
    sqs: Any
    s3: Any

    @property
    def trigger(self) -> Any:
        """The watcher's trigger exactly as the parsed DAG declares it for the triggerer."""
        (asset,) = self.dags["retail_drops"].timetable.asset_condition.objects
        (watcher,) = asset.watchers
        return watcher.trigger

    def drop(self, name: str, body: bytes) -> str:
        self.s3.put_object(Bucket=self.bucket, Key=f"{DROP}{name}", Body=body)
        return f"{DROP}{name}"


def announced_keys(messages: list[dict]) -> list[str]:
    """The object keys the S3 notifications in ``messages`` announce (test events have none)."""
    keys = []
    for message in messages:
        body = json.loads(message["Body"])
        for record in body.get("Records", []):
            if record.get("eventName", "").startswith("ObjectCreated"):
                keys.append(unquote_plus(record["s3"]["object"]["key"]))
    return keys


async def _first_event(trigger: Any, timeout: float) -> Any:
    events = trigger.run()
    try:
        return await asyncio.wait_for(anext(events), timeout)
    finally:
        await events.aclose()


def watch_until(trigger: Any, key: str, timeout: float = 90) -> list[dict]:
    """Run the watcher's trigger, event after event, until one announces ``key``; every message received."""
    received: list[dict] = []
    for _ in range(10):
        event = asyncio.run(_first_event(trigger, timeout))
        assert event.payload["status"] == "success"
        received.extend(event.payload["message_batch"])
        if key in announced_keys(received):
            return received
    raise AssertionError(f"no notification for {key}: {announced_keys(received)}")


def run(dag) -> Any:
    result = dag.test()
    states = {ti.task_id: ti.state for ti in result.get_task_instances()}
    failed = {task: state for task, state in states.items() if state not in ("success", "skipped")}
    assert result.state == "success" and not failed, f"{dag.dag_id} failed: {failed}"
    return states


def landed_rows(bucket: str) -> dict[str, list[tuple]]:
    rows = _query(
        "SELECT remote_path, status, landed_key FROM etl.source_file WHERE source = 'retail' "
        "ORDER BY remote_path, first_seen_at"
    )
    found: dict[str, list[tuple]] = {}
    for path, status, key in rows:
        found.setdefault(path.removeprefix(f"s3://{bucket}/"), []).append((status, key))
    return found


@pytest.fixture(scope="module")
def arrivals(airflow_db, local_services, control_plane) -> Any:
    """A fresh warehouse and ledger, buckets of the module's own, a queue the drop prefix notifies."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    with psycopg.connect(dsn(WAREHOUSE_DB), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS core, landing, mart CASCADE")
        conn.execute("CREATE SCHEMA core; CREATE SCHEMA landing; CREATE SCHEMA mart")
    Ledger(control_plane).forget("retail")

    suffix = uuid.uuid4().hex[:8]
    bucket = f"etl-ingestion-events-{suffix}"
    patch = pytest.MonkeyPatch()
    patch.setenv("AIRFLOW_VAR_INGESTION_BUCKET", bucket)
    patch.setenv("AIRFLOW_VAR_PROCESSED_BUCKET", f"etl-processed-events-{suffix}")
    from infra.local.bootstrap import ensure_buckets

    ensure_buckets()
    sqs = AwsBaseHook(aws_conn_id="aws_default", client_type="sqs").get_conn()
    queue_url = sqs.create_queue(QueueName=f"retail-drops-{suffix}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3 = s3_client()
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "drops/partners/"}]}},
                }
            ]
        },
    )
    patch.setenv("AIRFLOW__ETLKIT__RETAIL_DROPS_QUEUE_URL", queue_url)

    store = ControlStore()
    store.register(dag_tasks(str(DAGS)))
    for dag_id in DAG_IDS:
        store.set_enabled(dag_id, None, True)
    dags = {dag_id: load_dag(dag_id, DAGS) for dag_id in DAG_IDS}
    for dag in dags.values():
        for task in dag.tasks:
            task.retries = 0
            if isinstance(task, S3DropSensor):
                task.timeout, task.poke_interval = 5, 1  # a run with nothing new skips in seconds
    yield Arrivals(dags, bucket, queue_url, sqs, s3)
    sqs.delete_queue(QueueUrl=queue_url)
    patch.undo()


@pytest.fixture
def polling(monkeypatch) -> list[str]:
    """Every listing the polling trigger would make (it must make none when an event woke the run)."""
    calls: list[str] = []
    original = S3DropTrigger.run

    def recorded(self):
        calls.append(self.drop_prefix)
        return original(self)

    monkeypatch.setattr(S3DropTrigger, "run", recorded)
    return calls


def test_the_drops_dag_is_scheduled_by_arrivals_or_its_cron(arrivals):
    from airflow.sdk import AssetOrTimeSchedule

    timetable = arrivals.dags["retail_drops"].timetable
    assert isinstance(timetable, AssetOrTimeSchedule)
    assert arrivals.trigger.serialize()[1]["sqs_queue"] == arrivals.queue_url


def test_a_dropped_file_is_announced_then_landed_validated_and_loaded_with_no_polling(arrivals, polling):
    key = arrivals.drop("customers-1.csv", customers(("A-1", "Ada Lovelace"), ("A-2", "Alan Turing")))

    received = watch_until(arrivals.trigger, key)
    assert announced_keys(received) == [key]
    # The watcher deleted what it received: nothing is left to wake the DAG a second time.
    attributes = arrivals.sqs.get_queue_attributes(
        QueueUrl=arrivals.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"

    states = run(arrivals.dags["retail_drops"])
    assert states["wait_for_partner_customers"] == "success"
    assert states["land_partner_customers"] == "success"
    assert polling == []  # the sensor found the file at once: it never deferred to poll the prefix
    run(arrivals.dags["retail_transform"])
    run(arrivals.dags["retail_load"])

    ((status, landed_key),) = landed_rows(arrivals.bucket)[key]
    assert status == "landed"
    assert _query(
        "SELECT status, rows_read, rows_loaded, rows_rejected FROM etl.file_status "
        "WHERE source = 'retail' AND key = %s",
        (landed_key,),
    ) == [("loaded", 2, 2, 0)]
    assert _query(
        "SELECT partner, partner_customer_ref, full_name FROM core.partner_customer ORDER BY 2"
    ) == [("acme", "A-1", "Ada Lovelace"), ("acme", "A-2", "Alan Turing")]


def test_duplicated_lost_and_reordered_messages_land_each_file_version_once(arrivals, polling):
    first = f"{DROP}customers-1.csv"
    assert landed_rows(arrivals.bucket).get(first), "runs after the first test"
    second = arrivals.drop("customers-2.csv", customers(("A-3", "Grace Hopper")))
    third = arrivals.drop("customers-3.csv", customers(("A-4", "Edsger Dijkstra")))

    # Lost: the notifications of the second and third files never reach the watcher.
    lost = []
    while len(announced_keys(lost)) < 2:
        batch = arrivals.sqs.receive_message(
            QueueUrl=arrivals.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=5
        ).get("Messages", [])
        assert batch or lost, "no notification for the second and third files"
        for message in batch:
            arrivals.sqs.delete_message(QueueUrl=arrivals.queue_url, ReceiptHandle=message["ReceiptHandle"])
        lost.extend(batch)
    assert sorted(announced_keys(lost)) == [second, third]
    # Duplicated and out of order: the first file's notification, delivered again, after them.
    where = {"bucket": {"name": arrivals.bucket}, "object": {"key": first}}
    record = {"eventName": "ObjectCreated:Put", "s3": where}
    duplicate = json.dumps({"Records": [record]})
    arrivals.sqs.send_message(QueueUrl=arrivals.queue_url, MessageBody=duplicate)
    watch_until(arrivals.trigger, first)

    states = run(arrivals.dags["retail_drops"])
    assert states["land_partner_customers"] == "success" and polling == []
    landed = landed_rows(arrivals.bucket)
    # The run the duplicate woke lands the files whose messages were lost, and the first not again.
    assert {path: [status for status, _ in rows] for path, rows in landed.items()} == {
        first: ["landed"],
        second: ["landed"],
        third: ["landed"],
    }
    objects = _query("SELECT count(*) FROM etl.landed_object WHERE source = 'retail'")

    # The same message once more: the run lands nothing (its sensor skips after its short wait).
    arrivals.sqs.send_message(QueueUrl=arrivals.queue_url, MessageBody=duplicate)
    watch_until(arrivals.trigger, first)
    states = run(arrivals.dags["retail_drops"])
    assert states["land_partner_customers"] == "skipped"
    assert _query("SELECT count(*) FROM etl.landed_object WHERE source = 'retail'") == objects
    assert landed_rows(arrivals.bucket) == landed

    run(arrivals.dags["retail_transform"])
    run(arrivals.dags["retail_load"])
    refs = _query("SELECT partner_customer_ref FROM core.partner_customer ORDER BY 1")
    assert [ref for (ref,) in refs] == ["A-1", "A-2", "A-3", "A-4"]
    assert _query(
        "SELECT count(*), count(DISTINCT key) FROM etl.file_status WHERE source = 'retail'"
    ) == [(3, 3)]
