//! Lambda entry point of the score worker.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    mlsec_host::lambda_main(mlsec_score::WORKER).await
}
