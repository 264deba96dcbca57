//! Lambda entry point of the ingest worker.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    mlsec_host::lambda_main(mlsec_ingest::WORKER).await
}
