//! Content sniffing: decide by the bytes, never by the file name, whether an object can
//! be CSV text at all.

/// Bytes needed to recognise every signature below.
pub const SNIFF_LEN: usize = 8;

const SIGNATURES: &[(&[u8], &str)] = &[
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
    (b"PK\x07\x08", "zip"),
    (b"%PDF", "pdf"),
    (b"\x7fELF", "elf"),
    (b"MZ", "pe"),
    (b"\xfe\xed\xfa\xce", "mach-o"),
    (b"\xfe\xed\xfa\xcf", "mach-o"),
    (b"\xcf\xfa\xed\xfe", "mach-o"),
    (b"\xce\xfa\xed\xfe", "mach-o"),
    (b"\xca\xfe\xba\xbe", "mach-o/java"),
    (b"\x1f\x8b", "gzip"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PAR1", "parquet"),
    (b"Obj\x01", "avro"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole2 (legacy office)"),
    (b"\x89PNG", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF8", "gif"),
];

/// The format the first bytes announce, if it is a known non-text format.
pub fn foreign_format(head: &[u8]) -> Option<&'static str> {
    SIGNATURES.iter().find(|(magic, _)| head.starts_with(magic)).map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_archives_executables_and_documents() {
        assert_eq!(foreign_format(b"PK\x03\x04\x14\x00"), Some("zip"));
        assert_eq!(foreign_format(b"%PDF-1.7"), Some("pdf"));
        assert_eq!(foreign_format(b"\x7fELF\x02\x01"), Some("elf"));
        assert_eq!(foreign_format(b"\x1f\x8b\x08\x00"), Some("gzip"));
        assert_eq!(foreign_format(b"transaction_id,amount"), None);
        assert_eq!(foreign_format(b""), None);
    }
}
