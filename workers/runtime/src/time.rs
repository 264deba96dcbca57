//! Strict RFC 3339 timestamps without a date-time dependency: the gateway parses one
//! per row, so this is on the hot path.

/// Days since 1970-01-01 of a proleptic Gregorian date (days-from-civil).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.fraction](Z|±HH:MM)` to milliseconds since the epoch (UTC).
/// A bare date `YYYY-MM-DD` is midnight UTC. Anything else, including impossible dates
/// (Feb 30) and a missing offset, is `None`.
pub fn parse_rfc3339_ms(s: &[u8]) -> Option<i64> {
    if s.len() < 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(&s[0..4])?, digits(&s[5..7])?, digits(&s[8..10])?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    if s.len() == 10 {
        return Some(days * 86_400_000);
    }
    if s.len() < 20 || !matches!(s[10], b'T' | b't' | b' ') || s[13] != b':' || s[16] != b':' {
        return None;
    }
    let (hh, mi, ss) = (digits(&s[11..13])?, digits(&s[14..16])?, digits(&s[17..19])?);
    if hh > 23 || mi > 59 || ss > 59 {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        let ms_digits = &frac[..n.min(3)];
        millis = digits(ms_digits)? * 10i64.pow(3 - ms_digits.len() as u32);
        rest = &frac[n..];
    }
    let offset_min = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (oh, om) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if oh > 23 || om > 59 {
                return None;
            }
            let v = oh * 60 + om;
            if *sign == b'-' { -v } else { v }
        }
        _ => return None,
    };
    Some(((days * 24 + hh) * 60 + mi - offset_min) * 60_000 + ss * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::parse_rfc3339_ms as p;

    #[test]
    fn parses_utc_offsets_fractions_and_dates() {
        assert_eq!(p(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(p(b"2026-11-01T00:00:00Z"), Some(1_793_491_200_000));
        assert_eq!(p(b"2026-11-01 00:00:00.5Z"), Some(1_793_491_200_500));
        assert_eq!(p(b"2026-11-01T00:00:00.123456Z"), Some(1_793_491_200_123));
        assert_eq!(p(b"2026-11-01T01:00:00+01:00"), Some(1_793_491_200_000));
        assert_eq!(p(b"2026-10-31T21:00:00-03:00"), Some(1_793_491_200_000));
        assert_eq!(p(b"2000-02-29"), Some(951_782_400_000));
        assert_eq!(p(b"1900-01-01T00:00:00Z"), Some(-2_208_988_800_000));
    }

    #[test]
    fn refuses_impossible_or_ambiguous_values() {
        for bad in [
            &b"2026-02-30T00:00:00Z"[..],
            b"2026-13-01T00:00:00Z",
            b"2026-11-01T24:00:00Z",
            b"2026-11-01T00:00:00",
            b"2026-11-01T00:00:00+0100",
            b"2026-11-01T00:00:00.Z",
            b"26-11-01",
            b"2026-1-01T00:00:00Z",
            b"+2026-11-01T00:00:00Z",
            b"",
        ] {
            assert_eq!(p(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of a millisecond timestamp (UTC).
pub fn format_rfc3339_ms(ms: i64) -> String {
    let of_day = ms.rem_euclid(86_400_000);
    let (h, m, s, milli) = (of_day / 3_600_000, of_day / 60_000 % 60, of_day / 1000 % 60, of_day % 1000);
    format!("{}T{h:02}:{m:02}:{s:02}.{milli:03}Z", crate::utc_date(ms))
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn formatted_times_parse_back() {
        for ms in [0, 1_793_491_200_123, 951_782_400_000 - 1] {
            let s = format_rfc3339_ms(ms);
            assert_eq!(parse_rfc3339_ms(s.as_bytes()), Some(ms), "{s}");
        }
        assert_eq!(format_rfc3339_ms(1_793_491_200_123), "2026-11-01T00:00:00.123Z");
    }
}
