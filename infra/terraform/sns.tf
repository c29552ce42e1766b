# Failure alerts: tasks publish to this topic (Variable alert_sns_topic_arn) and it e-mails the team.

resource "aws_sns_topic" "alerts" {
  name              = "${var.name_prefix}-etl-alerts"
  kms_master_key_id = aws_kms_key.etl.arn
}

# Each address receives a confirmation e-mail from AWS; nothing is delivered until it is confirmed.
resource "aws_sns_topic_subscription" "alert_email" {
  for_each = toset(var.alert_emails)

  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.value
}

resource "aws_sns_topic_policy" "alerts" {
  arn    = aws_sns_topic.alerts.arn
  policy = data.aws_iam_policy_document.alerts_topic.json
}

# Same-account IAM policies keep working alongside this policy (account administrators still manage
# the topic); it adds the execution role's publish right and refuses plain-HTTP publishing.
data "aws_iam_policy_document" "alerts_topic" {
  statement {
    sid       = "ExecutionRolePublishes"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.mwaa_execution.arn]
    }
  }

  statement {
    sid       = "DenyRequestsWithoutTls"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
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
