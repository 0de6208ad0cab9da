//! Who may touch which XCAP document (SPEC G3), sans-IO: the peer address, the method, the
//! relevant headers and `now_s` come in; an [`Identity`] or a [`Refusal`] goes out.
//!
//! ```text
//!  X-XCAP-Asserted-Identity present and (peer in trust list or auth off)
//!        --> identity = the asserted URI (400 if it is not a SIP URI)
//!  auth off, no assertion ----------------------------------> 403 anonymous
//!  no Authorization / bad / stale / unknown user -----------> 401 + WWW-Authenticate (SHA-256, MD5)
//!  Authorization malformed, or its uri is not this target --> 400
//!  Digest valid ---------------------------------------------> identity = the authenticated AoR
//!  then the rules:
//!    users/<xui>/  : identity == xui             -> read, write
//!                    identity is a service id    -> read only   (else 403)
//!    global/       : any identity                -> read only   (else 403)
//! ```
//!
//! Authentication and authorisation are two steps: the Digest username is verified as the
//! claimed user (so a valid password proves *who* is asking), and only then is that identity
//! compared with the XUI of the document. Tom's valid credentials on Bob's document therefore
//! get a 403 saying why, not a challenge that no password could answer. An assertion from a
//! peer outside the trust list is ignored (SPEC D7), and the request must authenticate.
#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::sync::Arc;

use crate::auth::challenge::write_challenge_value;
use crate::auth::{
    AuthFailure, ChallengeHeader, Credentials, DEFAULT_ALGORITHMS, DigestCredentials, NonceKey,
    NonceState, Reply, TrustList, normalize_aor, verify_request,
};

use super::xcap::{Tree, XcapUri};

/// The header a trusted proxy (the SIP/IP Core's aggregation proxy) names the user in.
pub const ASSERTED_IDENTITY: &str = "X-XCAP-Asserted-Identity";
/// Nonce lifetime: after it a correct answer gets `stale=true` and a fresh nonce.
pub const NONCE_MAX_AGE_S: u64 = 300;
/// Longest Digest username we decode.
const MAX_USERNAME: usize = 300;

/// Where the Digest credentials come from: the same set the SIP side uses, read per request
/// so `imserver user add` takes effect without a restart (the gate holds them in an
/// `ArcSwap`; pass `Arc::new(move || gate.creds.load_full())`).
pub type CredentialsSource = Arc<dyn Fn() -> Arc<Credentials> + Send + Sync>;

/// A fixed credentials set (tests, tools).
pub fn fixed_credentials(creds: Credentials) -> CredentialsSource {
    let creds = Arc::new(creds);
    Arc::new(move || Arc::clone(&creds))
}

/// Access configuration.
#[derive(Clone)]
pub struct AccessConfig {
    /// Digest realm (the SIP domain, as for REGISTER).
    pub realm: String,
    /// Peers whose `X-XCAP-Asserted-Identity` counts.
    pub trust: TrustList,
    /// Identities that may read every user's documents (the IM Server's
    /// `sip:im-server@<domain>`), any URI form.
    pub service_identities: Vec<String>,
    /// `false` (lab): an assertion from anywhere counts, and nothing is challenged.
    pub auth: bool,
    pub credentials: CredentialsSource,
}

/// Who is asking, as a normalised AoR (`user@host`, SPEC D8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub aor: String,
    /// How the identity was established.
    pub via: Via,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `X-XCAP-Asserted-Identity` from a trusted peer (or with auth off).
    Asserted,
    /// HTTP Digest (RFC 7616).
    Digest,
}

/// Why a request is refused; nothing is read or changed for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 401 with fresh `WWW-Authenticate` challenges.
    Challenge { stale: bool },
    /// 400: credentials or assertion that do not parse.
    BadRequest(&'static str),
    /// 403, with a reason phrase that says why.
    Forbidden(&'static str),
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::Challenge { .. } => 401,
            Refusal::BadRequest(_) => 400,
            Refusal::Forbidden(_) => 403,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Challenge { .. } => "Unauthorized",
            Refusal::BadRequest(r) | Refusal::Forbidden(r) => r,
        }
    }
}

/// What the request wants to do, for the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    Read,
    Write,
}

/// The parts of a request access control looks at.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    pub peer: IpAddr,
    /// `GET`, `PUT` or `DELETE` (hashed into the Digest response).
    pub method: &'a [u8],
    /// The request target as sent (origin form), compared with the digest `uri`.
    pub target: &'a [u8],
    /// The `Authorization` value for our realm (see `auth::select_for_realm`).
    pub authorization: Option<&'a [u8]>,
    pub asserted: Option<&'a [u8]>,
    pub intent: Intent,
}

/// The access checker: configuration plus the Digest nonce state.
pub struct Access {
    cfg: AccessConfig,
    service_aors: Vec<String>,
    nonces: NonceState,
}

