//! Time in the domain: instants, tenant-local dates, time zones and the
//! replenishment periods computed from them. The core never reads a clock:
//! every instant arrives inside a command.

use std::fmt;
use std::str::FromStr;

use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone as _, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant, in microseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode)]
pub struct Timestamp(i64);

/// Decoding refuses instants chrono cannot represent, so every decoded
/// timestamp can be displayed and serialized.
impl<C> Decode<C> for Timestamp {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let micros = i64::decode(decoder)?;
        DateTime::from_timestamp_micros(micros)
            .map(|_| Self(micros))
            .ok_or(DecodeError::Other("bound: instant out of range"))
    }
}
bincode::impl_borrow_decode!(Timestamp);

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }
    pub const fn as_micros(self) -> i64 {
        self.0
    }
    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        Self(at.timestamp_micros())
    }
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0).expect("timestamps stay within chrono's range")
    }
    /// `self + seconds`, saturating.
    pub fn plus_seconds(self, seconds: i64) -> Self {
        Self(self.0.saturating_add(seconds.saturating_mul(1_000_000)))
    }
    /// The calendar date of this instant in `zone`.
    pub fn local_date(self, zone: TimeZone) -> LocalDate {
        LocalDate(self.to_datetime().with_timezone(&zone.0).date_naive())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            self.to_datetime()
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl FromStr for Timestamp {
    type Err = chrono::ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::from_datetime(
            DateTime::parse_from_rfc3339(s)?.with_timezone(&Utc),
        ))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let at = DateTime::<Utc>::deserialize(d)?;
        if DateTime::from_timestamp_micros(at.timestamp_micros()).is_none() {
            return Err(serde::de::Error::custom("instant out of range"));
        }
        Ok(Self::from_datetime(at))
    }
}

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "date-time" })
    }
}

/// A calendar date in a tenant's time zone (a dashboard day, a due date).
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct LocalDate(NaiveDate);

impl LocalDate {
    pub const fn new(date: NaiveDate) -> Self {
        Self(date)
    }
    /// # Panics
    /// On an impossible date: a programmer error.
    pub fn ymd(year: i32, month: u32, day: u32) -> Self {
        Self(NaiveDate::from_ymd_opt(year, month, day).expect("valid calendar date"))
    }
    pub const fn as_naive(self) -> NaiveDate {
        self.0
    }
}

impl fmt::Debug for LocalDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for LocalDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Encode for LocalDate {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        self.0.num_days_from_ce().encode(encoder)
    }
}

impl<C> Decode<C> for LocalDate {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        NaiveDate::from_num_days_from_ce_opt(i32::decode(decoder)?)
            .map(Self)
            .ok_or(DecodeError::Other("date out of range"))
    }
}
bincode::impl_borrow_decode!(LocalDate);

/// An IANA time zone, e.g. `Asia/Manila`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeZone(chrono_tz::Tz);

impl TimeZone {
    /// # Errors
    /// When `name` is not an IANA zone name.
    pub fn parse(name: &str) -> Result<Self, UnknownTimeZone> {
        chrono_tz::Tz::from_str(name)
            .map(Self)
            .map_err(|_| UnknownTimeZone(name.to_owned()))
    }
    /// # Panics
    /// When `name` is unknown: a programmer error.
    pub fn new(name: &str) -> Self {
        Self::parse(name).unwrap_or_else(|e| panic!("{e}"))
    }
    pub fn name(&self) -> &'static str {
        self.0.name()
    }
    /// The first instant of `date` in this zone. Where a transition skips
    /// midnight, the first instant that exists that day.
    pub fn start_of(&self, date: LocalDate) -> Timestamp {
        let midnight = date.0.and_hms_opt(0, 0, 0).expect("midnight exists");
        let local = (0..=24 * 4)
            .find_map(|quarter| {
                self.0
                    .from_local_datetime(&(midnight + chrono::Duration::minutes(15 * quarter)))
                    .earliest()
            })
            .expect("a day has at least one instant");
        Timestamp::from_datetime(local.with_timezone(&Utc))
    }
}

/// A zone name that is not in the IANA database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown IANA time zone {0:?}")]
pub struct UnknownTimeZone(pub String);

impl fmt::Debug for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for TimeZone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&name).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for TimeZone {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TimeZone".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "description": "IANA time zone name, e.g. Asia/Manila", "type": "string" })
    }
}

impl Encode for TimeZone {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        self.name().encode(encoder)
    }
}

impl<C> Decode<C> for TimeZone {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let name = String::decode(decoder)?;
        Self::parse(&name).map_err(|_| DecodeError::Other("unknown time zone"))
    }
}
bincode::impl_borrow_decode!(TimeZone);

/// How often an employee's credit is replenished.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Encode,
    Decode,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Cadence {
    /// Cutoffs on the 1st and the 16th: periods `YYYY-MM-H1`, `YYYY-MM-H2`.
    SemiMonthly,
    /// Cutoff on the 1st: periods `YYYY-MM`.
    Monthly,
}

/// A replenishment period: `2026-11-H1`, `2026-11-H2` or `2026-11`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period {
    year: i16,
    month: u8,
    /// 0 for a whole month, 1 or 2 for a half.
    half: u8,
}

/// Text that is not a period.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a period (YYYY-MM, YYYY-MM-H1 or YYYY-MM-H2)")]
pub struct PeriodParseError(pub String);

