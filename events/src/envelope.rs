//! The JSON envelope that carries an Avro event as an EventBridge `Detail`.

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde::{Deserialize, Serialize};

use crate::{DatasetRole, EventError, PipelineEvent, codec};

/// Security zone of the data an event announces (Z0–Z9 in the architecture).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Zone {
    /// Z2: raw lake, original bytes + typed Parquet.
    Raw,
    /// Z2 side door: rejected objects and their reasons.
    Quarantine,
    /// Z3: curated, pseudonymised data.
    Curated,
    /// Z4: model factory.
    ModelFactory,
    /// Z5: model registry and governance.
    Registry,
    /// Z6: serving (batch scoring).
    Serving,
    /// Z8/Z9: the pipeline's own operations (a message parked for good).
    Operations,
}

/// EventBridge `Detail` of a pipeline event: routing fields in clear, payload as base64
/// of the Avro single-object encoding. Routing fields are copies of payload fields and
/// are checked against the payload on [`Envelope::open`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Schema name, e.g. `RawAccepted` (also the EventBridge `detail-type`).
    pub schema: String,
    /// Hex CRC-64-AVRO fingerprint of the writer schema (also inside the payload).
    pub fingerprint: String,
    pub event_id: String,
    pub correlation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    pub zone: Zone,
    /// Routing copy of the dataset role, for events that have one (`DatasetCurated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<DatasetRole>,
    /// Base64 of the Avro single-object encoding.
    pub payload: String,
}

impl Envelope {
    /// Encodes `event` and wraps it.
    pub fn wrap<E: PipelineEvent>(event: &E) -> Result<Self, EventError> {
        let bytes = codec::encode_single_object(E::schema(), event)?;
        Ok(Self {
            schema: E::NAME.to_string(),
            fingerprint: hex::encode(codec::fingerprint_of(E::schema())),
            event_id: event.event_id().to_string(),
            correlation_id: event.correlation_id().to_string(),
            dataset: event.dataset().map(str::to_string),
            zone: E::ZONE,
            role: event.role(),
            payload: B64.encode(bytes),
        })
    }

    /// Parses an envelope from its JSON text.
    pub fn from_json(json: &str) -> Result<Self, EventError> {
        Ok(serde_json::from_str(json)?)
    }

    /// Parses an envelope from an already parsed JSON value (an EventBridge `detail`).
    pub fn from_value(value: serde_json::Value) -> Result<Self, EventError> {
        Ok(serde_json::from_value(value)?)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an envelope of strings always serialises")
    }

    /// Decodes the payload as `E`: the schema name, the writer fingerprint and the
    /// routing fields must all agree, else the event is rejected permanently.
    pub fn open<E: PipelineEvent>(&self) -> Result<E, EventError> {
        if self.schema != E::NAME {
            return Err(EventError::WrongSchema { expected: E::NAME.into(), found: self.schema.clone() });
        }
        if self.zone != E::ZONE {
            return Err(EventError::RoutingMismatch { field: "zone" });
        }
        let bytes = B64.decode(self.payload.as_bytes())?;
        let event: E = codec::decode_single_object(E::schema(), E::released(), &bytes)?;
        if bytes.get(2..10).map(hex::encode).as_deref() != Some(self.fingerprint.as_str()) {
            return Err(EventError::RoutingMismatch { field: "fingerprint" });
        }
        if event.event_id() != self.event_id {
            return Err(EventError::RoutingMismatch { field: "event_id" });
        }
        if event.correlation_id() != self.correlation_id {
            return Err(EventError::RoutingMismatch { field: "correlation_id" });
        }
        if event.dataset() != self.dataset.as_deref() {
            return Err(EventError::RoutingMismatch { field: "dataset" });
        }
        if event.role() != self.role {
            return Err(EventError::RoutingMismatch { field: "role" });
        }
        Ok(event)
    }
}

impl Envelope {
    /// Decodes the payload with whichever catalogue schema the envelope names and returns
    /// it as JSON (for subscribers and operators' tools).
    pub fn decode_json(&self) -> Result<serde_json::Value, EventError> {
        use crate::types::*;
        fn json<E: PipelineEvent>(env: &Envelope) -> Result<serde_json::Value, EventError> {
            Ok(serde_json::to_value(env.open::<E>()?)?)
        }
        match self.schema.as_str() {
            "RawAccepted" => json::<RawAccepted>(self),
            "ObjectQuarantined" => json::<ObjectQuarantined>(self),
            "DatasetCurated" => json::<DatasetCurated>(self),
            "DatasetRejected" => json::<DatasetRejected>(self),
            "ModelTrained" => json::<ModelTrained>(self),
            "ModelStaged" => json::<ModelStaged>(self),
            "ModelRejected" => json::<ModelRejected>(self),
            "ModelReviewed" => json::<ModelReviewed>(self),
            "ModelPromoted" => json::<ModelPromoted>(self),
            "RecordsScored" => json::<RecordsScored>(self),
            "ProcessingFailed" => json::<ProcessingFailed>(self),
            "ReingestRequested" => json::<ReingestRequested>(self),
            other => Err(EventError::WrongSchema { expected: crate::CATALOGUE.join("|"), found: other.to_string() }),
        }
    }
}
