"""The Terraform of ``infra/terraform/``, checked without an AWS account or a terraform binary.

Every ``.tf`` file is parsed with python-hcl2 (a syntax error fails), then the contract the project
relies on is asserted on the parsed configuration: Airflow 3.3.1 reading the bundle that
``make deploy`` uploads, immutable data buckets, the Secrets Manager backend with a secret for every
connection the project uses, an execution role naming only the project's resources, alerts and logs.
Last, checkov scans the folder: no failed check, and every skipped one carries its reason.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest

from infra.local import settings
from infra.mwaa import deploy

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "infra" / "terraform"
CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"
TF_FILES = sorted(TF.glob("*.tf"))
EXPECTED_FILES = {
    "versions",
    "variables",
    "main",
    "buckets",
    "iam",
    "mwaa",
    "secrets",
    "logs",
    "sns",
    "events",
    "outputs",
}
LOG_BLOCKS = {"dag_processing_logs", "scheduler_logs", "task_logs", "webserver_logs", "worker_logs"}
# Connections the project needs on MWAA beyond the local defaults: Snowflake and alert e-mail.
PRODUCTION_ONLY_CONNECTIONS = {"snowflake_default", "smtp_default"}


def _clean(node: Any) -> Any:
    """python-hcl2 8 keeps the quotes of string literals and keys and adds ``__*__`` markers."""
    if isinstance(node, dict):
        return {_clean(key): _clean(value) for key, value in node.items() if not key.startswith("__")}
    if isinstance(node, list):
        return [_clean(item) for item in node]
    if isinstance(node, str) and len(node) >= 2 and node[0] == node[-1] == '"':
        return node[1:-1]
    return node


@cache
def configuration() -> dict[str, Any]:
    """All files merged: {"resource": {type: {name: body}}, "data": ..., "locals": {...}, ...}."""
    merged: dict[str, Any] = {"resource": {}, "data": {}, "locals": {}, "variable": {}, "output": {}}
    for path in TF_FILES:
        with path.open() as stream:
            parsed = _clean(hcl2.load(stream))
        for kind in ("resource", "data"):
            for block in parsed.get(kind, []):
                for type_, named in block.items():
                    merged[kind].setdefault(type_, {}).update(named)
        for kind in ("variable", "output"):
            for block in parsed.get(kind, []):
                merged[kind].update(block)
        for block in parsed.get("locals", []):
            merged["locals"].update(block)
        merged.setdefault("terraform", []).extend(parsed.get("terraform", []))
    return merged


def resource(type_: str, name: str) -> dict[str, Any]:
    return configuration()["resource"][type_][name]


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The single nested block ``name`` of a resource body."""
    blocks = body[name]
    assert isinstance(blocks, list) and len(blocks) == 1, f"{name}: expected one block"
    return blocks[0]


def local(name: str) -> Any:
    return configuration()["locals"][name]


# -- syntax and layout ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", TF_FILES, ids=lambda path: path.name)
def test_every_terraform_file_parses(path: Path) -> None:
    with path.open() as stream:
        assert hcl2.load(stream), f"{path.name} is empty"


def test_the_configuration_has_its_files_and_examples() -> None:
    assert {path.stem for path in TF_FILES} >= EXPECTED_FILES
    assert (TF / "terraform.tfvars.example").is_file()
    assert (TF / "README.md").is_file()
    with (TF / "terraform.tfvars.example").open() as stream:
        example = _clean(hcl2.load(stream))
    required = {name for name, spec in configuration()["variable"].items() if "default" not in spec}
    assert required <= example.keys(), f"the example misses required variables {required - example.keys()}"
    assert example.keys() <= configuration()["variable"].keys(), "the example sets unknown variables"


def test_terraform_and_the_aws_provider_are_pinned() -> None:
    (settings_block,) = configuration()["terraform"]
    assert settings_block["required_version"].startswith(">= 1.")
    (providers,) = settings_block["required_providers"]
    assert providers["aws"] == {"source": "hashicorp/aws", "version": "~> 6.0"}


# -- MWAA --------------------------------------------------------------------------------------------