impl Access {
    /// Fails only when the system has no entropy for the nonce key.
    pub fn new(cfg: AccessConfig) -> Result<Access, &'static str> {
        let key = NonceKey::random().map_err(|_| "no entropy for the nonce key")?;
        let nonces = NonceState::new(&key, NONCE_MAX_AGE_S, crate::auth::DEFAULT_SLOTS_LOG2)
            .map_err(|_| "no entropy for the nonce state")?;
        let service_aors = cfg
            .service_identities
            .iter()
            .filter_map(|s| normalize_aor(s).ok())
            .collect();
        Ok(Access {
            cfg,
            service_aors,
            nonces,
        })
    }

    pub fn realm(&self) -> &str {
        &self.cfg.realm
    }

    /// Authenticates the request, then applies the rules for `uri`.
    pub fn check(
        &self,
        facts: &RequestFacts<'_>,
        uri: &XcapUri,
        now_s: u64,
    ) -> Result<Identity, Refusal> {
        let identity = self.authenticate(facts, now_s)?;
        self.authorize(&identity, uri, facts.intent)?;
        Ok(identity)
    }

    /// Who is asking.
    pub fn authenticate(&self, facts: &RequestFacts<'_>, now_s: u64) -> Result<Identity, Refusal> {
        let trusted = !self.cfg.auth || self.cfg.trust.contains(facts.peer);
        // SPEC G3 / D7: the assertion counts only from a trusted proxy; from anyone else it is
        // ignored and the request must prove its identity.
        if let Some(asserted) = facts.asserted
            && trusted
        {
            let aor = parse_asserted(asserted).ok_or(Refusal::BadRequest(
                "Bad Request (X-XCAP-Asserted-Identity)",
            ))?;
            return Ok(Identity {
                aor,
                via: Via::Asserted,
            });
        }
        if !self.cfg.auth {
            return Err(Refusal::Forbidden(
                "Forbidden (anonymous: no X-XCAP-Asserted-Identity)",
            ));
        }
        self.digest(facts, now_s)
    }

    fn digest(&self, facts: &RequestFacts<'_>, now_s: u64) -> Result<Identity, Refusal> {
        let value = facts
            .authorization
            .ok_or(Refusal::Challenge { stale: false })?;
        let cred = DigestCredentials::parse(value).map_err(refusal_of)?;
        // RFC 7616 §3.4.6: the digest-uri must name the request target (else 400).
        if !cred.uri.eq_unescaped(facts.target) {
            return Err(Refusal::BadRequest(
                "Bad Request (Authorization uri does not match the request target)",
            ));
        }
        let mut buf = [0u8; MAX_USERNAME];
        // The claimed user is the Digest username itself: authentication proves who is
        // asking; `authorize` then decides what that identity may touch.
        let claimed = cred
            .username
            .decode_into(&mut buf)
            .ok_or(Refusal::Challenge { stale: false })?;
        let creds = (self.cfg.credentials)();
        let user = verify_request(
            &creds,
            &self.nonces,
            now_s,
            self.cfg.realm.as_bytes(),
            facts.method,
            Some(value),
            claimed,
        )
        .map_err(refusal_of)?;
        let aor = String::from_utf8_lossy(user.aor).into_owned();
        Ok(Identity {
            aor,
            via: Via::Digest,
        })
    }

    /// SPEC G3: a user reads and writes only `users/<own xui>/`; service identities read
    /// anyone's; `global/` is readable by every authenticated identity.
    pub fn authorize(
        &self,
        identity: &Identity,
        uri: &XcapUri,
        intent: Intent,
    ) -> Result<(), Refusal> {
        match &uri.tree {
            Tree::Global => match intent {
                Intent::Read => Ok(()),
                Intent::Write => Err(Refusal::Forbidden(
                    "Forbidden (global documents are read-only)",
                )),
            },
            Tree::Users(xui) => {
                let owner = normalize_aor(xui).ok();
                if owner.as_deref().is_some_and(|o| same_aor(o, &identity.aor)) {
                    return Ok(());
                }
                let service = self.service_aors.iter().any(|s| same_aor(s, &identity.aor));
                match (service, intent) {
                    (true, Intent::Read) => Ok(()),
                    (true, Intent::Write) => Err(Refusal::Forbidden(
                        "Forbidden (service identity may read, not write, other users' documents)",
                    )),
                    (false, _) => Err(Refusal::Forbidden(
                        "Forbidden (a user may only access their own documents)",
                    )),
                }
            }
        }
    }

    /// The two challenge values for a 401: SHA-256 first, then MD5 (RFC 7616 §3.7, RFC 8760
    /// §2.4), sharing one fresh nonce, `qop="auth"`.
    pub fn challenges(&self, now_s: u64, stale: bool) -> Vec<Vec<u8>> {
        let realm = self.cfg.realm.as_bytes();
        let nonce = self.nonces.issue(now_s, realm);
        DEFAULT_ALGORITHMS
            .iter()
            .map(|&alg| {
                let mut v = Vec::with_capacity(128 + 2 * realm.len());
                // Capacity covers any realm we accept; on a miss the value is simply left out.
                let _ = write_challenge_value(&mut v, realm, nonce.as_bytes(), alg, stale);
                v
            })
            .filter(|v| !v.is_empty())
            .collect()
    }
}

