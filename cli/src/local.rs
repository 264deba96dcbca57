//! Hosting workers locally: each worker's handler behind a [`LocalDriver`] polling its
//! own queue, all in one process (`mlsec run --all`) or one at a time.

use std::{sync::Arc, time::Duration};

use mlsec_aws::{Deployment, driver::LocalDriver};
pub use mlsec_host::{WORKERS, build};
use mlsec_runtime::{WorkError, contract::Contracts};
use tokio::{sync::watch, task::JoinSet};

/// Polling settings of the local drivers.
#[derive(Debug, Clone, Copy)]
pub struct PollOptions {
    pub wait_seconds: i32,
    pub retry_delay: Duration,
}

impl Default for PollOptions {
    fn default() -> Self {
        Self { wait_seconds: 5, retry_delay: Duration::from_secs(5) }
    }
}

/// Workers running in this process; dropping the handle does not stop them, `stop` does.
pub struct Running {
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<(String, Result<mlsec_aws::driver::DriverStats, WorkError>)>,
}

impl Running {
    /// Signals shutdown and waits for every driver to finish its batch in hand.
    pub async fn stop(mut self) -> Result<(), WorkError> {
        let _ = self.shutdown.send(true);
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok((_, Ok(_))) => {}
                Ok((name, Err(e))) => {
                    first_error.get_or_insert(WorkError::fatal(format!("{name}: {e}")));
                }
                Err(e) => {
                    first_error.get_or_insert(WorkError::fatal(format!("worker task: {e}")));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Waits until a driver stops on its own (a fatal error) — used by `mlsec run`.
    pub async fn wait_any(&mut self) -> Option<(String, Result<mlsec_aws::driver::DriverStats, WorkError>)> {
        self.tasks.join_next().await.map(|r| r.unwrap_or_else(|e| ("?".into(), Err(WorkError::fatal(e)))))
    }
}

/// Starts the named workers, each polling its queue.
pub async fn start(
    dep: &Deployment,
    contracts: Arc<Contracts>,
    names: &[&str],
    opts: PollOptions,
) -> Result<Running, WorkError> {
    mlsec_runtime::spill::sweep_stale(&mlsec_runtime::spill::spill_dir(), mlsec_runtime::spill::Sweep::DeadProcesses);
    let (tx, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for name in names {
        let decl = dep.topology.workers.get(*name).ok_or_else(|| WorkError::fatal(format!("unknown worker {name}")))?;
        // The in-flight window: the topology's, unless the queues were set to another
        // (`MLSEC_VISIBILITY_WINDOW_SECONDS`, as `mlsec faults` does to recover in seconds).
        let window = std::env::var("MLSEC_VISIBILITY_WINDOW_SECONDS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(decl.queue.visibility_timeout_seconds as u64);
        let visibility_timeout = Duration::from_secs(window);
        let handler = build(dep, contracts.clone(), name).await?;
        let driver = LocalDriver {
            sqs: dep.sqs.clone(),
            queue_url: dep.queue_url(&dep.names.queue(name)).await?,
            handler,
            books: dep.books(name),
            wait_seconds: opts.wait_seconds,
            retry_delay: opts.retry_delay,
            visibility_timeout,
        };
        let mut rx = rx.clone();
        let name = name.to_string();
        tasks.spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            (name, driver.run(shutdown).await)
        });
    }
    Ok(Running { shutdown: tx, tasks })
}
