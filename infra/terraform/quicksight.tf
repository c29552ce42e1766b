# QuickSight data sets over the dashboard queries (optional: var.quicksight_enabled). The Airflow UI's
# Dashboard page draws the same queries (include/etlkit/control/dashboard.py); these let a team
# chart them in QuickSight too. One data source (the PostgreSQL warehouse, read with a read-only BI
# login kept in Secrets Manager, optionally through a VPC connection) and one SPICE data set per
# file of sql/dashboard/, its custom SQL read from the file itself, so the SQL has one home.
#
# The columns each query returns, with QuickSight's types: QuickSight needs them declared for custom
# SQL. tests/integration/test_dashboard.py runs every query and checks its columns and types match.
# Refresh SPICE after the daily load (a QuickSight refresh schedule or the API from a DAG).

locals {
  dashboard_sql_dir = "${path.module}/../../sql/dashboard"
  quicksight_data_sets = {
    monthly_revenue_trend = {
      sales_month                = "DATETIME"
      currency_code              = "STRING"
      order_count                = "INTEGER"
      units_sold                 = "INTEGER"
      total_value                = "DECIMAL"
      change_from_previous_month = "DECIMAL"
    }
    top_designs_by_value = {
      currency_code = "STRING"
      value_rank    = "INTEGER"
      design_id     = "INTEGER"
      design_name   = "STRING"
      order_count   = "INTEGER"
      units_sold    = "INTEGER"
      total_value   = "DECIMAL"
    }
    revenue_by_currency = {
      sales_year          = "INTEGER"
      currency_code       = "STRING"
      currency_name       = "STRING"
      order_count         = "INTEGER"
      units_sold          = "INTEGER"
      total_value         = "DECIMAL"
      share_of_orders_pct = "DECIMAL"
    }
    sales_by_staff = {
      currency_code   = "STRING"
      value_rank      = "INTEGER"
      staff_id        = "INTEGER"
      staff_name      = "STRING"
      department_name = "STRING"
      location        = "STRING"
      order_count     = "INTEGER"
      units_sold      = "INTEGER"
      total_value     = "DECIMAL"
    }
    outstanding_payments_ageing = {
      ageing_bucket_order = "INTEGER"
      ageing_bucket       = "STRING"
      payment_type_name   = "STRING"
      currency_code       = "STRING"
      payment_count       = "INTEGER"
      outstanding_amount  = "DECIMAL"
      as_of_date          = "DATETIME"
    }
    outstanding_by_counterparty = {
      currency_code           = "STRING"
      amount_rank             = "INTEGER"
      counterparty_id         = "INTEGER"
      counterparty_legal_name = "STRING"
      payment_count           = "INTEGER"
      outstanding_amount      = "DECIMAL"
      amount_not_yet_due      = "DECIMAL"
      amount_0_30             = "DECIMAL"
      amount_31_60            = "DECIMAL"
      amount_61_90            = "DECIMAL"
      amount_90_plus          = "DECIMAL"
      oldest_payment_date     = "DATETIME"
      max_days_overdue        = "INTEGER"
      as_of_date              = "DATETIME"
    }
    retail_sales_team_incentives = {
      store_id          = "INTEGER"
      sales_person_id   = "INTEGER"
      full_name         = "STRING"
      total_sales_gbp   = "DECIMAL"
      incentive_gbp     = "DECIMAL"
      months_top_seller = "INTEGER"
    }
  }
  quicksight_data_set_actions = [
    "quicksight:DescribeDataSet",
    "quicksight:DescribeDataSetPermissions",
    "quicksight:PassDataSet",
    "quicksight:DescribeIngestion",
    "quicksight:ListIngestions",
    "quicksight:UpdateDataSet",
    "quicksight:DeleteDataSet",
    "quicksight:CreateIngestion",
    "quicksight:CancelIngestion",
    "quicksight:UpdateDataSetPermissions",
  ]
}

resource "aws_quicksight_data_source" "warehouse" {
  count = var.quicksight_enabled ? 1 : 0

  data_source_id = "${var.name_prefix}-warehouse"
  aws_account_id = local.account_id
  name           = "${var.name_prefix} warehouse (mart)"
  type           = "POSTGRESQL"

  parameters {
    postgresql {
      host     = var.quicksight_warehouse.host
      port     = var.quicksight_warehouse.port
      database = var.quicksight_warehouse.database
    }
  }

  credentials {
    secret_arn = var.quicksight_credentials_secret_arn
  }

  ssl_properties {
    disable_ssl = false
  }

  dynamic "vpc_connection_properties" {
    for_each = var.quicksight_vpc_connection_arn == null ? [] : [var.quicksight_vpc_connection_arn]
    content {
      vpc_connection_arn = vpc_connection_properties.value
    }
  }

  permission {
    principal = var.quicksight_principal_arn
    actions = [
      "quicksight:DescribeDataSource",
      "quicksight:DescribeDataSourcePermissions",
      "quicksight:PassDataSource",
      "quicksight:UpdateDataSource",
      "quicksight:DeleteDataSource",
      "quicksight:UpdateDataSourcePermissions",
    ]
  }

  lifecycle {
    precondition {
      condition     = var.quicksight_warehouse != null && var.quicksight_credentials_secret_arn != null && var.quicksight_principal_arn != null
      error_message = "quicksight_enabled needs quicksight_warehouse, quicksight_credentials_secret_arn and quicksight_principal_arn."
    }
  }
}

resource "aws_quicksight_data_set" "dashboard" {
  # A for expression, not `cond ? map : {}`: the queries' column objects differ, so no common type.
  for_each = { for name, columns in local.quicksight_data_sets : name => columns if var.quicksight_enabled }

  data_set_id    = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  aws_account_id = local.account_id
  name           = "${var.name_prefix} ${replace(each.key, "_", " ")}"
  import_mode    = "SPICE"

  physical_table_map {
    physical_table_map_id = replace(each.key, "_", "-")
    custom_sql {
      data_source_arn = aws_quicksight_data_source.warehouse[0].arn
      name            = each.key
      sql_query       = file("${local.dashboard_sql_dir}/${each.key}.sql")

      dynamic "columns" {
        for_each = each.value
        content {
          name = columns.key
          type = columns.value
        }
      }
    }
  }

  permissions {
    principal = var.quicksight_principal_arn
    actions   = local.quicksight_data_set_actions
  }
}
