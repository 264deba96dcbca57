//! The operators' CLI as a library, so the emulator tests drive exactly what `mlsec`
//! runs: building workers, the local drivers, `drop`, `subscribe`, `status`, `dlq`,
//! `quarantine`, `models`, `audit` and the demo.

pub mod audit;
pub mod bench;
pub mod check;
pub mod demo;
pub mod dlq;
pub mod faults;
#[cfg(test)]
mod golden_tests;
pub mod infer;
pub mod lineage;
pub mod local;
pub mod models;
pub mod ops;
pub mod output;
