//! The GLMS (Group and List Management Server, an XDMS): the XCAP document server the IM Server
//! subscribes to for its users' blocked lists.
//!
//! - [`xcap`]: the sans-IO document core (DOM, node selectors, PUT/GET/DELETE semantics,
//!   application usages, ETags, xcap-diff documents and RFC 5261 patches).
pub mod xcap;
