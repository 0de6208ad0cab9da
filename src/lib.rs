//! imserver: an OMA SIMPLE IM Server.
//!
//! The picture of the code is the picture of the system:
//! - [`sip`]: sans-IO, zero-copy SIP message layer (scanner, validation, writers).
//! - [`transport`]: thread-per-core UDP and TCP workers on mio.
//! - [`policy`]: per-user compiled policy in immutable snapshots (arc-swap over hashbrown).
//! - [`fastpath`]: decides and answers or relays MESSAGEs, lock- and allocation-free.
//! - [`slowpath`]: everything stateful (REGISTER, PUBLISH, SUBSCRIBE/NOTIFY), behind a bounded
//!   queue, driving the sans-IO [`registrar`] and [`settings`] cores.
//! - [`auth`]: trust ranges and Digest authentication.
//! - [`server`]: wires the above together; [`config`] and [`metrics`] serve all of them.
pub mod auth;
pub mod config;
pub mod fastpath;
pub mod gate;
pub mod glms;
pub mod hint;
pub mod metrics;
pub mod policy;
pub mod policyfile;
pub mod registrar;
pub mod server;
pub mod settings;
pub mod sip;
pub mod slowpath;
pub mod store;
pub mod subscriber;
pub mod transport;
mod transport_metrics;
