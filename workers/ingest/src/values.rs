//! Cell- and name-level checks that do not depend on the format: formula injection,
//! invisible characters and look-alike header names.

/// A text cell a spreadsheet would evaluate (CSV/formula injection, OWASP): it starts
/// with `=`, `+`, `-`, `@`, tab or CR. Only text columns are checked; in a numeric column
/// `-12.5` is a number, not an attack.
pub fn is_formula(cell: &[u8]) -> bool {
    matches!(cell.first(), Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r'))
}

/// Whether `c` is invisible or reorders text: zero-width characters, bidirectional
/// marks, overrides and isolates (Trojan Source), the soft hyphen, the BOM, blank
/// fillers that render as nothing (combining grapheme joiner, Hangul fillers, Mongolian
/// vowel separator), line and paragraph separators (they break log lines and scripts),
/// interlinear annotation marks, and the tag and variation-selector-supplement blocks
/// (used to smuggle hidden text after a visible character).
pub fn is_invisible(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}' | '\u{E0100}'..='\u{E01EF}')
}

/// Whether a cell holds an invisible or bidirectional-control character. ASCII cells
/// (nearly all) are answered without decoding.
pub fn has_invisible(cell: &[u8]) -> bool {
    !cell.is_ascii() && std::str::from_utf8(cell).map_or(true, |s| s.chars().any(is_invisible))
}

/// Look-alikes of ASCII letters from other scripts (a subset of Unicode's confusables:
/// the Cyrillic and Greek letters that render like Latin ones).
fn ascii_lookalike(c: char) -> Option<char> {
    Some(match c {
        'а' => 'a',
        'е' => 'e',
        'о' => 'o',
        'р' => 'p',
        'с' => 'c',
        'у' => 'y',
        'х' => 'x',
        'і' => 'i',
        'ј' => 'j',
        'ѕ' => 's',
        'ԁ' => 'd',
        'һ' => 'h',
        'ӏ' => 'l',
        'ԛ' => 'q',
        'ԝ' => 'w',
        'А' => 'A',
        'В' => 'B',
        'Е' => 'E',
        'К' => 'K',
        'М' => 'M',
        'Н' => 'H',
        'О' => 'O',
        'Р' => 'P',
        'С' => 'C',
        'Т' => 'T',
        'Х' => 'X',
        'ο' => 'o',
        'α' => 'a',
        'ν' => 'v',
        'ι' => 'i',
        'κ' => 'k',
        'ρ' => 'p',
        'τ' => 't',
        'υ' => 'u',
        'Α' => 'A',
        'Β' => 'B',
        'Ε' => 'E',
        'Ζ' => 'Z',
        'Η' => 'H',
        'Ι' => 'I',
        'Κ' => 'K',
        'Μ' => 'M',
        'Ν' => 'N',
        'Ο' => 'O',
        'Ρ' => 'P',
        'Τ' => 'T',
        'Χ' => 'X',
        'Υ' => 'Y',
        'ı' => 'i',
        'ℓ' => 'l',
        '‐' | '‑' | '‒' | '–' | '−' => '-',
        // Fullwidth ASCII.
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0)?,
        _ => return None,
    })
}

/// The name as it would look on screen: look-alikes mapped to ASCII, invisible
/// characters removed.
pub fn skeleton(name: &str) -> String {
    name.chars().filter(|c| !is_invisible(*c)).map(|c| ascii_lookalike(c).unwrap_or(c)).collect()
}

/// A header name that differs from the expected one but looks the same: it carries
/// invisible characters or look-alikes, and its skeleton is the expected name.
pub fn is_confusable(found: &str, expected: &str) -> bool {
    found != expected && !found.is_ascii() && skeleton(found) == skeleton(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_recognised_by_their_first_character() {
        for cell in [&b"=1+1"[..], b"+cmd", b"-2+3", b"@SUM(A1)", b"\tx", b"\rx"] {
            assert!(is_formula(cell), "{cell:?}");
        }
        for cell in [&b"Ana"[..], b"a=b", b"", b" =x"] {
            assert!(!is_formula(cell), "{cell:?}");
        }
    }

    #[test]
    fn invisible_and_bidi_characters_are_found() {
        assert!(has_invisible("ab\u{202E}cd".as_bytes()));
        assert!(has_invisible("a\u{200B}".as_bytes()));
        for c in [
            '\u{034F}',
            '\u{061C}',
            '\u{115F}',
            '\u{1160}',
            '\u{180E}',
            '\u{2028}',
            '\u{2029}',
            '\u{3164}',
            '\u{FFA0}',
            '\u{FFF9}',
            '\u{E0001}',
            '\u{E0041}',
            '\u{E007F}',
            '\u{E0100}',
            '\u{E01EF}',
        ] {
            assert!(has_invisible(format!("ok{c}ok").as_bytes()), "U+{:04X}", c as u32);
        }
        // Visible non-ASCII text passes: accents, other scripts, emoji with a presentation selector.
        for text in ["João", "Ñandú", "日本", "ação", "\u{2764}\u{FE0F}", "\u{2027}"] {
            assert!(!has_invisible(text.as_bytes()), "{text}");
        }
        assert!(!has_invisible(b"plain"));
    }

    #[test]
    fn lookalike_header_names_are_confusable() {
        assert!(is_confusable("аmount", "amount")); // Cyrillic а
        assert!(is_confusable("amount\u{200B}", "amount"));
        assert!(is_confusable("ａｍｏｕｎｔ", "amount"));
        assert!(!is_confusable("amount", "amount"));
        assert!(!is_confusable("valor", "amount"));
    }
}
