//! Schemas that were once written and must decode forever, and the upcasters
//! that turn them into today's events.
//!
//! History:
//! - `CreditAccountOpened` v1 (`name`, `allowance`, `cadence`): every account
//!   was topped up, with no cap. v2 moved these into a [`CreditPolicy`] with a
//!   `mode` and an optional `cap`. A v1 account is a top-up account without a cap.

use bincode::de::Decoder;
use bincode::error::DecodeError;
use bincode::{Decode, Encode};

use crate::event::{CreditAccountOpened, Event, EventType};
use crate::money::Money;
use crate::policy::{CreditPolicy, ReplenishMode};
use crate::text::Name;
use crate::time::Cadence;

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct CreditAccountOpenedV1 {
    pub name: Name,
    pub allowance: Money,
    pub cadence: Cadence,
}

impl CreditAccountOpenedV1 {
    fn upcast(self) -> CreditAccountOpened {
        CreditAccountOpened {
            name: self.name,
            policy: CreditPolicy {
                allowance: self.allowance,
                cadence: self.cadence,
                mode: ReplenishMode::TopUp,
                cap: None,
            },
        }
    }
}

/// Decodes an event written at an older schema version. `Ok(None)` when the
/// version never existed.
pub(super) fn decode<C, D: Decoder<Context = C>>(
    event_type: EventType,
    schema_version: u8,
    d: &mut D,
) -> Result<Option<Event>, DecodeError> {
    Ok(match (event_type, schema_version) {
        (EventType::CreditAccountOpened, 1) => {
            // The upcast event is checked like any other by `codec::decode`.
            Some(Event::CreditAccountOpened(
                CreditAccountOpenedV1::decode(d)?.upcast(),
            ))
        }
        _ => None,
    })
}
