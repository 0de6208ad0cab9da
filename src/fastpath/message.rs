//! The MESSAGE decision (RFC 3428; SPEC D1, D5-D8, D10): who is the recipient, who is the
//! sender, what does the recipient's policy say, and then answer or relay.
#![forbid(unsafe_code)]

use super::{Shared, reply};
use crate::gate::{Kind, Outcome};
use crate::metrics::Decision;
use crate::policy::{IdBuf, PolicyTable, Verdict, normalize, normalize_sip_parts};
use crate::sip::uri::{self, Scheme, Uri, UriShape};
use crate::sip::{HeaderName, View, nameaddr, write};
use crate::transport::{ConnRef, Dest, Outbox, Source, Transport};

/// Removed before relaying a MESSAGE from an untrusted peer: an identity it may not assert
/// (D7, RFC 3325 §5) and the credentials it gave us (they are for our realm, not the next hop's).
const STRIP_UNTRUSTED: &[HeaderName] = &[
    HeaderName::PAssertedIdentity,
    HeaderName::ProxyAuthorization,
];

/// Per-worker scratch: the two normalised identities of a MESSAGE (stack buffers) and the two
/// challenge values, whose capacity is reused (no allocation per message).
pub struct Scratch {
    recipient: IdBuf,
    /// The recipients the receive batch's prefetch worked out.
    hints: BatchHints,
    sender: IdBuf,
    challenge_sha256: Vec<u8>,
    challenge_md5: Vec<u8>,
    /// Our Via's extra parameter for a TCP sender (`;cid=w.t.g`).
    via_params: Vec<u8>,
}

impl Scratch {
    /// Forgets the previous receive batch's recipients.
    pub fn clear_hints(&mut self) {
        self.hints.clear();
    }

    /// Works out the recipient of `msg` ahead of handling it, as [`recipient_hint`] does,
    /// remembers it for [`on_message`], and returns its hash in `policy` (whose cell the call
    /// starts loading). `None` when the hint does not apply.
    pub fn hint_recipient(&mut self, msg: &[u8], policy: &PolicyTable) -> Option<u64> {
        let (raw, shape) = recipient_hint(msg, &mut self.recipient)?;
        let id = self.recipient.as_bytes();
        let hash = policy.prefetch_cell(id);
        self.hints.push(raw, shape, id, hash);
        Some(hash)
    }

    /// The hint for Request-URI `raw`, when the batch's prefetch made one: which it is (for
    /// [`on_message`]) and the Request-URI's parse, over `raw`, for validation.
    pub fn peek_hint<'a>(&self, raw: &'a [u8]) -> Option<(HintRef, Uri<'a>)> {
        let k = self.hints.find(raw)?;
        Some((HintRef(k), self.hints.entries[k].shape.uri(raw)))
    }
}

/// A recipient hint found by [`Scratch::peek_hint`] for the message being handled.
#[derive(Clone, Copy, Debug)]
pub struct HintRef(usize);

/// A MESSAGE's Request-URI as validation parsed it, and the batch's hint for it, if any.
pub struct RequestUri<'r, 'a> {
    pub parsed: &'r Uri<'a>,
    pub hint: Option<HintRef>,
}

/// Recipients worked out ahead of handling (by the receive batch's prefetch), keyed by the
/// Request-URI bytes they were derived from: the recipient is a function of those bytes, so a
/// hit is right whatever message it meets, and a stale entry can only miss. Capacity is kept
/// across batches (no allocation per message once warm).
#[derive(Default)]
struct BatchHints {
    /// Per entry: its Request-URI bytes, then its identity.
    bytes: Vec<u8>,
    entries: Vec<Hint>,
    /// The first entry not yet taken (messages are handled in the order they were hinted).
    next: usize,
}

#[derive(Clone, Copy)]
struct Hint {
    at: usize,
    raw_len: usize,
    id_len: usize,
    hash: u64,
    /// The Request-URI's parse, as places in its bytes.
    shape: UriShape,
}

