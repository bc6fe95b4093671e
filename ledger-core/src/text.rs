//! Bounded free text: display names and reasons.

use std::fmt;

use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::{NAME_LEN_MAX, REASON_LEN_MAX};

/// Why text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("text is empty or only white space")]
    Blank,
    #[error("text is longer than {0} bytes")]
    TooLong(usize),
    #[error("text contains control characters")]
    Control,
}

fn check(text: &str, max: usize) -> Result<(), TextError> {
    if text.trim().is_empty() {
        return Err(TextError::Blank);
    }
    if text.len() > max {
        return Err(TextError::TooLong(max));
    }
    if text.chars().any(char::is_control) {
        return Err(TextError::Control);
    }
    Ok(())
}

macro_rules! bounded_text {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// # Errors
            /// [`TextError`] for blank, over-long or control-character text.
            pub fn parse(text: &str) -> Result<Self, TextError> {
                check(text, $max).map(|()| Self(text.to_owned()))
            }
            /// # Panics
            /// On invalid text: a programmer error.
            pub fn new(text: &str) -> Self {
                Self::parse(text).unwrap_or_else(|e| panic!("{e}"))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "minLength": 1, "maxLength": $max })
            }
        }

        impl Encode for $name {
            fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
                self.0.encode(encoder)
            }
        }

        impl<C> Decode<C> for $name {
            fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
                let text = String::decode(decoder)?;
                check(&text, $max).map_err(|_| DecodeError::Other(concat!("invalid ", stringify!($name))))?;
                Ok(Self(text))
            }
        }
        bincode::impl_borrow_decode!($name);
    };
}

bounded_text!(
    /// A display name (vendor, employee): 1..=[`NAME_LEN_MAX`] bytes.
    Name,
    NAME_LEN_MAX
);
bounded_text!(
    /// Why something was done (suspension, adjustment, refund): 1..=[`REASON_LEN_MAX`] bytes.
    Reason,
    REASON_LEN_MAX
);
