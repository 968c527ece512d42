//! A UTC timestamp with millisecond precision, formatted as RFC 3339 (`2026-11-22T00:36:40.123Z`).
//!
//! Hand-rolled (days-from-civil arithmetic) because the components need only this, and a date
//! crate would add weight to every Wasm binary.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcTime(i64);

/// An RFC 3339 string this crate does not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeParseError(pub String);

impl fmt::Display for TimeParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid UTC timestamp {:?}: expected YYYY-MM-DDTHH:MM:SS[.mmm]Z",
            self.0
        )
    }
}

impl std::error::Error for TimeParseError {}

// Years 0..=9999 keep the four-digit RFC 3339 form valid.
const MIN_MILLIS: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00Z
const MAX_MILLIS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z

impl UtcTime {
    /// The current time from the system clock (WASI's wall clock inside a component).
    pub fn now() -> Self {
        let millis = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(MAX_MILLIS),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(-MIN_MILLIS),
        };
        Self::from_unix_millis(millis)
    }

    /// Clamps to years 0..=9999 so that formatting is always well-formed.
    pub fn from_unix_millis(millis: i64) -> Self {
        UtcTime(millis.clamp(MIN_MILLIS, MAX_MILLIS))
    }

    pub fn unix_millis(self) -> i64 {
        self.0
    }

    /// `2026-11-22T00:36:40.123Z`
    pub fn to_rfc3339(self) -> String {
        let (y, mo, d, h, mi, s, ms) = self.fields();
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
    }

    /// `2026-11-22 00:36:40 UTC`, for people.
    pub fn to_display(self) -> String {
        let (y, mo, d, h, mi, s, _) = self.fields();
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
    }

    /// Parses what [`UtcTime::to_rfc3339`] writes; the fraction is optional (up to 9 digits,
    /// truncated to milliseconds) and only the `Z` offset is accepted.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimeParseError> {
        let err = || TimeParseError(text.chars().take(64).collect());
        let b = text.as_bytes();
        if b.len() < 20 || !b.is_ascii() {
            return Err(err());
        }
        let num = |r: std::ops::Range<usize>| -> Result<i64, TimeParseError> {
            let s = &text[r];
            if s.bytes().all(|c| c.is_ascii_digit()) {
                s.parse().map_err(|_| err())
            } else {
                Err(err())
            }
        };
        if b[4] != b'-'
            || b[7] != b'-'
            || (b[10] != b'T' && b[10] != b't')
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err(err());
        }
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let mut rest = &text[19..];
        let mut ms = 0;
        if let Some(frac) = rest.strip_prefix('.') {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 9 {
                return Err(err());
            }
            let padded = format!("{:0<3}", &frac[..digits.min(3)]);
            ms = padded.parse::<i64>().map_err(|_| err())?;
            rest = &frac[digits..];
        }
        if rest != "Z" && rest != "z" {
            return Err(err());
        }
        if !(1..=12).contains(&mo)
            || d < 1
            || d > days_in_month(y, mo)
            || h > 23
            || mi > 59
            || s > 59
        {
            return Err(err());
        }
        let days = days_from_civil(y, mo, d);
        Ok(UtcTime(
            ((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms,
        ))
    }

    fn fields(self) -> (i64, i64, i64, i64, i64, i64, i64) {
        let days = self.0.div_euclid(86_400_000);
        let in_day = self.0.rem_euclid(86_400_000);
        let (y, mo, d) = civil_from_days(days);
        (
            y,
            mo,
            d,
            in_day / 3_600_000,
            in_day / 60_000 % 60,
            in_day / 1000 % 60,
            in_day % 1000,
        )
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's algorithms (public domain): proleptic Gregorian calendar <-> day number.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
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
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl fmt::Display for UtcTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for UtcTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for UtcTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        UtcTime::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(
            UtcTime::from_unix_millis(0).to_rfc3339(),
            "1970-01-01T00:00:00.000Z"
        );
        // Checked with `date -u -d @1795308400`.
        assert_eq!(
            UtcTime::from_unix_millis(1_795_308_400_123).to_rfc3339(),
            "2026-11-22T00:46:40.123Z"
        );
        assert_eq!(
            UtcTime::from_unix_millis(951_782_400_000).to_rfc3339(),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            UtcTime::from_unix_millis(-1).to_rfc3339(),
            "1969-12-31T23:59:59.999Z"
        );
        assert_eq!(
            UtcTime::from_unix_millis(0).to_display(),
            "1970-01-01 00:00:00 UTC"
        );
    }

    #[test]
    fn round_trips_every_day_across_four_centuries() {
        let mut day = days_from_civil(1900, 1, 1);
        while day < days_from_civil(2300, 1, 1) {
            let t = UtcTime::from_unix_millis(day * 86_400_000 + 45_296_789);
            assert_eq!(UtcTime::parse_rfc3339(&t.to_rfc3339()), Ok(t));
            day += 1;
        }
    }

    #[test]
    fn clamps_out_of_range_values() {
        assert_eq!(
            UtcTime::from_unix_millis(i64::MAX).to_rfc3339(),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(
            UtcTime::from_unix_millis(i64::MIN).to_rfc3339(),
            "0000-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn parses_fractions_and_rejects_garbage() {
        let t = UtcTime::parse_rfc3339("2026-11-22T00:36:40Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-22T00:36:40.000Z");
        let t = UtcTime::parse_rfc3339("2026-11-22T00:36:40.1234567Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-22T00:36:40.123Z");
        for bad in [
            "",
            "2026-11-22",
            "2026-11-22T00:36:40+01:00",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T00:36:40.Z",
            "2026-11-22T00:36:40.1234567890Z",
            "+026-11-22T00:36:40Z",
            "2026-11-22T00:36:40Zjunk",
            "２０２６-11-22T00:36:40Z",
        ] {
            assert!(
                UtcTime::parse_rfc3339(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
