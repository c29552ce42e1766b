# The MWAA environment (Airflow 3.3.1), its security group, and the Secrets Manager backend.

resource "aws_security_group" "mwaa" {
  name        = "${var.name_prefix}-mwaa"
  description = "MWAA ${var.environment_name}: its components, its VPC endpoints, and egress to AWS APIs and the sources"
  vpc_id      = var.vpc_id
}

# MWAA requires its components (and the VPC endpoints it creates with this group) to reach each
# other on every port.
resource "aws_vpc_security_group_ingress_rule" "mwaa_self" {
  security_group_id            = aws_security_group.mwaa.id
  description                  = "MWAA components and their VPC endpoints talk to each other"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.mwaa.id
}

resource "aws_vpc_security_group_egress_rule" "mwaa_self" {
  security_group_id            = aws_security_group.mwaa.id
  description                  = "MWAA components and their VPC endpoints talk to each other"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.mwaa.id
}

# AWS APIs (S3, SQS, CloudWatch, Secrets Manager, SNS, KMS) through NAT or interface endpoints,
# and HTTPS sources such as the rates API.
resource "aws_vpc_security_group_egress_rule" "mwaa_https" {
  security_group_id = aws_security_group.mwaa.id
  description       = "HTTPS to AWS APIs and HTTPS sources"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "mwaa_sources" {
  for_each = { for rule in var.source_egress_rules : rule.description => rule }

  security_group_id = aws_security_group.mwaa.id
  description       = each.value.description
  ip_protocol       = "tcp"
  from_port         = each.value.from_port
  to_port           = each.value.to_port
  cidr_ipv4         = each.value.cidr
}

locals {
  # Airflow reads connections and Variables from Secrets Manager first (secrets.tf declares them).
  # config_prefix is off: no Airflow option is kept in Secrets Manager, and the role may read only
  # the two prefixes below. The lookup patterns send Airflow to Secrets Manager only for the ids
  # declared there (secrets.tf): every other connection or Variable read (Airflow's own defaults,
  # a Variable.get with a default) stays a metadata-database read, with no API call and no cost.
  secrets_backend_kwargs = {
    connections_prefix         = local.connections_prefix
    variables_prefix           = local.variables_prefix
    config_prefix              = null
    connections_lookup_pattern = "^(${join("|", local.connection_ids)})$"
    variables_lookup_pattern   = "^(${join("|", keys(local.airflow_variables))})$"
  }
}

resource "aws_mwaa_environment" "etl" {
  count = var.create_environment ? 1 : 0

  name              = var.environment_name
  airflow_version   = "3.3.1"
  environment_class = var.environment_class
  min_workers       = var.min_workers
  max_workers       = var.max_workers
  schedulers        = var.schedulers

  execution_role_arn = aws_iam_role.mwaa_execution.arn
  kms_key            = aws_kms_key.etl.arn

  # What `make deploy` (infra/mwaa/deploy.py) uploads: dist/dags/ under dags/, and the three files.
  source_bucket_arn      = aws_s3_bucket.etl["dags"].arn
  dag_s3_path            = "dags"
  plugins_s3_path        = "plugins.zip"
  requirements_s3_path   = "requirements.txt"
  startup_script_s3_path = "startup.sh"

  airflow_configuration_options = {
    "secrets.backend"        = "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend"
    "secrets.backend_kwargs" = jsonencode(local.secrets_backend_kwargs)
    "core.load_examples"     = "False"
    # Read while DAG files are parsed (no Variable lookup then): the buckets the Asset URIs name.
    "etlkit.ingestion_bucket" = aws_s3_bucket.etl["ingestion"].bucket
    "etlkit.processed_bucket" = aws_s3_bucket.etl["processed"].bucket
    # retail_drops' AssetWatcher watches this queue (events.tf); exported as
    # AIRFLOW__ETLKIT__RETAIL_DROPS_QUEUE_URL, which include/config/retail.yaml names.
    "etlkit.retail_drops_queue_url" = aws_sqs_queue.drop_arrivals.url
  }

  webserver_access_mode           = var.webserver_access_mode
  weekly_maintenance_window_start = var.weekly_maintenance_window_start

  network_configuration {
    security_group_ids = [aws_security_group.mwaa.id]
    subnet_ids         = var.private_subnet_ids
  }

  logging_configuration {
    dag_processing_logs {
      enabled   = true
      log_level = var.log_level
    }
    scheduler_logs {
      enabled   = true
      log_level = var.log_level
    }
    task_logs {
      enabled   = true
      log_level = var.log_level
    }
    webserver_logs {
      enabled   = true
      log_level = var.log_level
    }
    worker_logs {
      enabled   = true
      log_level = var.log_level
    }
  }

  lifecycle {
    # `make deploy` moves these to each new upload (UpdateEnvironment); Terraform must not roll
    # them back on its next apply.
    ignore_changes = [plugins_s3_object_version, requirements_s3_object_version, startup_script_s3_object_version]
  }

  depends_on = [
    aws_cloudwatch_log_group.airflow,
    aws_iam_role_policy.mwaa_execution,
    aws_s3_bucket_public_access_block.etl,
    aws_s3_bucket_versioning.etl,
  ]
}
