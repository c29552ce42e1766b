# Event-driven drops: the ingestion bucket announces every object created under the partners' drop
# prefix to an SQS queue, and retail_drops' AssetWatcher (the common-messaging MessageQueueTrigger,
# run by the triggerer with the execution role) long-polls the queue and deletes what it receives.
# Each arrival wakes retail_drops; its cron polling stays as the fallback for a lost message. The
# queue's URL reaches Airflow as the configuration option etlkit.retail_drops_queue_url (mwaa.tf), which
# MWAA exports as AIRFLOW__ETLKIT__RETAIL_DROPS_QUEUE_URL, the variable include/config/retail.yaml names.

resource "aws_sqs_queue" "drop_arrivals" {
  name                              = "${var.name_prefix}-drop-arrivals"
  kms_master_key_id                 = aws_kms_key.etl.arn
  kms_data_key_reuse_period_seconds = 300
  # An arrival unread for four days is stale: by then the cron polling has landed its file.
  message_retention_seconds = 345600
  # Long polling, as the watcher's trigger asks (20 s, SQS's maximum).
  receive_wait_time_seconds  = 20
  visibility_timeout_seconds = 60
}

resource "aws_sqs_queue_policy" "drop_arrivals" {
  queue_url = aws_sqs_queue.drop_arrivals.id
  policy    = data.aws_iam_policy_document.drop_arrivals.json
}

data "aws_iam_policy_document" "drop_arrivals" {
  # Only the project's ingestion bucket, in this account, may send to the queue.
  statement {
    sid       = "IngestionBucketAnnouncesArrivals"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.drop_arrivals.arn]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.etl["ingestion"].arn]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "DenyRequestsWithoutTls"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.drop_arrivals.arn]
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

# Objects created under the drop prefix only: the pipeline's own landed copies, quarantine and
# error objects live elsewhere in the bucket and must not wake anything.
resource "aws_s3_bucket_notification" "drop_arrivals" {
  bucket = aws_s3_bucket.etl["ingestion"].id

  queue {
    id            = "partner-drop-arrivals"
    queue_arn     = aws_sqs_queue.drop_arrivals.arn
    events        = ["s3:ObjectCreated:*"]
    filter_prefix = var.drop_prefix
  }

  depends_on = [aws_sqs_queue_policy.drop_arrivals]
}
