# One execution role per worker, created before the keys so that key policies can name
# exactly the roles that use each key. Permissions are attached by the worker module.

data "aws_iam_policy_document" "assume_lambda" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "worker" {
  for_each             = var.workers
  name                 = "${var.name_prefix}-${each.key}"
  description          = "Execution role of the ${each.key} worker"
  assume_role_policy   = data.aws_iam_policy_document.assume_lambda.json
  permissions_boundary = var.permissions_boundary_arn
}
