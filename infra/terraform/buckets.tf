# The DAG bucket (MWAA's source: dags/, plugins.zip, requirements.txt, startup.sh) and the two data
# buckets, all versioned, KMS-encrypted, private and TLS-only; the data buckets also carry Object
# Lock. A fourth bucket receives the S3 server access logs of the three.

resource "aws_s3_bucket" "etl" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice with its own cost and a second region's key; versioning plus Object Lock already protect against deletion and overwrite.
  #checkov:skip=CKV2_AWS_62:Notifications are sent where something consumes them: the ingestion bucket's drop prefix notifies the drop-arrivals queue (events.tf); MWAA polls the DAG bucket itself and the processed bucket is read by Airflow's Assets.
  for_each = local.buckets

  bucket              = each.value.name
  object_lock_enabled = each.value.object_lock
}

resource "aws_s3_bucket_versioning" "etl" {
  for_each = local.buckets

  bucket = aws_s3_bucket.etl[each.key].id
  versioning_configuration {
    status = "Enabled"
  }
}

# Every object version stays undeletable and unmodifiable for the retention period.
resource "aws_s3_bucket_object_lock_configuration" "data" {
  for_each = local.data_buckets

  bucket = aws_s3_bucket.etl[each.key].id
  rule {
    default_retention {
      mode = var.object_lock_mode
      days = var.object_lock_retention_days
    }
  }
  depends_on = [aws_s3_bucket_versioning.etl]
}

resource "aws_s3_bucket_server_side_encryption_configuration" "etl" {
  for_each = local.buckets

  bucket = aws_s3_bucket.etl[each.key].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.etl.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "etl" {
  for_each = local.buckets

  bucket                  = aws_s3_bucket.etl[each.key].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "etl" {
  for_each = local.buckets

  bucket = aws_s3_bucket.etl[each.key].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_policy" "etl" {
  for_each = local.buckets

  bucket     = aws_s3_bucket.etl[each.key].id
  policy     = data.aws_iam_policy_document.tls_only[each.key].json
  depends_on = [aws_s3_bucket_public_access_block.etl]
}

data "aws_iam_policy_document" "tls_only" {
  for_each = local.buckets

  statement {
    sid       = "DenyRequestsWithoutTls"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.etl[each.key].arn, "${aws_s3_bucket.etl[each.key].arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_logging" "etl" {
  for_each = local.buckets

  bucket        = aws_s3_bucket.etl[each.key].id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "${each.key}/"
}

resource "aws_s3_bucket_lifecycle_configuration" "etl" {
  for_each = local.buckets

  bucket = aws_s3_bucket.etl[each.key].id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # Earlier bundles are kept for rollback, then expire. Data buckets keep every version: Object
  # Lock forbids deleting them within the retention period anyway, and history is the point.
  dynamic "rule" {
    for_each = each.value.object_lock ? [] : [1]
    content {
      id     = "expire-old-bundle-versions"
      status = "Enabled"
      filter {}
      noncurrent_version_expiration {
        noncurrent_days = var.dag_bundle_noncurrent_days
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.etl]
}

# --- S3 server access logs -----------------------------------------------------------------------

resource "aws_s3_bucket" "access_logs" {
  #checkov:skip=CKV_AWS_145:S3 server access log delivery only supports SSE-S3 (AES256) on the target bucket, not SSE-KMS.
  #checkov:skip=CKV_AWS_144:Access logs are operational records; replicating them to a second region is not worth its cost here.
  #checkov:skip=CKV2_AWS_62:Nothing consumes events for access-log objects.
  bucket = "${var.name_prefix}-access-logs"
}

resource "aws_s3_bucket_versioning" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "access_logs" {
  bucket                  = aws_s3_bucket.access_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = var.access_log_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.access_logs]
}

resource "aws_s3_bucket_policy" "access_logs" {
  bucket     = aws_s3_bucket.access_logs.id
  policy     = data.aws_iam_policy_document.access_logs.json
  depends_on = [aws_s3_bucket_public_access_block.access_logs]
}

data "aws_iam_policy_document" "access_logs" {
  # S3's log delivery writes here, only for this account's three buckets.
  statement {
    sid       = "S3ServerAccessLogDelivery"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/*"]
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [for bucket in aws_s3_bucket.etl : bucket.arn]
    }
  }

  statement {
    sid       = "DenyRequestsWithoutTls"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.access_logs.arn, "${aws_s3_bucket.access_logs.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}
