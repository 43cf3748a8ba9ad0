//! The egress venue router.
//!
//! A trading bot sends its venue calls to tollgate's egress listener as
//! `/{venue}/<the venue's path>`. For each call the router:
//!
//! 1. costs it against the venue's contract ([`contract`]: buckets, endpoint
//!    costs, error rules, all from `[venues.<name>]` in `tollgate.toml`);
//! 2. waits in the venue's FIFO queue until every budget has room and no
//!    circuit breaker is open, or answers 429 itself when that will not
//!    happen within the queue bound ([`router`]);
//! 3. signs it with the venue's credentials on the venue's clock ([`sign`]);
//! 4. sends it, passes the answer back, and learns from it: the venue's own
//!    counts resync the budgets, its refusals open the breaker of the scope
//!    they name until `Retry-After` (or the ban's end), then one probe.
//!
//! The budget arithmetic itself is `tollgate_core::venue`. The simulator
//! (`tollgate-sim`) is written separately from the same documentation and
//! shares no code with this crate.

pub mod config;
pub mod contract;
pub mod meter;
pub mod router;
pub mod server;
pub mod sign;

pub use config::{EgressConfig, VenueConfig};
pub use router::Router;
