//! Amounts as the load generator counts them: ledger-core [`Money`] in the
//! tenant's currency, at its minor-unit scale (2 for PHP, 0 for JPY), and
//! the menu priced in it.

use ledger_core::{Currency, Money};
use rust_decimal::{Decimal, RoundingStrategy};

/// The menu: item and unit price, written for a two-decimal currency.
const MENU: [(&str, &str); 10] = [
    ("ADOBO", "85.00"),
    ("SINIGANG", "95.00"),
    ("LUMPIA", "45.00"),
    ("PANCIT", "70.00"),
    ("RICE", "20.00"),
    ("SISIG", "110.00"),
    ("HALO-HALO", "65.00"),
    ("COFFEE", "35.00"),
    ("ICED-TEA", "25.50"),
    ("BOTTLED-WATER", "15.75"),
];

/// One item of the menu, priced in the tenant's currency.
#[derive(Debug, Clone)]
pub struct Item {
    pub code: &'static str,
    pub price: Money,
    /// The price as the API wants it, e.g. `"25.50"`.
    pub price_text: String,
}

/// The menu in `currency`. A price finer than the currency's minor unit is
/// rounded to it, half to even (25.50 is 26 in a currency without minor
/// units).
pub fn menu(currency: Currency) -> Vec<Item> {
    MENU.iter()
        .map(|&(code, major)| {
            let major: Decimal = major.parse().expect("the menu's prices are decimals");
            let rounded = major
                .round_dp_with_strategy(currency.scale(), RoundingStrategy::MidpointNearestEven);
            let price = Money::parse(rounded, currency).expect("the menu's prices are in range");
            Item {
                code,
                price,
                price_text: text(price),
            }
        })
        .collect()
}

/// The API's decimal text of an amount, at the currency's scale: `"85.00"`
/// in PHP, `"85"` in JPY.
pub fn text(amount: Money) -> String {
    amount.amount().to_string()
}

/// Parses the API's decimal text of an amount in `currency`; `None` when it
/// is not a decimal, has digits below the minor unit, or is out of range.
pub fn parse(text: &str, currency: Currency) -> Option<Money> {
    Money::parse(text.parse().ok()?, currency).ok()
}

/// `amount` with the digits below its currency's minor unit dropped.
///
/// # Errors
/// When the amount is beyond the domain's range.
pub fn truncated(amount: Decimal, currency: Currency) -> anyhow::Result<Money> {
    Ok(Money::parse(
        amount.trunc_with_scale(currency.scale()),
        currency,
    )?)
}

/// Half of `amount`, rounded down to the minor unit, and at least one minor
/// unit: a partial refund.
pub fn half(amount: Money) -> Money {
    let currency = amount.currency();
    let minor = amount.amount().mantissa();
    let half = i64::try_from((minor / 2).max(1)).expect("money fits 64 bits of minor units");
    Money::parse(Decimal::new(half, currency.scale()), currency).expect("half is in range")
}

/// `a + b`, for amounts the generator itself made (its menu, its counts),
/// far within range and in one currency.
pub fn add(a: Money, b: Money) -> Money {
    a.checked_add(b)
        .expect("the generator's sums stay in range")
}

/// `a - b`, as [`add`].
pub fn sub(a: Money, b: Money) -> Money {
    a.checked_sub(b)
        .expect("the generator's differences stay in range")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn php() -> Currency {
        Currency::new("PHP")
    }

    fn jpy() -> Currency {
        Currency::new("JPY")
    }

    #[test]
    fn the_menu_is_priced_at_the_currency_scale() {
        let menu = menu(php());
        assert_eq!(menu.len(), 10);
        let iced_tea = menu
            .iter()
            .find(|i| i.code == "ICED-TEA")
            .expect("on the menu");
        assert_eq!(iced_tea.price_text, "25.50");
        assert_eq!(menu[0].price_text, "85.00");
        assert_eq!(menu[0].price.currency(), php());

        let menu = super::menu(jpy());
        let texts: Vec<&str> = menu.iter().map(|i| i.price_text.as_str()).collect();
        assert_eq!(
            texts,
            ["85", "95", "45", "70", "20", "110", "65", "35", "26", "16"]
        );
    }

    #[test]
    fn amounts_read_and_write_at_scale_two() {
        let m = parse("12.5", php()).expect("a PHP amount");
        assert_eq!(text(m), "12.50");
        assert_eq!(text(parse("0", php()).expect("zero")), "0.00");
        assert_eq!(text(parse("-0.05", php()).expect("negative")), "-0.05");
        assert_eq!(parse("1.005", php()), None, "below the centavo");
        assert_eq!(parse("twelve", php()), None);
        assert_eq!(
            text(truncated("1000000.009".parse().unwrap(), php()).unwrap()),
            "1000000.00"
        );
        assert!(truncated("2000000000".parse().unwrap(), php()).is_err());
    }

    #[test]
    fn amounts_read_and_write_at_scale_zero() {
        let m = parse("1250", jpy()).expect("a JPY amount");
        assert_eq!(text(m), "1250");
        assert_eq!(parse("12.5", jpy()), None, "JPY has no minor unit");
        assert_eq!(
            parse("12.0", jpy()),
            None,
            "a zero past the currency's scale is too precise too"
        );
        assert_eq!(
            text(truncated("300.99".parse().unwrap(), jpy()).unwrap()),
            "300"
        );
    }

    #[test]
    fn half_rounds_down_to_the_minor_unit_and_is_never_zero() {
        let php = |t| parse(t, php()).expect("PHP");
        assert_eq!(text(half(php("85.00"))), "42.50");
        assert_eq!(text(half(php("0.05"))), "0.02");
        assert_eq!(text(half(php("0.01"))), "0.01");
        let jpy = |t| parse(t, jpy()).expect("JPY");
        assert_eq!(text(half(jpy("85"))), "42");
        assert_eq!(text(half(jpy("1"))), "1");
    }

    #[test]
    fn sums_keep_the_scale() {
        let a = parse("25.50", php()).unwrap();
        let b = parse("15.75", php()).unwrap();
        assert_eq!(text(add(a, b)), "41.25");
        assert_eq!(text(sub(b, a)), "-9.75");
        assert_eq!(
            text(add(Money::zero(jpy()), parse("3", jpy()).unwrap())),
            "3"
        );
    }
}
