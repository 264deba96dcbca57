# The pipeline bus (encrypted with a customer-managed key) and its archive.

resource "aws_cloudwatch_event_bus" "pipeline" {
  name               = "${var.name_prefix}-${var.pipeline_bus}"
  kms_key_identifier = var.kms_key_arn
}

resource "aws_cloudwatch_event_archive" "pipeline" {
  name             = "${var.name_prefix}-${var.pipeline_bus}-archive"
  event_source_arn = aws_cloudwatch_event_bus.pipeline.arn
  retention_days   = var.archive_retention_days
  description      = "Every pipeline event, for incident replays"
}
