//! The durable part of a subscription (what a restarted GLMS needs to keep notifying, G2) and
//! the values it is made of.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::glms::xcap::uri::encode_segment;

/// The package name (RFC 5875 §4.1).
pub const EVENT_PACKAGE: &str = "xcap-diff";

/// A subscription's identity: our dialog tag (the To-tag of the 200), unique per subscription.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SubscriptionId(pub String);

impl SubscriptionId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `diff-processing` Event parameter (RFC 5875 §4.4). A hint: only `no-patching` forbids
/// patches (SPEC 3.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiffProcessing {
    /// ETags only; the subscriber GETs (the default when absent, as Mobicents does).
    #[default]
    NoPatching,
    /// One patch per XCAP change.
    XcapPatching,
    /// The notifier may merge changes into one patch.
    Aggregate,
}

impl DiffProcessing {
    /// Parses a parameter value (compared without case: RFC 3261 §7.3.1 tokens).
    pub fn parse(value: &str) -> Option<DiffProcessing> {
        let v = value.trim().trim_matches('"');
        if v.eq_ignore_ascii_case("no-patching") {
            Some(DiffProcessing::NoPatching)
        } else if v.eq_ignore_ascii_case("xcap-patching") {
            Some(DiffProcessing::XcapPatching)
        } else if v.eq_ignore_ascii_case("aggregate") {
            Some(DiffProcessing::Aggregate)
        } else {
            None
        }
    }

    pub fn allows_patch(self) -> bool {
        self != DiffProcessing::NoPatching
    }
}

/// What one resource-lists entry names (RFC 5875 §4.3).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Target {
    /// One document, by name below the XUI (may contain `/`).
    Document(String),
    /// Every document whose name starts with this prefix: `""` for the whole
    /// `<auid>/users/<xui>/` collection, `dir/` for a sub-collection.
    Collection(String),
}

/// One subscribed resource: a document or a collection in a user's tree.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resource {
    pub auid: String,
    /// The decoded XUI, e.g. `sip:bob@example.com`.
    pub xui: String,
    pub target: Target,
}

impl Resource {
    /// Whether a change to this document concerns the resource.
    pub fn covers(&self, auid: &str, xui: &str, doc: &str) -> bool {
        self.auid == auid
            && self.xui == xui
            && match &self.target {
                Target::Document(d) => d == doc,
                Target::Collection(prefix) => doc.starts_with(prefix.as_str()),
            }
    }

    /// The path as written in a reason phrase (a collection keeps its trailing `/`).
    pub fn display_path(&self) -> String {
        let tail = match &self.target {
            Target::Document(d) => d.as_str(),
            Target::Collection(p) => p.as_str(),
        };
        format!("{}/users/{}/{tail}", self.auid, self.xui)
    }
}

/// The xcap-diff `sel` of a document: the document selector relative to the XCAP root, encoded
/// as XCAP URIs are (RFC 5874 §4, RFC 4825 §6).
pub fn document_sel(auid: &str, xui: &str, doc: &str) -> String {
    let mut s = encode_segment(auid);
    s.push_str("/users/");
    s.push_str(&encode_segment(xui));
    for seg in doc.split('/') {
        s.push('/');
        s.push_str(&encode_segment(seg));
    }
    s
}

/// The durable state of one subscription: the dialog (RFC 3261 §12) and what it watches.
/// Transient state (pending changes, the NOTIFY in flight) is not kept: after a restart the
/// subscriber gets a full-state NOTIFY instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub call_id: String,
    /// The subscriber's tag (From-tag of the SUBSCRIBE, To-tag of our NOTIFYs).
    pub from_tag: String,
    /// Our tag (To-tag of the 200, From-tag of our NOTIFYs).
    pub to_tag: String,
    /// The asserted identity (normalised AoR) that created the subscription.
    pub subscriber: String,
    /// The From URI of the SUBSCRIBE: the dialog's remote URI (NOTIFY To).
    pub subscriber_uri: String,
    /// The To URI of the SUBSCRIBE: the dialog's local URI (NOTIFY From).
    pub resource_uri: String,
    /// The subscriber's Contact URI: the remote target (NOTIFY Request-URI).
    pub contact: String,
    /// Where in-dialog requests are sent.
    pub route_to: SocketAddr,
    pub diff_processing: DiffProcessing,
    pub resources: Vec<Resource>,
    /// Absolute expiry on the caller's clock (the driver uses wall-clock ms so it survives a
    /// restart).
    pub expires_at_ms: u64,
    /// Highest CSeq seen from the subscriber (RFC 3261 §12.2.2).
    pub remote_cseq: u32,
    /// CSeq of our last NOTIFY (RFC 3261 §12.2.1.1: increases by one per request).
    pub local_cseq: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_processing_values() {
        assert_eq!(
            DiffProcessing::parse("no-patching"),
            Some(DiffProcessing::NoPatching)
        );
        assert_eq!(
            DiffProcessing::parse("Aggregate"),
            Some(DiffProcessing::Aggregate)
        );
        assert_eq!(
            DiffProcessing::parse("xcap-patching"),
            Some(DiffProcessing::XcapPatching)
        );
        assert_eq!(DiffProcessing::parse("full"), None);
        assert!(!DiffProcessing::NoPatching.allows_patch());
        assert!(DiffProcessing::Aggregate.allows_patch());
    }

    #[test]
    fn coverage_of_documents_and_collections() {
        let doc = Resource {
            auid: "resource-lists".into(),
            xui: "sip:bob@example.com".into(),
            target: Target::Document("index".into()),
        };
        assert!(doc.covers("resource-lists", "sip:bob@example.com", "index"));
        assert!(!doc.covers("resource-lists", "sip:bob@example.com", "other"));
        assert!(!doc.covers("resource-lists", "sip:tom@example.com", "index"));
        let all = Resource {
            target: Target::Collection(String::new()),
            ..doc.clone()
        };
        assert!(all.covers("resource-lists", "sip:bob@example.com", "other"));
        assert!(!all.covers("pres-rules", "sip:bob@example.com", "index"));
        assert_eq!(
            all.display_path(),
            "resource-lists/users/sip:bob@example.com/"
        );
    }

    #[test]
    fn sel_is_relative_and_encoded() {
        assert_eq!(
            document_sel("resource-lists", "sip:bob@example.com", "index"),
            "resource-lists/users/sip:bob@example.com/index"
        );
        assert_eq!(
            document_sel("resource-lists", "sip:a b@example.com", "d/x"),
            "resource-lists/users/sip:a%20b@example.com/d/x"
        );
    }

    #[test]
    fn serde_round_trip() {
        let s = Subscription {
            id: SubscriptionId("t1".into()),
            call_id: "c".into(),
            from_tag: "f".into(),
            to_tag: "t1".into(),
            subscriber: "im-server@example.com".into(),
            subscriber_uri: "sip:im-server@example.com".into(),
            resource_uri: "sip:bob@example.com".into(),
            contact: "sip:im@127.0.0.1:5060".into(),
            route_to: "127.0.0.1:5060".parse().unwrap(),
            diff_processing: DiffProcessing::Aggregate,
            resources: vec![Resource {
                auid: "resource-lists".into(),
                xui: "sip:bob@example.com".into(),
                target: Target::Collection(String::new()),
            }],
            expires_at_ms: 5,
            remote_cseq: 1,
            local_cseq: 2,
        };
        let bytes = serde_json::to_vec(&s).unwrap();
        let back: Subscription = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, s);
    }
}
