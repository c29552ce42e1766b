# Shared names and the customer-managed KMS key that encrypts the buckets, secrets, logs and topic.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region

  tags = merge(var.tags, { project = "etlkit", managed_by = "terraform" })

  # The three buckets the project owns. MWAA requires its source bucket's name to start with
  # "airflow-". The data buckets are immutable: Object Lock (with versioning) on top of the
  # framework's create-once writes (If-None-Match: *).
  buckets = {
    dags = {
      name        = "airflow-${var.name_prefix}-dags"
      object_lock = false
    }
    ingestion = {
      name        = "${var.name_prefix}-ingestion"
      object_lock = true
    }
    processed = {
      name        = "${var.name_prefix}-processed"
      object_lock = true
    }
  }
  data_buckets = { for key, bucket in local.buckets : key => bucket if bucket.object_lock }

  # Where Airflow's Secrets Manager backend looks (secrets.tf declares what lives there).
  connections_prefix = "airflow/connections"
  variables_prefix   = "airflow/variables"

  environment_arn = "arn:${local.partition}:airflow:${local.region}:${local.account_id}:environment/${var.environment_name}"
}

resource "aws_kms_key" "etl" {
  description             = "etlkit ${var.environment_name}: buckets, MWAA, secrets, logs and alerts"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "etl" {
  name          = "alias/${var.name_prefix}-etl"
  target_key_id = aws_kms_key.etl.key_id
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:A key policy's "*" resource means this key only; the account root statement is AWS's default key policy, without which the key becomes unmanageable.
  #checkov:skip=CKV_AWS_111:Same as CKV_AWS_109: in a key policy the resource "*" is the key itself, and write access is limited to this account's IAM principals.
  #checkov:skip=CKV_AWS_356:Same as CKV_AWS_109: a key policy can only name its own key, written "*".

  statement {
    sid       = "AccountAdministersTheKeyThroughIam"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # S3 sends the ingestion bucket's drop arrivals to the queue this key encrypts (events.tf).
  statement {
    sid       = "S3SendsDropArrivalsToTheEncryptedQueue"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:s3:::${local.buckets.ingestion.name}"]
    }
  }

  # CloudWatch Logs encrypts the Airflow log groups with this key, and only those.
  statement {
    sid       = "CloudWatchLogsEncryptsAirflowLogGroups"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:airflow-${var.environment_name}-*"]
    }
  }
}