impl BatchHints {
    fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
        self.next = 0;
    }

    /// Remembers one recipient, unless that would grow the buffers (a batch of very long
    /// Request-URIs): the fast path does not allocate per message, and a hint is optional.
    fn push(&mut self, raw: &[u8], shape: UriShape, id: &[u8], hash: u64) {
        let at = self.bytes.len();
        if at + raw.len() + id.len() > self.bytes.capacity()
            || self.entries.len() == self.entries.capacity()
        {
            return;
        }
        self.bytes.extend_from_slice(raw);
        self.bytes.extend_from_slice(id);
        self.entries.push(Hint {
            at,
            raw_len: raw.len(),
            id_len: id.len(),
            hash,
            shape,
        });
    }

    /// The identity and hash hinted for Request-URI `raw`: the next entry whose bytes are
    /// `raw` (entries of messages that never got here are skipped).
    #[cfg(test)]
    fn take(&mut self, raw: &[u8]) -> Option<(&[u8], u64)> {
        let k = self.find(raw)?;
        self.take_at(k)
    }

    /// The index of the next entry whose bytes are `raw`, not taken.
    fn find(&self, raw: &[u8]) -> Option<usize> {
        let bytes = &self.bytes;
        let from = self.next.min(self.entries.len());
        self.entries[from..]
            .iter()
            .position(|h| bytes.get(h.at..h.at + h.raw_len) == Some(raw))
            .map(|k| k + from)
    }

    /// Takes entry `k` (found by [`BatchHints::find`]); entries before it are passed over.
    fn take_at(&mut self, k: usize) -> Option<(&[u8], u64)> {
        let h = *self.entries.get(k).filter(|_| k >= self.next)?;
        self.next = k + 1;
        let id = &self.bytes[h.at + h.raw_len..h.at + h.raw_len + h.id_len];
        Some((id, h.hash))
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self {
            recipient: IdBuf::default(),
            hints: BatchHints {
                bytes: Vec::with_capacity(8192),
                entries: Vec::with_capacity(64),
                next: 0,
            },
            sender: IdBuf::default(),
            challenge_sha256: Vec::with_capacity(512),
            challenge_md5: Vec::with_capacity(512),
            via_params: Vec::with_capacity(64),
        }
    }
}

/// The URI inside a name-addr header value (From, To, P-Asserted-Identity): as written, and
/// parsed.
fn header_uri<'a>(view: &View<'a>, name: HeaderName) -> Option<(&'a [u8], Uri<'a>)> {
    // From and To were already parsed by validation: reuse those facts.
    if matches!(name, HeaderName::From | HeaderName::To) {
        let raw = nameaddr::header_facts(view, name)?.ok()?.name_addr.uri;
        return uri::parse(raw).ok().map(|u| (raw, u));
    }
    let v = view.header(name)?;
    // P-Asserted-Identity may list a sip and a tel URI (RFC 3325 §9.1): the first one counts.
    let first = if name == HeaderName::PAssertedIdentity {
        first_of_list(v)
    } else {
        v
    };
    nameaddr::parse_with_uri(first)
        .ok()
        .map(|(n, u)| (n.uri, u))
}

/// The identity of URI `raw`, which parsed as `u`: for sip and sips from the parts the parser
/// found (the same identity as `normalize(raw)`, without scanning `raw` again), for other
/// schemes by `normalize` itself.
fn identity_of(raw: &[u8], u: &Uri<'_>, out: &mut IdBuf) -> bool {
    match u.scheme {
        Scheme::Sip | Scheme::Sips => normalize_sip_parts(u.user, u.host, u.params, out).is_ok(),
        Scheme::Tel | Scheme::Other => normalize(raw, out).is_ok(),
    }
}

/// The first element of a comma-separated list, respecting quotes and angle brackets.
fn first_of_list(v: &[u8]) -> &[u8] {
    let (mut quoted, mut angle) = (false, false);
    let mut escaped = false;
    for (i, &b) in v.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !quoted && !angle => return &v[..i],
            _ => {}
        }
    }
    v
}

