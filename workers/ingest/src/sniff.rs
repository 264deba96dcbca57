//! Content sniffing: decide by the bytes, never by the file name, what an object is, and
//! look for other formats hidden inside text (polyglots).

use memchr::{memchr2_iter, memmem};

use crate::reason::ReasonCode;

/// Bytes needed to recognise every leading signature below.
pub const SNIFF_LEN: usize = 264;

/// What the first bytes announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// A known non-text format, with the reason it is refused and its name.
    Foreign(ReasonCode, &'static str),
    Gzip,
    /// Text (CSV or JSON Lines, decided after the BOM).
    Text,
}

const SIGNATURES: &[(&[u8], ReasonCode, &str)] = &[
    (b"\x7fELF", ReasonCode::Executable, "ELF executable"),
    (b"MZ", ReasonCode::Executable, "PE executable"),
    (b"\xfe\xed\xfa\xce", ReasonCode::Executable, "Mach-O executable"),
    (b"\xfe\xed\xfa\xcf", ReasonCode::Executable, "Mach-O executable"),
    (b"\xcf\xfa\xed\xfe", ReasonCode::Executable, "Mach-O executable"),
    (b"\xce\xfa\xed\xfe", ReasonCode::Executable, "Mach-O executable"),
    (b"\xca\xfe\xba\xbe", ReasonCode::Executable, "Mach-O universal or Java class"),
    (b"\0asm", ReasonCode::Executable, "WebAssembly module"),
    (b"#!", ReasonCode::Executable, "script with a shebang"),
    (b"PK\x03\x04", ReasonCode::Archive, "ZIP archive"),
    (b"PK\x05\x06", ReasonCode::Archive, "ZIP archive"),
    (b"PK\x07\x08", ReasonCode::Archive, "ZIP archive"),
    (b"7z\xbc\xaf\x27\x1c", ReasonCode::Archive, "7z archive"),
    (b"Rar!\x1a\x07", ReasonCode::Archive, "RAR archive"),
    (b"BZh", ReasonCode::Archive, "bzip2 stream"),
    (b"\xfd7zXZ\x00", ReasonCode::Archive, "xz stream"),
    (b"\x28\xb5\x2f\xfd", ReasonCode::Archive, "zstd stream"),
    (b"MSCF", ReasonCode::Archive, "CAB archive"),
    (b"%PDF", ReasonCode::Document, "PDF document"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", ReasonCode::Document, "OLE2 (legacy office) document"),
    (b"{\\rtf", ReasonCode::Document, "RTF document"),
    (b"\x89PNG", ReasonCode::Document, "PNG image"),
    (b"\xff\xd8\xff", ReasonCode::Document, "JPEG image"),
    (b"GIF8", ReasonCode::Document, "GIF image"),
    (b"PAR1", ReasonCode::UnsupportedFormat, "Parquet"),
    (b"Obj\x01", ReasonCode::UnsupportedFormat, "Avro container"),
    (b"ORC", ReasonCode::UnsupportedFormat, "ORC"),
    (b"SQLite format 3\0", ReasonCode::UnsupportedFormat, "SQLite database"),
    (b"\xff\xfe", ReasonCode::UnsupportedFormat, "UTF-16LE text (the gate reads UTF-8 only)"),
    (b"\xfe\xff", ReasonCode::UnsupportedFormat, "UTF-16BE text (the gate reads UTF-8 only)"),
];

/// Classifies the first bytes (up to [`SNIFF_LEN`]) of an object or a decompressed stream.
pub fn sniff(head: &[u8]) -> Sniffed {
    if head.starts_with(b"\x1f\x8b") {
        return Sniffed::Gzip;
    }
    if let Some((_, code, name)) = SIGNATURES.iter().find(|(magic, _, _)| head.starts_with(magic)) {
        return Sniffed::Foreign(*code, name);
    }
    // POSIX tar: "ustar" at offset 257.
    if head.len() >= 262 && &head[257..262] == b"ustar" {
        return Sniffed::Foreign(ReasonCode::Archive, "tar archive");
    }
    Sniffed::Text
}

/// Signatures that have no business anywhere inside CSV or JSON text. Found after the
/// first bytes, they mean a polyglot: a valid-looking head with another format inside
/// (a ZIP's central directory at the end, a PDF or HTML body, a PE stub).
///
/// The text ones (all starting with `<` or `%`, bytes rare in data) are searched in every
/// byte; the binary ones hold control characters, so they are searched only around the
/// first control character, which the gate would otherwise report as `binary_content`.
const TEXT_SIGNATURES: &[(&[u8], &str)] = &[
    (b"%PDF-", "PDF header"),
    (b"<?php", "PHP code"),
    (b"<script", "HTML script"),
    (b"<iframe", "HTML frame"),
    (b"<svg", "SVG document"),
    (b"<html", "HTML document"),
    (b"<!doctype", "HTML/XML document"),
    (b"<?xml", "XML document"),
];

const BINARY_SIGNATURES: &[(&[u8], &str)] = &[
    (b"PK\x03\x04", "ZIP local header"),
    (b"PK\x05\x06", "ZIP central directory"),
    (b"PK\x01\x02", "ZIP central directory"),
    (b"\x7fELF", "ELF header"),
    (b"MZ\x90\x00", "PE header"),
    (b"This program cannot be run in DOS mode", "PE stub"),
    (b"7z\xbc\xaf\x27\x1c", "7z header"),
    (b"Rar!\x1a\x07", "RAR header"),
];

/// Length of the longest embedded signature.
pub const LONGEST_EMBEDDED: usize = 38;

/// Streams over text looking for embedded signatures, including across chunk edges.
#[derive(Default)]
pub struct PolyglotScanner {
    /// The last bytes of what was seen, for signatures straddling chunks.
    tail: Vec<u8>,
    /// Offset of `tail[0]` in the stream.
    tail_offset: u64,
}

impl PolyglotScanner {
    /// Scans `chunk`, which starts at stream offset `offset`, for the text signatures;
    /// returns the first found and its offset.
    pub fn scan(&mut self, chunk: &[u8], offset: u64) -> Option<(u64, &'static str)> {
        let mut window = std::mem::take(&mut self.tail);
        let window_offset = if window.is_empty() { offset } else { self.tail_offset };
        window.extend_from_slice(&chunk[..chunk.len().min(LONGEST_EMBEDDED)]);
        if let Some((at, name)) = text_signature(&window) {
            return Some((window_offset + at as u64, name));
        }
        if let Some((at, name)) = text_signature(chunk) {
            return Some((offset + at as u64, name));
        }
        // Keep the last bytes of everything seen: small chunks accumulate.
        let keep = LONGEST_EMBEDDED - 1;
        if chunk.len() >= keep {
            self.tail = chunk[chunk.len() - keep..].to_vec();
            self.tail_offset = offset + (chunk.len() - keep) as u64;
        } else {
            let drop = window.len().saturating_sub(keep);
            self.tail = window[drop..].to_vec();
            self.tail_offset = window_offset + drop as u64;
        }
        None
    }

    /// Every signature, text and binary, in the bytes kept from before `chunk` and in
    /// `chunk` up to `LONGEST_EMBEDDED` bytes past `from`. Call before [`Self::scan`]
    /// on the same chunk.
    pub fn scan_around(&self, chunk: &[u8], offset: u64, from: usize) -> Option<(u64, &'static str)> {
        let window_offset = if self.tail.is_empty() { offset } else { self.tail_offset };
        let end = chunk.len().min(from.saturating_add(LONGEST_EMBEDDED));
        let window = [self.tail.as_slice(), &chunk[..end]].concat();
        TEXT_SIGNATURES
            .iter()
            .chain(BINARY_SIGNATURES)
            .filter_map(|(needle, name)| memmem::find(&window, needle).map(|at| (at, *name)))
            .min_by_key(|(at, _)| *at)
            .map(|(at, name)| (window_offset + at as u64, name))
    }
}

/// The first text signature in `data` (ASCII case-insensitive): candidates are the rare
/// bytes `<` and `%`.
pub fn text_signature(data: &[u8]) -> Option<(usize, &'static str)> {
    memchr2_iter(b'<', b'%', data).find_map(|at| {
        TEXT_SIGNATURES
            .iter()
            .find(|(needle, _)| data.get(at..at + needle.len()).is_some_and(|w| w.eq_ignore_ascii_case(needle)))
            .map(|(_, name)| (at, *name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_executables_archives_and_documents() {
        assert_eq!(sniff(b"PK\x03\x04\x14\x00"), Sniffed::Foreign(ReasonCode::Archive, "ZIP archive"));
        assert_eq!(sniff(b"%PDF-1.7"), Sniffed::Foreign(ReasonCode::Document, "PDF document"));
        assert_eq!(sniff(b"\x7fELF\x02\x01"), Sniffed::Foreign(ReasonCode::Executable, "ELF executable"));
        assert_eq!(sniff(b"\x1f\x8b\x08\x00"), Sniffed::Gzip);
        let mut tar = vec![b'a'; 300];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(sniff(&tar), Sniffed::Foreign(ReasonCode::Archive, "tar archive"));
        assert_eq!(sniff(b"transaction_id,amount"), Sniffed::Text);
        assert_eq!(sniff(b""), Sniffed::Text);
    }

    #[test]
    fn finds_a_signature_split_across_chunks() {
        let mut s = PolyglotScanner::default();
        assert_eq!(s.scan(b"a,b\n1,2\n%P", 0), None);
        assert_eq!(s.scan(b"DF-1.4\n", 10), Some((8, "PDF header")));
        let mut s = PolyglotScanner::default();
        assert_eq!(s.scan(b"a,b\n1,2\n", 0), None);
        assert_eq!(s.scan(b"3,4\n", 8), None);
        // Tags are found whatever their case.
        assert_eq!(text_signature(b"a,<ScRiPt>x"), Some((2, "HTML script")));
        assert_eq!(text_signature(b"<?PHP"), Some((0, "PHP code")));
        // A long signature fed one byte at a time.
        let mut s = PolyglotScanner::default();
        let text = b"x,<!DOCTYPE html>";
        let hits: Vec<_> = text.iter().enumerate().filter_map(|(i, b)| s.scan(&[*b], i as u64)).collect();
        assert_eq!(hits, [(2, "HTML/XML document")]);
        // Binary signatures are looked for around a control character, across the edge.
        let mut s = PolyglotScanner::default();
        assert_eq!(s.scan(b"a,b\nPK", 0), None);
        assert_eq!(s.scan_around(b"\x03\x04rest", 6, 0), Some((4, "ZIP local header")));
    }
}
