//! The streaming gate: bytes in (any chunking), typed Parquet and row rejects out, or a
//! [`Rejection`] for the whole object. Memory is bounded by one record batch, one line,
//! the row rejects (16 bytes each, capped) and the compressed Parquet row group being
//! built, whatever the object's size.
//!
//! Stages, in the order each byte meets them:
//! 1. gzip, where the contract allows it, inflated as it streams under a size and a
//!    ratio budget (decompression-bomb defence);
//! 2. sniffing of the (inflated) head: executables, archives, documents and formats the
//!    contract does not allow are refused; CSV and JSON Lines are told apart by content;
//! 3. every byte: no other format's signature inside (polyglots), no control characters
//!    but tab, CR and LF, strict UTF-8 (sequences may straddle chunks); a UTF-8 BOM is
//!    dropped;
//! 4. lines no longer than the contract's limit; for CSV, the header must equal the
//!    contract's column names in order, and look-alike names are called out;
//! 5. each row: field count, quoting, types, NaN/Inf, ranges, timestamp bounds, field
//!    length, formula cells, invisible characters. A bad row is rejected with its line and
//!    reason; the contract's threshold decides later whether the object survives.

use std::io::Write;

use flate2::write::MultiGzDecoder;
use mlsec_runtime::contract::{DatasetContract, Format, IngestPolicy};

pub use crate::rows::Accepted;
use crate::{
    csv::{Record, next_record},
    jsonl,
    reason::{ReasonCode, Rejection},
    rows::{Cell, RowSink},
    sniff::{LONGEST_EMBEDDED, PolyglotScanner, SNIFF_LEN, Sniffed, sniff},
    values::is_confusable,
};

/// Below this, inflated output is never called a bomb (tiny objects compress well).
const MIN_INFLATE_BUDGET: u64 = 1 << 20;
const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

enum TextStage {
    Sniffing(Vec<u8>),
    Header,
    Rows,
}

/// Stages 2-5, on plain or inflated text.
struct TextGate<W: Write + Send> {
    policy: IngestPolicy,
    names: Vec<String>,
    inflated: bool,
    stage: TextStage,
    format: Format,
    utf8_carry: Vec<u8>,
    polyglot: PolyglotScanner,
    /// The first control character or invalid UTF-8, held back until the polyglot scan
    /// has looked past it.
    binary: Option<Rejection>,
    /// Text bytes seen so far (BOM included).
    seen: u64,
    /// Bytes not yet split into records, and the offset and line of `buf[0]`.
    buf: Vec<u8>,
    buf_offset: u64,
    line: u64,
    ranges: Vec<(usize, usize)>,
    scratch: Vec<u8>,
    cells: Vec<Cell>,
    sink: RowSink<W>,
}