/// SPEC D8 on two normalised AoRs (`normalize_aor` already lower-cased the hosts).
fn same_aor(a: &str, b: &str) -> bool {
    a == b
}

fn refusal_of(f: AuthFailure) -> Refusal {
    let h = ChallengeHeader::WwwAuthenticate;
    match f.reply() {
        Reply::Challenge { stale } => Refusal::Challenge { stale },
        Reply::BadRequest => Refusal::BadRequest(f.reason(h)),
        Reply::Forbidden => Refusal::Forbidden(f.reason(h)),
    }
}

/// `"sip:bob@example.com"`, `<sip:bob@example.com>`, `Bob <sip:bob@example.com>` or the bare
/// URI, normalised to `bob@example.com`.
fn parse_asserted(value: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(value).ok()?.trim();
    let inner = if let Some(start) = s.find('<') {
        let end = s[start..].find('>')? + start;
        &s[start + 1..end]
    } else if let Some(q) = s.strip_prefix('"') {
        q.strip_suffix('"')?
    } else {
        s
    };
    normalize_aor(inner.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::algorithm::MAX_OUTPUT_LEN;
    use crate::auth::{Algorithm, Quoted, compute_response, ha1};

    const REALM: &str = "example.com";

    fn access(auth: bool) -> Access {
        let mut creds = Credentials::new();
        creds.add("sip:bob@example.com", "bobpw").expect("bob");
        creds.add("sip:tom@example.com", "tompw").expect("tom");
        creds
            .add("sip:im-server@example.com", "impw")
            .expect("service");
        Access::new(AccessConfig {
            realm: REALM.into(),
            trust: TrustList::parse_list("10.0.0.0/8").expect("trust"),
            service_identities: vec!["sip:im-server@example.com".into()],
            auth,
            credentials: fixed_credentials(creds),
        })
        .expect("access")
    }

    fn uri(t: &str) -> XcapUri {
        XcapUri::parse(t, "/xcap-root").expect("uri")
    }

    const BOB_DOC: &str = "/xcap-root/resource-lists/users/sip:bob@example.com/index";

    fn facts<'a>(
        peer: &str,
        method: &'a str,
        authorization: Option<&'a [u8]>,
        asserted: Option<&'a [u8]>,
    ) -> RequestFacts<'a> {
        RequestFacts {
            peer: peer.parse().expect("ip"),
            method: method.as_bytes(),
            target: BOB_DOC.as_bytes(),
            authorization,
            asserted,
            intent: if method == "GET" {
                Intent::Read
            } else {
                Intent::Write
            },
        }
    }

    /// A client's Authorization for the nonce in `challenge`.
    fn answer(a: &Access, user: &str, pw: &str, method: &str, target: &str) -> Vec<u8> {
        let ch = String::from_utf8(a.challenges(1000, false).remove(0)).expect("utf8");
        let nonce = ch
            .split("nonce=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("nonce");
        let h = ha1(
            Algorithm::Sha256,
            user.as_bytes(),
            REALM.as_bytes(),
            pw.as_bytes(),
        );
        let resp = compute_response(
            &h,
            method.as_bytes(),
            Quoted::plain(target.as_bytes()),
            nonce.as_bytes(),
            b"00000001",
            Quoted::plain(b"cn"),
            b"auth",
        );
        let mut hex = [0u8; 2 * MAX_OUTPUT_LEN];
        let hex = String::from_utf8(resp.hex(&mut hex).to_vec()).expect("hex");
        format!(
            "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{target}\", \
             response=\"{hex}\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"cn\""
        )
        .into_bytes()
    }

    #[test]
    fn asserted_identity_counts_only_from_trusted_peers() {
        let a = access(true);
        let u = uri(BOB_DOC);
        let bob = b"<sip:bob@example.com>";
        let id = a
            .check(&facts("10.1.2.3", "PUT", None, Some(bob)), &u, 1000)
            .expect("trusted");
        assert_eq!(id.aor, "bob@example.com");
        assert_eq!(id.via, Via::Asserted);
        // Untrusted: ignored, so the request is challenged.
        assert_eq!(
            a.check(&facts("192.0.2.1", "PUT", None, Some(bob)), &u, 1000),
            Err(Refusal::Challenge { stale: false })
        );
        // Quoted and bare forms.
        for v in [&b"\"sip:bob@example.com\""[..], b"sip:bob@EXAMPLE.com"] {
            assert!(
                a.check(&facts("10.0.0.1", "GET", None, Some(v)), &u, 1000)
                    .is_ok()
            );
        }
        assert!(matches!(
            a.check(&facts("10.0.0.1", "GET", None, Some(b"tel:+1")), &u, 1000),
            Err(Refusal::BadRequest(_))
        ));
    }

    #[test]
    fn auth_off_accepts_assertions_from_anywhere_and_refuses_anonymous() {
        let a = access(false);
        let u = uri(BOB_DOC);
        assert!(
            a.check(
                &facts("192.0.2.1", "PUT", None, Some(b"sip:bob@example.com")),
                &u,
                1000
            )
            .is_ok()
        );
        assert!(matches!(
            a.check(&facts("192.0.2.1", "GET", None, None), &u, 1000),
            Err(Refusal::Forbidden(_))
        ));
    }

    #[test]
    fn rules_for_users_services_and_global() {
        let a = access(true);
        let bob_doc = uri(BOB_DOC);
        let caps = uri("/xcap-root/xcap-caps/global/index");
        let id = |aor: &str| Identity {
            aor: aor.into(),
            via: Via::Asserted,
        };
        let cases = [
            ("bob@example.com", &bob_doc, Intent::Write, true),
            ("bob@example.com", &bob_doc, Intent::Read, true),
            ("tom@example.com", &bob_doc, Intent::Read, false),
            ("tom@example.com", &bob_doc, Intent::Write, false),
            ("im-server@example.com", &bob_doc, Intent::Read, true),
            ("im-server@example.com", &bob_doc, Intent::Write, false),
            ("tom@example.com", &caps, Intent::Read, true),
            ("tom@example.com", &caps, Intent::Write, false),
        ];
        for (who, u, intent, ok) in cases {
            let got = a.authorize(&id(who), u, intent);
            assert_eq!(got.is_ok(), ok, "{who} {intent:?} {u:?}");
            if let Err(r) = got {
                assert_eq!(r.status(), 403);
                assert!(r.reason().starts_with("Forbidden ("));
            }
        }
    }

    #[test]
    fn digest_proves_the_user_then_rules_apply() {
        let a = access(true);
        let u = uri(BOB_DOC);
        let bob = answer(&a, "bob@example.com", "bobpw", "PUT", BOB_DOC);
        let id = a
            .check(&facts("192.0.2.1", "PUT", Some(&bob), None), &u, 1000)
            .expect("bob");
        assert_eq!((id.aor.as_str(), id.via), ("bob@example.com", Via::Digest));
        // Replaying the same nc is refused (stale challenge).
        assert_eq!(
            a.check(&facts("192.0.2.1", "PUT", Some(&bob), None), &u, 1000),
            Err(Refusal::Challenge { stale: true })
        );
        let tom = answer(&a, "tom@example.com", "tompw", "GET", BOB_DOC);
        assert!(matches!(
            a.check(&facts("192.0.2.1", "GET", Some(&tom), None), &u, 1000),
            Err(Refusal::Forbidden(_))
        ));
        let wrong = answer(&a, "tom@example.com", "guess", "GET", BOB_DOC);
        assert_eq!(
            a.check(&facts("192.0.2.1", "GET", Some(&wrong), None), &u, 1000),
            Err(Refusal::Challenge { stale: false })
        );
        let svc = answer(&a, "im-server@example.com", "impw", "GET", BOB_DOC);
        assert!(
            a.check(&facts("192.0.2.1", "GET", Some(&svc), None), &u, 1000)
                .is_ok()
        );
        // The digest uri must be this request's target.
        let other = answer(&a, "bob@example.com", "bobpw", "GET", "/xcap-root/other");
        assert!(matches!(
            a.check(&facts("192.0.2.1", "GET", Some(&other), None), &u, 1000),
            Err(Refusal::BadRequest(_))
        ));
    }

    #[test]
    fn challenges_offer_sha256_then_md5_with_one_nonce() {
        let a = access(true);
        let c = a.challenges(1000, true);
        assert_eq!(c.len(), 2);
        let s: Vec<String> = c
            .into_iter()
            .map(|v| String::from_utf8(v).expect("utf8"))
            .collect();
        assert!(s[0].contains("algorithm=SHA-256") && s[0].contains("qop=\"auth\""));
        assert!(s[1].contains("algorithm=MD5") && s[1].ends_with("stale=true"));
        let nonce = |v: &str| {
            v.split("nonce=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(str::to_owned)
        };
        assert_eq!(nonce(&s[0]), nonce(&s[1]));
    }
}
