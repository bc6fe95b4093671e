//! Money: a decimal amount in a currency, with checked arithmetic and the one
//! rounding rule of the domain.

use std::fmt;

use bincode::de::{Decoder, read::Reader};
use bincode::enc::{Encoder, write::Writer};
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::AMOUNT_MAJOR_MAX;

/// Why an amount or currency is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown ISO 4217 currency code {0:?}")]
    UnknownCurrency(String),
    #[error("amount {amount} has more than {scale} decimal places")]
    TooPrecise { amount: Decimal, scale: u32 },
    #[error("amount {0} is beyond the limit of {AMOUNT_MAJOR_MAX}")]
    OutOfRange(Decimal),
    #[error("currencies differ: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
}

/// An ISO 4217 currency and its minor-unit scale (2 for PHP and USD, 0 for JPY).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 3],
    scale: u8,
}

impl Currency {
    /// Looks a currency up by its ISO 4217 code.
    ///
    /// # Errors
    /// [`MoneyError::UnknownCurrency`] for a code that is not an active ISO
    /// 4217 currency with a minor unit (e.g. `XAU` has none).
    pub fn from_code(code: &str) -> Result<Self, MoneyError> {
        let unknown = || MoneyError::UnknownCurrency(code.to_owned());
        let iso = iso_currency::Currency::from_code(code).ok_or_else(unknown)?;
        let scale = iso.exponent().ok_or_else(unknown)?;
        let code: [u8; 3] = code.as_bytes().try_into().map_err(|_| unknown())?;
        Ok(Self {
            code,
            scale: u8::try_from(scale).map_err(|_| unknown())?,
        })
    }

    /// Builds a currency the program itself names.
    ///
    /// # Panics
    /// When `code` is not a known currency: a programmer error.
    pub fn new(code: &str) -> Self {
        Self::from_code(code).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).expect("currency codes are ASCII")
    }

    /// Decimal places of the minor unit.
    pub fn scale(&self) -> u32 {
        u32::from(self.scale)
    }

    /// The domain's only rounding: to the minor unit, half to even.
    fn round(&self, amount: Decimal) -> Decimal {
        let mut rounded =
            amount.round_dp_with_strategy(self.scale(), RoundingStrategy::MidpointNearestEven);
        rounded.rescale(self.scale());
        rounded
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_code(&code).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Currency {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Currency".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "ISO 4217 currency code",
            "type": "string",
            "pattern": "^[A-Z]{3}$"
        })
    }
}

/// Binary form: the three code letters, then the scale. Decoding checks the
/// shape, not the ISO table: the code was checked against the table when the
/// amount was decided, and the hash chain vouches for the bytes since. (The
/// table lookup, once per amount, was a fifth of the cost of decoding.)
impl Encode for Currency {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        encoder.writer().write(&self.code)?;
        encoder.writer().write(&[self.scale])
    }
}

/// The largest minor-unit scale of any ISO 4217 currency (4, for CLF).
const SCALE_MAX: u8 = 4;

impl<C> Decode<C> for Currency {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let mut raw = [0u8; 4];
        decoder.reader().read(&mut raw)?;
        let [a, b, c, scale] = raw;
        if !(a.is_ascii_uppercase() && b.is_ascii_uppercase() && c.is_ascii_uppercase())
            || scale > SCALE_MAX
        {
            return Err(DecodeError::Other("malformed currency"));
        }
        Ok(Self {
            code: [a, b, c],
            scale,
        })
    }
}
bincode::impl_borrow_decode!(Currency);

