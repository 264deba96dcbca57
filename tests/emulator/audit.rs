//! The audit chain (Z9) against the emulator: records in S3, the head in DynamoDB,
//! checkpoints signed in KMS and verified with the public key alone. Every kind of
//! tampering is made in the bucket, as an attacker with write access would, and named.

use std::{sync::Arc, time::Instant};

use aws_sdk_s3::primitives::ByteStream;
use mlsec_aws::{
    Deployment,
    audit::{AuditChain, CheckpointPolicy},
    kms::KmsKeys,
    s3::S3Store,
};
use mlsec_cli::audit::{Chain, load, load_offline, save};
use mlsec_events::ObjectRef;
use mlsec_events::audit::{Actor, AuditAction, AuditEntry, AuditRecord, Subject};
use mlsec_lake::audit::{Checkpoint, Fault, checkpoint_key, record_key};
use mlsec_runtime::{
    WorkError,
    ports::{AuditLog, BucketRef, ByteChunks, KeyService, ObjectHead, ObjectStore, Result as PortResult},
};
use mlsec_tests::Stack;

async fn writer(dep: &Deployment, name: &str, every: u64) -> AuditChain {
    AuditChain::new(
        dep.dynamodb.clone(),
        dep.names.table("audit"),
        Arc::new(S3Store::new(dep.s3.clone())),
        Arc::new(KmsKeys::new(dep.kms.clone())),
        dep.bucket_ref("audit").await.unwrap(),
        dep.key_arn("audit_signing").await.unwrap(),
        name,
        Actor::worker(dep.names.role(name)),
        CheckpointPolicy { every, seconds: 3600 },
    )
}

fn entry(i: u64) -> AuditEntry {
    AuditEntry::new(AuditAction::ModelTrained, Subject::new("model", format!("m@{i}")), format!("decision-{i}"))
        .reason("candidate")
        .attribute("auc", "0.86")
}

async fn put(dep: &Deployment, key: &str, body: Vec<u8>) {
    let bucket = dep.names.bucket("audit");
    dep.s3.put_object().bucket(bucket).key(key).body(ByteStream::from(body)).send().await.unwrap();
}

async fn delete(dep: &Deployment, key: &str) {
    dep.s3.delete_object().bucket(dep.names.bucket("audit")).key(key).send().await.unwrap();
}

