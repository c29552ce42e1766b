# The MWAA execution role: what the environment and every task may do. Least privilege: the
# project's three buckets, its two secret prefixes, its five log groups, its key, its topic and its
# drop-arrivals queue.
# The few "*" resources are the ones MWAA's execution-role documentation requires and whose
# actions support no narrower resource; each is explained where it appears.

data "aws_iam_policy_document" "mwaa_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["airflow.amazonaws.com", "airflow-env.amazonaws.com"]
    }
    # Confused-deputy protection: only this account's environment of this name may assume it.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [local.environment_arn]
    }
  }
}

resource "aws_iam_role" "mwaa_execution" {
  name               = "${var.name_prefix}-mwaa-execution"
  description        = "Execution role of the ${var.environment_name} MWAA environment"
  assume_role_policy = data.aws_iam_policy_document.mwaa_assume.json
}

resource "aws_iam_role_policy" "mwaa_execution" {
  name   = "mwaa-execution"
  role   = aws_iam_role.mwaa_execution.id
  policy = data.aws_iam_policy_document.mwaa_execution.json
}

data "aws_iam_policy_document" "mwaa_execution" {
  # MWAA reports the environment's health.
  statement {
    sid       = "PublishEnvironmentMetrics"
    actions   = ["airflow:PublishMetrics"]
    resources = [local.environment_arn]
  }

  # The bundle: MWAA reads dags/, plugins.zip, requirements.txt and startup.sh (and checks the
  # bucket's versioning and public access settings). Read-only: only `make deploy` writes here.
  statement {
    sid       = "ReadTheDagBucket"
    actions   = ["s3:GetObject*", "s3:GetBucket*", "s3:List*"]
    resources = [aws_s3_bucket.etl["dags"].arn, "${aws_s3_bucket.etl["dags"].arn}/*"]
  }

  # MWAA checks the account-level public access block before it trusts the bucket.
  # "*": s3:GetAccountPublicAccessBlock is an account-level action with no resource ARN.
  statement {
    sid       = "CheckAccountPublicAccessBlock"
    actions   = ["s3:GetAccountPublicAccessBlock"]
    resources = ["*"]
  }

  # The data buckets: list, read and create objects. No s3:DeleteObject and no PutObjectRetention
  # or BypassGovernanceRetention: landed and processed files are immutable.
  statement {
    sid       = "ListTheDataBuckets"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [for key, _ in local.data_buckets : aws_s3_bucket.etl[key].arn]
  }
  statement {
    sid       = "ReadDataObjects"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = [for key, _ in local.data_buckets : "${aws_s3_bucket.etl[key].arn}/*"]
  }
  # Create only: a PutObject without If-None-Match (which could replace a key's current version)
  # is refused by S3 itself, not just avoided by storage.py.
  statement {
    sid       = "CreateDataObjectsOnlyIfAbsent"
    actions   = ["s3:PutObject"]
    resources = [for key, _ in local.data_buckets : "${aws_s3_bucket.etl[key].arn}/*"]
    condition {
      test     = "Null"
      variable = "s3:if-none-match"
      values   = ["false"]
    }
  }

  # Airflow's logs, into the five groups of logs.tf only.
  statement {
    sid = "WriteAndReadAirflowLogs"
    actions = [
      "logs:CreateLogStream",
      "logs:CreateLogGroup",
      "logs:PutLogEvents",
      "logs:GetLogEvents",
      "logs:GetLogRecord",
      "logs:GetLogGroupFields",
      "logs:GetQueryResults",
    ]
    resources = flatten([for group in aws_cloudwatch_log_group.airflow : [group.arn, "${group.arn}:*"]])
  }
  # MWAA looks its log groups up by name; DescribeLogGroups takes no single-group ARN, so this is
  # scoped to the account's log groups in this region (MWAA's documentation uses "*").
  statement {
    sid       = "FindAirflowLogGroups"
    actions   = ["logs:DescribeLogGroups"]
    resources = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
  }

  # Airflow's metrics go to CloudWatch.
  # "*": cloudwatch:PutMetricData supports no resource-level permissions (MWAA's documented policy
  # grants it on "*" too).
  statement {
    sid       = "PublishAirflowMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
  }

  # The Celery task queue lives in an account MWAA owns, so its account id cannot be named: the
  # "*" in the account position is what MWAA's documentation requires. The region and the
  # airflow-celery- name prefix still scope it.
  statement {
    sid = "UseTheCeleryQueue"
    actions = [
      "sqs:ChangeMessageVisibility",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
      "sqs:ReceiveMessage",
      "sqs:SendMessage",
    ]
    resources = ["arn:${local.partition}:sqs:${local.region}:*:airflow-celery-*"]
  }

  # Event-driven drops: the triggerer's AssetWatcher receives the drop arrivals and deletes them.
  statement {
    sid = "ReceiveDropArrivals"
    actions = [
      "sqs:ChangeMessageVisibility",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
      "sqs:ReceiveMessage",
    ]
    resources = [aws_sqs_queue.drop_arrivals.arn]
  }

  # The project's key, and only through the services that use it for the project.
  statement {
    sid       = "UseTheProjectKeyThroughItsServices"
    actions   = ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey*", "kms:Encrypt"]
    resources = [aws_kms_key.etl.arn]
    condition {
      test     = "StringLike"
      variable = "kms:ViaService"
      values = [
        "sqs.${local.region}.amazonaws.com",
        "s3.${local.region}.amazonaws.com",
        "secretsmanager.${local.region}.amazonaws.com",
        "sns.${local.region}.amazonaws.com",
      ]
    }
  }

  # Connections and Variables, under the two prefixes the secrets backend reads. A prefix and not
  # the exact secret ARNs: Airflow asks the backend for any id it looks up (for example a Variable
  # with a default), and must get "not found", not "access denied", for ids that have no secret.
  statement {
    sid     = "ReadAirflowConnectionsAndVariables"
    actions = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [
      "arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:secret:${local.connections_prefix}/*",
      "arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:secret:${local.variables_prefix}/*",
    ]
  }

  # Failure alerts.
  statement {
    sid       = "PublishAlerts"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
  }
}
