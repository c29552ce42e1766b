# Snowflake as the warehouse (optional: var.snowflake_enabled). Snowflake loads the processed zone
# the way Snowflake recommends: an external stage over the processed bucket, reached through a
# storage integration, which assumes an IAM role of this account. No AWS key is ever given to
# Snowflake, and the role can only read the processed bucket.
#
# The trust is two-sided: the integration names the role (STORAGE_AWS_ROLE_ARN), and the role trusts
# the IAM user and external id Snowflake generates for the integration. The role's ARN is built from
# its name, so both sides are declared in one apply with no cycle.
#
# The Snowflake provider authenticates with key-pair (JWT) from the environment of whoever applies:
# SNOWFLAKE_ORGANIZATION_NAME, SNOWFLAKE_ACCOUNT_NAME, SNOWFLAKE_USER, SNOWFLAKE_AUTHENTICATOR=SNOWFLAKE_JWT,
# SNOWFLAKE_PRIVATE_KEY (and SNOWFLAKE_ROLE: creating an integration needs ACCOUNTADMIN or the
# CREATE INTEGRATION privilege). Nothing of it is written here. The loader's own connection
# (snowflake_default, key-pair too) lives in Secrets Manager like every other (secrets.tf).
# docs/warehouses.md has the same in SQL, for accounts not managed with Terraform.

locals {
  snowflake_reader_role_name = "${var.name_prefix}-snowflake-processed-reader"
  snowflake_reader_role_arn  = "arn:${local.partition}:iam::${local.account_id}:role/${local.snowflake_reader_role_name}"
  processed_bucket_url       = "s3://${aws_s3_bucket.etl["processed"].bucket}/"
}

resource "snowflake_storage_integration" "processed" {
  count = var.snowflake_enabled ? 1 : 0

  name                      = upper("${replace(var.name_prefix, "-", "_")}_processed")
  comment                   = "etlkit: read the processed zone (Parquet) for COPY INTO landing"
  type                      = "EXTERNAL_STAGE"
  enabled                   = true
  storage_provider          = "S3"
  storage_aws_role_arn      = local.snowflake_reader_role_arn
  storage_allowed_locations = [local.processed_bucket_url]
}

# The stage the loader copies from (connection extra processed_stage, default landing.processed).
# At the bucket's root, so METADATA$FILENAME is the object's key: the load id PostgreSQL uses too.
resource "snowflake_stage" "processed" {
  count = var.snowflake_enabled ? 1 : 0

  name                = "PROCESSED"
  database            = var.snowflake_database
  schema              = "LANDING"
  url                 = local.processed_bucket_url
  storage_integration = snowflake_storage_integration.processed[0].name
  file_format         = "TYPE = PARQUET"
  comment             = "etlkit: the processed bucket, read by COPY INTO landing.<table>"
}

resource "aws_iam_role" "snowflake_processed_reader" {
  count = var.snowflake_enabled ? 1 : 0

  name                 = local.snowflake_reader_role_name
  description          = "Assumed by Snowflake's storage integration to read the processed bucket"
  assume_role_policy   = data.aws_iam_policy_document.snowflake_assume[0].json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "snowflake_assume" {
  count = var.snowflake_enabled ? 1 : 0

  statement {
    sid     = "SnowflakeIntegrationOnly"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = [snowflake_storage_integration.processed[0].storage_aws_iam_user_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "sts:ExternalId"
      values   = [snowflake_storage_integration.processed[0].storage_aws_external_id]
    }
  }
}

resource "aws_iam_role_policy" "snowflake_processed_reader" {
  count = var.snowflake_enabled ? 1 : 0

  name   = "read-processed-bucket"
  role   = aws_iam_role.snowflake_processed_reader[0].id
  policy = data.aws_iam_policy_document.snowflake_read[0].json
}

# Read only: Snowflake lists and reads the processed objects, never writes or deletes (COPY's PURGE
# is never used; the bucket is immutable anyway), and decrypts with the project's key via S3 only.
data "aws_iam_policy_document" "snowflake_read" {
  count = var.snowflake_enabled ? 1 : 0

  statement {
    sid       = "ListProcessed"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.etl["processed"].arn]
  }
  statement {
    sid       = "ReadProcessedObjects"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.etl["processed"].arn}/*"]
  }
  statement {
    sid       = "DecryptThroughS3"
    actions   = ["kms:Decrypt", "kms:DescribeKey"]
    resources = [aws_kms_key.etl.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }
}
