//! SUBSCRIBE handling of the [`Notifier`]: the checks of RFC 6665 §4.2.1 and RFC 5875 §4 in
//! order (Event 489, dialog 481/500/403, Accept 406, body 415/400, Expires 423,
//! authorisation 403, capacity 503), then a new or refreshed subscription and the NOTIFY that
//! follows the 200.
#![forbid(unsafe_code)]

use crate::auth::normalize_aor;
use crate::glms::xcap::{DocumentEntry, ETag};
use crate::sip::lex::{CommaIter, token_end, trim};
use crate::sip::params;

use super::body::{RESOURCE_LISTS_MIME, parse_resource_lists};
use super::core::{DocIndex, Live, MAX_FULL_STATE_ENTRIES, Notifier, SubscribeInput, SubscribeOk};
use super::error::{Rejection, SubscribeError};
use super::notify::Reason;
use super::subscription::{
    DiffProcessing, EVENT_PACKAGE, Resource, Subscription, SubscriptionId, Target, document_sel,
};

impl Notifier {
    /// Handles a SUBSCRIBE. On success the driver answers 200 (with `Expires` and our
    /// Contact) and then sends what [`Notifier::poll`] returns: the NOTIFY that follows.
    pub fn on_subscribe(
        &mut self,
        now_ms: u64,
        req: SubscribeInput<'_>,
        docs: &dyn DocIndex,
    ) -> Result<SubscribeOk, Rejection> {
        // RFC 6665 §4.2.1.1: an unknown package gets 489 with Allow-Events.
        let diff_processing = parse_event(req.event_header)
            .map_err(|e| Rejection::new(e).with_header("Allow-Events", EVENT_PACKAGE.to_owned()))?;
        let subscriber = normalize_aor(&req.subscriber).unwrap_or_else(|_| req.subscriber.clone());
        match req.to_tag.clone() {
            Some(tag) => self.refresh(now_ms, &tag, &subscriber, diff_processing, req, docs),
            None => self.create(now_ms, &subscriber, diff_processing, req, docs),
        }
    }

    fn create(
        &mut self,
        now_ms: u64,
        subscriber: &str,
        diff_processing: DiffProcessing,
        req: SubscribeInput<'_>,
        docs: &dyn DocIndex,
    ) -> Result<SubscribeOk, Rejection> {
        check_accept(req.accept)?;
        // RFC 5875 §4.3: the body says what to watch; without it there is nothing to do.
        // (Mobicents answers 403 here, SPEC 3.7; 400 says better what is wrong.)
        if req.body.iter().all(u8::is_ascii_whitespace) {
            return Err(SubscribeError::MissingBody.into());
        }
        let resources = self.resources(req.content_type, req.body)?;
        let expires_s = self.grant_expires(req.expires_s)?;
        self.authorize(subscriber, &resources)?;
        if expires_s > 0 && self.subs.len() >= self.cfg.max_subscriptions {
            // D12: shed load with 503 + Retry-After instead of growing.
            return Err(Rejection::new(SubscribeError::TooManySubscriptions)
                .with_header("Retry-After", "60".to_owned()));
        }
        let to_tag = self.new_tag(&req.call_id, &req.from_tag, now_ms);
        let sub = Subscription {
            id: SubscriptionId(to_tag.clone()),
            call_id: req.call_id,
            from_tag: req.from_tag,
            to_tag: to_tag.clone(),
            subscriber: subscriber.to_owned(),
            subscriber_uri: req.subscriber_uri,
            resource_uri: req.resource_uri,
            contact: req.contact,
            route_to: req.route_to,
            diff_processing,
            expires_at_ms: now_ms.saturating_add(u64::from(expires_s) * 1000),
            remote_cseq: req.cseq,
            local_cseq: 0,
            resources,
        };
        let mut live = Live::new(sub);
        // RFC 6665 §4.2.1.2 / RFC 5875 §4.4: a NOTIFY with the full state right after the 200.
        live.full_state = Some(self.full_state(&live.sub.resources, docs));
        live.flush_at_ms = Some(now_ms);
        if expires_s == 0 {
            // RFC 6665 §4.2.1.1: Expires 0 on an initial SUBSCRIBE is a fetch: one NOTIFY
            // with the state, the subscription terminated at once.
            live.terminate = Some(Reason::Timeout);
            self.send(&mut live, now_ms);
            return Ok(SubscribeOk {
                to_tag,
                expires_s: 0,
            });
        }
        self.insert(live);
        self.dirty.insert(SubscriptionId(to_tag.clone()));
        self.service(&to_tag, now_ms);
        Ok(SubscribeOk { to_tag, expires_s })
    }

