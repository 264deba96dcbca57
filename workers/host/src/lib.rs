//! Wiring and hosting. Zone crates take their ports and configuration in `new` and never
//! name the AWS adapter; this crate builds both from a [`Deployment`] (the topology's
//! buckets with their zone keys, the key ARNs, the ports of each worker) and hosts the
//! result: as a Lambda function ([`lambda_main`], one small binary per worker) or, through
//! the CLI, behind the local SQS driver.

use std::sync::Arc;

use mlsec_aws::Deployment;
use mlsec_runtime::{Handler, WorkError, contract::Contracts, telemetry};
use tracing::warn;

/// Every worker, in flow order.
pub const WORKERS: [&str; 5] =
    [mlsec_ingest::WORKER, mlsec_curate::WORKER, mlsec_train::WORKER, mlsec_govern::WORKER, mlsec_score::WORKER];

pub async fn ingest(dep: &Deployment, contracts: Arc<Contracts>) -> Result<mlsec_ingest::IngestWorker, WorkError> {
    use mlsec_ingest::{IngestConfig, IngestWorker, WORKER};
    let config = IngestConfig {
        landing_bucket: dep.names.bucket("landing"),
        raw: dep.bucket_ref("raw").await?,
        quarantine: dep.bucket_ref("quarantine").await?,
        account_id: std::env::var("MLSEC_ACCOUNT_ID").ok().filter(|a| !a.is_empty()),
    };
    if config.account_id.is_none()
        && contracts.datasets.iter().any(|c| c.ingest.allowed_writers.iter().any(|w| w == "self"))
    {
        warn!(
            worker = WORKER,
            "MLSEC_ACCOUNT_ID is not set: drops to contracts allowing `self` will be quarantined as untrusted_source"
        );
    }
    Ok(IngestWorker::new(dep.ports(WORKER), contracts, config))
}

pub async fn curate(dep: &Deployment, contracts: Arc<Contracts>) -> Result<mlsec_curate::CurateWorker, WorkError> {
    use mlsec_curate::{CurateConfig, CurateWorker, WORKER};
    let config = CurateConfig {
        curated: dep.bucket_ref("curated").await?,
        holdout: dep.bucket_ref("holdout").await?,
        pseudonym_key_id: dep.key_arn("pseudonym").await?,
    };
    Ok(CurateWorker::new(dep.ports(WORKER), contracts, config))
}

pub async fn train(dep: &Deployment, contracts: Arc<Contracts>) -> Result<mlsec_train::TrainWorker, WorkError> {
    use mlsec_train::{TrainWorker, WORKER};
    Ok(TrainWorker::new(dep.ports(WORKER), contracts, dep.bucket_ref("models").await?))
}

pub async fn govern(dep: &Deployment, contracts: Arc<Contracts>) -> Result<mlsec_govern::GovernWorker, WorkError> {
    use mlsec_govern::{GovernConfig, GovernWorker, WORKER};
    let config = GovernConfig {
        models: dep.bucket_ref("models").await?,
        holdout_bucket: dep.names.bucket("holdout"),
        signing_key_id: dep.key_arn("signing").await?,
    };
    Ok(GovernWorker::new(dep.ports(WORKER), contracts, config))
}

pub async fn score(dep: &Deployment, contracts: Arc<Contracts>) -> Result<mlsec_score::ScoreWorker, WorkError> {
    use mlsec_score::{ScoreWorker, WORKER};
    Ok(ScoreWorker::new(dep.ports(WORKER), contracts, dep.bucket_ref("scored").await?, dep.key_arn("signing").await?))
}

/// The handler of worker `name`, wired to the deployment.
pub async fn build(dep: &Deployment, contracts: Arc<Contracts>, name: &str) -> Result<Arc<dyn Handler>, WorkError> {
    Ok(match name {
        mlsec_ingest::WORKER => Arc::new(ingest(dep, contracts).await?),
        mlsec_curate::WORKER => Arc::new(curate(dep, contracts).await?),
        mlsec_train::WORKER => Arc::new(train(dep, contracts).await?),
        mlsec_govern::WORKER => Arc::new(govern(dep, contracts).await?),
        mlsec_score::WORKER => Arc::new(score(dep, contracts).await?),
        other => return Err(WorkError::fatal(format!("unknown worker {other}; known: {}", WORKERS.join(", ")))),
    })
}

/// The body of every Lambda binary: SQS batch in, `batchItemFailures` out.
pub async fn lambda_main(worker: &str) -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let deployment = Deployment::from_env().await;
    let contracts = Arc::new(Contracts::from_env()?);
    let handler = build(&deployment, contracts, worker).await?;
    mlsec_runtime::lambda::run(handler, deployment.books(worker), deployment.retry_scheduler()).await
}