/// An amount of money: a decimal held at exactly its currency's minor-unit
/// scale (so `1.5` and `1.50` PHP are the same value and the same bytes).
///
/// Arithmetic is checked: mixing currencies or leaving the range of
/// [`AMOUNT_MAJOR_MAX`] is an error, never a silent wrap.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    /// Validates outside input: at most the currency's decimal places and
    /// within [`AMOUNT_MAJOR_MAX`].
    ///
    /// # Errors
    /// [`MoneyError::TooPrecise`] or [`MoneyError::OutOfRange`].
    /// The amount's own scale counts, trailing zeros included: `1.500` is
    /// three decimal places, too many for PHP, as the request grammar
    /// ([`amount_text`]) says.
    pub fn parse(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        let normalized = amount.normalize();
        if amount.scale() > currency.scale() {
            return Err(MoneyError::TooPrecise {
                amount,
                scale: currency.scale(),
            });
        }
        Self::in_range(normalized, currency)
    }

    /// Builds money from a mantissa at the currency's scale: the decoder's
    /// path, an integer comparison instead of decimal arithmetic.
    fn from_minor(minor: i64, currency: Currency) -> Option<Self> {
        let bound = AMOUNT_MAJOR_MAX.checked_mul(10i64.pow(currency.scale()))?;
        (minor.unsigned_abs() <= bound.unsigned_abs()).then(|| Self {
            amount: Decimal::new(minor, currency.scale()),
            currency,
        })
    }

    fn in_range(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        if amount.abs() > Decimal::from(AMOUNT_MAJOR_MAX) {
            return Err(MoneyError::OutOfRange(amount));
        }
        let mut amount = amount;
        amount.rescale(currency.scale());
        Ok(Self { amount, currency })
    }

    pub fn zero(currency: Currency) -> Self {
        Self::in_range(Decimal::ZERO, currency).expect("zero is in range")
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn is_zero(&self) -> bool {
        self.amount.is_zero()
    }

    pub fn is_positive(&self) -> bool {
        self.amount.is_sign_positive() && !self.amount.is_zero()
    }

    pub fn is_negative(&self) -> bool {
        self.amount.is_sign_negative() && !self.amount.is_zero()
    }

    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency, other.currency))
        }
    }

    /// # Errors
    /// On a currency mismatch or when the sum leaves the range.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(&other)?;
        Self::in_range(self.amount + other.amount, self.currency)
    }

    /// # Errors
    /// On a currency mismatch or when the difference leaves the range.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(&other)?;
        Self::in_range(self.amount - other.amount, self.currency)
    }

    /// `self × quantity`, e.g. a line total.
    ///
    /// # Errors
    /// When the product leaves the range.
    pub fn times(self, quantity: u32) -> Result<Money, MoneyError> {
        // Both factors are bounded far below Decimal's 96-bit mantissa, so the
        // product itself cannot overflow; only the domain range can be left.
        Self::in_range(self.amount * Decimal::from(quantity), self.currency)
    }

    pub fn negate(self) -> Money {
        Self {
            amount: -self.amount,
            currency: self.currency,
        }
    }

    pub fn min(self, other: Money) -> Money {
        debug_assert_eq!(self.currency, other.currency);
        if other.amount < self.amount {
            other
        } else {
            self
        }
    }

    pub fn max(self, other: Money) -> Money {
        debug_assert_eq!(self.currency, other.currency);
        if other.amount > self.amount {
            other
        } else {
            self
        }
    }

    /// The commission on this gross at `rate`, rounded half to even.
    pub fn commission(self, rate: CommissionRate) -> Money {
        let exact = self.amount * Decimal::from(rate.basis_points())
            / Decimal::from(CommissionRate::BASIS_POINTS_MAX);
        let rounded = self.currency.round(exact);
        Self::in_range(rounded, self.currency).expect("a commission is never larger than its gross")
    }

    /// `self × part / whole`, rounded half to even: the share of `self` that
    /// `part` of `whole` stands for (a refund's share of the commission).
    ///
    /// # Panics
    /// When `whole` is zero or `part` exceeds `whole` in magnitude: callers
    /// establish both first.
    pub fn pro_rata(self, part: Money, whole: Money) -> Money {
        assert!(!whole.is_zero(), "pro_rata over a zero whole");
        assert!(
            part.amount.abs() <= whole.amount.abs(),
            "pro_rata part exceeds whole"
        );
        let exact = self.amount * part.amount / whole.amount;
        Self::in_range(self.currency.round(exact), self.currency)
            .expect("a share is never larger than the whole")
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

/// JSON form: `{"amount": "12.50", "currency": "PHP"}`, the amount a string so
/// no client parses it as a float.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename = "Money")]
struct MoneyJson {
    #[schemars(with = "String", regex(pattern = r"^-?[0-9]+(\.[0-9]+)?$"))]
    amount: Decimal,
    currency: Currency,
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        MoneyJson {
            amount: self.amount,
            currency: self.currency,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let json = MoneyJson::deserialize(d)?;
        Money::parse(json.amount, json.currency).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Money {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Money".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        MoneyJson::json_schema(generator)
    }
}

/// Binary form: currency code, scale-free mantissa as a zigzag varint. The
/// scale is the currency's, so it is not stored.
impl Encode for Money {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        self.currency.encode(encoder)?;
        debug_assert_eq!(self.amount.scale(), self.currency.scale());
        i64::try_from(self.amount.mantissa())
            .map_err(|_| EncodeError::Other("amount mantissa beyond i64"))?
            .encode(encoder)
    }
}

impl<C> Decode<C> for Money {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let currency = Currency::decode(decoder)?;
        let minor = i64::decode(decoder)?;
        Self::from_minor(minor, currency)
            .ok_or(DecodeError::Other("amount beyond the domain limit"))
    }
}
bincode::impl_borrow_decode!(Money);