    fn refresh(
        &mut self,
        now_ms: u64,
        tag: &str,
        subscriber: &str,
        diff_processing: DiffProcessing,
        req: SubscribeInput<'_>,
        docs: &dyn DocIndex,
    ) -> Result<SubscribeOk, Rejection> {
        let known = self.subs.get(tag).is_some_and(|l| {
            l.terminate.is_none() && l.sub.call_id == req.call_id && l.sub.from_tag == req.from_tag
        });
        if !known {
            // RFC 6665 §4.2.1.4 / RFC 3261 §12.2.2: no such dialog or subscription.
            return Err(SubscribeError::NoSuchSubscription.into());
        }
        let (remote_cseq, owner) = match self.subs.get(tag) {
            Some(l) => (l.sub.remote_cseq, l.sub.subscriber.clone()),
            None => return Err(SubscribeError::NoSuchSubscription.into()),
        };
        if req.cseq <= remote_cseq {
            // RFC 3261 §12.2.2: a lower CSeq on a dialog is answered 500.
            return Err(SubscribeError::CSeqOutOfOrder.into());
        }
        if owner != subscriber {
            return Err(SubscribeError::IdentityMismatch.into());
        }
        check_accept(req.accept)?;
        // A refresh may omit the body (SPEC 3.6); one that carries a body replaces the list.
        let new_resources = if req.body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            let r = self.resources(req.content_type, req.body)?;
            self.authorize(subscriber, &r)?;
            Some(r)
        };
        let expires_s = self.grant_expires(req.expires_s)?;
        let Some(mut live) = self.take(tag) else {
            return Err(SubscribeError::NoSuchSubscription.into());
        };
        live.sub.remote_cseq = req.cseq;
        live.sub.diff_processing = diff_processing;
        // RFC 6665 §4.1.2.1: SUBSCRIBE is a target refresh request (RFC 3261 §12.2.2).
        live.sub.contact = req.contact;
        live.sub.route_to = req.route_to;
        if let Some(r) = new_resources {
            live.sub.resources = r;
        }
        // RFC 6665 §4.2.1.2: a NOTIFY with the current state after a refresh too.
        live.full_state = Some(self.full_state(&live.sub.resources, docs));
        live.flush_at_ms = Some(now_ms);
        if expires_s == 0 {
            // RFC 6665 §4.1.2.3 / §4.2.1.4: unsubscribing is a refresh with Expires 0 and
            // triggers a final NOTIFY. Reason `timeout` (§4.1.3: "not refreshed before it
            // expired"; the subscriber may re-subscribe at once), as Kamailio does.
            live.terminate = Some(Reason::Timeout);
        } else {
            live.sub.expires_at_ms = now_ms.saturating_add(u64::from(expires_s) * 1000);
        }
        self.insert(live);
        self.dirty.insert(SubscriptionId(tag.to_owned()));
        self.service(tag, now_ms);
        Ok(SubscribeOk {
            to_tag: tag.to_owned(),
            expires_s,
        })
    }

    fn resources(
        &self,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Vec<Resource>, Rejection> {
        let is_rl = content_type.is_some_and(|ct| {
            let mt = ct.split(';').next().unwrap_or("").trim();
            mt.eq_ignore_ascii_case(RESOURCE_LISTS_MIME)
        });
        if !is_rl {
            // RFC 3261 §21.4.13: 415 lists what we take.
            return Err(Rejection::new(SubscribeError::UnsupportedMediaType)
                .with_header("Accept", RESOURCE_LISTS_MIME.to_owned()));
        }
        parse_resource_lists(body, &self.cfg.xcap_root_url)
    }

    /// RFC 6665 §4.2.1.1: below the minimum (but not 0) is 423 with Min-Expires; above the
    /// maximum is shortened (the notifier may shorten, never lengthen).
    fn grant_expires(&self, asked_s: Option<u32>) -> Result<u32, Rejection> {
        let asked = asked_s.unwrap_or(self.cfg.default_expires_s);
        if asked == 0 {
            return Ok(0);
        }
        if asked < self.cfg.min_expires_s {
            return Err(Rejection::new(SubscribeError::IntervalTooBrief)
                .with_header("Min-Expires", self.cfg.min_expires_s.to_string()));
        }
        Ok(asked.min(self.cfg.max_expires_s))
    }

    /// SPEC D4 / G3: a user watches only `users/<own xui>/`; service identities watch anyone's.
    fn authorize(&self, subscriber: &str, resources: &[Resource]) -> Result<(), Rejection> {
        if self.cfg.service_identities.iter().any(|s| s == subscriber) {
            return Ok(());
        }
        for r in resources {
            let owner = normalize_aor(&r.xui).ok();
            if owner.as_deref() != Some(subscriber) {
                return Err(
                    Rejection::new(SubscribeError::Forbidden).with_detail(&r.display_path())
                );
            }
        }
        Ok(())
    }

    pub(super) fn full_state(
        &self,
        resources: &[Resource],
        docs: &dyn DocIndex,
    ) -> Vec<DocumentEntry> {
        let mut out: Vec<DocumentEntry> = Vec::new();
        let mut push = |auid: &str, xui: &str, doc: &str| {
            if out.len() >= MAX_FULL_STATE_ENTRIES {
                return;
            }
            let Some(etag) = docs
                .etag(auid, xui, doc)
                .and_then(|e| ETag::from_opaque(&e))
            else {
                return;
            };
            let sel = document_sel(auid, xui, doc);
            if !out.iter().any(|e| e.sel == sel) {
                out.push(DocumentEntry::full_state(&sel, etag));
            }
        };
        for r in resources {
            match &r.target {
                Target::Document(d) => push(&r.auid, &r.xui, d),
                Target::Collection(prefix) => {
                    let mut names = docs.list(&r.auid, &r.xui);
                    names.sort();
                    for d in names.iter().filter(|d| d.starts_with(prefix.as_str())) {
                        push(&r.auid, &r.xui, d);
                    }
                }
            }
        }
        out
    }
}