/// The recipient (SPEC §5, D8): the Request-URI when it names a user at a host name; the To
/// URI when the Request-URI is an address (a load generator or a core may send `sip:bob@10.0.0.1`).
/// `ruri` is the Request-URI as validation parsed it.
fn recipient(view: &View<'_>, ruri: &Uri<'_>, out: &mut IdBuf) -> bool {
    ruri_recipient(view.request_uri(), ruri, out)
        || header_uri(view, HeaderName::To).is_some_and(|(raw, to)| identity_of(raw, &to, out))
}

/// The recipient named by Request-URI `raw`, which parsed as `u`, when it names one: a user at
/// a host name, or a host alone (not a user at an address, which is only where to send it).
fn ruri_recipient(raw: &[u8], u: &Uri<'_>, out: &mut IdBuf) -> bool {
    (u.host_kind.ip().is_none() || u.user.is_none()) && identity_of(raw, u, out)
}

/// The recipient as [`recipient`] finds it from the Request-URI, read off the raw bytes of a
/// MESSAGE without scanning it, for the receive batch's prefetch: written to `out`, and the
/// Request-URI bytes it came from returned. `None` where `recipient` would look further (To)
/// or the bytes are not a MESSAGE. The message itself is still scanned and validated whole
/// before anything is decided.
fn recipient_hint<'a>(msg: &'a [u8], out: &mut IdBuf) -> Option<(&'a [u8], UriShape)> {
    let rest = msg.strip_prefix(b"MESSAGE ")?;
    let end = memchr::memchr(b' ', rest)?;
    let raw = &rest[..end];
    let u = uri::parse(raw).ok()?;
    let shape = UriShape::of(raw, &u)?;
    ruri_recipient(raw, &u, out).then_some((raw, shape))
}

/// The sender (D7): the first P-Asserted-Identity from a trusted peer, else the From URI.
fn sender(view: &View<'_>, trusted: bool, out: &mut IdBuf) -> bool {
    if trusted
        && let Some((raw, pai)) = header_uri(view, HeaderName::PAssertedIdentity)
        && identity_of(raw, &pai, out)
    {
        return true;
    }
    header_uri(view, HeaderName::From).is_some_and(|(raw, f)| identity_of(raw, &f, out))
}