def test_the_environment_runs_airflow_3_3_1_from_what_make_deploy_uploads() -> None:
    mwaa = resource("aws_mwaa_environment", "etl")
    assert mwaa["airflow_version"] == "3.3.1"
    assert mwaa["source_bucket_arn"] == '${aws_s3_bucket.etl["dags"].arn}'
    assert mwaa["dag_s3_path"] == "dags" == deploy.DAGS_PREFIX.rstrip("/")
    # The S3 paths are the keys infra/mwaa/deploy.py uploads and pins by version.
    paths = {key: mwaa[arg] for key, arg in _path_arguments().items()}
    assert paths == {key: key for key in deploy.VERSIONED_FILES}
    # make deploy owns the object versions: Terraform must not roll them back.
    (lifecycle,) = mwaa["lifecycle"]
    assert set(lifecycle["ignore_changes"]) == {
        "plugins_s3_object_version",
        "requirements_s3_object_version",
        "startup_script_s3_object_version",
    }
    assert mwaa["kms_key"] == "${aws_kms_key.etl.arn}"
    assert mwaa["execution_role_arn"] == "${aws_iam_role.mwaa_execution.arn}"


def _path_arguments() -> dict[str, str]:
    # UpdateEnvironment's PluginsS3Path -> Terraform's plugins_s3_path, and so on.
    names = {"PluginsS3Path": "plugins_s3_path", "RequirementsS3Path": "requirements_s3_path"}
    names["StartupScriptS3Path"] = "startup_script_s3_path"
    return {key: names[path_arg] for key, (path_arg, _) in deploy.VERSIONED_FILES.items()}


def test_the_web_server_is_private_unless_chosen_otherwise() -> None:
    mwaa = resource("aws_mwaa_environment", "etl")
    assert mwaa["webserver_access_mode"] == "${var.webserver_access_mode}"
    assert configuration()["variable"]["webserver_access_mode"]["default"] == "PRIVATE_ONLY"


def test_all_five_airflow_log_types_go_to_kms_encrypted_log_groups_kept_a_year() -> None:
    logging = block(resource("aws_mwaa_environment", "etl"), "logging_configuration")
    assert set(logging) == LOG_BLOCKS
    for name in LOG_BLOCKS:
        assert block(logging, name)["enabled"] is True, name
        assert block(logging, name)["log_level"] == "${var.log_level}", name
    groups = resource("aws_cloudwatch_log_group", "airflow")
    assert groups["for_each"] == "${local.airflow_log_types}"
    assert set(local("airflow_log_types")) == LOG_BLOCKS
    assert groups["name"] == "airflow-${var.environment_name}-${each.value}"  # the names MWAA writes to
    assert groups["kms_key_id"] == "${aws_kms_key.etl.arn}"
    assert groups["retention_in_days"] == "${var.log_retention_days}"
    assert configuration()["variable"]["log_retention_days"]["default"] >= 365


def test_airflow_reads_connections_and_variables_from_secrets_manager() -> None:
    options = resource("aws_mwaa_environment", "etl")["airflow_configuration_options"]
    backend = "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend"
    assert options["secrets.backend"] == backend
    assert options["secrets.backend_kwargs"] == "${jsonencode(local.secrets_backend_kwargs)}"
    kwargs = local("secrets_backend_kwargs")
    assert kwargs["connections_prefix"] == "${local.connections_prefix}"
    assert kwargs["variables_prefix"] == "${local.variables_prefix}"
    assert local("connections_prefix") == "airflow/connections"
    assert local("variables_prefix") == "airflow/variables"
    # The class exists in the pinned amazon provider and takes these keyword arguments.
    from airflow.providers.amazon.aws.secrets.secrets_manager import SecretsManagerBackend

    SecretsManagerBackend(**{key: None if value is None else "x" for key, value in kwargs.items()})


def test_secrets_manager_is_asked_only_for_the_ids_it_holds() -> None:
    """The lookup patterns, evaluated as Terraform would, match every declared id and nothing else."""
    import re

    kwargs = local("secrets_backend_kwargs")
    assert kwargs["connections_lookup_pattern"] == '^(${join("|", local.connection_ids)})$'
    assert kwargs["variables_lookup_pattern"] == '^(${join("|", keys(local.airflow_variables))})$'
    connections = re.compile("^(" + "|".join(local("connection_ids")) + ")$")
    variables = re.compile("^(" + "|".join(local("airflow_variables")) + ")$")
    assert all(connections.match(c) for c in local("connection_ids"))
    assert all(variables.match(v) for v in local("airflow_variables"))
    for other in ("google_cloud_default", "warehouse_copy", "x_totesys"):
        assert not connections.match(other)
    assert not variables.match("some_unrelated_variable")


# -- buckets -----------------------------------------------------------------------------------------