/// `xcap-diff[;diff-processing=...]` (RFC 6665 §8.2.1 event type, case-sensitive; RFC 5875
/// §4.4 parameter).
fn parse_event(value: &str) -> Result<DiffProcessing, SubscribeError> {
    let v = trim(value.as_bytes());
    let end = token_end(v, 0);
    if &v[..end] != EVENT_PACKAGE.as_bytes() {
        return Err(SubscribeError::BadEvent);
    }
    let rest = &v[end..];
    let Ok((ps, used)) = params::parse(rest) else {
        return Err(SubscribeError::BadEvent);
    };
    if !trim(&rest[used..]).is_empty() {
        return Err(SubscribeError::BadEvent);
    }
    match ps.value("diff-processing") {
        None => Ok(DiffProcessing::NoPatching),
        Some(raw) => std::str::from_utf8(raw)
            .ok()
            .and_then(DiffProcessing::parse)
            .ok_or(SubscribeError::BadDiffProcessing),
    }
}

/// RFC 6665 §4.2.1.1: an Accept that does not allow `application/xcap-diff+xml` gets 406.
fn check_accept(accept: Option<&str>) -> Result<(), Rejection> {
    let Some(accept) = accept else {
        return Ok(());
    };
    let ok = CommaIter::new(accept.as_bytes()).any(|range| {
        let mt = range.split(|&b| b == b';').next().unwrap_or(b"");
        let mt = trim(mt);
        [&b"application/xcap-diff+xml"[..], b"application/*", b"*/*"]
            .iter()
            .any(|m| mt.eq_ignore_ascii_case(m))
    });
    if ok {
        Ok(())
    } else {
        Err(Rejection::new(SubscribeError::NotAcceptable))
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn event_header() {
        assert_eq!(parse_event("xcap-diff"), Ok(DiffProcessing::NoPatching));
        assert_eq!(
            parse_event("xcap-diff;diff-processing=aggregate"),
            Ok(DiffProcessing::Aggregate)
        );
        assert_eq!(
            parse_event("xcap-diff ; diff-processing=xcap-patching"),
            Ok(DiffProcessing::XcapPatching)
        );
        assert_eq!(parse_event("presence"), Err(SubscribeError::BadEvent));
        assert_eq!(parse_event("XCAP-DIFF"), Err(SubscribeError::BadEvent));
        assert_eq!(parse_event("xcap-diffx"), Err(SubscribeError::BadEvent));
        assert_eq!(
            parse_event("xcap-diff;diff-processing=full"),
            Err(SubscribeError::BadDiffProcessing)
        );
    }

    #[test]
    fn accept_header() {
        assert!(check_accept(None).is_ok());
        assert!(check_accept(Some("application/xcap-diff+xml")).is_ok());
        assert!(check_accept(Some("text/plain, application/*;q=0.5")).is_ok());
        assert!(check_accept(Some("*/*")).is_ok());
        assert!(check_accept(Some("application/pidf+xml")).is_err());
        assert!(check_accept(Some("")).is_err());
    }
}
