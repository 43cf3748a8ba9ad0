//! The simulator over real HTTP on 127.0.0.1, one module per venue. The
//! signing helpers in `common` are written from the venues' documentation,
//! independently of the crate's verification code.

mod admin;
mod binance;
mod coinbase;
mod common;
mod deribit;
mod kraken;
mod kraken_futures;
