//! Times written and read by hand: RFC 3339 (the custom status API speaks it) and the RFC 3164 syslog timestamp.
//! A date crate would be the biggest dependency of the binary for thirty lines of arithmetic.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in whole Unix seconds.
pub(crate) fn now_unix() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// `t` (Unix seconds) as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn format_rfc3339(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `t` (Unix seconds) as an RFC 3164 syslog timestamp, `Mmm dd HH:MM:SS` in UTC (as the syslog crate wrote it
/// before this replaced it; journald and rsyslog keep their own receive time anyway).
pub(crate) fn format_rfc3164(t: i64) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = t.rem_euclid(86_400);
    let (_, m, d) = civil_from_days(t.div_euclid(86_400));
    let month = MONTHS[(m - 1).clamp(0, 11) as usize];
    format!("{month} {d:02} {:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Parses an RFC 3339 date-time (as Go's `time.RFC3339` accepts it: `T`, optional fraction, `Z` or `±HH:MM`) to
/// Unix seconds, dropping the fraction. `None` when it is not one.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = &b[r];
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hm = [*h1, *h2, *m1, *m2];
            if !hm.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let (h, m) = (i64::from((h1 - b'0') * 10 + (h2 - b'0')), i64::from((m1 - b'0') * 10 + (m2 - b'0')));
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 3600 + m * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's algorithms (public domain), proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_the_server_accepts() {
        let cases: &[(&str, Option<i64>)] = &[
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2025-01-01T10:00:00Z", Some(1_735_725_600)),
            ("2025-01-01T11:30:00+01:30", Some(1_735_725_600)),
            ("2025-01-01T08:00:00-02:00", Some(1_735_725_600)),
            ("2025-01-01T10:00:00.123456789Z", Some(1_735_725_600)),
            ("2024-02-29T00:00:00Z", Some(1_709_164_800)),
            ("0001-01-01T00:00:00Z", Some(-62_135_596_800)),
            ("2023-02-29T00:00:00Z", None),
            ("2025-01-01 10:00:00Z", None),
            ("2025-01-01T10:00:00", None),
            ("2025-13-01T10:00:00Z", None),
            ("2025-01-01T10:00:00.Z", None),
            ("2025-01-01T10:00:00+0100", None),
            ("", None),
            ("２０２５-01-01T10:00:00Z", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_rfc3339(input), *want, "{input}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for t in [0, 1_735_725_600, 1_709_164_800, -62_135_596_800, 4_102_444_800, 253_402_300_799] {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t), "{t}");
        }
        assert_eq!(format_rfc3339(-62_135_596_800), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn syslog_timestamps_are_rfc3164_in_utc() {
        assert_eq!(format_rfc3164(0), "Jan 01 00:00:00");
        assert_eq!(format_rfc3164(1_795_873_445), "Nov 28 13:44:05");
        assert_eq!(format_rfc3164(951_782_400), "Feb 29 00:00:00");
    }
}
