//! EventBridge publisher: pipeline envelopes as `Detail`, schema name as `detail-type`,
//! batches of at most 10 entries; any failed entry fails the publish (the input is then
//! redelivered and the same deterministic event ids are published again).

use async_trait::async_trait;
use aws_sdk_eventbridge::{Client, types::PutEventsRequestEntry};
use mlsec_events::Envelope;
use mlsec_runtime::{
    WorkError,
    ports::{EventPublisher, Result},
};

use crate::errors::classify;

/// EventBridge accepts at most 10 entries per `PutEvents` call.
pub const MAX_ENTRIES_PER_PUT: usize = 10;
/// EventBridge's limit on the size of one entry.
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

pub struct EventBridgePublisher {
    client: Client,
    bus: String,
    source: String,
}

impl EventBridgePublisher {
    pub fn new(client: Client, bus: String, source: String) -> Self {
        Self { client, bus, source }
    }
}

#[async_trait]
impl EventPublisher for EventBridgePublisher {
    async fn publish(&self, events: &[Envelope]) -> Result<()> {
        for chunk in events.chunks(MAX_ENTRIES_PER_PUT) {
            let mut entries = Vec::with_capacity(chunk.len());
            for env in chunk {
                let detail = env.to_json();
                if detail.len() + env.schema.len() + self.source.len() > MAX_ENTRY_BYTES {
                    // Events are claim checks; one this large is a bug, not bad input.
                    return Err(WorkError::fatal(format!("event {} exceeds {MAX_ENTRY_BYTES} bytes", env.event_id)));
                }
                entries.push(
                    PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus)
                        .source(&self.source)
                        .detail_type(&env.schema)
                        .detail(detail)
                        .build(),
                );
            }
            let out = self
                .client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| classify("events:PutEvents", e))?;
            if out.failed_entry_count() > 0 {
                let reasons: Vec<String> = out
                    .entries()
                    .iter()
                    .filter_map(|e| e.error_code().map(|c| format!("{c}: {}", e.error_message().unwrap_or(""))))
                    .collect();
                return Err(WorkError::transient("events:PutEvents", reasons.join("; ")));
            }
        }
        Ok(())
    }
}
