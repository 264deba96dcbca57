//! Canary proof: known personal data seeded into the sample never appears in anything the
//! pipeline writes after the gateway: curated data, DQ reports and rejects, models,
//! scored outputs (every version of every object, decoded and as raw bytes), the events
//! on the bus, the messages left on the workers' queues and dead-letter queues, and the
//! workers' logs.

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use arrow::{
    array::{Array, BinaryArray},
    util::display::{ArrayFormatter, FormatOptions},
};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use mlsec_cli::{
    local::WORKERS,
    ops::{Subscription, drop_bytes},
};
use mlsec_runtime::sample::{SampleKind, csv_bytes};
use mlsec_tests::Stack;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Synthetic canaries: a valid-looking CPF (correct check digits), a name and an e-mail
/// that the sample generator never produces.
const CANARY_NAME: &str = "Zuleica Canarinho";
const CANARY_CPF: &str = "529.982.247-25";
const CANARY_EMAIL: &str = "zuleica.canarinho77@example.com.br";
/// The values, their digits-only form, and their unkeyed SHA-256 (what a pseudonymiser
/// without a key would write, reversible by dictionary).
fn needles() -> Vec<String> {
    let mut v: Vec<String> =
        [CANARY_NAME, CANARY_CPF, "52998224725", CANARY_EMAIL, "zuleica.canarinho"].map(str::to_string).to_vec();
    for plain in [CANARY_CPF, "52998224725", CANARY_EMAIL, CANARY_NAME] {
        v.push(mlsec_events::sha256_hex(plain.as_bytes()));
    }
    v
}

/// Puts the canaries into rows 3, 4 and 5 of a sample file (same person, three payments);
/// row 5 also has a channel outside the contract's list, so curate drops it and writes a
/// rejects file, which is scanned too.
fn with_canaries(csv: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8(csv).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for line in lines.iter_mut().skip(3).take(3) {
        let mut f: Vec<String> = line.split(',').map(str::to_string).collect();
        f[1] = CANARY_NAME.into();
        f[2] = CANARY_CPF.into();
        f[3] = CANARY_EMAIL.into();
        *line = f.join(",");
    }
    if let Some(line) = lines.get_mut(5) {
        let mut f: Vec<String> = line.split(',').map(str::to_string).collect();
        f[7] = "telepathy".into();
        *line = f.join(",");
    }
    (lines.join("\n") + "\n").into_bytes()
}

/// Every text an object holds: its bytes as they are (this covers Parquet's uncompressed
/// footer and page headers, where column statistics live) and, for Parquet, every decoded
/// value of every column type (pages are compressed, so raw bytes alone would hide a
/// leak), the column names and the key-value metadata.
fn texts(body: Bytes) -> Vec<String> {
    let mut out = vec![String::from_utf8_lossy(&body).into_owned()];
    if !body.starts_with(b"PAR1") {
        return out;
    }
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body).unwrap();
    if let Some(kv) = builder.metadata().file_metadata().key_value_metadata() {
        out.extend(kv.iter().map(|e| format!("{}={}", e.key, e.value.clone().unwrap_or_default())));
    }
    for batch in builder.build().unwrap() {
        let batch = batch.unwrap();
        for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
            out.push(field.name().clone());
            if let Some(b) = col.as_any().downcast_ref::<BinaryArray>() {
                // Bytes as text (the formatter would show hex).
                out.extend(b.iter().flatten().map(|v| String::from_utf8_lossy(v).into_owned()));
            } else {
                let f = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default()).unwrap();
                out.extend((0..col.len()).map(|i| f.value(i).to_string()));
            }
        }
    }
    out
}

