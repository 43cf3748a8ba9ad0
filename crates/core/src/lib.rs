//! Pure decisions of the tollgate gateway.
//!
//! This crate owns the rules: identifiers and their formats, API-key parsing and
//! secret hashing, route matching, the access decision for a key and its
//! organization, and the stable rejection codes every other crate reports.
//!
//! It does no I/O, starts no runtime and never reads a clock: every function
//! that depends on time takes `now` as an argument, and every function that
//! needs randomness takes the random bytes as an argument. That keeps each
//! rule testable with plain values and shared by every backend.

#![deny(clippy::disallowed_methods)]

pub mod access;
pub mod api_key;
pub mod credential;
pub mod cycle;
pub mod encoding;
pub mod idempotency;
pub mod ids;
pub mod ledger;
pub mod limit;
pub mod meter;
pub mod money;
pub mod pricing;
pub mod ratelimit;
pub mod reject;
pub mod route;
pub mod signing;
pub mod throttle;
pub mod time;
pub mod usage;
pub mod venue;

pub use reject::Rejection;
pub use time::UnixMillis;
