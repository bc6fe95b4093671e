//! The conformance suite: the EventStore and ReadModelStore contracts, as tests any adapter runs.
