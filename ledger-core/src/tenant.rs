//! `tenant/{id}`: the tenant's currency and time zone.

use serde::{Deserialize, Serialize};

use crate::decider::Decider;
use crate::event::{Event, TenantConfigured};
use crate::money::Currency;
use crate::rejection::Rejection;
use crate::time::TimeZone;

/// A tenant's settings, once configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantSettings {
    pub currency: Currency,
    pub time_zone: TimeZone,
}

/// `None` until the tenant is configured.
pub type TenantState = Option<TenantSettings>;

/// Sets the tenant's currency and time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigureTenant {
    pub currency: Currency,
    pub time_zone: TimeZone,
}

/// What `ConfigureTenant` decides on: the tenant stream, plus one fact the
/// command handler establishes from the store, because no single stream holds
/// it: whether any event of the tenant records an amount yet
/// ([`Event::currency`](crate::event::Event::currency) is `Some`). That is
/// money moving, and also a credit policy's allowance: once an account holds
/// an allowance in a currency, changing the currency would strand it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TenantContext {
    pub settings: TenantState,
    pub amounts_recorded: bool,
}

pub struct Tenant;

impl Decider for Tenant {
    type Command = ConfigureTenant;
    type State = TenantContext;

    fn initial_state() -> TenantContext {
        TenantContext::default()
    }

    fn decide(c: &ConfigureTenant, s: &TenantContext) -> Result<Vec<Event>, Rejection> {
        let wanted = TenantSettings {
            currency: c.currency,
            time_zone: c.time_zone,
        };
        if s.settings == Some(wanted) {
            return Ok(vec![]);
        }
        if let Some(current) = s.settings
            && current.currency != c.currency
            && s.amounts_recorded
        {
            return Err(Rejection::CurrencyLocked);
        }
        Ok(vec![Event::TenantConfigured(TenantConfigured {
            currency: c.currency,
            time_zone: c.time_zone,
        })])
    }

    fn evolve(mut s: TenantContext, e: &Event) -> TenantContext {
        s.settings = evolve_settings(s.settings, e);
        s
    }
}

/// Folds a tenant stream into its settings.
pub fn evolve_settings(state: TenantState, e: &Event) -> TenantState {
    match e {
        Event::TenantConfigured(e) => Some(TenantSettings {
            currency: e.currency,
            time_zone: e.time_zone,
        }),
        _ => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::given;

    fn configure(code: &str, zone: &str) -> ConfigureTenant {
        ConfigureTenant {
            currency: Currency::new(code),
            time_zone: TimeZone::new(zone),
        }
    }

    fn configured(code: &str, zone: &str) -> Event {
        Event::TenantConfigured(TenantConfigured {
            currency: Currency::new(code),
            time_zone: TimeZone::new(zone),
        })
    }

    #[test]
    fn configuring_a_new_tenant_records_its_settings() {
        given::<Tenant>(&[])
            .when(&configure("PHP", "Asia/Manila"))
            .then(&[configured("PHP", "Asia/Manila")]);
    }

    #[test]
    fn configuring_the_same_settings_again_changes_nothing() {
        given::<Tenant>(&[configured("PHP", "Asia/Manila")])
            .when(&configure("PHP", "Asia/Manila"))
            .then(&[]);
    }

    #[test]
    fn the_zone_may_change_after_amounts_were_recorded() {
        let state = TenantContext {
            settings: Tenant::fold(&[configured("PHP", "Asia/Manila")]).settings,
            amounts_recorded: true,
        };
        let events = Tenant::decide(&configure("PHP", "Asia/Tokyo"), &state).unwrap();
        assert_eq!(events, [configured("PHP", "Asia/Tokyo")]);
    }

    #[test]
    fn the_currency_may_change_before_any_amount_is_recorded() {
        given::<Tenant>(&[configured("PHP", "Asia/Manila")])
            .when(&configure("USD", "Asia/Manila"))
            .then(&[configured("USD", "Asia/Manila")]);
    }

    #[test]
    fn the_currency_is_locked_once_an_amount_is_recorded() {
        let state = TenantContext {
            settings: Tenant::fold(&[configured("PHP", "Asia/Manila")]).settings,
            amounts_recorded: true,
        };
        assert_eq!(
            Tenant::decide(&configure("USD", "Asia/Manila"), &state),
            Err(Rejection::CurrencyLocked)
        );
    }
}
