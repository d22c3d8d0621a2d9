//! The `shop` CLI's library: running the whole app locally (`shop local`) on top of
//! `local-runtime`, and the function wiring the end-to-end tests share with it.
#![warn(missing_docs)]

pub mod emulator;
pub mod functions;
pub mod local;
pub mod ops;
pub mod remote;
pub mod seed;
pub mod server;
pub mod smoke;
pub mod token;
