//! The operators' CLI as a library, so the emulator tests drive exactly what `mlsec`
//! runs: building workers, the local drivers, `drop`, `subscribe`, `status`, `dlq`,
//! `quarantine`, `models`, `audit` and the demo.

pub mod audit;
pub mod bench;
pub mod demo;
pub mod dlq;
pub mod faults;
pub mod lineage;
pub mod local;
pub mod models;
pub mod ops;