impl Period {
    /// The period of `cadence` that contains `at` in `zone`.
    pub fn containing(at: Timestamp, zone: TimeZone, cadence: Cadence) -> Self {
        let date = at.local_date(zone).0;
        let year = i16::try_from(date.year()).expect("years of the domain fit i16");
        let month = date.month() as u8;
        let half = match cadence {
            Cadence::Monthly => 0,
            Cadence::SemiMonthly if date.day() < 16 => 1,
            Cadence::SemiMonthly => 2,
        };
        Self { year, month, half }
    }

    pub fn cadence(&self) -> Cadence {
        if self.half == 0 {
            Cadence::Monthly
        } else {
            Cadence::SemiMonthly
        }
    }

    pub fn first_day(&self) -> LocalDate {
        let day = if self.half == 2 { 16 } else { 1 };
        LocalDate::ymd(i32::from(self.year), u32::from(self.month), day)
    }

    pub fn last_day(&self) -> LocalDate {
        if self.half == 1 {
            return LocalDate::ymd(i32::from(self.year), u32::from(self.month), 15);
        }
        let (y, m) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        LocalDate(
            LocalDate::ymd(i32::from(y), u32::from(m), 1)
                .0
                .pred_opt()
                .expect("date in range"),
        )
    }

    /// Whether the two periods share at least one day.
    pub fn overlaps(&self, other: &Period) -> bool {
        self.first_day() <= other.last_day() && other.first_day() <= self.last_day()
    }

    /// # Errors
    /// [`PeriodParseError`] for anything but `YYYY-MM`, `YYYY-MM-H1`, `YYYY-MM-H2`
    /// with a year in 1970..=9999.
    pub fn parse(text: &str) -> Result<Self, PeriodParseError> {
        let bad = || PeriodParseError(text.to_owned());
        let (ym, half) = match text.len() {
            7 => (text, 0),
            10 => match &text[7..] {
                "-H1" => (&text[..7], 1),
                "-H2" => (&text[..7], 2),
                _ => return Err(bad()),
            },
            _ => return Err(bad()),
        };
        let (y, m) = ym.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let year: i16 = y.parse().map_err(|_| bad())?;
        let month: u8 = m.parse().map_err(|_| bad())?;
        if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Self { year, month, half })
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)?;
        if self.half != 0 {
            write!(f, "-H{}", self.half)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Period {
    type Err = PeriodParseError;
    fn from_str(s: &str) -> Result<Self, PeriodParseError> {
        Self::parse(s)
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Period {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Period".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])(-H[12])?$" })
    }
}

impl Encode for Period {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        (self.year, self.month, self.half).encode(encoder)
    }
}

impl<C> Decode<C> for Period {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let (year, month, half) = <(i16, u8, u8)>::decode(decoder)?;
        if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || half > 2 {
            return Err(DecodeError::Other("period out of range"));
        }
        Ok(Self { year, month, half })
    }
}
bincode::impl_borrow_decode!(Period);

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn local_date_uses_the_tenant_zone() {
        let manila = TimeZone::new("Asia/Manila");
        // 16:30 UTC on Nov 15 is 00:30 on Nov 16 in Manila (UTC+8).
        assert_eq!(
            at("2026-11-15T16:30:00Z").local_date(manila),
            LocalDate::ymd(2026, 11, 16)
        );
        assert_eq!(
            at("2026-11-15T15:59:59Z").local_date(manila),
            LocalDate::ymd(2026, 11, 15)
        );
    }

    #[test]
    fn periods_follow_the_cutoffs_in_the_tenant_zone() {
        let manila = TimeZone::new("Asia/Manila");
        let semi = Cadence::SemiMonthly;
        assert_eq!(
            Period::containing(at("2026-11-15T15:59:59Z"), manila, semi).to_string(),
            "2026-11-H1"
        );
        assert_eq!(
            Period::containing(at("2026-11-15T16:00:00Z"), manila, semi).to_string(),
            "2026-11-H2"
        );
        assert_eq!(
            Period::containing(at("2026-11-30T16:00:00Z"), manila, semi).to_string(),
            "2026-12-H1"
        );
        assert_eq!(
            Period::containing(at("2026-11-30T15:00:00Z"), manila, Cadence::Monthly).to_string(),
            "2026-11"
        );
    }

    #[test]
    fn period_text_round_trips_and_rejects_junk() {
        for text in ["2026-11", "2026-11-H1", "2026-02-H2", "1970-01"] {
            assert_eq!(Period::parse(text).unwrap().to_string(), text);
        }
        for text in [
            "2026-13",
            "2026-11-H3",
            "2026-1",
            "26-11",
            "2026-11-h1",
            "+026-11",
            "2026-00",
        ] {
            assert!(Period::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn period_days_and_overlap() {
        let feb_h2 = Period::parse("2028-02-H2").unwrap();
        assert_eq!(feb_h2.first_day(), LocalDate::ymd(2028, 2, 16));
        assert_eq!(feb_h2.last_day(), LocalDate::ymd(2028, 2, 29));
        let month = Period::parse("2028-02").unwrap();
        assert!(month.overlaps(&feb_h2));
        assert!(!Period::parse("2028-02-H1").unwrap().overlaps(&feb_h2));
        assert_eq!(
            Period::parse("2026-12").unwrap().last_day(),
            LocalDate::ymd(2026, 12, 31)
        );
    }

    #[test]
    fn start_of_day_in_zone() {
        let manila = TimeZone::new("Asia/Manila");
        assert_eq!(
            manila.start_of(LocalDate::ymd(2026, 11, 16)),
            at("2026-11-15T16:00:00Z")
        );
    }
}
