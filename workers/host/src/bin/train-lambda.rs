//! Lambda entry point of the train worker.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    mlsec_host::lambda_main(mlsec_train::WORKER).await
}
