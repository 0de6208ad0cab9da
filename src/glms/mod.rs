//! The GLMS (Group and List Management Server, an XDMS): the XCAP document server the IM Server
//! subscribes to for its users' blocked lists.
//!
//! - [`xcap`]: the sans-IO document core (DOM, node selectors, PUT/GET/DELETE semantics,
//!   application usages, ETags, xcap-diff documents and RFC 5261 patches).
//! - [`store`]: durable documents and subscriptions (redb; a change is committed before it
//!   is acknowledged, G2); [`import`]: bulk loading.
//! - [`http`]: the XCAP HTTP server (hyper on a small tokio runtime), with [`access`] deciding
//!   who may touch what (G3).
//! - [`runner`]: one running GLMS (XCAP server + notifier over one store), embedded or
//!   standalone.
//! - [`notifier`]: the xcap-diff notifier (RFC 5875 over RFC 6665): a sans-IO core and its UDP
//!   SIP driver (`GlmsSip`), with durable subscriptions.
pub mod access;
pub mod http;
pub mod import;
pub mod notifier;
pub mod runner;
pub mod store;
pub mod xcap;
