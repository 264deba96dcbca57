//! Shared harness of the emulator tests: every test gets its own deployment prefix on
//! the local stack (moto server), provisioned from the real topology with the real SDK.
//!
//! The stack must be running (`scripts/test.sh` starts it); the endpoint comes from
//! `AWS_ENDPOINT_URL`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use mlsec_aws::{Deployment, deployment::sdk_config, provision};
use mlsec_cli::{
    local::{self, PollOptions, Running},
    ops::{Received, Subscription},
};
use mlsec_runtime::{
    contract::Contracts,
    ports::{ReviewAction, Stage},
    topology::{Names, Topology},
};

/// One isolated deployment on the local stack.
pub struct Stack {
    pub dep: Deployment,
    pub contracts: Arc<Contracts>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Fast polling for tests: failed messages become visible again after one second.
pub const TEST_POLL: PollOptions = PollOptions { wait_seconds: 1, retry_delay: Duration::from_secs(1) };

impl Stack {
    /// Provisions a fresh deployment named after the test.
    pub async fn new(test: &str) -> Self {
        assert!(
            std::env::var_os("AWS_ENDPOINT_URL").is_some(),
            "AWS_ENDPOINT_URL is not set: run the emulator tests with scripts/test.sh (it starts moto)"
        );
        Self::provision(test, sdk_config().await).await
    }

    /// The same, on another emulator endpoint (the environment's `AWS_ENDPOINT_URL` would
    /// otherwise win over the configured one).
    pub async fn on_endpoint(test: &str, endpoint: &str) -> Self {
        #[derive(Debug)]
        struct NoEnvironment;
        impl aws_types::service_config::LoadServiceConfig for NoEnvironment {
            fn load_config(&self, _: aws_types::service_config::ServiceConfigKey<'_>) -> Option<String> {
                None
            }
        }
        let sdk = sdk_config().await.to_builder().endpoint_url(endpoint).service_config(NoEnvironment).build();
        Self::provision(test, sdk).await
    }

    async fn provision(test: &str, sdk: aws_config::SdkConfig) -> Self {
        let unique = format!(
            "{:x}{:x}",
            std::process::id() % 0xfff,
            (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 0xfffff) as u32
                + COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let prefix = format!("t{unique}-{test}").to_lowercase().replace('_', "-");
        let dep = Deployment::new(&sdk, Names::new(prefix), Topology::builtin());
        provision::provision(&dep).await.expect("provisioning the local stack");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts");
        let contracts = Arc::new(Contracts::load_dir(&dir).expect("repository contracts"));
        Self { dep, contracts }
    }

    /// The same deployment seen through the credentials of a new IAM user `name` (created
    /// with its own access key): STS then answers with that user, so tests can act as
    /// two different people. Returns the deployment and the user's ARN.
    pub async fn as_person(&self, name: &str) -> (Deployment, String) {
        let sdk = sdk_config().await;
        let iam = aws_sdk_iam::Client::new(&sdk);
        let user = format!("{}-{name}", self.dep.names.prefix);
        let created = iam.create_user().user_name(&user).send().await.expect("iam:CreateUser");
        let arn = created.user().map(|u| u.arn().to_string()).expect("a user has an ARN");
        let key = iam.create_access_key().user_name(&user).send().await.expect("iam:CreateAccessKey");
        let key = key.access_key().expect("an access key");
        let creds = aws_sdk_iam::config::Credentials::new(
            key.access_key_id(),
            key.secret_access_key(),
            None,
            None,
            "mlsec-tests",
        );
        let sdk =
            sdk.to_builder().credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(creds)).build();
        (Deployment::new(&sdk, self.dep.names.clone(), (*self.dep.topology).clone()), arn)
    }

    /// The deployment as a data engineer: a session of the provisioned producer role, so
    /// that IAM knows who dropped the data (an unknown dropper blocks every approval).
    pub async fn producer(&self) -> Deployment {
        let account = mlsec_aws::identity::whoami(&self.dep.sts).await.expect("sts").account;
        let role = format!("arn:aws:iam::{account}:role/{}", self.dep.names.role("producer"));
        self.dep.assume_role(&role, "data-engineer").await.expect("assuming the producer role")
    }

    /// Waits for the model trained on a drop to be staged, approves it as a risk officer
    /// (an IAM user the spec's approvers match, not the dropper) and waits for the
    /// promotion. Returns every event seen on the way.
    pub async fn approve_next(&self, sub: &Subscription, timeout: Duration) -> Vec<Received> {
        let mut events = sub.wait_for(&["ModelStaged"], timeout).await.expect("a model reaches staging");
        let staged = events.iter().rev().find(|e| e.schema == "ModelStaged").expect("staged").event.clone();
        let (model, version) = (staged["model_name"].as_str().unwrap(), staged["model_version"].as_str().unwrap());
        let (officer, _) = self.as_person("risk-officer").await;
        let d = mlsec_cli::models::decide(
            &officer,
            &self.contracts,
            model,
            version,
            ReviewAction::Approve,
            "reviewed",
            timeout,
        )
        .await
        .expect("the approval is recorded");
        assert_eq!(d.stage, Stage::Production, "{d:?}");
        events.extend(sub.wait_for(&["ModelPromoted"], timeout).await.expect("the promotion is announced"));
        events
    }

    /// Starts workers in this process.
    pub async fn start(&self, workers: &[&str]) -> Running {
        local::start(&self.dep, self.contracts.clone(), workers, TEST_POLL).await.expect("starting workers")
    }

    pub fn bucket(&self, b: &str) -> String {
        self.dep.names.bucket(b)
    }

    /// Keys of a bucket.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let out = self.dep.s3.list_objects_v2().bucket(self.bucket(bucket)).send().await.unwrap();
        out.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect()
    }

    /// Visible + in-flight messages of a queue.
    pub async fn depth(&self, queue: &str) -> i64 {
        let url = self.dep.queue_url(queue).await.unwrap();
        let d = mlsec_aws::queues::depth(&self.dep.sqs, &url).await.unwrap();
        d.visible + d.in_flight
    }

    /// Polls `f` until it returns true or `timeout` passes.
    pub async fn eventually<F, Fut>(&self, timeout: Duration, mut f: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if f().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        false
    }
}

/// Rows in a Parquet object.
pub async fn parquet_rows(dep: &Deployment, bucket: &str, key: &str) -> usize {
    let out = dep.s3.get_object().bucket(bucket).key(key).send().await.unwrap();
    let bytes = out.body.collect().await.unwrap().into_bytes();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap().build().unwrap();
    reader.map(|b| b.unwrap().num_rows()).sum()
}

/// Rows of a Parquet file as pyarrow's `read_table` reads it (the project's virtualenv,
/// which `scripts/localstack.sh` installs with moto): what a user's notebook would see.
/// Panics with pyarrow's message if it refuses the file.
pub fn pyarrow_rows(path: &std::path::Path) -> usize {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let out = std::process::Command::new(&python)
        .args(["-c", "import sys, pyarrow.parquet as pq; print(pq.read_table(sys.argv[1]).num_rows)"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/localstack.sh install creates it)", python.display()));
    assert!(out.status.success(), "pyarrow refused {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a row count")
}
