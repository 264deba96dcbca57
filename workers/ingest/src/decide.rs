//! The gateway's decisions about one object that need no AWS: which contract, the size
//! limit, who may write, what the gate said, and the rejected-row threshold. The worker
//! ([`crate::IngestWorker`]) and `mlsec check` (offline, before a drop) both call these,
//! so the check reaches the verdict the pipeline would.

use mlsec_runtime::contract::{Contracts, DatasetContract};

use crate::{
    reason::{ReasonCode, Rejection},
    validate::{Accepted, Gate},
};

/// Chunk size `check_object` feeds the gate with (S3 streams in chunks of this order; the
/// gate's verdict does not depend on the chunking).
const CHECK_CHUNK: usize = 64 * 1024;

/// An object larger than the contract allows (or of a negative announced size), before a
/// byte is read.
pub fn too_large(contract: &DatasetContract, size: i64) -> Option<Rejection> {
    (size < 0 || size as u64 > contract.ingest.max_object_bytes).then(|| {
        Rejection::new(ReasonCode::TooLarge, format!("{size} bytes exceed the contract's limit"))
            .rule(format!("maxObjectBytes={}", contract.ingest.max_object_bytes))
    })
}

/// The object's writer, when the contract's `allowedWriters` does not name it.
pub fn untrusted(contract: &DatasetContract, requester: Option<&str>, own_account: Option<&str>) -> Option<Rejection> {
    (!contract.ingest.writer_allowed(requester, own_account)).then(|| {
        Rejection::new(ReasonCode::UntrustedSource, "the requester may not write this dataset's landing prefix")
            .rule("allowedWriters")
    })
}

/// The object-level verdict from the gate's result and the writer check: the contract and
/// what the gate accepted, or the one rejection an approver should see.
pub fn object_verdict<'c, W>(
    contract: Option<&'c DatasetContract>,
    verdict: Result<Accepted<W>, Rejection>,
    untrusted: Option<&Rejection>,
) -> Result<(&'c DatasetContract, Accepted<W>), Rejection> {
    match (contract, verdict) {
        (Some(c), Ok(accepted)) => Ok((c, accepted)),
        (_, verdict) => Err(match (verdict, untrusted.cloned()) {
            // What the content is outranks who sent it: malware is never releasable.
            (Err(r), _) if r.reason_code.malware_class() => r,
            // The approver must see both: a release covers the trust decision only, and
            // the released copy is checked again and refused for its content.
            (Err(r), Some(mut u)) => {
                u.detail = format!("{}; the content was refused too: {}", u.detail, r.reason_code.as_str());
                u
            }
            (_, Some(u)) => u,
            (Err(r), None) => r,
            (Ok(_), None) => Rejection::new(ReasonCode::UnknownSource, "the landing prefix matches no data contract"),
        }),
    }
}

/// What quarantines an object the gate accepted: an untrusted writer, else more rejected
/// rows than the contract's ratio allows.
pub fn policy_rejection<W>(
    contract: &DatasetContract,
    accepted: &Accepted<W>,
    untrusted: Option<Rejection>,
) -> Option<Rejection> {
    let names: Vec<String> = contract.columns.iter().map(|c| c.name.clone()).collect();
    untrusted.or_else(|| accepted.over_threshold(&contract.ingest, &names))
}

/// Who wrote the object, for the `allowedWriters` check.
#[derive(Debug, Clone, Copy)]
pub enum Writer<'a> {
    /// A writer the contract admits (`mlsec drop` from the deployment's own account).
    Trusted,
    /// The S3 event's requester and the deployment's account.
    Requester { requester: Option<&'a str>, own_account: Option<&'a str> },
}

/// An object the gateway would quarantine: the rejection, and what the gate read when it
/// parsed the object (rows, rejected rows) and the policy refused it.
pub type Refused = Box<(Rejection, Option<Accepted<Vec<u8>>>)>;

/// The gateway's whole verdict on an object in memory landing at `key`, with no AWS and no
/// ledger (content seen before and recorded releases are the worker's business): the
/// contract it falls under and what the gate accepted, or the quarantine rejection.
pub fn check_object<'c>(
    contracts: &'c Contracts,
    key: &str,
    body: &[u8],
    writer: Writer<'_>,
    now_ms: i64,
) -> Result<(&'c DatasetContract, Accepted<Vec<u8>>), Refused> {
    let size = i64::try_from(body.len()).unwrap_or(i64::MAX);
    if let Some(r) = refused_before_reading(contracts, key, size, writer) {
        return Err(Box::new((r, None)));
    }
    let contract = contracts.for_landing_key(key);
    let untrusted = writer_rejection(contract, writer);
    let verdict = match contract {
        Some(c) => gate(c, key, body, now_ms),
        None => Err(Rejection::new(ReasonCode::UnknownSource, "the landing prefix matches no data contract")),
    };
    let (c, accepted) = object_verdict(contract, verdict, untrusted.as_ref()).map_err(|r| Box::new((r, None)))?;
    match policy_rejection(c, &accepted, untrusted) {
        Some(r) => Err(Box::new((r, Some(accepted)))),
        None => Ok((c, accepted)),
    }
}

/// What the landing key, the object's size and its writer alone decide, before a byte is
/// read (the gateway decides the size from HeadObject): no contract, or too large, with an
/// untrusted writer outranking the size as [`object_verdict`] orders them. `mlsec check`
/// calls it with a file's size before reading the file.
pub fn refused_before_reading(contracts: &Contracts, key: &str, size: i64, writer: Writer<'_>) -> Option<Rejection> {
    let contract = contracts.for_landing_key(key);
    let refused = match contract {
        None => Rejection::new(ReasonCode::UnknownSource, "the landing prefix matches no data contract"),
        Some(c) => too_large(c, size)?,
    };
    let untrusted = writer_rejection(contract, writer);
    object_verdict::<Vec<u8>>(contract, Err(refused), untrusted.as_ref()).err()
}

/// The writer check for `writer` under `contract` (a trusted writer is never refused).
fn writer_rejection(contract: Option<&DatasetContract>, writer: Writer<'_>) -> Option<Rejection> {
    match (contract, writer) {
        (Some(c), Writer::Requester { requester, own_account }) => untrusted(c, requester, own_account),
        _ => None,
    }
}

fn gate(c: &DatasetContract, key: &str, body: &[u8], now_ms: i64) -> Result<Accepted<Vec<u8>>, Rejection> {
    let lineage = vec![
        ("mlsec.contract".to_string(), format!("{}@{}", c.id, c.version)),
        ("mlsec.source".to_string(), format!("local:{key}")),
    ];
    let mut gate = Gate::new(c, now_ms, lineage)?;
    for chunk in body.chunks(CHECK_CHUNK) {
        gate.push(chunk)?;
    }
    gate.finish()
}
