//! Writing NOTIFY requests (RFC 6665 §4.2.2, §8.2.3; RFC 3261 §12.2.1.1 in-dialog requests).
#![forbid(unsafe_code)]

use crate::glms::xcap::XCAP_DIFF_MIME;

use super::subscription::{EVENT_PACKAGE, Subscription};

/// Branch prefix of the GLMS notifier's requests (RFC 3261 §8.1.1.7 magic cookie first).
pub const BRANCH_PREFIX: &str = "z9hG4bK-gn-";

/// Why a subscription ended (RFC 6665 §4.1.3 reason codes the notifier uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not refreshed before it expired, or ended by an unsubscribe (Expires: 0). The
    /// subscriber may re-subscribe at once.
    Timeout,
    /// The subscriber should re-subscribe at once (e.g. a migration).
    Deactivated,
    /// The resource no longer exists.
    Noresource,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Deactivated => "deactivated",
            Reason::Noresource => "noresource",
        }
    }
}

/// The `Subscription-State` of one NOTIFY (RFC 6665 §8.2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubState {
    Active { expires_s: u32 },
    Terminated(Reason),
}

/// Our side of the dialog: the Via sent-by and the Contact URI.
#[derive(Clone, Copy, Debug)]
pub struct Local<'a> {
    pub sent_by: &'a str,
    pub contact: &'a str,
}

/// Writes one NOTIFY on the subscription's dialog with CSeq `sub.local_cseq`.
pub fn write_notify(sub: &Subscription, local: Local<'_>, state: SubState, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + body.len());
    let mut line = |s: &str| {
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    // RFC 3261 §12.2.1.1: Request-URI = remote target (the subscriber's Contact).
    line(&format!("NOTIFY {} SIP/2.0", sub.contact));
    line(&format!(
        "Via: SIP/2.0/UDP {};branch={BRANCH_PREFIX}{}-{};rport",
        local.sent_by, sub.to_tag, sub.local_cseq
    ));
    line("Max-Forwards: 70");
    // RFC 6665 §4.2.2: From = the subscribed resource with our tag, To = the subscriber.
    line(&format!("From: <{}>;tag={}", sub.resource_uri, sub.to_tag));
    line(&format!(
        "To: <{}>;tag={}",
        sub.subscriber_uri, sub.from_tag
    ));
    line(&format!("Call-ID: {}", sub.call_id));
    line(&format!("CSeq: {} NOTIFY", sub.local_cseq));
    line(&format!("Contact: <{}>", local.contact));
    line(&format!("Event: {EVENT_PACKAGE}"));
    match state {
        SubState::Active { expires_s } => {
            line(&format!("Subscription-State: active;expires={expires_s}"));
        }
        SubState::Terminated(r) => {
            line(&format!(
                "Subscription-State: terminated;reason={}",
                r.as_str()
            ));
        }
    }
    line(&format!("Content-Type: {XCAP_DIFF_MIME}"));
    line(&format!("Content-Length: {}", body.len()));
    line("");
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::glms::notifier::subscription::{DiffProcessing, SubscriptionId};
    use crate::sip::{HeaderName, Parsed};

    fn sub() -> Subscription {
        Subscription {
            id: SubscriptionId("tt".into()),
            call_id: "call-1@x".into(),
            from_tag: "ft".into(),
            to_tag: "tt".into(),
            subscriber: "im-server@example.com".into(),
            subscriber_uri: "sip:im-server@example.com".into(),
            resource_uri: "sip:bob@example.com".into(),
            contact: "sip:im-server@127.0.0.1:5060".into(),
            route_to: "127.0.0.1:5060".parse().unwrap(),
            diff_processing: DiffProcessing::NoPatching,
            resources: Vec::new(),
            expires_at_ms: 0,
            remote_cseq: 1,
            local_cseq: 7,
        }
    }

    #[test]
    fn notify_scans_and_carries_the_dialog() {
        let local = Local {
            sent_by: "127.0.0.1:5070",
            contact: "sip:glms@127.0.0.1:5070",
        };
        let bytes = write_notify(&sub(), local, SubState::Active { expires_s: 60 }, b"<x/>");
        let mut p = Parsed::new();
        p.scan_datagram(&bytes).unwrap();
        let v = p.view(&bytes);
        assert_eq!(v.method_bytes(), b"NOTIFY");
        assert_eq!(v.request_uri(), b"sip:im-server@127.0.0.1:5060");
        assert_eq!(v.header(HeaderName::CSeq).unwrap(), b"7 NOTIFY");
        assert_eq!(
            v.header(HeaderName::SubscriptionState).unwrap(),
            b"active;expires=60"
        );
        assert_eq!(
            v.header(HeaderName::To).unwrap(),
            b"<sip:im-server@example.com>;tag=ft"
        );
        assert_eq!(
            v.header(HeaderName::From).unwrap(),
            b"<sip:bob@example.com>;tag=tt"
        );
        assert_eq!(v.body(), b"<x/>");
        let via = v.header(HeaderName::Via).unwrap();
        assert!(via.windows(11).any(|w| w == BRANCH_PREFIX.as_bytes()));
        let t = write_notify(&sub(), local, SubState::Terminated(Reason::Timeout), b"");
        assert!(
            t.windows(36)
                .any(|w| w == b"Subscription-State: terminated;reaso")
        );
    }
}
