//! Why a request did not authenticate, and what goes on the wire for each cause.
#![forbid(unsafe_code)]

use super::challenge::ChallengeHeader;

/// What the server answers to a failed authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// 401 (`WWW-Authenticate`) or 407 (`Proxy-Authenticate`) with a fresh nonce.
    Challenge { stale: bool },
    /// 400: the credentials header does not parse.
    BadRequest,
    /// 403: valid credentials, but not for the identity the request claims (D7).
    Forbidden,
}

/// Which part of an `Authorization` value was wrong (the 400 reason phrase says so).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("bad syntax")]
    Syntax,
    #[error("parameter given twice")]
    Duplicate,
    #[error("too many parameters")]
    TooManyParams,
    #[error("missing username")]
    MissingUsername,
    #[error("missing realm")]
    MissingRealm,
    #[error("missing nonce")]
    MissingNonce,
    #[error("missing uri")]
    MissingUri,
    #[error("missing response")]
    MissingResponse,
    #[error("qop without cnonce or nc")]
    MissingCnonceOrNc,
    #[error("nc is not 8 hex digits")]
    BadNc,
    #[error("response is not hex")]
    BadResponse,
    #[error("both username and username*")]
    UsernameTwice,
    #[error("bad username")]
    BadUsername,
}

impl Malformed {
    /// Reason phrase for the 400 (STYLE 3: say what was wrong).
    pub fn reason(self) -> &'static str {
        match self {
            Malformed::Syntax => "Bad Request (Authorization syntax)",
            Malformed::Duplicate => "Bad Request (Authorization parameter repeated)",
            Malformed::TooManyParams => "Bad Request (Authorization too many parameters)",
            Malformed::MissingUsername => "Bad Request (Authorization missing username)",
            Malformed::MissingRealm => "Bad Request (Authorization missing realm)",
            Malformed::MissingNonce => "Bad Request (Authorization missing nonce)",
            Malformed::MissingUri => "Bad Request (Authorization missing uri)",
            Malformed::MissingResponse => "Bad Request (Authorization missing response)",
            Malformed::MissingCnonceOrNc => "Bad Request (Authorization qop without cnonce/nc)",
            Malformed::BadNc => "Bad Request (Authorization bad nc)",
            Malformed::BadResponse => "Bad Request (Authorization bad response)",
            Malformed::UsernameTwice => "Bad Request (Authorization username and username*)",
            Malformed::BadUsername => "Bad Request (Authorization bad username)",
        }
    }
}

/// A failed authentication, by cause. Each variant knows its reply ([`AuthFailure::reply`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No credentials header: the first request of every untrusted exchange.
    #[error("no credentials")]
    NoCredentials,
    /// The header does not parse (RFC 3261 §25 / RFC 7616 §3.4 grammar).
    #[error("malformed credentials: {0}")]
    Malformed(Malformed),
    /// A scheme other than Digest (Basic, Bearer, ...): ignored and challenged
    /// (RFC 4475 `regaut01`, "NoOneKnowsThisScheme", expects a 401).
    #[error("authentication scheme is not Digest")]
    UnsupportedScheme,
    /// An algorithm we did not offer (including `-sess` variants and AKA).
    #[error("unknown digest algorithm")]
    UnknownAlgorithm,
    /// No qop (RFC 2069 style) or `auth-int`: we only offer and accept `qop=auth`.
    #[error("qop=auth required")]
    UnsupportedQop,
    /// Credentials for a realm we do not own: ignored, and the request challenged for ours
    /// (RFC 3261 §22.1: credentials are per realm; a request may carry several).
    #[error("credentials for a realm we do not own")]
    WrongRealm,
    /// The nonce is ours but too old, from a previous run, or evicted from the nc table.
    #[error("stale nonce")]
    StaleNonce,
    /// The nonce was not issued by us (or not for this realm).
    #[error("bad nonce")]
    BadNonce,
    /// An nc not above the highest seen for this nonce: a replay, or a reordered request.
    #[error("replayed nonce count")]
    ReplayedNc,
    /// The response does not match: wrong password, or a tampered request.
    #[error("wrong response")]
    WrongResponse,
    /// No credentials provisioned for this username in this realm.
    #[error("unknown user")]
    UnknownUser,
    /// Valid credentials for an AoR other than the one the request claims (D7).
    #[error("credentials belong to another user")]
    UserMismatch,
}

impl AuthFailure {
    /// What to send back.
    pub fn reply(self) -> Reply {
        match self {
            AuthFailure::Malformed(_) => Reply::BadRequest,
            AuthFailure::UserMismatch => Reply::Forbidden,
            // RFC 7616 §3.3 / RFC 2617 §3.2.1: stale=true tells the client its password was
            // right and it may retry with the new nonce without asking the user. A replayed or
            // reordered nc gets it too: a replayer gains nothing from a fresh nonce, while a
            // legitimate client whose requests crossed on the wire recovers without a prompt.
            AuthFailure::StaleNonce | AuthFailure::ReplayedNc => Reply::Challenge { stale: true },
            AuthFailure::NoCredentials
            | AuthFailure::UnsupportedScheme
            | AuthFailure::UnknownAlgorithm
            | AuthFailure::UnsupportedQop
            | AuthFailure::WrongRealm
            | AuthFailure::BadNonce
            | AuthFailure::WrongResponse
            | AuthFailure::UnknownUser => Reply::Challenge { stale: false },
        }
    }

    /// The status code, given which challenge header the request path uses
    /// (401 for a registrar / HTTP server, 407 for a proxy-style check, RFC 3261 §22.3).
    pub fn status(self, header: ChallengeHeader) -> u16 {
        match self.reply() {
            Reply::Challenge { .. } => header.status(),
            Reply::BadRequest => 400,
            Reply::Forbidden => 403,
        }
    }

    /// Reason phrase matching [`AuthFailure::status`].
    pub fn reason(self, header: ChallengeHeader) -> &'static str {
        match self {
            AuthFailure::Malformed(m) => m.reason(),
            AuthFailure::UserMismatch => "Forbidden (identity does not match credentials)",
            _ => header.reason(),
        }
    }
}

impl From<Malformed> for AuthFailure {
    fn from(m: Malformed) -> Self {
        AuthFailure::Malformed(m)
    }
}
