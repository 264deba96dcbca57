//! The worker runtime shared by every zone.
//!
//! - [`ports`]: the narrow traits zone logic talks to (object store, event publisher,
//!   model registry, idempotency, key service). AWS adapters live in `mlsec-aws`;
//!   recording fakes for unit tests live in `fakes` (feature `testing`).
//! - [`error`]: every failure carries a class that decides what happens to the message.
//! - [`inbound`]: what a queue message is (an EventBridge event wrapping either an S3
//!   notification or a pipeline [`mlsec_events::Envelope`]).
//! - [`batch`]: the runtime-agnostic batch core; [`lambda`]: the Lambda driver. The local
//!   SQS driver is in `mlsec-aws` because it needs the SDK.
//! - [`contract`] and [`topology`]: the declarations every decision comes from.
//! - `doccheck` (feature `testing`): the zone documents' checks of the tests they cite.

pub mod batch;
pub mod contract;
#[cfg(any(test, feature = "testing"))]
pub mod doccheck;
pub mod error;
#[cfg(any(test, feature = "testing"))]
pub mod fakes;
pub mod inbound;
pub mod lambda;
pub mod ports;
pub mod registry;
pub mod sample;
pub mod spill;
pub mod telemetry;
pub mod time;
pub mod topology;

pub use batch::{BatchReport, Handler, Outcome, process_batch};
pub use error::{ErrorClass, WorkError};
pub use inbound::Inbound;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `YYYY-MM-DD` (UTC) of a millisecond timestamp (civil-from-days, proleptic Gregorian).
pub fn utc_date(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod date_tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc_date(0), "1970-01-01");
        assert_eq!(super::utc_date(1_764_288_000_000), "2025-11-28");
        assert_eq!(super::utc_date(951_782_400_000), "2000-02-29");
    }
}
