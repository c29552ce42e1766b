# Airflow's connections and Variables in Secrets Manager, read by the SecretsManagerBackend that
# mwaa.tf configures (airflow/connections/<conn_id>, airflow/variables/<name>).
#
# Connection secrets are declared here, but their values are put out of band
# (`aws secretsmanager put-secret-value`, see README.md): Terraform state never holds a password.
# The one exception is aws_default, whose value carries no credential (the execution role signs).
# Variables are not secret (bucket names, the topic ARN), so Terraform writes their values.

locals {
  # Every connection the project uses (infra/local/settings.py has the local defaults of the same
  # ids; tests/unit/test_terraform.py fails when one is added there without a secret here).
  connection_ids = [
    "totesys",
    "retail_mysql",
    "ftp_drop",
    "rates_api",
    "aws_default",
    "warehouse",
    "etl_control",
    "snowflake_default",
    "smtp_default",
  ]

  airflow_variables = {
    ingestion_bucket    = aws_s3_bucket.etl["ingestion"].bucket
    processed_bucket    = aws_s3_bucket.etl["processed"].bucket
    warehouse_conn_id   = var.warehouse_conn_id
    alert_emails        = join(",", var.alert_emails)
    alert_sns_topic_arn = aws_sns_topic.alerts.arn
    retail_sales_dir    = var.retail_sales_dir
  }
}

resource "aws_secretsmanager_secret" "connection" {
  #checkov:skip=CKV2_AWS_57:Connection credentials belong to the source systems' owners, who rotate them there and put the new value here; there is no rotation Lambda for FTP, MySQL, Snowflake or SMTP accounts.
  for_each = toset(local.connection_ids)

  name                    = "${local.connections_prefix}/${each.key}"
  description             = "Airflow connection ${each.key} (value set out of band, see infra/terraform/README.md)"
  kms_key_id              = aws_kms_key.etl.arn
  recovery_window_in_days = 7
}

# No credential: boto3 on MWAA signs with the execution role when the connection has no keys.
resource "aws_secretsmanager_secret_version" "aws_default" {
  secret_id = aws_secretsmanager_secret.connection["aws_default"].id
  secret_string = jsonencode({
    conn_type = "aws"
    extra     = { region_name = local.region }
  })
}

resource "aws_secretsmanager_secret" "variable" {
  #checkov:skip=CKV2_AWS_57:Variables hold configuration (bucket names, a topic ARN, e-mail addresses), not credentials; there is nothing to rotate.
  for_each = local.airflow_variables

  name                    = "${local.variables_prefix}/${each.key}"
  description             = "Airflow Variable ${each.key}"
  kms_key_id              = aws_kms_key.etl.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "variable" {
  for_each = local.airflow_variables

  secret_id     = aws_secretsmanager_secret.variable[each.key].id
  secret_string = each.value
}