pub fn on_message(
    shared: &Shared,
    worker: usize,
    ids: &mut Scratch,
    view: &View<'_>,
    ruri: RequestUri<'_, '_>,
    src: &Source,
    out: &mut Outbox,
) {
    let RequestUri { parsed: ruri, hint } = ruri;
    let counters = shared.metrics.block(worker);
    // The batch's prefetch may have worked the recipient out already (same bytes, same answer).
    let hinted = hint.and_then(|HintRef(k)| ids.hints.take_at(k));
    if hinted.is_none() && !recipient(view, ruri, &mut ids.recipient) {
        reply::send(
            shared,
            worker,
            view,
            src,
            400,
            "Bad Request - Unusable Recipient URI",
            &[],
            out,
        );
        return;
    }
    let trusted = shared.trust.contains(src.addr.ip());
    if !sender(view, trusted, &mut ids.sender) {
        reply::send(
            shared,
            worker,
            view,
            src,
            400,
            "Bad Request - Unusable Sender URI",
            &[],
            out,
        );
        return;
    }
    // §16.11 stateless relay: a TCP sender's connection rides in our Via, so the response
    // finds it from whichever worker receives it (written here, used only when relaying).
    ids.via_params.clear();
    if let Some(conn) = src.conn.filter(|_| src.transport == Transport::Tcp) {
        ids.via_params.push(b';');
        conn.write_param(&mut ids.via_params);
    }
    let via_params = &ids.via_params[..];
    let sender_id = ids.sender.as_bytes();
    // D7: an untrusted sender proves its From with Digest (407, RFC 3261 §22.3).
    if !trusted {
        match shared.gate.check(view, Kind::Proxy, sender_id) {
            Outcome::Pass => {}
            Outcome::Challenge { stale, reason } => {
                shared.gate.write_challenges(
                    stale,
                    &mut ids.challenge_sha256,
                    &mut ids.challenge_md5,
                );
                let name = Kind::Proxy.challenge().name();
                let extra = [
                    (name, &ids.challenge_sha256[..]),
                    (name, &ids.challenge_md5[..]),
                ];
                reply::send(shared, worker, view, src, 407, reason, &extra, out);
                return;
            }
            Outcome::BadRequest(reason) => {
                reply::send(shared, worker, view, src, 400, reason, &[], out);
                return;
            }
            Outcome::Forbidden(reason) => {
                reply::send(shared, worker, view, src, 403, reason, &[], out);
                return;
            }
        }
    }
    let (recipient_id, hash) = match hinted {
        Some((id, hash)) => (id, hash),
        None => {
            let id = ids.recipient.as_bytes();
            (id, shared.policy.hash(id))
        }
    };
    shared.policy.with_hash(recipient_id, hash, |policy| {
        let Some(policy) = policy else {
            counters.decision(Decision::Unknown);
            reply::send(shared, worker, view, src, 404, "Not Found", &[], out);
            return;
        };
        match policy.decide(sender_id) {
            Verdict::Barred => {
                counters.decision(Decision::Barred);
                block(shared, worker, view, src, out);
            }
            Verdict::Blocked => {
                counters.decision(Decision::Blocked);
                block(shared, worker, view, src, out);
            }
            Verdict::Unavailable => {
                counters.decision(Decision::Unavailable);
                reply::send(
                    shared,
                    worker,
                    view,
                    src,
                    480,
                    "Temporarily Unavailable",
                    &[],
                    out,
                );
            }
            Verdict::Pending => {
                // D6: fail closed until the recipient's lists are known.
                counters.decision(Decision::Pending);
                let ra = shared.retry_after.as_bytes();
                reply::send(
                    shared,
                    worker,
                    view,
                    src,
                    480,
                    "Temporarily Unavailable - Policy Pending",
                    &[("Retry-After", ra)],
                    out,
                );
            }
            Verdict::Relay(target) => {
                let spec = write::RelaySpec {
                    own_transport: if target.tcp {
                        Transport::Tcp
                    } else {
                        Transport::Udp
                    },
                    own_host: &shared.own_host,
                    own_port: shared.own_port,
                    branch_secret: shared.secret,
                    via_params,
                    request_uri: &target.uri,
                    route: shared.route.as_deref(),
                    src: src.addr,
                    strip: if trusted { &[] } else { STRIP_UNTRUSTED },
                };
                match write::write_relay_request(view, &spec, out.buffer()) {
                    Ok(()) => {
                        counters.decision(Decision::Relayed);
                        // A UE registered over TCP is reached on its own connection (RFC 5626
                        // §5.3); otherwise over the binding's transport to its address.
                        out.push(match (target.tcp, target.conn) {
                            (true, Some(conn)) => Dest::Conn(ConnRef::from_u64(conn)),
                            (true, None) => Dest::Tcp(target.addr),
                            (false, _) => Dest::Udp(target.addr),
                        });
                    }
                    Err(rej) => reply::reject(shared, worker, view, src, &rej, out),
                }
            }
        }
    });
}

