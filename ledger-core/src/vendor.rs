//! `vendor/{id}`: a vendor, its commission rate and whether it may sell.

use serde::{Deserialize, Serialize};

use crate::decider::Decider;
use crate::event::{
    CommissionRateChanged, Event, VendorRegistered, VendorReinstated, VendorSuspended,
};
use crate::id::VendorId;
use crate::money::CommissionRate;
use crate::rejection::Rejection;
use crate::text::{Name, Reason};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterVendor {
    pub vendor_id: VendorId,
    pub name: Name,
    pub commission_rate: CommissionRate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeCommissionRate {
    pub vendor_id: VendorId,
    pub commission_rate: CommissionRate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspendVendor {
    pub vendor_id: VendorId,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReinstateVendor {
    pub vendor_id: VendorId,
}

/// Every command on a vendor stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VendorCommand {
    Register(RegisterVendor),
    ChangeCommissionRate(ChangeCommissionRate),
    Suspend(SuspendVendor),
    Reinstate(ReinstateVendor),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredVendor {
    pub name: Name,
    pub commission_rate: CommissionRate,
    pub suspended: bool,
}

/// `None` until registered.
pub type VendorState = Option<RegisteredVendor>;

pub struct Vendor;

impl Decider for Vendor {
    type Command = VendorCommand;
    type State = VendorState;

    fn initial_state() -> VendorState {
        None
    }

    fn decide(c: &VendorCommand, s: &VendorState) -> Result<Vec<Event>, Rejection> {
        if let VendorCommand::Register(c) = c {
            return match s {
                Some(_) => Err(Rejection::VendorExists),
                None => Ok(vec![Event::VendorRegistered(VendorRegistered {
                    name: c.name.clone(),
                    commission_rate: c.commission_rate,
                })]),
            };
        }
        let vendor = s.as_ref().ok_or(Rejection::VendorNotFound)?;
        Ok(match c {
            VendorCommand::Register(_) => unreachable!("handled above"),
            VendorCommand::ChangeCommissionRate(c)
                if c.commission_rate != vendor.commission_rate =>
            {
                vec![Event::CommissionRateChanged(CommissionRateChanged {
                    commission_rate: c.commission_rate,
                })]
            }
            VendorCommand::Suspend(c) if !vendor.suspended => {
                vec![Event::VendorSuspended(VendorSuspended {
                    reason: c.reason.clone(),
                })]
            }
            VendorCommand::Reinstate(_) if vendor.suspended => {
                vec![Event::VendorReinstated(VendorReinstated {})]
            }
            _ => vec![],
        })
    }

    fn evolve(s: VendorState, e: &Event) -> VendorState {
        match (s, e) {
            (_, Event::VendorRegistered(e)) => Some(RegisteredVendor {
                name: e.name.clone(),
                commission_rate: e.commission_rate,
                suspended: false,
            }),
            (Some(v), Event::CommissionRateChanged(e)) => Some(RegisteredVendor {
                commission_rate: e.commission_rate,
                ..v
            }),
            (Some(v), Event::VendorSuspended(_)) => Some(RegisteredVendor {
                suspended: true,
                ..v
            }),
            (Some(v), Event::VendorReinstated(_)) => Some(RegisteredVendor {
                suspended: false,
                ..v
            }),
            (s, _) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::given;

    fn rate(bps: u16) -> CommissionRate {
        CommissionRate::from_basis_points(bps).unwrap()
    }
    fn registered() -> Event {
        Event::VendorRegistered(VendorRegistered {
            name: Name::new("Tita's Kitchen"),
            commission_rate: rate(1000),
        })
    }
    fn suspended() -> Event {
        Event::VendorSuspended(VendorSuspended {
            reason: Reason::new("health inspection"),
        })
    }
    fn v() -> VendorId {
        VendorId::new("v1")
    }
    fn register() -> VendorCommand {
        VendorCommand::Register(RegisterVendor {
            vendor_id: v(),
            name: Name::new("Tita's Kitchen"),
            commission_rate: rate(1000),
        })
    }
    fn change(bps: u16) -> VendorCommand {
        VendorCommand::ChangeCommissionRate(ChangeCommissionRate {
            vendor_id: v(),
            commission_rate: rate(bps),
        })
    }
    fn suspend() -> VendorCommand {
        VendorCommand::Suspend(SuspendVendor {
            vendor_id: v(),
            reason: Reason::new("health inspection"),
        })
    }
    fn reinstate() -> VendorCommand {
        VendorCommand::Reinstate(ReinstateVendor { vendor_id: v() })
    }

    #[test]
    fn registering_a_vendor() {
        given::<Vendor>(&[]).when(&register()).then(&[registered()]);
    }

    #[test]
    fn registering_twice_is_rejected() {
        given::<Vendor>(&[registered()])
            .when(&register())
            .rejects(Rejection::VendorExists);
    }

    #[test]
    fn changing_the_commission_rate() {
        given::<Vendor>(&[registered()])
            .when(&change(1250))
            .then(&[Event::CommissionRateChanged(CommissionRateChanged {
                commission_rate: rate(1250),
            })]);
    }

    #[test]
    fn changing_to_the_same_rate_changes_nothing() {
        given::<Vendor>(&[registered()])
            .when(&change(1000))
            .then(&[]);
    }

    #[test]
    fn commands_on_an_unknown_vendor_are_rejected() {
        for command in [change(5), suspend(), reinstate()] {
            given::<Vendor>(&[])
                .when(&command)
                .rejects(Rejection::VendorNotFound);
        }
    }

    #[test]
    fn suspending_and_reinstating() {
        given::<Vendor>(&[registered()])
            .when(&suspend())
            .then(&[suspended()]);
        given::<Vendor>(&[registered(), suspended()])
            .when(&suspend())
            .then(&[]);
        given::<Vendor>(&[registered(), suspended()])
            .when(&reinstate())
            .then(&[Event::VendorReinstated(VendorReinstated {})]);
        given::<Vendor>(&[registered()])
            .when(&reinstate())
            .then(&[]);
    }
}
