//! Strict RFC 4180 record splitting over a buffer that may end mid-record.
//!
//! A field is either unquoted (no `"` inside) or quoted (`"` doubled inside, the closing
//! quote followed by a comma or the line end). Anything else is `bad_quoting` for that
//! row only: the row ends at the next line feed and the rest of the object goes on.
//! Lines without quotes (nearly all) take a fast path of three SIMD scans.

use memchr::{memchr, memchr_iter, memchr3};

use crate::reason::ReasonCode;

/// One record found at the start of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Record {
    /// The record is `len` bytes long (line end included) and spans `lines` line feeds.
    /// Its fields are in `ranges`, into the buffer (`in_scratch == false`) or into the
    /// scratch buffer (quoted fields, unescaped). `error` makes it a rejected row.
    Complete { len: usize, lines: u64, in_scratch: bool, error: Option<ReasonCode> },
    /// More bytes are needed.
    Incomplete,
}

/// Splits the record at the start of `data`. `eof`: no more bytes will come.
pub fn next_record(data: &[u8], eof: bool, ranges: &mut Vec<(usize, usize)>, scratch: &mut Vec<u8>) -> Record {
    ranges.clear();
    let (line_end, next) = match memchr(b'\n', data) {
        Some(nl) => (nl, nl + 1),
        None if eof => (data.len(), data.len()),
        None => return Record::Incomplete,
    };
    let line = &data[..line_end];
    if memchr(b'"', line).is_none() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut start = 0;
        for comma in memchr_iter(b',', line) {
            ranges.push((start, comma));
            start = comma + 1;
        }
        ranges.push((start, line.len()));
        let lines = u64::from(next > line_end);
        return Record::Complete { len: next, lines, in_scratch: false, error: None };
    }
    quoted(data, eof, ranges, scratch)
}

/// The slow path: a record with quotes, possibly spanning lines.
fn quoted(data: &[u8], eof: bool, ranges: &mut Vec<(usize, usize)>, scratch: &mut Vec<u8>) -> Record {
    scratch.clear();
    let mut i = 0;
    // A malformed row ends at the next line feed at or after `from`.
    let bad = |from: usize| -> Record {
        match memchr(b'\n', &data[from.min(data.len())..]) {
            Some(nl) => Record::Complete {
                len: from + nl + 1,
                lines: count_lines(&data[..from + nl + 1]),
                in_scratch: true,
                error: Some(ReasonCode::BadQuoting),
            },
            None if eof => Record::Complete {
                len: data.len(),
                lines: count_lines(data),
                in_scratch: true,
                error: Some(ReasonCode::BadQuoting),
            },
            None => Record::Incomplete,
        }
    };
    loop {
        let start = scratch.len();
        if data.get(i) == Some(&b'"') {
            i += 1;
            loop {
                let Some(q) = memchr(b'"', &data[i..]).map(|q| i + q) else {
                    // Unclosed quote: wait for more, or at the end the row is bad.
                    return if eof { bad(data.len()) } else { Record::Incomplete };
                };
                scratch.extend_from_slice(&data[i..q]);
                match data.get(q + 1) {
                    Some(b'"') => {
                        scratch.push(b'"');
                        i = q + 2;
                    }
                    None if !eof => return Record::Incomplete,
                    _ => {
                        i = q + 1;
                        break;
                    }
                }
            }
            ranges.push((start, scratch.len()));
            match data.get(i) {
                Some(b',') => i += 1,
                Some(b'\n') => return complete(data, i + 1),
                Some(b'\r') if data.get(i + 1) == Some(&b'\n') => return complete(data, i + 2),
                Some(b'\r') if i + 1 == data.len() && !eof => return Record::Incomplete,
                None if eof => return complete(data, i),
                None => return Record::Incomplete,
                Some(_) => return bad(i),
            }
        } else {
            match memchr3(b',', b'\n', b'"', &data[i..]).map(|p| i + p) {
                Some(p) if data[p] == b'"' => return bad(p),
                Some(p) if data[p] == b',' => {
                    scratch.extend_from_slice(&data[i..p]);
                    ranges.push((start, scratch.len()));
                    i = p + 1;
                }
                Some(p) => {
                    let field = &data[i..p];
                    scratch.extend_from_slice(field.strip_suffix(b"\r").unwrap_or(field));
                    ranges.push((start, scratch.len()));
                    return complete(data, p + 1);
                }
                None if eof => {
                    let field = &data[i..];
                    scratch.extend_from_slice(field.strip_suffix(b"\r").unwrap_or(field));
                    ranges.push((start, scratch.len()));
                    return complete(data, data.len());
                }
                None => return Record::Incomplete,
            }
        }
    }
}

fn complete(data: &[u8], len: usize) -> Record {
    Record::Complete { len, lines: count_lines(&data[..len]), in_scratch: true, error: None }
}

fn count_lines(data: &[u8]) -> u64 {
    memchr_iter(b'\n', data).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(data: &[u8], eof: bool) -> (Record, Vec<String>) {
        let (mut ranges, mut scratch) = (Vec::new(), Vec::new());
        let r = next_record(data, eof, &mut ranges, &mut scratch);
        let base = match r {
            Record::Complete { in_scratch: true, .. } => scratch.as_slice(),
            _ => data,
        };
        let f = ranges.iter().map(|&(s, e)| String::from_utf8_lossy(&base[s..e]).into_owned()).collect();
        (r, f)
    }

    #[test]
    fn unquoted_and_quoted_fields() {
        let (r, f) = fields(b"a,b,,c\r\nnext", false);
        assert_eq!(r, Record::Complete { len: 8, lines: 1, in_scratch: false, error: None });
        assert_eq!(f, ["a", "b", "", "c"]);
        let (r, f) = fields(b"\"a,1\",\"say \"\"hi\"\"\",\"two\nlines\"\nx", false);
        assert_eq!(r, Record::Complete { len: 31, lines: 2, in_scratch: true, error: None });
        assert_eq!(f, ["a,1", "say \"hi\"", "two\nlines"]);
    }

    #[test]
    fn a_record_cut_by_the_buffer_end_waits_for_more() {
        assert_eq!(fields(b"a,b", false).0, Record::Incomplete);
        assert_eq!(fields(b"\"a\nb", false).0, Record::Incomplete);
        assert_eq!(fields(b"\"ab\"", false).0, Record::Incomplete);
        let (r, f) = fields(b"a,b", true);
        assert_eq!(r, Record::Complete { len: 3, lines: 0, in_scratch: false, error: None });
        assert_eq!(f, ["a", "b"]);
    }

    #[test]
    fn bad_quoting_rejects_the_row_up_to_the_line_end() {
        for (data, len) in [(&b"ab\"c,d\nnext\n"[..], 7), (b"\"ab\"c,d\nnext\n", 8)] {
            let (r, _) = fields(data, false);
            assert_eq!(r, Record::Complete { len, lines: 1, in_scratch: true, error: Some(ReasonCode::BadQuoting) });
        }
        let (r, _) = fields(b"\"never closed,1\n2\n", true);
        assert!(matches!(r, Record::Complete { error: Some(ReasonCode::BadQuoting), len: 18, .. }));
    }
}
