//! What arrives on a worker's queue: an EventBridge event (the SQS message body) whose
//! `detail` is either an S3 "Object Created" notification (first hop, AWS JSON) or a
//! pipeline [`Envelope`] (every later hop, Avro inside).

use mlsec_events::{Envelope, PipelineEvent, sha256_hex};
use serde::Deserialize;

use crate::WorkError;

/// One message taken from a queue.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// SQS message id (what `batchItemFailures` reports).
    pub message_id: String,
    pub body: InboundBody,
    /// The EventBridge `source` of the message.
    pub source: String,
}

/// The decoded body of a message.
#[derive(Debug, Clone)]
pub enum InboundBody {
    ObjectCreated(S3ObjectCreated),
    Pipeline(Envelope),
}

/// The fields of an S3 "Object Created" EventBridge event that the gateway uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3ObjectCreated {
    pub bucket: String,
    pub key: String,
    pub size: Option<i64>,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    /// The principal that wrote the object, as S3 reports it.
    pub requester: Option<String>,
    /// The event's `time` (when the object was created), in ms since the epoch.
    pub event_time_ms: Option<i64>,
}

#[derive(Deserialize)]
struct EventBridgeEvent {
    #[serde(rename = "detail-type")]
    detail_type: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    time: Option<String>,
    detail: serde_json::Value,
}

#[derive(Deserialize)]
struct S3Detail {
    bucket: S3Bucket,
    object: S3Object,
    #[serde(default)]
    requester: Option<String>,
}
#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}
#[derive(Deserialize)]
struct S3Object {
    key: String,
    #[serde(default)]
    size: Option<i64>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default, rename = "version-id")]
    version_id: Option<String>,
}

impl Inbound {
    /// Parses a message body. Anything that is not an EventBridge event carrying an S3
    /// notification or a pipeline envelope is a permanent failure.
    pub fn parse(message_id: impl Into<String>, body: &str) -> Result<Self, WorkError> {
        let event: EventBridgeEvent =
            serde_json::from_str(body).map_err(|e| WorkError::permanent("not_an_eventbridge_event", e))?;
        let body = if event.source == "aws.s3" {
            if event.detail_type != "Object Created" {
                return Err(WorkError::permanent("unexpected_s3_event", event.detail_type));
            }
            let d: S3Detail =
                serde_json::from_value(event.detail).map_err(|e| WorkError::permanent("corrupt_s3_event", e))?;
            InboundBody::ObjectCreated(S3ObjectCreated {
                bucket: d.bucket.name,
                key: d.object.key,
                size: d.object.size,
                etag: d.object.etag,
                version_id: d.object.version_id,
                requester: d.requester,
                event_time_ms: event.time.as_deref().and_then(|t| crate::time::parse_rfc3339_ms(t.as_bytes())),
            })
        } else {
            let env = Envelope::from_value(event.detail)?;
            if env.schema != event.detail_type {
                return Err(WorkError::permanent(
                    "routing_mismatch",
                    format!("detail-type {} but envelope schema {}", event.detail_type, env.schema),
                ));
            }
            InboundBody::Pipeline(env)
        };
        Ok(Self { message_id: message_id.into(), body, source: event.source })
    }

    /// The EventBridge `source` (`<prefix>.<worker>`, `<prefix>.operator` or `aws.s3`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The pipeline event's schema name (`None` for an S3 notification).
    pub fn schema(&self) -> Option<&str> {
        match &self.body {
            InboundBody::Pipeline(env) => Some(&env.schema),
            InboundBody::ObjectCreated(_) => None,
        }
    }

    /// A stable identity of the *input*, for de-duplication and for deriving the ids of
    /// emitted events. S3 notifications are identified by bucket, key, version and eTag
    /// (the EventBridge `id` of S3 events is not reliable on every stack).
    pub fn input_id(&self) -> String {
        match &self.body {
            InboundBody::ObjectCreated(o) => sha256_hex(
                format!(
                    "s3://{}/{}?version={}&etag={}",
                    o.bucket,
                    o.key,
                    o.version_id.as_deref().unwrap_or(""),
                    o.etag.as_deref().unwrap_or("")
                )
                .as_bytes(),
            ),
            InboundBody::Pipeline(env) => env.event_id.clone(),
        }
    }

    /// The pipeline event inside, decoded as `E`; any other content is a permanent failure,
    /// and so is an event whose `source` is not the one emitter the topology declares for
    /// `E` (a worker role that publishes another zone's event type is refused here as well
    /// as by its `events:detail-type` policy).
    pub fn event<E: PipelineEvent>(&self) -> Result<E, WorkError> {
        match &self.body {
            InboundBody::Pipeline(env) => {
                let emitters = crate::topology::Topology::shared().emitters(E::NAME);
                let from = self.source.rsplit_once('.').map_or("", |(_, w)| w);
                if !emitters.contains(&from) {
                    return Err(WorkError::permanent(
                        "forged_source",
                        format!("{} from source {}; its emitters are {emitters:?}", E::NAME, self.source),
                    ));
                }
                Ok(env.open::<E>()?)
            }
            InboundBody::ObjectCreated(_) => {
                Err(WorkError::permanent("unexpected_schema", format!("expected {}, got an S3 notification", E::NAME)))
            }
        }
    }

    /// The S3 notification inside; any other content is a permanent failure.
    pub fn object_created(&self) -> Result<&S3ObjectCreated, WorkError> {
        match &self.body {
            InboundBody::ObjectCreated(o) => Ok(o),
            InboundBody::Pipeline(env) => Err(WorkError::permanent(
                "unexpected_schema",
                format!("expected an S3 notification, got {}", env.schema),
            )),
        }
    }
}

/// Wraps `detail` the way EventBridge delivers it to an SQS target (used by tests and
/// by `dlq replay` fixtures).
pub fn eventbridge_body(source: &str, detail_type: &str, detail: serde_json::Value) -> String {
    serde_json::json!({
        "version": "0",
        "id": "00000000-0000-0000-0000-000000000000",
        "detail-type": detail_type,
        "source": source,
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_s3_object_created_event() {
        let body = include_str!("../fixtures/s3-object-created.json");
        let m = Inbound::parse("m1", body).unwrap();
        let o = m.object_created().unwrap();
        assert_eq!(o.bucket, "mlsec-landing");
        assert_eq!(o.key, "bank-core/transactions_training/2026-11-28.csv");
        assert_eq!(o.size, Some(1024));
        assert_eq!(m.input_id(), Inbound::parse("m2", body).unwrap().input_id());
    }

    #[test]
    fn garbage_is_a_permanent_failure_with_a_reason() {
        for body in ["", "not json", "{}", r#"{"detail-type":"X","source":"mlsec","detail":{"a":1}}"#] {
            let err = Inbound::parse("m", body).unwrap_err();
            assert_eq!(err.class(), crate::ErrorClass::Permanent, "{body}");
        }
    }
}
