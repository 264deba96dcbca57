//! `mlsec`: the operators' CLI. Parses arguments and calls the library.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use mlsec_aws::{Deployment, provision};
use mlsec_cli::{
    check, demo, dlq, infer,
    local::{self, PollOptions, WORKERS},
    models, ops,
    output::{self, Output},
};
use mlsec_events::DatasetRole;
use mlsec_runtime::{
    contract::Contracts,
    sample::{SampleKind, write_csv},
    telemetry,
};

/// Prints a line on stdout; a closed pipe (`mlsec status | head -1`) ends the command
/// quietly (exit 0) instead of a panic. SIGPIPE stays ignored, so the SDK's sockets and the
/// consumers `subscribe --ack-after` feeds see an error, not a signal.
macro_rules! out {
    ($($t:tt)*) => { emit(format!("{}\n", format_args!($($t)*))) };
}

/// [`out!`] without the line end.
macro_rules! outp {
    ($($t:tt)*) => { emit(format!($($t)*)) };
}

fn emit(text: String) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("Error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

#[derive(Parser)]
#[command(name = "mlsec", version, about = "Security-first ML data pipeline: operators' CLI")]
struct Cli {
    /// Act as a session of one of the deployment's people roles, `ROLE/SESSION` (for
    /// example `producer/ana` or `model-risk/ana`): STS `AssumeRole` of `<prefix>-ROLE`. On
    /// AWS the role's trust policy requires SESSION to be your own user name.
    #[arg(long = "as", global = true, value_name = "ROLE/SESSION")]
    as_person: Option<String>,
    /// How results are printed: `table` for people (default), `json` for scripts (stable
    /// field names; `--json` on a command means the same), `dot` for `models lineage`.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a file before dropping it: the verdict the pipeline would reach (Z1 gate,
    /// then Z3's data-quality rules), with the workers' own code, offline (no AWS). Exits 1
    /// if the file would be quarantined or the dataset rejected.
    ///
    /// Examples: `mlsec check applications.csv --dataset credit_applications`;
    /// `mlsec check batch.jsonl.gz --dataset transactions_scoring --output json`
    Check {
        file: PathBuf,
        #[arg(long)]
        dataset: String,
        /// Check as if landing at this key (default: the dataset's landing prefix + the file
        /// name).
        #[arg(long)]
        key: Option<String>,
        /// Check the contract's allowedWriters against this S3 requester (an account id);
        /// by default the writer is assumed allowed. Needs --account.
        #[arg(long, requires = "account")]
        requester: Option<String>,
        /// The deployment's own account (what `self` in allowedWriters means), with --requester.
        #[arg(long)]
        account: Option<String>,
        /// The contracts directory (default: $MLSEC_CONTRACTS_DIR or ./contracts).
        #[arg(long)]
        contracts: Option<PathBuf>,
    },
    /// Data contracts: infer one from a sample.
    Contract {
        #[command(subcommand)]
        command: ContractCommand,
    },
    /// Print a shell completion script.
    ///
    /// Examples: `mlsec completions bash > ~/.local/share/bash-completion/completions/mlsec`;
    /// `mlsec completions zsh > ~/.zfunc/_mlsec`; `mlsec completions fish > ~/.config/fish/completions/mlsec.fish`
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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
        /// Stop after this many events (default: run until Ctrl-C); 0 only creates the
        /// subscription, for a consumer of its own (docs/examples/python-consumer).
        #[arg(long)]
        count: Option<usize>,
        /// A shell command that receives each event (a JSON line on its stdin); the event is
        /// deleted only if it exits 0, otherwise it comes again after --retry-seconds.
        ///
        /// Example: `mlsec subscribe RecordsScored --ack-after "python3 consumer.py"`
        #[arg(long)]
        ack_after: Option<String>,
        #[arg(long, default_value_t = 10)]
        retry_seconds: i32,
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
    /// The model registry: list, show, history, lineage, cards, and people's decisions;
    /// `models init` writes a first model spec.
    #[command(visible_alias = "model")]
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// The audit chain (Z9): verify, show, export, download for an auditor, checkpoint.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
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
        /// The audit chain: offline verification of --rows records (in-process), then
        /// appends per second against the running stack, 1 writer and --writers writers.
        #[arg(long)]
        audit: bool,
        /// Concurrent writers for --audit.
        #[arg(long, default_value_t = 8)]
        writers: u64,
        /// Records per writer for --audit's appends.
        #[arg(long, default_value_t = 100)]
        appends: u64,
    },
    /// Ask the gateway to announce an accepted object again (its recorded RawAccepted,
    /// unchanged): zones that never completed it handle it, zones that did skip it. For an
    /// input whose downstream message was archived or expired. Audited (your STS identity).
    ///
    /// Example: `mlsec reingest transactions_scoring 3f5a…e1 --why "curate DLQ expired in INC-42"`
    Reingest {
        dataset: String,
        /// Hex SHA-256 of the accepted content (RawAccepted's source.sha256).
        sha256: String,
        /// Why (recorded in the audit chain).
        #[arg(long)]
        why: String,
        #[arg(long)]
        json: bool,
    },
    /// The fault-injection suite: the chain under injected AWS errors, connection resets,
    /// latency and SIGKILLs of the workers' process, then an account of every object
    /// dropped (lost, wrong outcomes, duplicate effects, drain time). Exits 1 unless 0 lost,
    /// 0 wrong outcomes, 0 duplicates, every planned kill done and (at a rate above 0) at
    /// least one fault injected.
    ///
    /// Example: `mlsec faults --objects 1000 --kills 20 --fault-rate 0.05` (scripts/faults.sh runs it
    /// on its own emulator)
    Faults {
        #[arg(long, default_value_t = 50)]
        objects: usize,
        #[arg(long, default_value_t = 5)]
        kills: usize,
        /// Share of the workers' AWS calls that get a fault.
        #[arg(long, default_value_t = 0.05)]
        fault_rate: f64,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// The workers' in-flight window and claim lease, seconds.
        #[arg(long, default_value_t = 10)]
        window_seconds: u32,
        #[arg(long, default_value_t = 900)]
        timeout_seconds: u64,
        #[arg(long, default_value = "out/faults")]
        work_dir: PathBuf,
        #[arg(long)]
        json: bool,
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
enum ContractCommand {
    /// Infer a first ODCS v3 contract from a sample (CSV, JSON Lines, gzip), read through
    /// the gateway's own gate: per column the type, whether it is required, bounds, lengths,
    /// allowed values of small categories, a pattern for id-like columns, likely personal
    /// data (by header and content, with a suggested pseudonymisation) and likely protected
    /// attributes. No sample value is copied except categories that are not personal data.
    /// Review the result, then `mlsec check` a file against it.
    ///
    /// Example: `mlsec contract infer applications.csv --dataset credit_applications --source crm --out contracts/credit_applications.yaml`
    Infer {
        file: PathBuf,
        #[arg(long)]
        dataset: String,
        /// The landing prefix's first part: files land under <source>/<dataset>/.
        #[arg(long, default_value = "bank-core")]
        source: String,
        #[arg(long, value_parser = ["training", "scoring"], default_value = "training")]
        role: String,
        /// For a scoring dataset: the model spec that scores it.
        #[arg(long)]
        scoring_model: Option<String>,
        /// The contract's domain (pseudonyms are linkable within a domain); default: --source.
        #[arg(long)]
        domain: Option<String>,
        /// Write the contract here (default: standard output); the summary goes to stderr.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Overwrite --out if it exists.
        #[arg(long)]
        force: bool,
    },
}

/// Which parked messages a DLQ command looks at (all given filters must hold).
#[derive(clap::Args, Debug, Clone, Default)]
struct DlqFilters {
    /// The failure record's reason code (e.g. contract_version_mismatch, transient; `unrecorded`).
    #[arg(long)]
    reason: Option<String>,
    /// The event type: a schema name (RawAccepted, DatasetCurated, ...), ObjectCreated or undecodable.
    #[arg(long)]
    event_type: Option<String>,
    #[arg(long)]
    dataset: Option<String>,
    /// First failed at or after: RFC 3339, or a duration back from now (30m, 2h, 7d).
    #[arg(long, value_parser = dlq::parse_when)]
    since: Option<i64>,
    /// First failed before (same forms as --since).
    #[arg(long, value_parser = dlq::parse_when)]
    until: Option<i64>,
    /// One message: its event id, input key or SQS message id.
    #[arg(long)]
    id: Option<String>,
}

impl From<DlqFilters> for dlq::Filters {
    fn from(f: DlqFilters) -> Self {
        dlq::Filters {
            reason: f.reason,
            event_type: f.event_type,
            dataset: f.dataset,
            since_ms: f.since,
            until_ms: f.until,
            id: f.id,
        }
    }
}

#[derive(Subcommand)]
enum DlqCommand {
    /// What is parked in a worker's DLQ, grouped by reason code and event type, with ages
    /// and counts (ids and codes only, never bodies); every message stays in the DLQ.
    ///
    /// Example: `mlsec dlq list curate` or `mlsec dlq list curate --reason transient --json`
    List {
        worker: String,
        #[command(flatten)]
        filters: DlqFilters,
        /// Machine output: one JSON object per message, then the groups.
        #[arg(long)]
        json: bool,
    },
    /// One parked message and its failure record, by event id, input key or message id.
    ///
    /// Example: `mlsec dlq show curate 3f2a...`
    Show { worker: String, id: String },
    /// Move parked messages back to the worker's queue after a fix: only those matching the
    /// filters and whose origin the worker's records prove, at most --rate per second, send
    /// first and delete after; then wait for the worker and report what completed. Audited.
    ///
    /// Example: `mlsec dlq replay curate --reason contract_version_mismatch --dry-run`
    Replay {
        worker: String,
        #[command(flatten)]
        filters: DlqFilters,
        /// Messages per second.
        #[arg(long, default_value_t = dlq::DEFAULT_RATE)]
        rate: u32,
        /// Messages to move at most.
        #[arg(long, default_value_t = 1000)]
        max: usize,
        /// List exactly what a real run would move, and move nothing.
        #[arg(long)]
        dry_run: bool,
        /// Seconds to wait for the worker to finish what was moved.
        #[arg(long, default_value_t = 60)]
        wait: u64,
        #[arg(long)]
        json: bool,
    },
    /// Move parked messages into the incident bucket (encrypted) instead of replaying them:
    /// written first, deleted from the DLQ after. Nothing is ever just deleted. Audited.
    ///
    /// Example: `mlsec dlq archive score --reason unrecorded --why "injected, see incident 42"`
    Archive {
        worker: String,
        #[command(flatten)]
        filters: DlqFilters,
        /// Why (recorded with the archive and on the audit chain); --reason filters by reason code.
        #[arg(long)]
        why: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// Send archived messages back to the worker's queue, if a record of the worker still
    /// names them; each is restored once. Audited.
    ///
    /// Example: `mlsec dlq restore score --id <event id>`
    Restore {
        worker: String,
        #[command(flatten)]
        filters: DlqFilters,
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
    /// Release one content past a policy decision. The approver is you, as STS
    /// identifies your credentials; the release is recorded in the audit chain.
    Release {
        dataset: String,
        sha256: String,
        /// Why (kept in the release record and the audit chain).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Write a first model spec for a training contract: the target, and one feature per
    /// usable column with a transform that suits its type (numbers as they are or log1p,
    /// categories one-hot, timestamps by hour, booleans as they are). Personal-data,
    /// protected and key columns are left out. Review it, then put it in contracts/models/.
    ///
    /// Example: `mlsec models init --dataset credit_applications --target defaulted --out contracts/models/credit_lr.yaml`
    Init {
        #[arg(long)]
        dataset: String,
        #[arg(long)]
        target: String,
        /// The model's name (default: <dataset>_lr).
        #[arg(long)]
        name: Option<String>,
        /// For a string target: the value that is the positive class.
        #[arg(long)]
        positive_label: Option<String>,
        /// The column that identifies a scored row (default: the contract's primary key).
        #[arg(long)]
        id_column: Option<String>,
        #[arg(long)]
        contracts: Option<PathBuf>,
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        force: bool,
    },
    /// Every registered version with its stage, holdout metrics and approvers.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One version's registry record (lineage, evaluation, approvals, transitions) as JSON.
    Show { subject: String },
    /// Every stage transition of a model, oldest first; with `--at`, the version that was in
    /// production at that time.
    ///
    /// Example: `mlsec models history fraud_lr --at 2026-12-01T12:00:00Z`
    History {
        model: String,
        #[arg(long)]
        at: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Where a version came from and what it produced: landing object (and who dropped
    /// it) → raw → curated (contract, DQ report) → holdout → model → gate report →
    /// approvals → signed manifest → scored outputs; the objects the registry pins are
    /// checked at their versions, the curated file against the training digest. Exits 1 if
    /// any is missing, unreadable or altered.
    ///
    /// Example: `mlsec models lineage fraud_lr@3f2a9c1b04de --output dot | dot -Tsvg > lineage.svg`
    Lineage { subject: String },
    /// Write a model card (Markdown and HTML): metrics, gates with their intervals, lineage,
    /// approvals and history.
    ///
    /// Example: `mlsec models card fraud_lr@3f2a9c1b04de --out cards/`
    Card {
        subject: String,
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Approve a staging version for production, as the caller STS reports. The spec's
    /// `requiredApprovals` distinct people must approve; the one who dropped the training
    /// data may not.
    ///
    /// Example: `mlsec models approve fraud_lr@3f2a9c1b04de --reason "gate report reviewed"`
    Approve {
        subject: String,
        #[arg(long)]
        reason: String,
        /// Seconds to wait for govern to promote once the quorum is reached.
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Reject a staging version.
    Reject {
        subject: String,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Withdraw a version from any stage; a production version stops scoring at once.
    Revoke {
        subject: String,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Retire a production or superseded version, not for cause: it serves no more and can
    /// no longer be rolled back to (use revoke for cause).
    ///
    /// Example: `mlsec models archive fraud_lr@3f2a9c1b04de --reason "replaced by the 2027 model family"`
    Archive {
        subject: String,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Bring back a superseded version (one approved before); needs the spec's approvals.
    Rollback {
        model: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute every link and checkpoint signature; name the first bad record. Exits 1 on
    /// any fault.
    ///
    /// Examples: `mlsec audit verify`; `mlsec audit verify --offline ./audit-copy`
    Verify {
        /// Start at this position (its link to the record before is checked if present).
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Verify a copy written by `mlsec audit download`, with no AWS access.
        #[arg(long)]
        offline: Option<PathBuf>,
        /// The audit key's public key (DER); default: the copy's `public-key.der`.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Machine output.
        #[arg(long)]
        json: bool,
    },
    /// Records by subject, action, actor and time, as a table or JSON lines.
    Show {
        /// Substring of the subject (dataset, model@version, dataset/sha256, worker).
        #[arg(long)]
        subject: Option<String>,
        /// An action, e.g. quarantine_released.
        #[arg(long)]
        action: Option<String>,
        /// Substring of the actor (an ARN or a worker role).
        #[arg(long)]
        actor: Option<String>,
        /// From this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Write every record as Parquet (for DuckDB or Athena).
    Export {
        #[arg(long)]
        out: PathBuf,
    },
    /// Copy the chain, its checkpoints, the head and the public key to a directory.
    Download { dir: PathBuf },
    /// Sign a checkpoint of the current head now.
    Checkpoint,
}

fn time_arg(t: &Option<String>) -> Result<Option<i64>> {
    t.as_deref()
        .map(|t| mlsec_runtime::time::parse_rfc3339_ms(t.as_bytes()).with_context(|| format!("{t}: not RFC 3339")))
        .transpose()
}

async fn models_command(dep: &Deployment, out: Output, command: ModelsCommand) -> Result<()> {
    use mlsec_runtime::ports::ReviewAction;
    let decide = |subject: String, action, reason: String, wait: u64| async move {
        let (model, version) = models::parse_subject(&subject)?;
        let contracts = Contracts::from_env()?;
        let d = models::decide(dep, &contracts, &model, &version, action, &reason, Duration::from_secs(wait)).await?;
        out!("{}", serde_json::to_string_pretty(&d)?);
        anyhow::Ok(())
    };
    match command {
        ModelsCommand::Init { .. } => unreachable!("models init runs offline, before any AWS client"),
        ModelsCommand::List { json } => {
            json_only(out, "models list")?;
            let rows = models::list(dep).await?;
            if out.or_json(json) == Output::Json {
                out!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                outp!("{}", models::render_list(&rows));
            }
        }
        ModelsCommand::Show { subject } => {
            let (model, version) = models::parse_subject(&subject)?;
            let record = models::show(dep, &model, &version).await?;
            match out {
                Output::Json => out!("{}", serde_json::to_string_pretty(&record)?),
                _ => outp!("{}", output::fields(&serde_json::to_value(&record)?)),
            }
        }
        ModelsCommand::History { model, at: Some(at), json: _ } => {
            let at_ms = time_arg(&Some(at.clone()))?.expect("given");
            match models::production_at(dep, &model, at_ms).await? {
                Some(v) => out!("{model}@{v} was in production at {at}"),
                None => out!("no version of {model} was in production at {at}"),
            }
        }
        ModelsCommand::History { model, at: None, json } => {
            json_only(out, "models history")?;
            let rows = models::history(dep, &model).await?;
            if out.or_json(json) == Output::Json {
                out!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let mut t = output::Table::new(["at", "version", "from", "to", "actor", "reason"]);
                for r in rows {
                    let from = r.from.map_or("-".to_string(), |s| s.as_str().to_string());
                    t.row([r.at.to_string(), r.version, from, r.to.as_str().to_string(), r.actor, r.reason]);
                }
                outp!("{}", t.render());
            }
        }
        ModelsCommand::Lineage { subject } => {
            let (model, version) = models::parse_subject(&subject)?;
            let l = mlsec_cli::lineage::lineage(dep, &Contracts::from_env()?, &model, &version).await?;
            match out {
                Output::Table => outp!("{}", l.table()),
                Output::Json => out!("{}", serde_json::to_string_pretty(&l)?),
                Output::Dot => outp!("{}", l.dot()),
            }
            if !l.intact() {
                std::process::exit(1);
            }
        }
        ModelsCommand::Card { subject, out } => {
            let (model, version) = models::parse_subject(&subject)?;
            let card = mlsec_cli::lineage::card(dep, &Contracts::from_env()?, &model, &version).await?;
            std::fs::create_dir_all(&out).with_context(|| out.display().to_string())?;
            for (ext, body) in [("md", &card.markdown), ("html", &card.html)] {
                let path = out.join(format!("{model}-{version}.{ext}"));
                std::fs::write(&path, body).with_context(|| path.display().to_string())?;
                out!("{}", path.display());
            }
        }
        ModelsCommand::Approve { subject, reason, wait } => {
            decide(subject, ReviewAction::Approve, reason, wait).await?
        }
        ModelsCommand::Reject { subject, reason, wait } => decide(subject, ReviewAction::Reject, reason, wait).await?,
        ModelsCommand::Revoke { subject, reason, wait } => decide(subject, ReviewAction::Revoke, reason, wait).await?,
        ModelsCommand::Archive { subject, reason, wait } => {
            decide(subject, ReviewAction::Archive, reason, wait).await?
        }
        ModelsCommand::Rollback { model, to, reason, wait } => {
            decide(format!("{model}@{to}"), ReviewAction::Rollback, reason, wait).await?
        }
    }
    Ok(())
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
    let Cli { as_person, output, command } = Cli::parse();
    match command {
        // Offline: no AWS client is built.
        Command::Check { file, dataset, key, requester, account, contracts } => {
            if output == Output::Dot {
                eprintln!("Error: --output dot applies to models lineage, not check");
                std::process::exit(2);
            }
            let requester = requester.map(|r| check::Requester { requester: Some(r), own_account: account });
            let checked = load_contracts(contracts.as_deref()).and_then(|contracts| {
                check::check_file(
                    &contracts,
                    &file,
                    &dataset,
                    key.as_deref(),
                    requester.as_ref(),
                    mlsec_runtime::now_ms(),
                )
            });
            // 0 accepted, 1 quarantined, rejected or parked, 2 the check itself failed.
            let report = match checked {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("Error: {e:#}");
                    std::process::exit(2);
                }
            };
            match output {
                Output::Json => out!("{}", serde_json::to_string_pretty(&report)?),
                _ => outp!("{}", check::render(&report, output::colour())),
            }
            std::process::exit(report.exit_code());
        }
        Command::Contract {
            command: ContractCommand::Infer { file, dataset, source, role, scoring_model, domain, out, force },
        } => {
            let role = if role == "scoring" { DatasetRole::Scoring } else { DatasetRole::Training };
            let opts = infer::InferOptions { dataset, source, role, scoring_model, domain };
            json_only(output, "contract infer")?;
            let inferred = infer::infer_file(&file, &opts)?;
            write_out(out.as_deref(), force, &inferred.contract_yaml)?;
            // The summary: on stdout when the contract went to a file, else on stderr.
            let summary = match output {
                Output::Json => serde_json::to_string_pretty(&inferred)? + "\n",
                _ => infer::render(&inferred),
            };
            if out.is_some() {
                outp!("{summary}");
            } else {
                eprint!("{summary}");
            }
            Ok(())
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "mlsec", &mut script);
            emit(String::from_utf8_lossy(&script).into_owned());
            Ok(())
        }
        Command::Models {
            command: ModelsCommand::Init { dataset, target, name, positive_label, id_column, contracts, out, force },
        } => {
            let contracts = load_contracts(contracts.as_deref())?;
            let opts = infer::ModelInit { dataset, target, name, positive_label, id_column };
            let spec = infer::model_init(&contracts, &opts)?;
            write_out(out.as_deref(), force, &spec)?;
            Ok(())
        }
        command => online(as_person, output, command).await,
    }
}

fn load_contracts(dir: Option<&std::path::Path>) -> Result<Contracts> {
    Ok(match dir {
        Some(d) => Contracts::load_dir(d)?,
        None => Contracts::from_env()?,
    })
}

/// Writes `text` to `out` (refusing to overwrite without `force`), or to stdout.
fn write_out(out: Option<&std::path::Path>, force: bool, text: &str) -> Result<()> {
    match out {
        None => outp!("{text}"),
        Some(path) => {
            if path.exists() && !force {
                bail!("{} exists; --force overwrites it", path.display());
            }
            std::fs::write(path, text).with_context(|| path.display().to_string())?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

/// Refuses `--output dot` for a command it does not apply to (only `models lineage` draws).
fn json_only(out: Output, what: &str) -> Result<()> {
    if out == Output::Dot {
        bail!("--output dot applies to models lineage, not {what}");
    }
    Ok(())
}

async fn online(as_person: Option<String>, out: Output, command: Command) -> Result<()> {
    let mut dep = Deployment::from_env().await;
    if let Some(person) = &as_person {
        let Some((role, session)) = person.split_once('/') else { bail!("--as takes ROLE/SESSION, not {person}") };
        if !dep.topology.people.contains_key(role) {
            bail!("--as: no people role {role}; known: {:?}", dep.topology.people.keys().collect::<Vec<_>>());
        }
        let account = mlsec_aws::identity::whoami(&dep.sts).await?.account;
        let arn = format!("arn:aws:iam::{account}:role/{}", dep.names.role(role));
        dep = dep.assume_role(&arn, session).await?;
    }
    match command {
        Command::Check { .. } | Command::Contract { .. } | Command::Completions { .. } => {
            unreachable!("offline commands run before any AWS client")
        }
        Command::Provision => {
            let p = provision::provision(&dep).await?;
            out!("{}", serde_json::to_string_pretty(&p)?);
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
            out!("s3://{}/{key}", dep.names.bucket("landing"));
        }
        Command::Subscribe { events, name, count, ack_after, retry_seconds } => {
            let sub = ops::Subscription::create(&dep, &name, &events).await?;
            eprintln!("subscribed {} to {} (at least once: deduplicate by event_id)", sub.queue_url, events.join(", "));
            let mut acked = 0;
            // `--count 0`: create the subscription only (another consumer reads the queue).
            while count != Some(0) {
                // Ctrl-C stops between batches: every event handed out so far is acknowledged
                // or comes again, none is deleted unwritten.
                let batch = tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    b = sub.receive(10) => b?,
                };
                let mut stdout = std::io::stdout().lock();
                acked += ops::deliver(&sub, batch, &mut stdout, ack_after.as_deref(), retry_seconds).await?.acked;
                if count.is_some_and(|c| acked >= c) {
                    break;
                }
            }
        }
        Command::Status => {
            json_only(out, "status")?;
            let s = ops::status(&dep).await?;
            match out {
                Output::Json => out!("{}", serde_json::to_string_pretty(&s)?),
                _ => outp!("{}", ops::render_status(&s)),
            }
        }
        Command::Dlq { command } => match command {
            DlqCommand::List { worker, filters, json } => {
                json_only(out, "dlq list")?;
                let json = out.or_json(json) == Output::Json;
                check_worker(&dep, &worker)?;
                let parked = dlq::list(&dep, &worker, &filters.into()).await?;
                let groups = dlq::group(&parked);
                if json {
                    for p in &parked {
                        out!("{}", serde_json::to_string(p)?);
                    }
                    out!("{}", serde_json::json!({ "groups": groups }));
                } else {
                    outp!("{}", dlq::render_groups(&worker, &groups, mlsec_runtime::now_ms()));
                }
            }
            DlqCommand::Show { worker, id } => {
                check_worker(&dep, &worker)?;
                let filters = dlq::Filters { id: Some(id.clone()), ..Default::default() };
                let parked = dlq::list(&dep, &worker, &filters).await?;
                if parked.is_empty() {
                    bail!("no message {id} in the {worker} DLQ");
                }
                match out {
                    Output::Json => out!("{}", serde_json::to_string_pretty(&parked)?),
                    _ => outp!("{}", output::fields(&serde_json::to_value(&parked)?)),
                }
            }
            DlqCommand::Archive { worker, filters, why, dry_run } => {
                check_worker(&dep, &worker)?;
                let r = dlq::archive(&dep, &worker, &filters.into(), &why, dry_run).await?;
                out!("{}", serde_json::to_string(&r)?);
            }
            DlqCommand::Restore { worker, filters, dry_run } => {
                check_worker(&dep, &worker)?;
                let r = dlq::restore(&dep, &worker, &filters.into(), dry_run).await?;
                out!("{}", serde_json::to_string(&r)?);
            }
            DlqCommand::Replay { worker, filters, rate, max, dry_run, wait, json } => {
                let json = out.or_json(json) == Output::Json;
                check_worker(&dep, &worker)?;
                let opts = dlq::ReplayOptions { filters: filters.into(), rate, max, dry_run, wait_seconds: wait };
                let r = dlq::replay(&dep, &worker, &opts).await?;
                if json {
                    out!("{}", serde_json::to_string(&r)?);
                } else {
                    outp!("{}", dlq::render_replay(&r));
                }
            }
        },
        Command::Quarantine { command } => match command {
            QuarantineCommand::List { dataset } => {
                json_only(out, "quarantine list")?;
                let entries = ops::quarantine_list(&dep, dataset.as_deref()).await?;
                match out {
                    Output::Json => out!("{}", serde_json::to_string_pretty(&entries)?),
                    _ => outp!("{}", ops::render_quarantine_list(&entries)),
                }
            }
            QuarantineCommand::Show { dataset, sha256 } => {
                let view = ops::quarantine_show(&dep, &dataset, &sha256).await?;
                match out {
                    Output::Json => out!("{}", serde_json::to_string_pretty(&view)?),
                    _ => outp!("{}", output::fields(&serde_json::to_value(&view)?)),
                }
            }
            QuarantineCommand::Release { dataset, sha256, reason } => {
                let record = ops::quarantine_release(&dep, &dataset, &sha256, &reason).await?;
                out!("{}", serde_json::to_string_pretty(&record)?);
            }
        },
        Command::Models { command } => models_command(&dep, out, command).await?,
        Command::Audit { command } => match command {
            AuditCommand::Verify { from, offline, public_key, json } => {
                let json = out.or_json(json) == Output::Json;
                let chain = match &offline {
                    Some(dir) => mlsec_cli::audit::load_offline(dir, public_key.as_deref())?,
                    None => mlsec_cli::audit::load(&dep).await?,
                };
                let report = chain.verify(from);
                if json {
                    out!("{}", serde_json::to_string(&report)?);
                } else {
                    for f in &report.faults {
                        out!("FAULT {f}");
                    }
                    let verdict = if report.ok() { "chain verified" } else { "chain NOT verified" };
                    out!(
                        "audit: {} records, {} checkpoints, {verdict}{}",
                        report.records,
                        report.checkpoints,
                        report.faults.first().map(|f| format!(" (first fault: {f})")).unwrap_or_default()
                    );
                }
                if !report.ok() {
                    std::process::exit(1);
                }
            }
            AuditCommand::Show { subject, action, actor, since, until, json } => {
                json_only(out, "audit show")?;
                let json = out.or_json(json) == Output::Json;
                let filter = mlsec_cli::audit::Filter {
                    subject,
                    action,
                    actor,
                    since_ms: time_arg(&since)?,
                    until_ms: time_arg(&until)?,
                };
                let records = mlsec_cli::audit::load(&dep).await?.decoded();
                let shown: Vec<_> = records.iter().filter(|r| filter.matches(r)).collect();
                if json {
                    for r in shown {
                        out!("{}", serde_json::to_string(r)?);
                    }
                } else {
                    outp!("{}", mlsec_cli::audit::render_records(shown));
                }
            }
            AuditCommand::Export { out } => {
                let records = mlsec_cli::audit::load(&dep).await?.decoded();
                std::fs::write(&out, mlsec_cli::audit::to_parquet(&records)?)?;
                out!("{} records -> {}", records.len(), out.display());
            }
            AuditCommand::Download { dir } => {
                let n = mlsec_cli::audit::save(&mlsec_cli::audit::load(&dep).await?, &dir)?;
                out!("{n} records -> {}", dir.display());
            }
            AuditCommand::Checkpoint => {
                let (actor, _) = ops::operator(&dep).await?;
                let chain = dep.audit_chain("operator", actor).await?;
                match chain.head().await? {
                    Some(h) => out!("{}", serde_json::to_string_pretty(&chain.checkpoint(h.head).await?)?),
                    None => out!("the chain is empty"),
                }
            }
        },
        Command::Sample { kind, rows, seed, out } => {
            let kind = if kind == "training" { SampleKind::Training } else { SampleKind::Scoring };
            let mut f =
                std::io::BufWriter::new(std::fs::File::create(&out).with_context(|| out.display().to_string())?);
            write_csv(&mut f, kind, rows, seed)?;
        }
        Command::Bench { rows, stages, work_dir, via_s3, audit, writers, appends } => {
            let contracts = Contracts::from_env()?;
            let stages: Vec<&str> = stages.iter().map(String::as_str).collect();
            let results = if audit {
                let verify = mlsec_cli::bench::audit_verify(rows as u64)?;
                provision::provision(&dep).await?;
                let one = mlsec_cli::bench::audit_appends(&dep, 1, appends).await?;
                let many = mlsec_cli::bench::audit_appends(&dep, writers, appends).await?;
                vec![verify, one, many]
            } else if via_s3 {
                vec![mlsec_cli::bench::run_ingest_via_s3(&dep, Arc::new(contracts), rows, &work_dir).await?]
            } else {
                mlsec_cli::bench::run(&contracts, rows, &work_dir, &stages)?
            };
            out!(
                "{:<8} {:>10} {:>10} {:>9} {:>14} {:>14}",
                "stage",
                "rows",
                "input MiB",
                "seconds",
                "rows/s",
                "peak RSS MiB"
            );
            for m in &results {
                out!(
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
        Command::Reingest { dataset, sha256, why, json } => {
            let json = out.or_json(json) == Output::Json;
            let r = mlsec_cli::dlq::reingest(&dep, &dataset, &sha256, &why).await?;
            if json {
                out!("{}", serde_json::to_string(&r)?);
            } else {
                out!(
                    "asked the gateway to announce {}/{} again (request {}, by {}); `mlsec dlq list ingest` shows it if the content was never accepted",
                    r.dataset,
                    r.sha256,
                    r.request,
                    r.requested_by
                );
            }
        }
        Command::Faults { objects, kills, fault_rate, seed, window_seconds, timeout_seconds, work_dir, json } => {
            let json = out.or_json(json) == Output::Json;
            let contracts = Arc::new(Contracts::from_env()?);
            let opts = mlsec_cli::faults::FaultOptions {
                objects,
                kills,
                fault_rate,
                seed,
                window_seconds,
                timeout: Duration::from_secs(timeout_seconds),
                work_dir,
            };
            let report = mlsec_cli::faults::run(&dep, contracts, &opts).await?;
            if json {
                out!("{}", serde_json::to_string(&report)?);
            } else {
                outp!("{}", mlsec_cli::faults::render(&report));
            }
            if !report.passed() {
                bail!("the fault suite failed: {}", report.failures().join(", "));
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
            if !summary.audit_faults.is_empty() {
                bail!("the audit chain does not verify: {}", summary.audit_faults.join("; "));
            }
        }
    }
    Ok(())
}