/// The one decimal grammar of an amount in a request, as JSON text:
/// `-?(0|[1-9][0-9]*)(\.[0-9]{1,4})?` (the sign only where a negative
/// amount means something: an adjustment). No exponent, no `+`, no `_`, no
/// leading zeros, no bare point; at most [`SCALE_MAX`] decimals here, and
/// at most the tenant currency's minor-unit digits where the currency is
/// known ([`Money::parse`], in the decider). The edge checks the shape, the
/// decider the scale; both refuse with the field named.
///
/// Use the modules as `#[serde(with = "amount_text::unsigned")]` (or
/// `signed`, `unsigned_option`) and `#[schemars(with = "amount_text::Unsigned")]`
/// (or `Signed`, `Option<Unsigned>`), so the schema carries the pattern.
pub mod amount_text {
    use std::borrow::Cow;

    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::SCALE_MAX;

    /// The grammar of an amount that cannot be negative.
    pub const UNSIGNED_PATTERN: &str = r"^(0|[1-9][0-9]*)(\.[0-9]{1,4})?$";
    /// The grammar of a signed amount.
    pub const SIGNED_PATTERN: &str = r"^-?(0|[1-9][0-9]*)(\.[0-9]{1,4})?$";
    /// Longest amount text: far beyond any amount in range
    /// ([`AMOUNT_MAJOR_MAX`](crate::limits::AMOUNT_MAJOR_MAX) has ten
    /// digits), short enough that nothing overflows parsing it.
    pub const AMOUNT_TEXT_LEN_MAX: usize = 24;

    /// Why a text is not an amount.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error(
        "{text:?} is not an amount: write {sign}digits without leading zeros, optionally a point and 1 to {SCALE_MAX} digits (at most the currency's minor-unit digits), matching {pattern}"
    )]
    pub struct AmountTextError {
        text: String,
        sign: &'static str,
        pattern: &'static str,
    }

    /// Parses `text` by the grammar; `signed` allows a leading `-`.
    ///
    /// # Errors
    /// [`AmountTextError`] for anything else.
    pub fn parse(text: &str, signed: bool) -> Result<Decimal, AmountTextError> {
        let error = || AmountTextError {
            text: text.chars().take(AMOUNT_TEXT_LEN_MAX + 8).collect(),
            sign: if signed { "an optional '-', then " } else { "" },
            pattern: if signed {
                SIGNED_PATTERN
            } else {
                UNSIGNED_PATTERN
            },
        };
        if text.len() > AMOUNT_TEXT_LEN_MAX {
            return Err(error());
        }
        let unsigned = match text.strip_prefix('-') {
            Some(rest) if signed => rest,
            _ => text,
        };
        let (whole, fraction) = match unsigned.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (unsigned, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let whole_ok = digits(whole) && (whole == "0" || !whole.starts_with('0'));
        let fraction_ok = fraction.is_none_or(|f| digits(f) && f.len() <= usize::from(SCALE_MAX));
        if !(whole_ok && fraction_ok) {
            return Err(error());
        }
        text.parse::<Decimal>().map_err(|_| error())
    }

    fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Cow<'de, str>, D::Error> {
        Cow::<'de, str>::deserialize(d)
    }

    /// An amount that cannot be negative.
    pub mod unsigned {
        use super::*;

        pub fn serialize<S: Serializer>(amount: &Decimal, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(amount)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
            parse(&text(d)?, false).map_err(serde::de::Error::custom)
        }
    }

    /// A signed amount.
    pub mod signed {
        use super::*;

        pub fn serialize<S: Serializer>(amount: &Decimal, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(amount)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
            parse(&text(d)?, true).map_err(serde::de::Error::custom)
        }
    }

    /// An optional amount that cannot be negative; `null` or absent is none.
    pub mod unsigned_option {
        use super::*;

        pub fn serialize<S: Serializer>(amount: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
            match amount {
                Some(amount) => s.collect_str(amount),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
            Option::<Cow<'de, str>>::deserialize(d)?
                .map(|t| parse(&t, false).map_err(serde::de::Error::custom))
                .transpose()
        }
    }

    /// The schema of an unsigned amount: a string with its pattern.
    pub struct Unsigned;
    /// The schema of a signed amount.
    pub struct Signed;

    impl schemars::JsonSchema for Unsigned {
        fn schema_name() -> Cow<'static, str> {
            "Amount".into()
        }
        fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
            schemars::json_schema!({
                "description": "A decimal amount, not negative: digits without leading zeros, optionally a point and at most the tenant currency's minor-unit digits (2 for PHP, 0 for JPY). No exponent, sign, '_' or bare point.",
                "type": "string",
                "pattern": UNSIGNED_PATTERN,
                "maxLength": AMOUNT_TEXT_LEN_MAX,
            })
        }
    }

    impl schemars::JsonSchema for Signed {
        fn schema_name() -> Cow<'static, str> {
            "SignedAmount".into()
        }
        fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
            schemars::json_schema!({
                "description": "A signed decimal amount: an optional '-', digits without leading zeros, optionally a point and at most the tenant currency's minor-unit digits (2 for PHP, 0 for JPY). No exponent, '+', '_' or bare point.",
                "type": "string",
                "pattern": SIGNED_PATTERN,
                "maxLength": AMOUNT_TEXT_LEN_MAX,
            })
        }
    }
}