async fn get(dep: &Deployment, key: &str) -> Vec<u8> {
    let out = dep.s3.get_object().bucket(dep.names.bucket("audit")).key(key).send().await.unwrap();
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

async fn faults(dep: &Deployment) -> Vec<Fault> {
    load(dep).await.unwrap().verify(1).faults
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_tampering_with_the_stored_chain_is_detected_and_named() {
    let stack = Stack::new("audit-tamper").await;
    let dep = &stack.dep;
    let (a, b) = (writer(dep, "train", 4).await, writer(dep, "govern", 4).await);
    for i in 1..=14u64 {
        let w = if i.is_multiple_of(2) { &a } else { &b };
        assert_eq!(w.append(entry(i)).await.unwrap(), i);
    }
    // A redelivered decision is not recorded twice.
    assert_eq!(a.append(entry(2)).await.unwrap(), 2);
    let chain = load(dep).await.unwrap();
    let report = chain.verify(1);
    assert!(report.ok(), "{:?}", report.faults);
    assert_eq!((report.records, report.checkpoints), (14, 3), "checkpoints at 4, 8 and 12");
    // Offline: a downloaded copy and the public key only.
    let dir = tempdir("audit-copy");
    save(&chain, &dir).unwrap();
    assert!(load_offline(&dir, None).unwrap().verify(1).ok());

    let key = |seq: u64| record_key(if seq.is_multiple_of(2) { "train" } else { "govern" }, seq);
    // One byte of record 5 changed.
    let original = get(dep, &key(5)).await;
    let mut edited = original.clone();
    edited[original.len() / 2] ^= 1;
    put(dep, &key(5), edited).await;
    assert_eq!(faults(dep).await.first(), Some(&Fault::Edited { seq: 5, key: key(5) }));
    put(dep, &key(5), original).await;

    // Record 6 deleted.
    let six = get(dep, &key(6)).await;
    delete(dep, &key(6)).await;
    assert_eq!(faults(dep).await, vec![Fault::Missing { seq: 6, count: 1 }]);
    put(dep, &key(6), six.clone()).await;

    // A forged record 7, linked to record 6 with a recomputed hash, under another prefix.
    let prev = AuditRecord::decode(&six).unwrap().hash;
    let forged = AuditEntry::new(AuditAction::ModelPromoted, Subject::new("model", "evil@1"), "forged");
    let (_, bytes) = AuditRecord::seal(7, prev, 0, forged).unwrap();
    put(dep, &record_key("ingest", 7), bytes).await;
    assert_eq!(faults(dep).await, vec![Fault::Inserted { seq: 7, key: record_key("ingest", 7) }]);
    delete(dep, &record_key("ingest", 7)).await;

    // Records 9 and 10 swapped.
    let (nine, ten) = (get(dep, &key(9)).await, get(dep, &key(10)).await);
    put(dep, &key(9), ten.clone()).await;
    put(dep, &key(10), nine.clone()).await;
    let f = faults(dep).await;
    assert!(matches!(f.first(), Some(Fault::Reordered { seq: 9, claims: 10, .. })), "{f:?}");
    put(dep, &key(9), nine).await;
    put(dep, &key(10), ten).await;

    // The tail truncated past a checkpoint: records 11..14 gone.
    let tail: Vec<(String, Vec<u8>)> = {
        let mut t = Vec::new();
        for seq in 11..=14 {
            t.push((key(seq), get(dep, &key(seq)).await));
        }
        t
    };
    for (k, _) in &tail {
        delete(dep, k).await;
    }
    assert_eq!(faults(dep).await, vec![Fault::Truncated { after_checkpoint: Some(8), chain_end: 10, expected: 14 }]);
    // Everything after the last checkpoint (12) deleted: the head still says 14.
    for (k, body) in &tail[..2] {
        put(dep, k, body.clone()).await;
    }
    assert_eq!(faults(dep).await, vec![Fault::Truncated { after_checkpoint: Some(12), chain_end: 12, expected: 14 }]);
    for (k, body) in &tail[2..] {
        put(dep, k, body.clone()).await;
    }
    assert!(faults(dep).await.is_empty(), "restored");

    // A checkpoint signed with another key (not the audit signing key).
    let other = dep
        .kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap();
    let other = other.key_metadata().unwrap().arn().unwrap().to_string();
    let cp: Checkpoint = serde_json::from_slice(&get(dep, &checkpoint_key(8)).await).unwrap();
    let sig = KmsKeys::new(dep.kms.clone()).sign_message(&other, &cp.message()).await.unwrap();
    let forged_cp = Checkpoint { signature: hex::encode(sig), key_id: other, ..cp };
    put(dep, &checkpoint_key(8), serde_json::to_vec(&forged_cp).unwrap()).await;
    let f = faults(dep).await;
    assert!(matches!(f.as_slice(), [Fault::BadCheckpoint { seq: 8, .. }]), "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_make_one_linear_chain_without_gaps_or_forks() {
    // moto's threaded server lets two conditional writes interleave; DynamoDB does not.
    // A serial moto gives the conditional writes DynamoDB's isolation (scripts/test.sh).
    let endpoint = std::env::var("MLSEC_SERIAL_ENDPOINT")
        .expect("MLSEC_SERIAL_ENDPOINT is not set: run the emulator tests with scripts/test.sh");
    let stack = Stack::on_endpoint("audit-race", &endpoint).await;
    let dep = &stack.dep;
    let (writers, per_writer) = (8u64, 50u64);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let chain = writer(dep, &format!("w{w}"), 50).await;
        tasks.spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..per_writer {
                seqs.push(chain.append(entry(w * 1000 + i)).await.unwrap());
            }
            seqs
        });
    }
    let mut seqs: Vec<u64> = tasks.join_all().await.into_iter().flatten().collect();
    let seconds = started.elapsed().as_secs_f64();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=writers * per_writer).collect::<Vec<_>>(), "every position taken exactly once");
    let chain: Chain = load(dep).await.unwrap();
    let report = chain.verify(1);
    assert!(report.ok(), "{:?}", report.faults);
    assert_eq!(report.records, writers * per_writer);
    let decisions: std::collections::HashSet<String> =
        chain.decoded().into_iter().map(|r| r.entry.decision_id).collect();
    assert_eq!(decisions.len() as u64, writers * per_writer, "one record per decision");
    eprintln!("{} appends by {writers} writers in {seconds:.1} s", writers * per_writer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_and_replay_records_carry_the_callers_arn_from_sts() {
    let stack = Stack::new("audit-who").await;
    let (ana, ana_arn) = stack.as_person("ana").await;
    let (bruno, bruno_arn) = stack.as_person("bruno").await;
    assert_ne!(ana_arn, bruno_arn);
    let (who, _) = mlsec_cli::ops::operator(&ana).await.unwrap();
    assert_eq!(who.id, ana_arn, "STS names the IAM user behind the access key");
    // Bruno replays an (empty) DLQ: the record names him, whatever he might type.
    let opts = mlsec_cli::dlq::ReplayOptions {
        filters: Default::default(),
        rate: 50,
        max: 10,
        dry_run: false,
        wait_seconds: 0,
    };
    mlsec_cli::dlq::replay(&bruno, "score", &opts).await.unwrap();
    let records = load(&stack.dep).await.unwrap().decoded();
    let replay = records.iter().find(|r| r.entry.action == AuditAction::DlqReplayed).expect("a replay record");
    assert_eq!(replay.entry.actor.id, bruno_arn);
    assert_eq!(replay.entry.subject.id, "score");
    // A release is refused for an unknown content, and nothing is recorded for it.
    assert!(mlsec_cli::ops::quarantine_release(&ana, "transactions_training", "00", "x").await.is_err());
    assert_eq!(load(&stack.dep).await.unwrap().decoded().len(), 1);
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mlsec-{name}-{}-{}", std::process::id(), mlsec_runtime::now_ms()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// S3, except that the first record put fails: a worker that crashed after claiming its
/// position and before storing the record.
struct LosesFirstRecordPut {
    s3: S3Store,
    failed: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl ObjectStore for LosesFirstRecordPut {
    async fn head(&self, b: &str, k: &str, v: Option<&str>) -> PortResult<ObjectHead> {
        self.s3.head(b, k, v).await
    }
    async fn tags(&self, b: &str, k: &str, v: Option<&str>) -> PortResult<Vec<(String, String)>> {
        self.s3.tags(b, k, v).await
    }
    async fn get_optional(&self, b: &str, k: &str, v: Option<&str>) -> PortResult<Option<bytes::Bytes>> {
        self.s3.get_optional(b, k, v).await
    }
    async fn get_stream(&self, b: &str, k: &str, v: Option<&str>) -> PortResult<ByteChunks> {
        self.s3.get_stream(b, k, v).await
    }
    async fn list(&self, b: &str, p: &str) -> PortResult<Vec<String>> {
        self.s3.list(b, p).await
    }
    async fn put(&self, d: &BucketRef, k: &str, body: bytes::Bytes, ct: &str) -> PortResult<ObjectRef> {
        if k.starts_with("records/") && !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(WorkError::transient("s3:PutObject", "connection reset (injected)"));
        }
        self.s3.put(d, k, body, ct).await
    }
    async fn put_file(&self, d: &BucketRef, k: &str, p: &std::path::Path, ct: &str) -> PortResult<ObjectRef> {
        self.s3.put_file(d, k, p, ct).await
    }
    async fn copy(&self, s: &ObjectRef, d: &BucketRef, k: &str) -> PortResult<ObjectRef> {
        self.s3.copy(s, d, k).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_claimed_but_not_stored_is_stored_by_the_writers_retry() {
    let stack = Stack::new("audit-crash").await;
    let dep = &stack.dep;
    let store = Arc::new(LosesFirstRecordPut { s3: S3Store::new(dep.s3.clone()), failed: Default::default() });
    let chain = AuditChain::new(
        dep.dynamodb.clone(),
        dep.names.table("audit"),
        store,
        Arc::new(KmsKeys::new(dep.kms.clone())),
        dep.bucket_ref("audit").await.unwrap(),
        dep.key_arn("audit_signing").await.unwrap(),
        "ingest",
        Actor::worker(dep.names.role("ingest")),
        CheckpointPolicy { every: 100, seconds: 3600 },
    );
    let err = chain.append(entry(1)).await.unwrap_err();
    assert_eq!(err.class(), mlsec_runtime::ErrorClass::Transient);
    // Position 1 is taken and its record is nowhere in the bucket: the chain has a hole.
    assert_eq!(faults(dep).await, vec![Fault::Truncated { after_checkpoint: None, chain_end: 0, expected: 1 }]);
    // Another instance of the same worker appends meanwhile.
    let other = writer(dep, "ingest", 100).await;
    assert_eq!(other.append(entry(2)).await.unwrap(), 2);
    // The first message is retried (by either instance): the record is stored from its claim.
    assert_eq!(other.append(entry(1)).await.unwrap(), 1);
    assert_eq!(chain.append(entry(1)).await.unwrap(), 1);
    let report = load(dep).await.unwrap().verify(1);
    assert!(report.ok(), "{:?}", report.faults);
    assert_eq!(report.records, 2);
}
