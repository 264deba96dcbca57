//! Lambda entry point of the govern worker.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    mlsec_host::lambda_main(mlsec_govern::WORKER).await
}