def test_the_data_buckets_are_versioned_locked_kms_encrypted_private_and_tls_only() -> None:
    buckets = local("buckets")
    assert buckets["ingestion"]["object_lock"] is True
    assert buckets["processed"]["object_lock"] is True
    assert buckets["dags"]["name"].startswith("airflow-"), "MWAA requires its bucket name to start airflow-"
    assert "if bucket.object_lock" in local("data_buckets")

    bucket = resource("aws_s3_bucket", "etl")
    assert bucket["for_each"] == "${local.buckets}"
    assert bucket["object_lock_enabled"] == "${each.value.object_lock}"

    versioning = resource("aws_s3_bucket_versioning", "etl")
    assert versioning["for_each"] == "${local.buckets}"
    assert block(versioning, "versioning_configuration")["status"] == "Enabled"

    lock = resource("aws_s3_bucket_object_lock_configuration", "data")
    assert lock["for_each"] == "${local.data_buckets}"
    retention = block(block(lock, "rule"), "default_retention")
    assert retention == {"mode": "${var.object_lock_mode}", "days": "${var.object_lock_retention_days}"}
    assert configuration()["variable"]["object_lock_mode"]["default"] in {"GOVERNANCE", "COMPLIANCE"}

    encryption = resource("aws_s3_bucket_server_side_encryption_configuration", "etl")
    assert encryption["for_each"] == "${local.buckets}"
    default = block(block(encryption, "rule"), "apply_server_side_encryption_by_default")
    assert default == {"sse_algorithm": "aws:kms", "kms_master_key_id": "${aws_kms_key.etl.arn}"}

    public = resource("aws_s3_bucket_public_access_block", "etl")
    assert public["for_each"] == "${local.buckets}"
    flags = ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
    assert all(public[flag] is True for flag in flags)

    assert resource("aws_s3_bucket_policy", "etl")["for_each"] == "${local.buckets}"
    (deny,) = configuration()["data"]["aws_iam_policy_document"]["tls_only"]["statement"]
    assert deny["effect"] == "Deny" and deny["actions"] == ["s3:*"]
    assert block(deny, "condition") == {
        "test": "Bool",
        "variable": "aws:SecureTransport",
        "values": ["false"],
    }


def test_the_key_rotates() -> None:
    assert resource("aws_kms_key", "etl")["enable_key_rotation"] is True


# -- secrets -----------------------------------------------------------------------------------------


def test_every_connection_the_project_uses_has_a_secret() -> None:
    declared = set(local("connection_ids"))
    missing = (settings.default_connections().keys() | PRODUCTION_ONLY_CONNECTIONS) - declared
    assert not missing, f"connections without a secret in infra/terraform/secrets.tf: {sorted(missing)}"
    secret = resource("aws_secretsmanager_secret", "connection")
    assert secret["for_each"] == "${toset(local.connection_ids)}"
    assert secret["name"] == "${local.connections_prefix}/${each.key}"
    assert secret["kms_key_id"] == "${aws_kms_key.etl.arn}"


def test_every_airflow_variable_has_a_secret() -> None:
    declared = set(local("airflow_variables"))
    missing = (settings.default_variables().keys() | {"alert_sns_topic_arn"}) - declared
    assert not missing, f"Variables without a secret in infra/terraform/secrets.tf: {sorted(missing)}"
    secret = resource("aws_secretsmanager_secret", "variable")
    assert secret["name"] == "${local.variables_prefix}/${each.key}"
    assert secret["kms_key_id"] == "${aws_kms_key.etl.arn}"


def test_no_credential_is_written_by_terraform() -> None:
    versions = configuration()["resource"]["aws_secretsmanager_secret_version"]
    # Only the Variables (configuration) and aws_default (no keys: the execution role signs).
    assert set(versions) == {"variable", "aws_default"}
    aws_default = versions["aws_default"]["secret_string"]
    assert not re.search(r"password|login|secret_key|access_key", aws_default), aws_default


# -- the execution role ------------------------------------------------------------------------------

