# Provider pins: Terraform 1.x from 1.6, AWS provider 6.x, Snowflake provider 2.x (the split S3 bucket sub-resources and
# aws_mwaa_environment with every argument used here). Commit .terraform.lock.hcl after `terraform init`.
terraform {
  required_version = ">= 1.6.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
    # Only used when var.snowflake_enabled (snowflake.tf); credentials come from the environment.
    snowflake = {
      source  = "snowflakedb/snowflake"
      version = "~> 2.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = local.tags
  }
}
