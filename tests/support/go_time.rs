//! Go's `time.Time` as the fake server must read and write it in a custom status: parsed like `Time.UnmarshalJSON`
//! (RFC 3339, as Go 1.20+ accepts it) and written back like `Time.MarshalJSON` (RFC 3339 with nanoseconds, trailing
//! zeros of the fraction dropped, `Z` for a zero offset), so the fake stores byte for byte what the server would.
//!
//! Written independently of the crate's own `time` module on purpose: the fake must not share a bug with the code it
//! tests.

/// Unix seconds of Go's zero time, `0001-01-01T00:00:00Z`.
pub const GO_ZERO_UNIX: i64 = -62_135_596_800;

/// An instant plus the UTC offset it was written with (Go keeps the offset and re-serialises with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoTime {
    pub unix_secs: i64,
    pub nanos: u32,
    pub offset_secs: i32,
}

impl GoTime {
    /// Go's zero `time.Time` (what `null` or an omitted `expires_at` decodes to).
    pub fn zero() -> GoTime {
        GoTime { unix_secs: GO_ZERO_UNIX, nanos: 0, offset_secs: 0 }
    }

    /// `Time.IsZero`: the instant, not the text, decides (`0000-12-31T23:00:00-01:00` is zero too).
    pub fn is_zero(&self) -> bool {
        self.unix_secs == GO_ZERO_UNIX && self.nanos == 0
    }

    /// The instant in nanoseconds since the Unix epoch.
    pub fn unix_nanos(&self) -> i128 {
        i128::from(self.unix_secs) * 1_000_000_000 + i128::from(self.nanos)
    }

    /// `Time.Before(now)` with `now` in Unix nanoseconds.
    pub fn is_before(&self, now_nanos: i128) -> bool {
        self.unix_nanos() < now_nanos
    }

    /// Parses what Go's `time.Parse(time.RFC3339, s)` accepts in practice: `YYYY-MM-DDTHH:MM:SS`, an optional
    /// fraction (`.` or `,` then digits, at most nine of them kept), then `Z` or `±HH:MM`. Upper-case `T` and `Z`
    /// only, seconds up to 59, offsets up to 23:59.
    pub fn parse_rfc3339(s: &str) -> Option<GoTime> {
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let year = digits(&b[0..4])?;
        let month = digits(&b[5..7])?;
        let day = digits(&b[8..10])?;
        let hour = digits(&b[11..13])?;
        let minute = digits(&b[14..16])?;
        let second = digits(&b[17..19])?;
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return None;
        }
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let mut rest = &b[19..];
        let mut nanos = 0u32;
        if rest.len() >= 2 && (rest[0] == b'.' || rest[0] == b',') && rest[1].is_ascii_digit() {
            let count = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            let frac = &rest[1..1 + count];
            for i in 0..9 {
                nanos = nanos * 10 + frac.get(i).map_or(0, |d| u32::from(d - b'0'));
            }
            rest = &rest[1 + count..];
        }
        let offset_secs = match rest {
            [b'Z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let oh = digits(&[*h1, *h2])?;
                let om = digits(&[*m1, *m2])?;
                if oh > 23 || om > 59 {
                    return None;
                }
                let off = (oh * 3600 + om * 60) as i32;
                if *sign == b'-' { -off } else { off }
            }
            _ => return None,
        };
        let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
        Some(GoTime { unix_secs: local - i64::from(offset_secs), nanos, offset_secs })
    }

    /// `time.RFC3339Nano` formatting, as `Time.MarshalJSON` writes it (without the quotes).
    pub fn to_rfc3339_nano(self) -> String {
        let local = self.unix_secs + i64::from(self.offset_secs);
        let (y, mo, d) = civil_from_days(local.div_euclid(86_400));
        let s = local.rem_euclid(86_400);
        let mut out = format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
        if self.nanos > 0 {
            let frac = format!("{:09}", self.nanos);
            out.push('.');
            out.push_str(frac.trim_end_matches('0'));
        }
        if self.offset_secs == 0 {
            out.push('Z');
        } else {
            let sign = if self.offset_secs < 0 { '-' } else { '+' };
            let abs = self.offset_secs.unsigned_abs();
            out.push_str(&format!("{sign}{:02}:{:02}", abs / 3600, abs / 60 % 60));
        }
        out
    }

    /// An instant in Unix nanoseconds, written in UTC.
    pub fn from_unix_nanos(nanos: i128) -> GoTime {
        GoTime {
            unix_secs: nanos.div_euclid(1_000_000_000) as i64,
            nanos: nanos.rem_euclid(1_000_000_000) as u32,
            offset_secs: 0,
        }
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |n, c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Proleptic Gregorian calendar arithmetic (Howard Hinnant's public-domain algorithms).
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