# Resources that are not one of the project's own, each allowed for the documented reason only.
ALLOWED_FOREIGN = {
    # No resource-level permissions for these actions (MWAA's documented execution-role policy).
    "*": {"cloudwatch:PutMetricData", "s3:GetAccountPublicAccessBlock"},
    # MWAA's Celery queue lives in an account MWAA owns.
    "arn:${local.partition}:sqs:${local.region}:*:airflow-celery-*": {
        "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "sqs:ReceiveMessage",
        "sqs:SendMessage",
    },
    "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*": {"logs:DescribeLogGroups"},
}
PROJECT_RESOURCES = re.compile(
    r"^\$\{(aws_s3_bucket\.etl\[|aws_kms_key\.etl\.|aws_sns_topic\.alerts\.|aws_sqs_queue\.drop_arrivals\.arn"
    r"|local\.environment_arn)"
    r"|^\$\{aws_s3_bucket\.etl\[[^]]+\]\.arn\}/\*$"
    r"|^\$\{(flatten\(\[for group in aws_cloudwatch_log_group\.airflow|\[for key, _ in local\.data_buckets)"
    r"|^arn:\$\{local\.partition\}:secretsmanager:\$\{local\.region\}:\$\{local\.account_id\}:secret:"
    r"\$\{local\.(connections|variables)_prefix\}/\*$"
)


def execution_statements() -> list[dict[str, Any]]:
    return configuration()["data"]["aws_iam_policy_document"]["mwaa_execution"]["statement"]


def test_the_execution_role_names_only_the_project_resources() -> None:
    for statement in execution_statements():
        sid, actions = statement["sid"], set(statement["actions"])
        assert statement.get("effect", "Allow") == "Allow", sid
        assert not any(action == "*" or action.endswith(":*") for action in actions), sid
        resources = statement["resources"]
        resources = [resources] if isinstance(resources, str) else resources
        for arn in resources:
            if arn in ALLOWED_FOREIGN:
                assert actions <= ALLOWED_FOREIGN[arn], f"{sid}: {actions - ALLOWED_FOREIGN[arn]} on {arn}"
            else:
                assert PROJECT_RESOURCES.match(arn), f"{sid}: {arn} is not one of the project's resources"


