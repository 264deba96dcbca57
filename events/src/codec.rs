//! Avro single-object encoding: `C3 01` + 8-byte little-endian CRC-64-AVRO (Rabin)
//! fingerprint of the writer schema's canonical form + the binary datum.

use apache_avro::{
    Schema, from_value, rabin::Rabin, reader::datum::GenericDatumReader, to_value, writer::datum::GenericDatumWriter,
};
use serde::{Serialize, de::DeserializeOwned};

use crate::EventError;

/// The two marker bytes that open every single-object encoded datum.
pub const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

/// The CRC-64-AVRO fingerprint of `schema`, as the 8 bytes the header carries.
pub fn fingerprint_of(schema: &Schema) -> [u8; 8] {
    let fp = schema.fingerprint::<Rabin>();
    let mut out = [0u8; 8];
    out.copy_from_slice(&fp.bytes[..8]);
    out
}

/// Encodes `value` with `schema` as a single object.
pub fn encode_single_object<T: Serialize>(schema: &Schema, value: &T) -> Result<Vec<u8>, EventError> {
    let name = schema_name(schema);
    let err = |e: apache_avro::Error| EventError::Encode { schema: name.clone(), message: e.to_string() };
    let avro = to_value(value).map_err(err)?;
    let avro = avro.resolve(schema).map_err(err)?;
    let datum = GenericDatumWriter::builder(schema).build().map_err(err)?.write_value_to_vec(avro).map_err(err)?;
    let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
    out.extend_from_slice(&SINGLE_OBJECT_MARKER);
    out.extend_from_slice(&fingerprint_of(schema));
    out.extend_from_slice(&datum);
    Ok(out)
}

/// Decodes a single object written with `schema` or with one of its `released` earlier
/// versions (then resolved to `schema`). The writer is identified by fingerprint before
/// any byte of the datum is read; an unknown fingerprint is refused. Trailing bytes are
/// corruption, not padding.
pub fn decode_single_object<T: DeserializeOwned>(
    schema: &Schema,
    released: &[Schema],
    bytes: &[u8],
) -> Result<T, EventError> {
    let name = schema_name(schema);
    if bytes.len() < HEADER_LEN || bytes[..2] != SINGLE_OBJECT_MARKER {
        return Err(EventError::NotSingleObject);
    }
    let found = &bytes[2..HEADER_LEN];
    let writer = if found == fingerprint_of(schema) {
        None
    } else {
        Some(released.iter().find(|r| found == fingerprint_of(r)).ok_or_else(|| {
            let known: Vec<String> =
                std::iter::once(schema).chain(released).map(|s| hex::encode(fingerprint_of(s))).collect();
            EventError::UnknownFingerprint { schema: name.clone(), found: hex::encode(found), known: known.join(",") }
        })?)
    };
    let corrupt = |message: String| EventError::Corrupt { schema: name.clone(), message };
    let mut datum = &bytes[HEADER_LEN..];
    let reader = match writer {
        None => GenericDatumReader::builder(schema).build(),
        Some(w) => GenericDatumReader::builder(w).reader_schema(schema).build(),
    }
    .map_err(|e| corrupt(e.to_string()))?;
    let value = reader.read_value(&mut datum).map_err(|e| corrupt(e.to_string()))?;
    if !datum.is_empty() {
        return Err(corrupt(format!("{} trailing bytes after the datum", datum.len())));
    }
    from_value(&value).map_err(|e| corrupt(e.to_string()))
}

fn schema_name(schema: &Schema) -> String {
    match schema {
        Schema::Record(r) => r.name.fullname(None),
        other => format!("{other:?}"),
    }
}