impl<W: Write + Send> TextGate<W> {
    fn push(&mut self, chunk: &[u8]) -> Result<(), Rejection> {
        if let TextStage::Sniffing(head) = &mut self.stage {
            let take = (SNIFF_LEN - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
            if head.len() < SNIFF_LEN {
                return Ok(());
            }
            let head = std::mem::take(head);
            self.end_sniffing(&head)?;
            return self.push(&chunk[take..]);
        }
        self.text(chunk)?;
        self.records(false)
    }

    fn end_sniffing(&mut self, head: &[u8]) -> Result<(), Rejection> {
        match sniff(head) {
            Sniffed::Foreign(code, name) => {
                let allowed = if self.inflated { "inside gzip" } else { "as a landing object" };
                return Err(Rejection::new(code, format!("content is {name}, not allowed {allowed}")).at_byte(0));
            }
            Sniffed::Gzip => {
                let detail = if self.inflated { "gzip inside gzip" } else { "gzip, which the contract does not allow" };
                let code = if self.inflated { ReasonCode::Archive } else { ReasonCode::UnsupportedFormat };
                return Err(Rejection::new(code, detail).at_byte(0).rule(format!("gzip={}", self.policy.gzip)));
            }
            Sniffed::Text => {}
        }
        let body = head.strip_prefix(UTF8_BOM).unwrap_or(head);
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        self.format = if first == Some(&b'{') { Format::Jsonl } else { Format::Csv };
        if !self.policy.formats.contains(&self.format) {
            return Err(Rejection::new(
                ReasonCode::UnsupportedFormat,
                format!("content is {}, which the contract does not allow", self.format.as_str()),
            )
            .at_byte(0));
        }
        self.stage = if self.format == Format::Csv { TextStage::Header } else { TextStage::Rows };
        self.seen += (head.len() - body.len()) as u64;
        self.buf_offset = self.seen;
        self.text(body)
    }

    /// Stage 3 for every byte; the bytes join the record buffer.
    fn text(&mut self, chunk: &[u8]) -> Result<(), Rejection> {
        if chunk.is_empty() {
            return Ok(());
        }
        if let Some(binary) = &self.binary {
            // After a control character or invalid UTF-8: a signature may continue here.
            if let Some((at, name)) = self.polyglot.scan_around(chunk, self.seen, 0) {
                return Err(polyglot(at, name));
            }
            let limit = binary.evidence.byte_offset.unwrap_or_default() + LONGEST_EMBEDDED as u64;
            self.polyglot.scan(chunk, self.seen);
            self.seen += chunk.len() as u64;
            if self.seen > limit {
                return Err(binary.clone());
            }
            return Ok(());
        }
        // The first control character or invalid UTF-8 sequence, whichever comes first.
        let mut bad = None;
        if has_control(chunk)
            && let Some(i) = chunk.iter().position(|&b| is_control(b))
        {
            let r = Rejection::new(ReasonCode::BinaryContent, format!("control character 0x{:02x}", chunk[i]))
                .at_byte(self.seen + i as u64);
            bad = Some((i, r));
        }
        if let Err(r) = self.check_utf8(chunk) {
            let i = r.evidence.byte_offset.unwrap_or_default().saturating_sub(self.seen) as usize;
            if bad.as_ref().is_none_or(|(j, _)| i < *j) {
                bad = Some((i, r));
            }
        }
        if let Some((i, rejection)) = bad {
            // Inside another format's signature this is a polyglot, not just bad text;
            // the signature may continue in the next chunk, so the verdict waits until
            // the scan has looked far enough past it.
            if let Some((at, name)) = self.polyglot.scan_around(chunk, self.seen, i) {
                return Err(polyglot(at, name));
            }
            if i + LONGEST_EMBEDDED < chunk.len() {
                return Err(rejection);
            }
            self.binary = Some(rejection);
            self.polyglot.scan(chunk, self.seen);
            self.seen += chunk.len() as u64;
            return Ok(());
        }
        if let Some((at, name)) = self.polyglot.scan(chunk, self.seen) {
            return Err(polyglot(at, name));
        }
        self.seen += chunk.len() as u64;
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    fn check_utf8(&mut self, chunk: &[u8]) -> Result<(), Rejection> {
        let joined;
        let data: &[u8] = if self.utf8_carry.is_empty() {
            chunk
        } else {
            joined = [self.utf8_carry.as_slice(), chunk].concat();
            &joined
        };
        let carried = self.utf8_carry.len() as u64;
        match std::str::from_utf8(data) {
            Ok(_) => self.utf8_carry.clear(),
            Err(e) if e.error_len().is_none() && data.len() - e.valid_up_to() < 4 => {
                self.utf8_carry = data[e.valid_up_to()..].to_vec()
            }
            Err(e) => {
                return Err(Rejection::new(ReasonCode::InvalidUtf8, "byte sequence is not UTF-8")
                    .at_byte(self.seen - carried + e.valid_up_to() as u64));
            }
        }
        Ok(())
    }

    /// Stage 4 and 5 over the complete records in the buffer.
    fn records(&mut self, eof: bool) -> Result<(), Rejection> {
        let max_line = self.policy.max_line_bytes;
        let mut pos = 0;
        let result = loop {
            if pos == self.buf.len() {
                break Ok(());
            }
            let data = &self.buf[pos..];
            let offset = self.buf_offset + pos as u64;
            let (len, lines, in_scratch, error) = if self.format == Format::Jsonl {
                match memchr::memchr(b'\n', data) {
                    Some(nl) => (nl + 1, 1, false, None),
                    None if eof => (data.len(), 0, false, None),
                    None => (usize::MAX, 0, false, None),
                }
            } else {
                match next_record(data, eof, &mut self.ranges, &mut self.scratch) {
                    Record::Complete { len, lines, in_scratch, error } => (len, lines, in_scratch, error),
                    Record::Incomplete => (usize::MAX, 0, false, None),
                }
            };
            if len == usize::MAX {
                // The buffer may end in the CR of a CRLF whose LF is in the next chunk.
                if data.len() > max_line + 1 {
                    break Err(Rejection::new(ReasonCode::LineTooLong, "no line end within the contract's limit")
                        .at_line(self.line + 1)
                        .at_byte(offset)
                        .rule(format!("maxLineBytes={max_line}")));
                }
                break Ok(());
            }
            // The limit applies to the line's content, without its line end.
            let ending = if data[..len].ends_with(b"\r\n") { 2 } else { usize::from(data[..len].ends_with(b"\n")) };
            if len - ending > max_line {
                break Err(Rejection::new(ReasonCode::LineTooLong, format!("a line of {} bytes", len - ending))
                    .at_line(self.line + 1)
                    .at_byte(offset)
                    .rule(format!("maxLineBytes={max_line}")));
            }
            let line_no = self.line + 1;
            let record = &data[..len];
            pos += len;
            self.line += lines;
            let blank = record.iter().all(|b| matches!(b, b'\r' | b'\n'));
            let step = match (&self.stage, self.format) {
                (_, _) if blank => Ok(()),
                (TextStage::Header, _) => {
                    let base = if in_scratch { &self.scratch[..] } else { record };
                    let found: Vec<&str> =
                        self.ranges.iter().map(|&(s, e)| std::str::from_utf8(&base[s..e]).unwrap_or("")).collect();
                    self.stage = TextStage::Rows;
                    check_header(&found, &self.names, error)
                }
                (_, Format::Csv) => {
                    let base = if in_scratch { &self.scratch[..] } else { record };
                    csv_row(&mut self.sink, &mut self.cells, base, &self.ranges, error, line_no, offset)
                }
                (_, Format::Jsonl) => {
                    let json = record.strip_suffix(b"\n").unwrap_or(record);
                    match jsonl::row(json, &self.names, &self.sink, &mut self.scratch, &mut self.cells) {
                        Ok(()) => self.sink.accept(line_no, &self.scratch, &self.cells),
                        Err(fault) => self.sink.reject(line_no, offset, fault),
                    }
                }
            };
            if let Err(r) = step {
                break Err(r);
            }
        };
        self.buf.drain(..pos);
        self.buf_offset += pos as u64;
        result
    }

    fn finish(mut self, gzip: bool) -> Result<Accepted<W>, Rejection> {
        if let TextStage::Sniffing(head) = std::mem::replace(&mut self.stage, TextStage::Rows) {
            if head.is_empty() {
                return Err(Rejection::new(ReasonCode::Empty, "the object is empty"));
            }
            self.stage = TextStage::Sniffing(Vec::new());
            self.end_sniffing(&head)?;
        }
        if let Some(binary) = self.binary {
            return Err(binary);
        }
        if !self.utf8_carry.is_empty() {
            return Err(Rejection::new(ReasonCode::InvalidUtf8, "truncated UTF-8 sequence at the end")
                .at_byte(self.seen - self.utf8_carry.len() as u64));
        }
        self.records(true)?;
        if matches!(self.stage, TextStage::Header) {
            return Err(Rejection::new(ReasonCode::Empty, "no header line"));
        }
        self.sink.finish(self.format.as_str(), gzip)
    }
}

fn polyglot(at: u64, name: &str) -> Rejection {
    Rejection::new(ReasonCode::Polyglot, format!("{name} inside the text")).at_byte(at)
}

/// A control character text never holds: all below 0x20 but tab, LF and CR, and DEL.
fn is_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r') || b == 0x7f
}

/// Whether `data` holds a control character: a branch-free pass the compiler vectorises
/// (the gate's hottest byte loop); the position is looked up only when there is one.
fn has_control(data: &[u8]) -> bool {
    data.chunks(64).any(|block| block.iter().fold(false, |acc, &b| acc | is_control(b)))
}

fn check_header(found: &[&str], expected: &[String], error: Option<ReasonCode>) -> Result<(), Rejection> {
    if error.is_some() {
        return Err(Rejection::new(ReasonCode::WrongHeader, "the header line is not valid CSV").at_line(1));
    }
    if found.len() == expected.len() && found.iter().zip(expected).all(|(f, e)| f == e) {
        return Ok(());
    }
    if let Some(i) = found.iter().zip(expected).position(|(f, e)| is_confusable(f, e)) {
        return Err(Rejection::new(
            ReasonCode::ConfusableHeader,
            format!("header column {} looks like {} but uses other characters", i + 1, expected[i]),
        )
        .at_line(1)
        .in_column(&expected[i]));
    }
    let detail = match found.iter().zip(expected).position(|(f, e)| f != e) {
        Some(i) => format!("header column {} differs from the contract's {}", i + 1, expected[i]),
        None => format!("header has {} columns, the contract {}", found.len(), expected.len()),
    };
    Err(Rejection::new(ReasonCode::WrongHeader, detail).at_line(1))
}

fn csv_row<W: Write + Send>(
    sink: &mut RowSink<W>,
    cells: &mut Vec<Cell>,
    base: &[u8],
    ranges: &[(usize, usize)],
    error: Option<ReasonCode>,
    line: u64,
    offset: u64,
) -> Result<(), Rejection> {
    if let Some(code) = error {
        return sink.reject(line, offset, (code, None));
    }
    if ranges.len() != sink.columns() {
        return sink.reject(line, offset, (ReasonCode::RaggedRow, None));
    }
    cells.clear();
    for (col, &(s, e)) in ranges.iter().enumerate() {
        match sink.text_cell(col, base, s, e) {
            Ok(cell) => cells.push(cell),
            Err((code, col)) => return sink.reject(line, offset, (code, Some(col))),
        }
    }
    sink.accept(line, base, cells)
}

/// Inflated bytes go to the text gate, within the budget.
struct Inflated<W: Write + Send> {
    text: TextGate<W>,
    produced: u64,
    budget: u64,
    rejection: Option<Rejection>,
}

impl<W: Write + Send> Write for Inflated<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.produced += buf.len() as u64;
        if self.produced > self.budget {
            let p = &self.text.policy;
            let r = Rejection::new(ReasonCode::DecompressionBomb, "gzip inflates beyond the contract's budget").rule(
                format!(
                    "maxDecompressedBytes={}, maxCompressionRatio={}",
                    p.max_decompressed_bytes, p.max_compression_ratio
                ),
            );
            self.rejection = Some(r);
            return Err(std::io::Error::other("rejected"));
        }
        if let Err(r) = self.text.push(buf) {
            self.rejection = Some(r);
            return Err(std::io::Error::other("rejected"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Layer<W: Write + Send> {
    /// Waiting for the first two bytes, to see whether they are gzip's.
    Start(Vec<u8>, TextGate<W>),
    Plain(TextGate<W>),
    Gzip(Box<MultiGzDecoder<Inflated<W>>>),
    Failed,
}

/// The gate for one object. `W` is where the Parquet goes: a `Vec<u8>` in tests and
/// benchmarks, a spill file in the worker (so memory does not grow with the object).
pub struct Gate<W: Write + Send = Vec<u8>> {
    layer: Layer<W>,
    compressed_in: u64,
}

impl Gate<Vec<u8>> {
    /// A gate writing its Parquet to memory.
    pub fn new(contract: &DatasetContract, now_ms: i64, lineage: Vec<(String, String)>) -> Result<Self, Rejection> {
        Self::with_sink(contract, now_ms, lineage, Vec::new())
    }
}

impl<W: Write + Send> Gate<W> {
    /// A gate writing its Parquet to `sink`; `now_ms` anchors the future-timestamp rule.
    pub fn with_sink(
        contract: &DatasetContract,
        now_ms: i64,
        lineage: Vec<(String, String)>,
        sink: W,
    ) -> Result<Self, Rejection> {
        let text = TextGate {
            policy: contract.ingest.clone(),
            names: contract.columns.iter().map(|c| c.name.clone()).collect(),
            inflated: false,
            stage: TextStage::Sniffing(Vec::with_capacity(SNIFF_LEN)),
            format: Format::Csv,
            utf8_carry: Vec::new(),
            polyglot: PolyglotScanner::default(),
            binary: None,
            seen: 0,
            buf: Vec::new(),
            buf_offset: 0,
            line: 0,
            ranges: Vec::new(),
            scratch: Vec::new(),
            cells: Vec::new(),
            sink: RowSink::new(contract, now_ms, lineage, sink)?,
        };
        Ok(Self { layer: Layer::Start(Vec::with_capacity(2), text), compressed_in: 0 })
    }

    /// Feeds the next chunk of the object. After an `Err` the gate is spent.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), Rejection> {
        let result = self.push_inner(chunk);
        if result.is_err() {
            self.layer = Layer::Failed;
        }
        result
    }

    fn push_inner(&mut self, chunk: &[u8]) -> Result<(), Rejection> {
        if chunk.is_empty() {
            return Ok(());
        }
        match &mut self.layer {
            Layer::Start(head, _) => {
                let take = (2 - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
                if head.len() < 2 {
                    return Ok(());
                }
                self.start()?;
                self.push_inner(&chunk[take..])
            }
            Layer::Plain(text) => text.push(chunk),
            Layer::Gzip(decoder) => {
                self.compressed_in += chunk.len() as u64;
                let inflated = decoder.get_mut();
                let policy = &inflated.text.policy;
                inflated.budget = policy
                    .max_decompressed_bytes
                    .min(MIN_INFLATE_BUDGET.max(self.compressed_in.saturating_mul(policy.max_compression_ratio)));
                if decoder.write_all(chunk).is_err() {
                    return Err(gzip_error(decoder));
                }
                Ok(())
            }
            Layer::Failed => Err(Rejection::new(ReasonCode::UnparseableValue, "the gate already rejected the object")),
        }
    }

    /// Decides between plain text and gzip once two bytes are known.
    fn start(&mut self) -> Result<(), Rejection> {
        let Layer::Start(head, mut text) = std::mem::replace(&mut self.layer, Layer::Failed) else {
            return Ok(());
        };
        if head.as_slice() == b"\x1f\x8b" && text.policy.gzip {
            text.inflated = true;
            let inflated = Inflated { text, produced: 0, budget: MIN_INFLATE_BUDGET, rejection: None };
            self.layer = Layer::Gzip(Box::new(MultiGzDecoder::new(inflated)));
            self.compressed_in = 0;
            return self.push_inner(&head);
        }
        let result = text.push(&head);
        self.layer = Layer::Plain(text);
        result
    }

    /// Ends the object: the last rows, then the Parquet closed.
    pub fn finish(mut self) -> Result<Accepted<W>, Rejection> {
        if matches!(self.layer, Layer::Start(..)) {
            self.start()?;
        }
        match std::mem::replace(&mut self.layer, Layer::Failed) {
            Layer::Start(..) | Layer::Failed => Err(Rejection::new(ReasonCode::Empty, "the object is empty")),
            Layer::Plain(text) => text.finish(false),
            Layer::Gzip(mut decoder) => {
                if decoder.try_finish().is_err() {
                    return Err(gzip_error(&mut decoder));
                }
                match decoder.finish() {
                    Ok(inflated) => inflated.text.finish(true),
                    Err(_) => Err(Rejection::new(ReasonCode::CorruptCompression, "the gzip stream is corrupt")),
                }
            }
        }
    }
}

fn gzip_error<W: Write + Send>(decoder: &mut MultiGzDecoder<Inflated<W>>) -> Rejection {
    decoder
        .get_mut()
        .rejection
        .take()
        .unwrap_or_else(|| Rejection::new(ReasonCode::CorruptCompression, "the gzip stream is corrupt"))
}

/// Runs a whole in-memory object through the gate and returns the Parquet, refusing any
/// rejected row: for tests and tools that need raw-zone Parquet from a sample.
pub fn to_parquet(contract: &DatasetContract, object: &[u8]) -> Result<bytes::Bytes, Rejection> {
    let mut gate = Gate::new(contract, mlsec_runtime::now_ms(), vec![])?;
    gate.push(object)?;
    let accepted = gate.finish()?;
    if let Some(first) = accepted.rejects.first() {
        return Err(Rejection::new(first.reason, "a row was rejected").at_line(first.line));
    }
    Ok(bytes::Bytes::from(accepted.parquet))
}
