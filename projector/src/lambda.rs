//! Lambda's event types to records and back.
