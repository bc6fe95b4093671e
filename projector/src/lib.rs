//! Tally projector.
