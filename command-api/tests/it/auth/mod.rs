//! Authentication through the API's router: Cognito tokens from a real
//! issuer (cognito-local) and from a stand-in pool whose keys the tests
//! hold, forgeries of every kind, and principals handed over by an entry
//! point.

mod authenticated;
mod cognito_local;
mod forged;
mod harness;
mod keys;
