//! The registrar: bindings from an address-of-record (AoR) to the contacts where its user can be
//! reached, kept by the rules of RFC 3261 §10.3 (direct REGISTER, this server being the registrar)
//! and SPEC D9 (third-party REGISTER from a trusted IMS core).
//!
//! Sans-IO: the caller extracts plain values from the SIP message (the AoR already normalised per
//! SPEC D8), passes `now_ms`, and gets back the bindings to list in the 200 and the events to act
//! on. No threads, clocks or sockets live here; expiry happens when the caller calls
//! [`Registrar::expire`] at [`Registrar::next_wakeup_ms`].
//!
//! Per AoR:
//!
//! ```text
//!                REGISTER adds the first binding
//!   (no record) ─────────────────────────────────▶ BOUND (1..=max_contacts_per_aor bindings)
//!        ▲          FirstBinding, TargetChanged(Some)     │  ▲
//!        │                                                │  │ add / refresh / remove one:
//!        │                                                │  │ TargetChanged only when the
//!        │                                                │  │ relay target moved (D10)
//!        │                                                └──┘
//!        │  last binding removed (expires=0, `*`, or expiry in `expire`)
//!        └──────────────────────────────────────────── TargetChanged(None), LastBindingGone
//! ```
//!
//! `LastBindingGone` is where the caller starts the D5 grace period before unsubscribing from
//! the GLMS; `FirstBinding` is where it subscribes (and, per D6, holds MESSAGEs until the policy
//! is in).
//!
//! Every successful change marks the AoR dirty; the store drains [`Registrar::changed_aors`] and
//! writes the AoR's [`Registrar::bindings`] (empty means delete) in batches.

#![forbid(unsafe_code)]

mod contact;
mod error;
mod table;
mod types;

#[cfg(test)]
mod tests;

pub use contact::{contact_from_message_sip, has_oma_im_feature_tag, parse_contact_value};
pub use error::{ExtraHeader, RegisterError};
pub use table::{EXPIRE_BATCH_AORS, Registrar};
pub use types::{
    Aor, Binding, BindingTarget, ContactInput, Contacts, CurrentBinding, RegisterOk,
    RegisterRequest, RegistrarEvent, SourceInfo,
};

/// Limits and timers of the registrar (SPEC D9: Min-Expires 60 for direct registrations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Below this (but not 0) a direct REGISTER gets 423 with `Min-Expires`
    /// (RFC 3261 §10.3 step 7).
    pub min_expires_s: u32,
    /// Used when neither the contact nor the request carries an expiry (RFC 3261 §10.2.1.1).
    pub default_expires_s: u32,
    /// A longer direct registration is shortened to this (RFC 3261 §10.3 step 7 allows it).
    pub max_expires_s: u32,
    /// Past this a REGISTER that would add a binding gets 503
    /// (see [`RegisterError::TooManyContacts`]).
    pub max_contacts_per_aor: usize,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            min_expires_s: 60,
            default_expires_s: 3600,
            max_expires_s: 86_400,
            max_contacts_per_aor: 10,
        }
    }
}