/// A commission rate in basis points: 0..=10000 (0 % to 100 %).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Encode,
    schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct CommissionRate(#[schemars(range(max = 10000))] u16);

impl CommissionRate {
    pub const BASIS_POINTS_MAX: u16 = 10_000;

    /// # Errors
    /// [`CommissionRateError`] above 10000 basis points.
    pub fn from_basis_points(bps: u16) -> Result<Self, CommissionRateError> {
        if bps > Self::BASIS_POINTS_MAX {
            Err(CommissionRateError(bps))
        } else {
            Ok(Self(bps))
        }
    }

    pub fn basis_points(self) -> u16 {
        self.0
    }
}

/// A commission rate above 100 %.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("commission rate {0} bps is above 10000 bps")]
pub struct CommissionRateError(pub u16);

impl<'de> Deserialize<'de> for CommissionRate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_basis_points(u16::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl<C> Decode<C> for CommissionRate {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        Self::from_basis_points(u16::decode(decoder)?)
            .map_err(|_| DecodeError::Other("commission rate above 100%"))
    }
}
bincode::impl_borrow_decode!(CommissionRate);

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    fn php(amount: Decimal) -> Money {
        Money::parse(amount, Currency::new("PHP")).unwrap()
    }

    #[test]
    fn decimal_sums_are_exact() {
        assert_eq!(
            php(dec!(0.1)).checked_add(php(dec!(0.2))).unwrap(),
            php(dec!(0.3))
        );
    }

    #[test]
    fn amounts_are_held_at_the_currency_scale() {
        assert_eq!(php(dec!(1.5)).amount().to_string(), "1.50");
        let jpy = Currency::new("JPY");
        assert_eq!(
            Money::parse(dec!(100), jpy).unwrap().amount().to_string(),
            "100"
        );
    }

    #[test]
    fn too_many_decimals_is_rejected() {
        let err = Money::parse(dec!(1.005), Currency::new("PHP")).unwrap_err();
        assert!(matches!(err, MoneyError::TooPrecise { scale: 2, .. }));
        assert!(Money::parse(dec!(1.5), Currency::new("JPY")).is_err());
    }

    /// Regression: `1.500` PHP and `100.00` JPY were accepted, the digits
    /// beyond the minor unit being zeros. The grammar counts digits.
    #[test]
    fn trailing_zeros_beyond_the_minor_unit_are_too_precise() {
        let err = Money::parse(dec!(1.500), Currency::new("PHP")).unwrap_err();
        assert!(matches!(err, MoneyError::TooPrecise { scale: 2, .. }));
        assert!(Money::parse(dec!(100.00), Currency::new("JPY")).is_err());
        assert!(Money::parse(dec!(100), Currency::new("JPY")).is_ok());
    }

    /// Regression: `1e2`, `1_000`, `+1.00`, `.5`, `5.`, `0001.00` and
    /// `1E-2` were accepted as amounts.
    #[test]
    fn amount_text_has_one_grammar() {
        use amount_text::parse;
        for good in [
            "0",
            "1",
            "10",
            "1.5",
            "1.50",
            "0.01",
            "1000000000.00",
            "12.3456",
        ] {
            assert_eq!(parse(good, false).unwrap().to_string(), good, "{good}");
            assert_eq!(parse(good, true).unwrap().to_string(), good, "{good}");
        }
        for bad in [
            "1e2",
            "1_000",
            "+1.00",
            ".5",
            "5.",
            "0001.00",
            "1E-2",
            "",
            "-",
            "00",
            "01",
            "1.",
            "1.23456",
            " 1",
            "1 ",
            "1,00",
            "0x10",
            "NaN",
            "inf",
            "١",
            "1.-1",
            "--1",
            "-0x1",
            "1111111111111111111111111",
        ] {
            assert!(parse(bad, false).is_err(), "{bad:?} unsigned");
            assert!(parse(bad, true).is_err(), "{bad:?} signed");
        }
        assert!(parse("-1.00", false).is_err());
        assert_eq!(parse("-1.00", true).unwrap(), dec!(-1.00));
        assert_eq!(parse("-0.5", true).unwrap(), dec!(-0.5));
        let detail = parse("1e2", false).unwrap_err().to_string();
        assert!(detail.contains("\"1e2\"") && detail.contains(amount_text::UNSIGNED_PATTERN));
    }

    #[test]
    fn amount_text_serde_round_trips_and_names_the_grammar() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct Body {
            #[serde(with = "amount_text::unsigned")]
            price: Decimal,
            #[serde(with = "amount_text::signed")]
            delta: Decimal,
            #[serde(default, with = "amount_text::unsigned_option")]
            cap: Option<Decimal>,
        }
        let body: Body =
            serde_json::from_str(r#"{"price": "1.50", "delta": "-2", "cap": null}"#).unwrap();
        assert_eq!(body.price.to_string(), "1.50");
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"price":"1.50","delta":"-2","cap":null}"#
        );
        let absent: Body = serde_json::from_str(r#"{"price": "1", "delta": "1"}"#).unwrap();
        assert_eq!(absent.cap, None);
        for bad in [
            r#"{"price": "1e2", "delta": "1"}"#,
            r#"{"price": 1.5, "delta": "1"}"#,
            r#"{"price": "1", "delta": "+1"}"#,
            r#"{"price": "1", "delta": "1", "cap": "5."}"#,
        ] {
            let error = serde_json::from_str::<Body>(bad).unwrap_err().to_string();
            assert!(
                error.contains("amount") || error.contains("string"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn out_of_range_is_rejected() {
        assert!(
            Money::parse(
                Decimal::from(AMOUNT_MAJOR_MAX) + dec!(0.01),
                Currency::new("PHP")
            )
            .is_err()
        );
        assert!(php(dec!(1)).times(u32::MAX).is_err());
    }

    #[test]
    fn mixing_currencies_is_an_error() {
        let usd = Money::parse(dec!(1), Currency::new("USD")).unwrap();
        assert!(matches!(
            php(dec!(1)).checked_add(usd),
            Err(MoneyError::CurrencyMismatch(..))
        ));
    }

    #[test]
    fn unknown_currency_is_rejected() {
        assert!(Currency::from_code("XYZ").is_err());
        assert!(Currency::from_code("php").is_err());
    }

    #[test]
    fn commission_rounds_half_to_even() {
        let rate = CommissionRate::from_basis_points(1000).unwrap(); // 10 %
        assert_eq!(php(dec!(0.25)).commission(rate), php(dec!(0.02))); // 0.025 -> 0.02
        assert_eq!(php(dec!(0.35)).commission(rate), php(dec!(0.04))); // 0.035 -> 0.04
        assert_eq!(php(dec!(100)).commission(rate), php(dec!(10)));
    }

    #[test]
    fn pro_rata_rounds_half_to_even() {
        // commission 0.05 on gross 1.00; refunding 0.50 reverses 0.025 -> 0.02.
        assert_eq!(
            php(dec!(0.05)).pro_rata(php(dec!(0.50)), php(dec!(1.00))),
            php(dec!(0.02))
        );
        assert_eq!(
            php(dec!(0.07)).pro_rata(php(dec!(0.50)), php(dec!(1.00))),
            php(dec!(0.04))
        );
    }

    #[test]
    fn rate_above_one_hundred_percent_is_rejected() {
        assert!(CommissionRate::from_basis_points(10_001).is_err());
        assert!(CommissionRate::from_basis_points(10_000).is_ok());
    }
}