fn hits(what: &str, texts: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for t in texts {
        for n in needles() {
            if t.to_lowercase().contains(&n.to_lowercase()) {
                found.push(format!("{what}: {n}"));
            }
        }
    }
    found
}

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_pii_appears_nowhere_after_the_gateway() {
    // The workers run in this process: their logs (debug level for the pipeline's own
    // crates) are captured here.
    let logs = Logs::default();
    let sink = logs.clone();
    let filter = "info,mlsec_ingest=debug,mlsec_curate=debug,mlsec_train=debug,mlsec_govern=debug,mlsec_score=debug,\
                  mlsec_runtime=debug,mlsec_aws=debug";
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .try_init()
        .expect("no other test in this binary installs a subscriber");

    let stack = Stack::new("canary").await;
    let dep = &stack.dep;
    let all: Vec<String> = mlsec_events::CATALOGUE.iter().map(|s| s.to_string()).collect();
    let sub = Subscription::create(dep, "canary", &all).await.unwrap();
    let running = stack.start(&WORKERS).await;
    let training = with_canaries(csv_bytes(SampleKind::Training, 2000, 11));
    drop_bytes(&stack.producer().await, "bank-core/transactions_training/canary.csv", ByteStream::from(training))
        .await
        .unwrap();
    let mut events = stack.approve_next(&sub, TIMEOUT).await;
    let scoring = with_canaries(csv_bytes(SampleKind::Scoring, 300, 12));
    drop_bytes(dep, "bank-core/transactions_scoring/canary.csv", ByteStream::from(scoring)).await.unwrap();
    events.extend(sub.wait_for(&["RecordsScored"], TIMEOUT).await.unwrap());
    running.stop().await.unwrap();

    let get = |bucket: String, key: String, version: Option<String>| async move {
        let req = dep.s3.get_object().bucket(bucket).key(key).set_version_id(version);
        req.send().await.unwrap().body.collect().await.unwrap().into_bytes()
    };
    // Every version of every object: a rewrite must not leave an older leaking copy behind.
    let stack_ref = &stack;
    let versions = |bucket: &'static str| async move {
        let out = dep.s3.list_object_versions().bucket(stack_ref.bucket(bucket)).send().await.unwrap();
        assert!(!out.is_truncated().unwrap_or(false), "more versions than one page in {bucket}");
        out.versions()
            .iter()
            .map(|v| (v.key().unwrap().to_string(), v.version_id().map(str::to_string)))
            .collect::<Vec<_>>()
    };
    // Control: the scanner finds the canaries where they legitimately are (the raw
    // Parquet of the raw zone), so zero hits below means absent, not unreadable.
    let raw_parquet = stack.keys("raw").await.into_iter().find(|k| k.ends_with(".parquet")).unwrap();
    let control = texts(get(stack.bucket("raw"), raw_parquet.clone(), None).await);
    assert!(!hits("control", &control).is_empty(), "the scanner must see the canaries in {raw_parquet}");

    let mut found = Vec::new();
    let mut scanned = 0;
    let curated_keys = stack.keys("curated").await;
    assert!(curated_keys.iter().any(|k| k.starts_with("_rejects/")), "the canary row dropped by curate is listed");
    let audit_keys = stack.keys("audit").await;
    assert!(audit_keys.iter().any(|k| k.starts_with("records/")), "the run wrote audit records: {audit_keys:?}");
    for bucket in ["curated", "models", "scored", "audit"] {
        for (key, version) in versions(bucket).await {
            let body = get(stack.bucket(bucket), key.clone(), version.clone()).await;
            found.extend(hits(&format!("{bucket}/{key}@{version:?}"), &texts(body)));
            scanned += 1;
        }
    }
    // The gateway's row rejects live beside the raw data; they carry no values either.
    for (key, version) in versions("raw").await.into_iter().filter(|(k, _)| k.contains("reject")) {
        found.extend(hits(&format!("raw/{key}"), &texts(get(stack.bucket("raw"), key.clone(), version).await)));
        scanned += 1;
    }
    // Whatever is left on the workers' queues and dead-letter queues (nothing but the
    // control message, when the chain succeeded), read until each queue is empty.
    const CONTROL: &str = "queue-scan-control";
    let control_dlq = dep.queue_url(&dep.names.dlq("score")).await.unwrap();
    dep.sqs.send_message().queue_url(control_dlq).message_body(CONTROL).send().await.unwrap();
    let mut left_on_queues = Vec::new();
    for worker in WORKERS {
        for queue in [dep.names.queue(worker), dep.names.dlq(worker)] {
            let url = dep.queue_url(&queue).await.unwrap();
            loop {
                let out = dep
                    .sqs
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .visibility_timeout(60)
                    .wait_time_seconds(1)
                    .send()
                    .await
                    .unwrap();
                if out.messages().is_empty() {
                    break;
                }
                left_on_queues.extend(out.messages().iter().filter_map(|m| m.body().map(str::to_string)));
            }
        }
    }
    assert!(left_on_queues.iter().any(|m| m == CONTROL), "the queue scan must see the control message");
    found.extend(hits("queues and DLQs", &left_on_queues));
    let bus: Vec<String> = events.iter().map(|e| e.event.to_string()).collect();
    found.extend(hits("events", &bus));
    let log_text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    found.extend(hits("worker logs", std::slice::from_ref(&log_text)));

    assert!(found.is_empty(), "PII canaries leaked: {found:?}");
    // Not vacuous: curated (2) + DQ reports (2) + curate rejects (2) + models (3) + scored
    // (1) + audit records (3) and checkpoints, events of every zone, and the workers' logs
    // were all scanned.
    assert!(scanned >= 13, "scanned {scanned} objects");
    for schema in ["RawAccepted", "DatasetCurated", "ModelTrained", "ModelPromoted", "RecordsScored"] {
        assert!(events.iter().any(|e| e.schema == schema), "no {schema} seen");
    }
    assert!(log_text.contains("curated") && log_text.contains("mlsec_curate"), "worker logs were captured");
}
