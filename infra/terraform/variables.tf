# Inputs. Copy terraform.tfvars.example to terraform.tfvars and fill in the network and alert values;
# everything else has a production default.

variable "region" {
  description = "AWS region of the environment, its buckets, key, secrets and logs."
  type        = string
  default     = "eu-west-2"
}

variable "name_prefix" {
  description = "Prefix of every resource name (buckets are globally unique: include the account or org)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{2,40}$", var.name_prefix))
    error_message = "name_prefix: 3-41 lowercase letters, digits or hyphens (it becomes part of bucket names)."
  }
}

variable "environment_name" {
  description = "Name of the MWAA environment (also names its CloudWatch log groups: airflow-<name>-<Type>)."
  type        = string
  default     = "etlkit"

  validation {
    condition     = can(regex("^[a-zA-Z][0-9a-zA-Z_-]{0,79}$", var.environment_name))
    error_message = "environment_name: a letter, then up to 79 letters, digits, hyphens or underscores."
  }
}

variable "create_environment" {
  description = <<-EOT
    Create the MWAA environment. MWAA refuses to create an environment whose requirements.txt,
    plugins.zip or startup.sh is not in the bucket yet, so the first apply runs with false, then
    `make deploy` uploads the bundle, then a second apply (true) creates the environment.
  EOT
  type        = bool
  default     = true
}

variable "vpc_id" {
  description = "Existing VPC for the environment (MWAA needs two private subnets with a route to AWS APIs: NAT or VPC endpoints)."
  type        = string
}

variable "private_subnet_ids" {
  description = "Exactly two private subnets of vpc_id, in different availability zones."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) == 2
    error_message = "MWAA takes exactly two private subnets."
  }
}

variable "source_egress_rules" {
  description = <<-EOT
    Extra outbound rules from the environment to the data sources (totesys PostgreSQL, retail MySQL,
    the FTP drop, Snowflake...). HTTPS (443) to anywhere is always allowed (AWS APIs, REST APIs).
  EOT
  type = list(object({
    description = string
    cidr        = string
    from_port   = number
    to_port     = number
  }))
  default = []
}

variable "webserver_access_mode" {
  description = "PRIVATE_ONLY (UI reachable from the VPC only) or PUBLIC_ONLY (UI on the internet, IAM-authenticated)."
  type        = string
  default     = "PRIVATE_ONLY"

  validation {
    condition     = contains(["PRIVATE_ONLY", "PUBLIC_ONLY"], var.webserver_access_mode)
    error_message = "webserver_access_mode must be PRIVATE_ONLY or PUBLIC_ONLY."
  }
}

variable "environment_class" {
  description = "MWAA environment class (mw1.micro, mw1.small, mw1.medium, mw1.large, mw1.xlarge, mw1.2xlarge)."
  type        = string
  default     = "mw1.small"
}

variable "min_workers" {
  description = "Workers kept running."
  type        = number
  default     = 1
}

variable "max_workers" {
  description = "Workers MWAA may scale out to."
  type        = number
  default     = 5
}

variable "schedulers" {
  description = "Schedulers (2 for availability)."
  type        = number
  default     = 2
}

variable "weekly_maintenance_window_start" {
  description = "Start of MWAA's weekly maintenance window, DAY:HH:MM in UTC."
  type        = string
  default     = "SUN:03:00"
}

variable "log_level" {
  description = "Level of every Airflow log stream sent to CloudWatch."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"], var.log_level)
    error_message = "log_level must be one of CRITICAL, ERROR, WARNING, INFO, DEBUG."
  }
}

variable "log_retention_days" {
  description = "Retention of the Airflow log groups (CloudWatch's allowed values; 365 or more for audit)."
  type        = number
  default     = 365
}

variable "object_lock_mode" {
  description = "Object Lock mode of the ingestion and processed buckets: GOVERNANCE (privileged users may lift it) or COMPLIANCE (nobody can)."
  type        = string
  default     = "GOVERNANCE"

  validation {
    condition     = contains(["GOVERNANCE", "COMPLIANCE"], var.object_lock_mode)
    error_message = "object_lock_mode must be GOVERNANCE or COMPLIANCE."
  }
}

variable "object_lock_retention_days" {
  description = "Days every object version in the ingestion and processed buckets stays undeletable and unmodifiable."
  type        = number
  default     = 365

  validation {
    condition     = var.object_lock_retention_days >= 1
    error_message = "object_lock_retention_days must be at least 1."
  }
}

variable "dag_bundle_noncurrent_days" {
  description = "Days earlier versions of the deployed bundle stay in the DAG bucket (for rollback)."
  type        = number
  default     = 90
}

variable "access_log_retention_days" {
  description = "Days S3 server access logs are kept."
  type        = number
  default     = 365
}

variable "alert_emails" {
  description = "Addresses subscribed to the alerts topic (each must confirm the subscription e-mail) and given to Airflow as the alert_emails Variable."
  type        = list(string)

  validation {
    condition     = length(var.alert_emails) > 0 && alltrue([for e in var.alert_emails : can(regex("^[^@\\s]+@[^@\\s]+$", e))])
    error_message = "alert_emails: at least one e-mail address."
  }
}

variable "warehouse_conn_id" {
  description = "Connection id the loads write to: snowflake_default in production, warehouse for PostgreSQL."
  type        = string
  default     = "snowflake_default"
}

variable "retail_sales_dir" {
  description = "Directory on the ftp_drop server where the retail sales files arrive (Variable retail_sales_dir)."
  type        = string
  default     = "/sales"
}

variable "drop_prefix" {
  description = "Prefix of the ingestion bucket where partners drop files (retail.yaml's drop_prefix): objects created under it are announced to the drop-arrivals queue (events.tf)."
  type        = string
  default     = "drops/partners/"

  validation {
    condition     = can(regex("^[^/].*/$", var.drop_prefix))
    error_message = "drop_prefix: a key prefix ending with /, without a leading /."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "snowflake_enabled" {
  description = "Declare the Snowflake side of the warehouse (snowflake.tf): storage integration, external stage over the processed bucket, and the read-only IAM role Snowflake assumes."
  type        = bool
  default     = false
}

variable "snowflake_database" {
  description = "Snowflake database of the warehouse (schemas LANDING, CORE, MART); the external stage is created in its LANDING schema."
  type        = string
  default     = "WAREHOUSE"
}

variable "quicksight_enabled" {
  description = "Declare QuickSight data sets over the dashboard queries of sql/dashboard/ (quicksight.tf), for teams that chart in QuickSight rather than (or beside) the Airflow UI's Dashboard page. Needs a QuickSight subscription in the account."
  type        = bool
  default     = false
}

variable "quicksight_warehouse" {
  description = "The PostgreSQL warehouse QuickSight reads (schema mart): host, port and database."
  type = object({
    host     = string
    port     = optional(number, 5432)
    database = optional(string, "warehouse")
  })
  default = null
}

variable "quicksight_credentials_secret_arn" {
  description = "Secrets Manager secret with the read-only BI login (username, password) QuickSight uses: a role granted SELECT on schema mart only (sql/dashboard/README.md). Created outside Terraform, so no password is in the state."
  type        = string
  default     = null
}

variable "quicksight_vpc_connection_arn" {
  description = "QuickSight VPC connection to reach a warehouse in private subnets (null: QuickSight connects over the network directly)."
  type        = string
  default     = null
}

variable "quicksight_principal_arn" {
  description = "QuickSight user or group ARN that owns the data source and data sets (arn:aws:quicksight:<region>:<account>:group/default/<name>)."
  type        = string
  default     = null
}
