//! `mlsec`: the operators' CLI. Parses arguments and calls the library.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use mlsec_aws::{Deployment, provision};
use mlsec_cli::{
    demo,
    local::{self, PollOptions, WORKERS},
    ops,
};
use mlsec_runtime::{
    contract::Contracts,
    sample::{SampleKind, write_csv},
    telemetry,
};

#[derive(Parser)]
#[command(name = "mlsec", version, about = "Security-first ML data pipeline: operators' CLI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create every key, bucket, table, bus, queue and rule of the topology (idempotent).
    Provision,
    /// Run workers locally, each long-polling its queue, until Ctrl-C.
    Run {
        /// Run every worker in this process.
        #[arg(long)]
        all: bool,
        /// Workers to run (ingest, curate, train, govern, score).
        workers: Vec<String>,
    },
    /// Upload a file to the landing bucket under <source>/<dataset>/<file name>.
    Drop {
        file: PathBuf,
        #[arg(long, default_value = "bank-core")]
        source: String,
        #[arg(long)]
        dataset: String,
    },
    /// Subscribe to event types (own rule + queue) and print decoded events as JSON lines.
    Subscribe {
        /// Event types, e.g. RecordsScored.
        #[arg(required = true)]
        events: Vec<String>,
        /// Subscription name (its queue is <prefix>-sub-<name>).
        #[arg(long, default_value = "cli")]
        name: String,
        /// Stop after this many events (default: run until Ctrl-C).
        #[arg(long)]
        count: Option<usize>,
    },
    /// Queue and DLQ depths per worker, and the model registry.
    Status,
    /// Dead-letter queue tools.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Quarantined objects: list, show, release.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// Write a deterministic sample CSV (training has the is_fraud label).
    Sample {
        #[arg(long, value_parser = ["training", "scoring"])]
        kind: String,
        #[arg(long, default_value_t = 10_000)]
        rows: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Measure rows/s and peak memory of each stage's data path on the sample (run in release).
    Bench {
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        /// Stages after ingest to include: curate, train, score (`--stages ingest`: ingest only).
        #[arg(long, value_delimiter = ',', default_value = "curate,train,score")]
        stages: Vec<String>,
        #[arg(long, default_value = "out/bench")]
        work_dir: PathBuf,
        /// Ingest only, end to end through the running stack: upload, then stream the
        /// object back from S3 through the worker.
        #[arg(long)]
        via_s3: bool,
    },
    /// Run the whole chain on the local stack and print a summary.
    Demo {
        #[arg(long, default_value_t = 20_000)]
        training_rows: usize,
        #[arg(long, default_value_t = 5_000)]
        scoring_rows: usize,
        #[arg(long, default_value = "out/demo")]
        out_dir: PathBuf,
        #[arg(long, default_value_t = 180)]
        timeout_seconds: u64,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List a worker's DLQ (ids, sizes and event types only).
    List {
        worker: String,
        #[arg(long, default_value_t = 50)]
        max: usize,
    },
    /// Move messages from a worker's DLQ back to its queue (send, then delete).
    Replay {
        worker: String,
        #[arg(long, default_value_t = 1000)]
        max: u64,
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum QuarantineCommand {
    /// List quarantined contents with their reason codes (no data values).
    List {
        #[arg(long)]
        dataset: Option<String>,
    },
    /// Show one content's reason document (evidence: offset, line, column, rule).
    Show { dataset: String, sha256: String },
    /// Release one content: recorded with the approver and reason, then copied back to
    /// its landing key. Malware-class and unparseable contents are refused.
    Release {
        dataset: String,
        sha256: String,
        #[arg(long)]
        approver: String,
        #[arg(long)]
        reason: String,
    },
}

fn check_worker(dep: &Deployment, w: &str) -> Result<()> {
    if !dep.topology.workers.contains_key(w) {
        bail!("unknown worker {w}; known: {}", WORKERS.join(", "));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    telemetry::init();
    let cli = Cli::parse();
    let dep = Deployment::from_env().await;
    match cli.command {
        Command::Provision => {
            let p = provision::provision(&dep).await?;
            println!("{}", serde_json::to_string_pretty(&p)?);
        }
        Command::Run { all, workers } => {
            let names: Vec<&str> = if all { WORKERS.to_vec() } else { workers.iter().map(String::as_str).collect() };
            if names.is_empty() {
                bail!("name the workers to run, or --all");
            }
            for w in &names {
                check_worker(&dep, w)?;
            }
            let contracts = Arc::new(Contracts::from_env()?);
            let mut running = local::start(&dep, contracts, &names, PollOptions::default()).await?;
            eprintln!("running {} (Ctrl-C to stop)", names.join(", "));
            tokio::select! {
                _ = tokio::signal::ctrl_c() => running.stop().await?,
                stopped = running.wait_any() => {
                    if let Some((name, Err(e))) = stopped {
                        running.stop().await.ok();
                        bail!("worker {name} stopped: {e}");
                    }
                    running.stop().await?;
                }
            }
        }
        Command::Drop { file, source, dataset } => {
            let key = ops::drop_file(&dep, &file, &source, &dataset).await?;
            println!("s3://{}/{key}", dep.names.bucket("landing"));
        }
        Command::Subscribe { events, name, count } => {
            let sub = ops::Subscription::create(&dep, &name, &events).await?;
            eprintln!("subscribed {} to {}", sub.queue_url, events.join(", "));
            let mut printed = 0;
            loop {
                let batch = tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    b = sub.poll(10) => b?,
                };
                for e in batch {
                    println!("{}", serde_json::to_string(&e)?);
                    printed += 1;
                }
                if count.is_some_and(|c| printed >= c) {
                    break;
                }
            }
        }
        Command::Status => {
            let s = ops::status(&dep).await?;
            println!("{}", serde_json::to_string_pretty(&s)?);
        }
        Command::Dlq { command } => match command {
            DlqCommand::List { worker, max } => {
                check_worker(&dep, &worker)?;
                for m in ops::dlq_list(&dep, &worker, max).await? {
                    println!("{}", serde_json::to_string(&m)?);
                }
            }
            DlqCommand::Replay { worker, max, dry_run } => {
                check_worker(&dep, &worker)?;
                let r = ops::dlq_replay(&dep, &worker, max, dry_run).await?;
                println!("{}", serde_json::to_string(&r)?);
            }
        },
        Command::Quarantine { command } => match command {
            QuarantineCommand::List { dataset } => {
                for e in ops::quarantine_list(&dep, dataset.as_deref()).await? {
                    println!("{}", serde_json::to_string(&e)?);
                }
            }
            QuarantineCommand::Show { dataset, sha256 } => {
                println!("{}", serde_json::to_string_pretty(&ops::quarantine_show(&dep, &dataset, &sha256).await?)?);
            }
            QuarantineCommand::Release { dataset, sha256, approver, reason } => {
                let record = ops::quarantine_release(&dep, &dataset, &sha256, &approver, &reason).await?;
                println!("{}", serde_json::to_string_pretty(&record)?);
            }
        },
        Command::Sample { kind, rows, seed, out } => {
            let kind = if kind == "training" { SampleKind::Training } else { SampleKind::Scoring };
            let mut f =
                std::io::BufWriter::new(std::fs::File::create(&out).with_context(|| out.display().to_string())?);
            write_csv(&mut f, kind, rows, seed)?;
        }
        Command::Bench { rows, stages, work_dir, via_s3 } => {
            let contracts = Contracts::from_env()?;
            let stages: Vec<&str> = stages.iter().map(String::as_str).collect();
            let results = if via_s3 {
                vec![mlsec_cli::bench::run_ingest_via_s3(&dep, Arc::new(contracts), rows, &work_dir).await?]
            } else {
                mlsec_cli::bench::run(&contracts, rows, &work_dir, &stages)?
            };
            println!(
                "{:<8} {:>10} {:>10} {:>9} {:>14} {:>14}",
                "stage", "rows", "input MiB", "seconds", "rows/s", "peak RSS MiB"
            );
            for m in &results {
                println!(
                    "{:<8} {:>10} {:>10.1} {:>9.3} {:>14.0} {:>14.1}",
                    m.stage,
                    m.rows,
                    m.input_bytes as f64 / 1048576.0,
                    m.seconds,
                    m.rows_per_second,
                    m.peak_rss_mib
                );
            }
            if cfg!(debug_assertions) {
                eprintln!("note: debug build; run with --release for representative figures");
            }
        }
        Command::Demo { training_rows, scoring_rows, out_dir, timeout_seconds } => {
            let contracts = Arc::new(Contracts::from_env()?);
            let opts = demo::DemoOptions {
                training_rows,
                scoring_rows,
                out_dir,
                timeout: Duration::from_secs(timeout_seconds),
            };
            let summary = demo::run(&dep, contracts, &opts).await?;
            demo::print(&summary);
        }
    }
    Ok(())
}
