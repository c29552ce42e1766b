# The five Airflow log groups. MWAA writes to airflow-<environment>-<Type> and uses these groups when
# they already exist, so creating them here sets their retention and KMS key (MWAA's own would keep
# logs forever, unencrypted by our key).

locals {
  # logging_configuration block name => MWAA's log group suffix
  airflow_log_types = {
    dag_processing_logs = "DAGProcessing"
    scheduler_logs      = "Scheduler"
    task_logs           = "Task"
    webserver_logs      = "WebServer"
    worker_logs         = "Worker"
  }
}

resource "aws_cloudwatch_log_group" "airflow" {
  for_each = local.airflow_log_types

  name              = "airflow-${var.environment_name}-${each.value}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.etl.arn
}
