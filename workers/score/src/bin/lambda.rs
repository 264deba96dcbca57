//! Lambda entry point of the score worker: SQS batch in, `batchItemFailures` out.

use std::sync::Arc;

use mlsec_runtime::{contract::Contracts, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let deployment = mlsec_aws::Deployment::from_env().await;
    let contracts = Arc::new(Contracts::from_env()?);
    let worker = mlsec_score::ScoreWorker::from_deployment(&deployment, contracts).await?;
    let idempotency = deployment.ports(mlsec_score::WORKER).idempotency;
    mlsec_runtime::lambda::run(Arc::new(worker), idempotency, deployment.retry_scheduler()).await
}
