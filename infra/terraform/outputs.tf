# What `make deploy` and operators need. `terraform output -json > ../../dist/terraform-outputs.json`
# gives infra/mwaa/deploy.py its bucket and environment name (see README.md).

output "mwaa_environment_name" {
  description = "The MWAA environment `make deploy` updates (MWAA_ENV)."
  value       = var.environment_name
}

output "mwaa_source_bucket" {
  description = "The bucket `make deploy` syncs the bundle to (MWAA_BUCKET)."
  value       = aws_s3_bucket.etl["dags"].bucket
}

output "mwaa_webserver_url" {
  description = "The Airflow UI (null until the environment exists)."
  value       = one(aws_mwaa_environment.etl[*].webserver_url)
}

output "ingestion_bucket" {
  description = "Airflow Variable ingestion_bucket."
  value       = aws_s3_bucket.etl["ingestion"].bucket
}

output "processed_bucket" {
  description = "Airflow Variable processed_bucket."
  value       = aws_s3_bucket.etl["processed"].bucket
}

output "alerts_topic_arn" {
  description = "Airflow Variable alert_sns_topic_arn."
  value       = aws_sns_topic.alerts.arn
}

output "drop_arrivals_queue_url" {
  description = "The SQS queue the ingestion bucket announces partner drops to (Airflow option etlkit.retail_drops_queue_url)."
  value       = aws_sqs_queue.drop_arrivals.url
}

output "execution_role_arn" {
  description = "The MWAA execution role."
  value       = aws_iam_role.mwaa_execution.arn
}

output "kms_key_arn" {
  description = "The key encrypting buckets, secrets, logs and the topic."
  value       = aws_kms_key.etl.arn
}

output "connection_secret_names" {
  description = "Secrets whose values are set out of band (aws secretsmanager put-secret-value)."
  value       = { for id, secret in aws_secretsmanager_secret.connection : id => secret.name if id != "aws_default" }
}

output "snowflake_processed_stage" {
  description = "The external stage the Snowflake loader copies from (connection extra processed_stage), when Snowflake is enabled."
  value       = var.snowflake_enabled ? "${var.snowflake_database}.LANDING.PROCESSED" : null
}