def test_the_execution_role_cannot_delete_or_unlock_data() -> None:
    actions = {action for statement in execution_statements() for action in statement["actions"]}
    forbidden = {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"}
    forbidden |= {"s3:PutObjectRetention", "s3:PutBucketObjectLockConfiguration", "s3:PutBucketPolicy"}
    assert not actions & forbidden
    assert "secretsmanager:PutSecretValue" not in actions


def test_the_execution_role_creates_data_objects_only_with_if_none_match() -> None:
    """S3 refuses a PutObject that could replace a landed or processed object (issue 10, defect 8)."""
    puts = [statement for statement in execution_statements() if "s3:PutObject" in statement["actions"]]
    assert [statement["sid"] for statement in puts] == ["CreateDataObjectsOnlyIfAbsent"]
    (put,) = puts
    assert put["actions"] == ["s3:PutObject"]
    assert put["resources"] == '${[for key, _ in local.data_buckets : "${aws_s3_bucket.etl[key].arn}/*"]}'
    assert block(put, "condition") == {"test": "Null", "variable": "s3:if-none-match", "values": ["false"]}


def test_every_star_resource_is_explained_where_it_appears() -> None:
    lines = (TF / "iam.tf").read_text().splitlines()
    # "*" itself, a "*" account (":*:") or all log groups; not "<our prefix>/*" or "<our group>:*".
    wildcard = re.compile(r'"\*"|:\*:|log-group:\*"')
    found = 0
    for number, line in enumerate(lines):
        if line.strip().startswith("resources") and wildcard.search(line):
            found += 1
            start = max(i for i in range(number) if lines[i].strip() == "statement {")
            comments = []
            for text in reversed(lines[:start]):  # the comment block right above the statement
                if not text.strip().startswith("#"):
                    break
                comments.append(text)
            assert '"*"' in " ".join(comments), f"iam.tf:{number + 1}: a wildcard resource without its reason"
    assert found == 4


def test_the_role_is_assumable_by_this_environment_only() -> None:
    (statement,) = configuration()["data"]["aws_iam_policy_document"]["mwaa_assume"]["statement"]
    conditions = {condition["variable"]: condition["values"] for condition in statement["condition"]}
    assert conditions == {
        "aws:SourceAccount": ["${local.account_id}"],
        "aws:SourceArn": ["${local.environment_arn}"],
    }


# -- alerts ------------------------------------------------------------------------------------------


def test_alerts_go_to_an_encrypted_topic_with_email_subscriptions() -> None:
    topic = resource("aws_sns_topic", "alerts")
    assert topic["kms_master_key_id"] == "${aws_kms_key.etl.arn}"
    subscription = resource("aws_sns_topic_subscription", "alert_email")
    assert subscription["protocol"] == "email"
    assert subscription["topic_arn"] == "${aws_sns_topic.alerts.arn}"
    assert subscription["for_each"] == "${toset(var.alert_emails)}"
    assert "default" not in configuration()["variable"]["alert_emails"], "alert addresses must be chosen"


def test_deploy_finds_its_target_in_the_terraform_outputs() -> None:
    outputs = configuration()["output"]
    assert outputs["mwaa_source_bucket"]["value"] == '${aws_s3_bucket.etl["dags"].bucket}'
    assert outputs["mwaa_environment_name"]["value"] == "${var.environment_name}"


# -- event-driven drops ------------------------------------------------------------------------------


def test_the_drop_prefix_announces_arrivals_to_an_encrypted_queue_only_the_bucket_may_send_to() -> None:
    queue = resource("aws_sqs_queue", "drop_arrivals")
    assert queue["kms_master_key_id"] == "${aws_kms_key.etl.arn}"
    assert queue["receive_wait_time_seconds"] == 20  # long polling, as the watcher's trigger does

    notification = resource("aws_s3_bucket_notification", "drop_arrivals")
    assert notification["bucket"] == '${aws_s3_bucket.etl["ingestion"].id}'
    assert block(notification, "queue") == {
        "id": "partner-drop-arrivals",
        "queue_arn": "${aws_sqs_queue.drop_arrivals.arn}",
        "events": ["s3:ObjectCreated:*"],
        "filter_prefix": "${var.drop_prefix}",
    }
    assert configuration()["variable"]["drop_prefix"]["default"] == "drops/partners/"  # retail.yaml's

    send, deny = configuration()["data"]["aws_iam_policy_document"]["drop_arrivals"]["statement"]
    assert send["actions"] == ["sqs:SendMessage"] and block(send, "principals")["identifiers"] == [
        "s3.amazonaws.com"
    ]
    conditions = {condition["variable"]: condition["values"] for condition in send["condition"]}
    assert conditions == {
        "aws:SourceArn": ['${aws_s3_bucket.etl["ingestion"].arn}'],
        "aws:SourceAccount": ["${local.account_id}"],
    }
    assert deny["effect"] == "Deny" and block(deny, "condition")["variable"] == "aws:SecureTransport"

    kms = configuration()["data"]["aws_iam_policy_document"]["kms"]["statement"]
    (s3_uses_key,) = [s for s in kms if s["sid"] == "S3SendsDropArrivalsToTheEncryptedQueue"]
    assert set(s3_uses_key["actions"]) == {"kms:GenerateDataKey", "kms:Decrypt"}


def test_the_execution_role_receives_and_deletes_drop_arrivals_and_airflow_knows_the_queue() -> None:
    (receive,) = [s for s in execution_statements() if s["sid"] == "ReceiveDropArrivals"]
    assert receive["resources"] == ["${aws_sqs_queue.drop_arrivals.arn}"]
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage"} <= set(receive["actions"])
    assert "sqs:SendMessage" not in receive["actions"]
    options = resource("aws_mwaa_environment", "etl")["airflow_configuration_options"]
    # MWAA exports it as AIRFLOW__ETLKIT__RETAIL_DROPS_QUEUE_URL, the variable retail.yaml's events name.
    assert options["etlkit.retail_drops_queue_url"] == "${aws_sqs_queue.drop_arrivals.url}"
    retail = (ROOT / "include" / "config" / "retail.yaml").read_text()
    assert "${AIRFLOW__ETLKIT__RETAIL_DROPS_QUEUE_URL}" in retail


# -- checkov -----------------------------------------------------------------------------------------

SKIP_COMMENT = re.compile(r"#\s*checkov:skip=(?P<check>[A-Z0-9_]+)(?::(?P<reason>.*))?")


def test_every_checkov_skip_has_a_written_reason() -> None:
    skips = [
        (path.name, match)
        for path in TF_FILES
        for match in map(SKIP_COMMENT.search, path.read_text().splitlines())
        if match
    ]
    assert skips, "expected the documented skips"
    for name, match in skips:
        assert re.fullmatch(r"CKV2?_AWS_\d+", match["check"]), f"{name}: {match[0]}"
        reason = (match["reason"] or "").strip()
        assert len(reason) >= 30, f"{name}: {match['check']} is skipped without a real reason"
    config = (TF / ".checkov.yaml").read_text()
    assert "skip-check" not in config, "skips belong inline, next to the resource, with their reason"


@cache
def checkov_report() -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    result = subprocess.run(
        [str(CHECKOV), "--config-file", str(TF / ".checkov.yaml"), "-d", str(TF), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    elapsed = time.monotonic() - started
    assert result.stdout.strip(), (
        f"checkov printed nothing (exit {result.returncode}): {result.stderr[-2000:]}"
    )
    report = json.loads(result.stdout)
    return (report[0] if isinstance(report, list) else report), elapsed


@pytest.mark.skipif(
    not CHECKOV.exists(),
    reason=f"checkov is not installed: {CHECKOV} is created by infra/local/install.sh (make install)",
)
def test_checkov_finds_no_failed_check() -> None:
    report, elapsed = checkov_report()
    summary = report["summary"]
    failed = [
        f"{check['check_id']} {check['resource']} ({check['file_path']}:{check['file_line_range']})"
        for check in report["results"].get("failed_checks", [])
    ]
    assert summary["failed"] == 0 and not failed, "checkov failures:\n" + "\n".join(failed)
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= 40 and summary["passed"] >= 100, summary  # it really scanned
    assert elapsed < 300, f"checkov took {elapsed:.0f} s"


# -- Snowflake ---------------------------------------------------------------------------------------


def test_snowflake_reads_the_processed_bucket_through_a_storage_integration_and_a_read_only_role() -> None:
    integration = resource("snowflake_storage_integration", "processed")
    assert integration["storage_provider"] == "S3" and integration["type"] == "EXTERNAL_STAGE"
    assert integration["storage_aws_role_arn"] == "${local.snowflake_reader_role_arn}"
    assert integration["storage_allowed_locations"] == ["${local.processed_bucket_url}"]
    stage = resource("snowflake_stage", "processed")
    assert (stage["schema"], stage["name"], stage["url"]) == (
        "LANDING",
        "PROCESSED",
        "${local.processed_bucket_url}",
    )
    assert stage["storage_integration"] == "${snowflake_storage_integration.processed[0].name}"

    (trust,) = configuration()["data"]["aws_iam_policy_document"]["snowflake_assume"]["statement"]
    assert trust["principals"][0]["identifiers"] == [
        "${snowflake_storage_integration.processed[0].storage_aws_iam_user_arn}"
    ]
    assert trust["condition"][0]["values"] == [
        "${snowflake_storage_integration.processed[0].storage_aws_external_id}"
    ]
    read = configuration()["data"]["aws_iam_policy_document"]["snowflake_read"]["statement"]
    actions = {action for statement in read for action in statement["actions"]}
    assert actions == {"s3:ListBucket", "s3:GetBucketLocation", "s3:GetObject", "s3:GetObjectVersion"} | {
        "kms:Decrypt",
        "kms:DescribeKey",
    }
    resources = {arn for statement in read for arn in statement["resources"]}
    assert resources == {
        '${aws_s3_bucket.etl["processed"].arn}',
        '${aws_s3_bucket.etl["processed"].arn}/*',
        "${aws_kms_key.etl.arn}",
    }
    (settings_block,) = configuration()["terraform"]
    (providers,) = settings_block["required_providers"]
    assert providers["snowflake"] == {"source": "snowflakedb/snowflake", "version": "~> 2.0"}


def test_quicksight_has_a_data_set_per_dashboard_query_reading_the_file_itself() -> None:
    queries = {path.stem for path in (ROOT / "sql" / "dashboard").glob("*.sql")}
    data_sets = local("quicksight_data_sets")
    assert set(data_sets) == queries
    assert {t for columns in data_sets.values() for t in columns.values()} <= {
        "STRING",
        "INTEGER",
        "DECIMAL",
        "DATETIME",
    }
    data_set = resource("aws_quicksight_data_set", "dashboard")
    assert "if var.quicksight_enabled" in data_set["for_each"]  # off unless chosen
    (table,) = data_set["physical_table_map"]
    (custom_sql,) = table["custom_sql"]
    assert custom_sql["sql_query"] == '${file("${local.dashboard_sql_dir}/${each.key}.sql")}'
    assert local("dashboard_sql_dir") == "${path.module}/../../sql/dashboard"
    assert (TF / "../../sql/dashboard").resolve() == ROOT / "sql" / "dashboard"

    source = resource("aws_quicksight_data_source", "warehouse")
    assert source["count"] == "${var.quicksight_enabled ? 1 : 0}"
    assert source["type"] == "POSTGRESQL"
    # The BI login's password stays in Secrets Manager: no credential pair in the configuration.
    assert block(source, "credentials") == {"secret_arn": "${var.quicksight_credentials_secret_arn}"}
    assert block(source, "ssl_properties") == {"disable_ssl": False}
