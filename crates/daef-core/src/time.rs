//! Timestamps as DAEF stores and prints them: UTC, truncated to whole microseconds.
//!
//! Truncating at construction means a value survives a round trip through Postgres
//! (`timestamptz` keeps microseconds) unchanged, so an audit event hashed before it was
//! stored hashes the same when read back.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// A point in time, UTC, microsecond precision.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// The current wall-clock time. Only the edges (HTTP handlers, the reconcile loop) call
    /// this; everything below them takes `now` as an argument.
    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    /// Converts any offset to UTC and drops sub-microsecond precision.
    pub fn from_datetime(dt: OffsetDateTime) -> Self {
        let utc = dt.to_offset(UtcOffset::UTC);
        let micros = utc.microsecond();
        // `replace_microsecond` only fails for values above 999_999, which `microsecond()` never returns.
        Self(utc.replace_microsecond(micros).unwrap_or(utc))
    }

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(self) -> i64 {
        (self.0.unix_timestamp_nanos() / 1_000) as i64
    }

    /// Builds a timestamp from microseconds since the Unix epoch.
    pub fn from_unix_micros(micros: i64) -> Self {
        let nanos = i128::from(micros) * 1_000;
        Self(OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH))
    }

    /// Milliseconds since the Unix epoch (the unit queue visibility deadlines use).
    pub fn unix_millis(self) -> i64 {
        self.unix_micros().div_euclid(1_000)
    }

    /// The underlying `time` value (always UTC).
    pub fn datetime(self) -> OffsetDateTime {
        self.0
    }

    /// `self + d`, saturating at the far future instead of panicking.
    pub fn plus(self, d: Duration) -> Self {
        self.0
            .checked_add(time::Duration::try_from(d).unwrap_or(time::Duration::MAX))
            .map(Self::from_datetime)
            .unwrap_or(self)
    }

    /// `self - d`, saturating at the far past instead of panicking.
    pub fn minus(self, d: Duration) -> Self {
        self.0
            .checked_sub(time::Duration::try_from(d).unwrap_or(time::Duration::MAX))
            .map(Self::from_datetime)
            .unwrap_or(self)
    }

    /// Whole seconds from `self` until `later`, rounded up; zero when `later` is not after `self`.
    pub fn seconds_until_ceil(self, later: Timestamp) -> u64 {
        let micros = later.unix_micros().saturating_sub(self.unix_micros());
        if micros <= 0 {
            0
        } else {
            (micros as u64).div_ceil(1_000_000)
        }
    }

    /// Parses an RFC 3339 timestamp with any offset (what query filters accept).
    pub fn parse_rfc3339(s: &str) -> Result<Self, time::error::Parse> {
        OffsetDateTime::parse(s, &Rfc3339).map(Self::from_datetime)
    }
}

impl fmt::Display for Timestamp {
    /// `2026-11-26T10:30:00.123456Z`: always six fractional digits, always `Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        match self.0.format(&format) {
            Ok(s) => f.write_str(&s),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(dt: OffsetDateTime) -> Self {
        Self::from_datetime(dt)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_six_fraction_digits_in_utc() {
        let t = Timestamp::parse_rfc3339("2026-11-26T11:30:00.1234567+01:00").unwrap();
        assert_eq!(t.to_string(), "2026-11-26T10:30:00.123456Z");
        let whole = Timestamp::parse_rfc3339("2026-11-26T10:30:00Z").unwrap();
        assert_eq!(whole.to_string(), "2026-11-26T10:30:00.000000Z");
    }

    #[test]
    fn micros_round_trip() {
        let t = Timestamp::now();
        assert_eq!(Timestamp::from_unix_micros(t.unix_micros()), t);
        assert_eq!(Timestamp::parse_rfc3339(&t.to_string()).unwrap(), t);
    }

    #[test]
    fn seconds_until_rounds_up() {
        let t = Timestamp::from_unix_micros(0);
        assert_eq!(t.seconds_until_ceil(t.plus(Duration::from_millis(1))), 1);
        assert_eq!(t.seconds_until_ceil(t.plus(Duration::from_secs(2))), 2);
        assert_eq!(t.plus(Duration::from_secs(2)).seconds_until_ceil(t), 0);
    }
}
