//! JSON Lines rows: one flat JSON object per line, keys = contract columns. A key given
//! twice is refused (parsers disagree on which one wins, a classic smuggling trick).

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::{
    reason::ReasonCode,
    rows::{Cell, Fault, RowSink},
};
use mlsec_runtime::contract::ColumnType;

/// The object's members in order, duplicates kept (so they can be refused). Also what
/// `mlsec contract infer` reads a sample's keys with, in the order written.
pub struct Members(pub Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    out.push(entry);
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Turns one line into cells; string values are appended to `text` and referenced by
/// range. `names` are the contract's column names, in order.
pub fn row<W: std::io::Write + Send>(
    line: &[u8],
    names: &[String],
    sink: &RowSink<W>,
    text: &mut Vec<u8>,
    cells: &mut Vec<Cell>,
) -> Result<(), (ReasonCode, Option<u16>)> {
    let Members(members) = serde_json::from_slice(line).map_err(|_| (ReasonCode::InvalidJson, None))?;
    text.clear();
    cells.clear();
    cells.resize(names.len(), Cell::Null);
    let mut seen = vec![false; names.len()];
    for (key, value) in members {
        let col = names.iter().position(|n| *n == key).ok_or((ReasonCode::UnexpectedField, None))?;
        if std::mem::replace(&mut seen[col], true) {
            return Err((ReasonCode::UnexpectedField, Some(col as u16)));
        }
        cells[col] = cell(sink, col, value, text).map_err(|(code, c)| (code, Some(c)))?;
    }
    Ok(())
}

fn cell<W: std::io::Write + Send>(
    sink: &RowSink<W>,
    col: usize,
    value: Value,
    text: &mut Vec<u8>,
) -> Result<Cell, Fault> {
    let wrong = (ReasonCode::UnparseableValue, col as u16);
    match (sink.column_type(col), value) {
        (_, Value::Null) => Ok(Cell::Null),
        (ColumnType::String, Value::String(s)) => {
            // JSON escapes (`\u0000`, `\u003cscript`) decode to what the byte-level checks
            // refuse in the raw text: check the decoded value the same way.
            if s.bytes().any(|b| (b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r') || b == 0x7f) {
                return Err((ReasonCode::BinaryContent, col as u16));
            }
            if crate::sniff::text_signature(s.as_bytes()).is_some() {
                return Err((ReasonCode::Polyglot, col as u16));
            }
            let start = text.len();
            text.extend_from_slice(s.as_bytes());
            sink.string_cell(col, s.as_bytes(), start, text.len())
        }
        (ColumnType::Timestamp, Value::String(s)) => {
            let start = text.len();
            text.extend_from_slice(s.as_bytes());
            sink.text_cell(col, text, start, text.len())
        }
        (ColumnType::Int64, Value::Number(n)) => sink.int_cell(col, n.as_i64().ok_or(wrong)?),
        (ColumnType::Float64, Value::Number(n)) => sink.float_cell(col, n.as_f64().ok_or(wrong)?),
        (ColumnType::Boolean, Value::Bool(b)) => Ok(Cell::Bool(b)),
        _ => Err(wrong),
    }
}
