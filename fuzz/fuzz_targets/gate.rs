//! Fuzzes the gateway's validation path: any bytes, cut into chunks at fuzzer-chosen
//! places, through the gate of the training contract (gzip, CSV and JSON Lines allowed).
//! The gate must return a verdict, never panic, and keep its books:
//! accepted + rejected = rows read.
#![no_main]

use std::{path::Path, sync::LazyLock};

use libfuzzer_sys::fuzz_target;
use mlsec_ingest::validate::Gate;
use mlsec_runtime::contract::DatasetContract;

static CONTRACT: LazyLock<DatasetContract> = LazyLock::new(|| {
    let yaml = include_str!("../../contracts/transactions_training.yaml");
    let mut c = DatasetContract::parse(Path::new("transactions_training.yaml"), yaml).expect("the contract parses");
    // Small limits so that the fuzzer reaches them.
    c.ingest.max_line_bytes = 512;
    c.ingest.max_rows = 64;
    c.ingest.max_decompressed_bytes = 1 << 16;
    c
});

/// 2026-11-28T00:00:00Z: a fixed "now" keeps runs reproducible.
const NOW_MS: i64 = 1_795_824_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, body)) = data.split_first() else { return };
    let Ok(mut gate) = Gate::new(&CONTRACT, NOW_MS, vec![]) else { return };
    let step = usize::from(cut % 64) + 1;
    for chunk in body.chunks(step) {
        if gate.push(chunk).is_err() {
            return;
        }
    }
    if let Ok(accepted) = gate.finish() {
        assert_eq!(accepted.rows + accepted.rejects.len() as u64, accepted.rows_read);
        assert!(accepted.rows_read <= 64);
    }
});
