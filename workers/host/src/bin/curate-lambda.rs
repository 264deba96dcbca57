//! Lambda entry point of the curate worker.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    mlsec_host::lambda_main(mlsec_curate::WORKER).await
}