/// The block response (D1): 603 by default, 403, or a silent 202 that drops the message.
fn block(shared: &Shared, worker: usize, view: &View<'_>, src: &Source, out: &mut Outbox) {
    let (code, reason) = shared.block.status();
    reply::send(shared, worker, view, src, code, reason, &[], out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_of_list_respects_quotes_and_brackets() {
        assert_eq!(first_of_list(b"<sip:a@x>, <tel:+1>"), b"<sip:a@x>");
        assert_eq!(
            first_of_list(b"\"a, b\" <sip:a@x>, <tel:+1>"),
            b"\"a, b\" <sip:a@x>"
        );
        assert_eq!(first_of_list(b"<sip:a@x;p=1,2>"), b"<sip:a@x;p=1,2>");
        assert_eq!(first_of_list(b"sip:a@x"), b"sip:a@x");
    }

    #[test]
    fn batch_hints_are_taken_by_their_request_uri() {
        let shape = |raw: &[u8]| UriShape::of(raw, &uri::parse(raw).unwrap()).unwrap();
        let any = shape(b"sip:a@x");
        let mut h = Scratch::default().hints;
        h.push(b"sip:a@x", any, b"a@x", 1);
        h.push(b"sip:b@x", shape(b"sip:b@x"), b"b@x", 2);
        h.push(b"sip:c@x", any, b"c@x", 3);
        assert_eq!(h.take(b"sip:b@x"), Some((&b"b@x"[..], 2)));
        // Earlier entries were passed over: their messages never came.
        assert_eq!(h.take(b"sip:a@x"), None);
        assert_eq!(h.take(b"sip:zz@x"), None);
        assert_eq!(h.take(b"sip:c@x"), Some((&b"c@x"[..], 3)));
        assert_eq!(h.take(b"sip:c@x"), None);
        h.clear();
        assert_eq!(h.take(b"sip:b@x"), None);
        // Past the reserved capacity nothing is remembered (and nothing allocated).
        let cap = h.bytes.capacity();
        let long = vec![b'u'; cap];
        h.push(&long, any, b"u@x", 4);
        assert_eq!(h.take(&long), None);
        assert_eq!(h.bytes.capacity(), cap);
        for i in 0..h.entries.capacity() + 1 {
            h.push(format!("sip:{i}@x").as_bytes(), any, b"i@x", 5);
        }
        assert_eq!(h.entries.len(), h.entries.capacity());
    }

    /// A hint found for a Request-URI gives that URI's parse (for validation) and is taken
    /// once, by its index, in batch order.
    #[test]
    fn peeked_hints_give_the_parse_and_are_taken_once() {
        let msg = |ruri: &str| format!("MESSAGE {ruri} SIP/2.0\r\n\r\n").into_bytes();
        let table = PolicyTable::default();
        let mut ids = Scratch::default();
        for ruri in [
            "sip:Bob@EXAMPLE.com;lr",
            "tel:+1-555-0100",
            "sips:carol@example.org:5061;transport=tcp",
        ] {
            assert!(ids.hint_recipient(&msg(ruri), &table).is_some(), "{ruri}");
        }
        // Not a MESSAGE, not a recipient: no hint.
        assert!(
            ids.hint_recipient(b"OPTIONS sip:x@y SIP/2.0\r\n", &table)
                .is_none()
        );
        assert!(
            ids.hint_recipient(&msg("sip:bob@10.0.0.1"), &table)
                .is_none()
        );
        // The bytes validation would see: another copy of the same Request-URI.
        let tel = b"tel:+1-555-0100".to_vec();
        let (k, parsed) = ids.peek_hint(&tel).expect("hinted");
        assert_eq!(parsed, uri::parse(&tel).unwrap());
        assert!(ids.peek_hint(b"sip:nobody@example.com").is_none());
        assert_eq!(
            ids.hints.take_at(k.0).map(|(id, _)| id.to_vec()),
            Some(b"tel:+15550100".to_vec())
        );
        // Taken, and the entry before it passed over.
        assert!(ids.hints.take_at(k.0).is_none());
        assert!(ids.hints.take_at(0).is_none());
        assert!(ids.peek_hint(b"sip:Bob@EXAMPLE.com;lr").is_none());
        let sips = b"sips:carol@example.org:5061;transport=tcp";
        let (_, parsed) = ids.peek_hint(sips).expect("hinted");
        assert_eq!(parsed, uri::parse(sips).unwrap());
        ids.clear_hints();
        assert!(ids.peek_hint(sips).is_none());
    }

    /// The prefetch hint names the recipient `recipient` finds from the Request-URI, and no
    /// one where `recipient` would look elsewhere or the bytes are not a MESSAGE.
    #[test]
    fn recipient_hint_agrees_with_recipient() {
        use crate::sip::Parsed;
        let request = |line: &str| {
            format!(
                "{line}\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKh\r\n\
                 From: <sip:alice@example.com>;tag=1\r\nTo: <sip:Bob@Example.com>\r\n\
                 Call-ID: h1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n\
                 Content-Length: 0\r\n\r\n",
                method = line.split(' ').next().unwrap_or_default()
            )
            .into_bytes()
        };
        let hint = |msg: &[u8]| {
            let mut id = IdBuf::new();
            recipient_hint(msg, &mut id).map(|_| id.as_bytes().to_vec())
        };
        let mut parsed = Parsed::new();
        for (line, expect_hint) in [
            ("MESSAGE sip:Bob@EXAMPLE.com SIP/2.0", true),
            ("MESSAGE sip:%42ob@example.com:5060;user=ip SIP/2.0", true),
            ("MESSAGE sips:carol@example.org;transport=tcp SIP/2.0", true),
            ("MESSAGE tel:+1-555-0100 SIP/2.0", true),
            // A user at an address: `recipient` takes To, the hint gives up.
            ("MESSAGE sip:bob@127.0.0.1:5099 SIP/2.0", false),
            // An address alone names a host identity, as for `recipient`.
            ("MESSAGE sip:127.0.0.1:5099 SIP/2.0", true),
            ("OPTIONS sip:bob@example.com SIP/2.0", false),
        ] {
            let msg = request(line);
            assert!(parsed.scan_datagram(&msg).is_ok(), "{line}");
            let view = parsed.view(&msg);
            // The Request-URI as the fast path has it: from validation.
            let ruri = crate::sip::validate::check_request_uri(&view, &Default::default())
                .unwrap_or_else(|r| panic!("{line}: {r:?}"));
            let mut real = IdBuf::new();
            let found = recipient(&view, &ruri, &mut real);
            match hint(&msg) {
                Some(h) => {
                    assert!(expect_hint && found, "{line}");
                    assert_eq!(h, real.as_bytes(), "{line}");
                }
                None => assert!(!expect_hint, "{line}"),
            }
        }
        assert_eq!(hint(b"SIP/2.0 200 OK\r\n\r\n"), None);
        assert_eq!(hint(b"MESSAGE sip:bob@example.com"), None);
        assert_eq!(hint(b""), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
        /// The identity built from the parser's parts is `normalize`'s identity of the whole
        /// URI, whenever the parser accepts the URI.
        #[test]
        fn identity_from_parts_is_normalize(
            scheme in proptest::sample::select(vec!["sip:", "SIPS:", "tel:", "mailto:"]),
            body in proptest::collection::vec(proptest::sample::select(vec![
                "u", "Alice", "%41", "%4", "%25", "@", ":", ";", "?", "=", "Example.COM",
                "1.2.3.4", "[::1]", "[2001:DB8::a]", "5060", "lr", "user=phone", "user=", "+1",
                "-", "555", "phone-context=x", ".", "_", "pw", "+1-555", "@Example.com",
                ";user=phone", ";lr", ";phone-context=example.com",
            ]), 0..10),
        ) {
            let s = format!("{scheme}{}", body.concat()).into_bytes();
            if let Ok(u) = uri::parse(&s) {
                let (mut a, mut b) = (IdBuf::new(), IdBuf::new());
                let from_parts = identity_of(&s, &u, &mut a);
                let whole = normalize(&s, &mut b).is_ok();
                proptest::prop_assert_eq!(from_parts, whole, "{}", String::from_utf8_lossy(&s));
                if whole {
                    proptest::prop_assert_eq!(a.as_bytes(), b.as_bytes());
                }
            }
        }
    }
}
