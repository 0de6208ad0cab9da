//! `loadgen`: the bundled SIP load generator of imserver. An independent client (it never links
//! the server crate), so it measures the server from outside, over loopback only.
//!
//! Pieces: a deterministic data set ([`dataset`]) and what every request must get
//! ([`workload`]); SIP templates patched in place ([`sip`]); an open-loop pacer without
//! coordinated omission and a closed-loop window ([`engine`]); the recipient side that answers
//! relayed MESSAGEs ([`engine::recipient`]); HdrHistogram statistics ([`stats`]), kernel UDP
//! counters ([`kernel`]) and the report ([`report`]). `churn` changes blocked lists through
//! the GLMS over a small XCAP client ([`xcap`]) while MESSAGEs flow ([`churn`]). `unsafe` lives only in [`sys`].

pub mod churn;
pub mod cli;
pub mod commands;
pub mod dataset;
pub mod engine;
pub mod hiccup;
pub mod kernel;
pub mod report;
pub mod rng;
pub mod sip;
pub mod stats;
pub mod sys;
pub mod target;
pub mod workload;
pub mod xcap;
