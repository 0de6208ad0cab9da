//! Why a SUBSCRIBE is refused, by cause, each cause knowing its SIP status and reason phrase.
#![forbid(unsafe_code)]

/// The cause of a refused SUBSCRIBE (RFC 6665 §4.2.1, RFC 5875 §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The Event package is not `xcap-diff` (RFC 6665 §4.2.1.1: 489 + Allow-Events).
    #[error("event package not supported")]
    BadEvent,
    /// `diff-processing` has a value RFC 5875 §4.4 does not define.
    #[error("unknown diff-processing value")]
    BadDiffProcessing,
    /// An initial SUBSCRIBE without a resource-lists body (RFC 5875 §4.3 requires one).
    #[error("missing resource-lists body")]
    MissingBody,
    /// The body is not a well-formed resource-lists document.
    #[error("malformed resource-lists body")]
    MalformedBody,
    /// A list entry that is not `<auid>/users/<xui>/<doc>` or a collection.
    #[error("malformed resource-lists entry")]
    BadEntry,
    /// The list names nothing.
    #[error("empty resource-lists")]
    EmptyList,
    /// More entries than [`super::body::MAX_RESOURCES`].
    #[error("too many resource-lists entries")]
    TooManyEntries,
    /// An element or attribute subscription (`/~~/`): not supported in this version.
    #[error("node selector subscriptions not supported")]
    NodeSelector,
    /// A body that is not `application/resource-lists+xml` (415 + Accept).
    #[error("unsupported body type")]
    UnsupportedMediaType,
    /// `Accept` excludes `application/xcap-diff+xml` (RFC 6665 §4.2.1.1: 406).
    #[error("xcap-diff not acceptable")]
    NotAcceptable,
    /// Expires below the minimum (RFC 6665 §4.2.1.1: 423 + Min-Expires).
    #[error("interval too brief")]
    IntervalTooBrief,
    /// A document outside the subscriber's own `users/<xui>/` (SPEC D4).
    #[error("not the subscriber's document")]
    Forbidden,
    /// The `global` tree is not subscribable in this version.
    #[error("global documents not subscribable")]
    GlobalTree,
    /// A refresh from another identity than the one that created the subscription.
    #[error("identity differs from the subscription's")]
    IdentityMismatch,
    /// The subscription table is full (D12: shed load with 503 + Retry-After).
    #[error("too many subscriptions")]
    TooManySubscriptions,
    /// An in-dialog SUBSCRIBE for no known subscription (RFC 6665 §4.2.1.4: 481).
    #[error("subscription does not exist")]
    NoSuchSubscription,
    /// An in-dialog request whose CSeq is not above the last one (RFC 3261 §12.2.2: 500).
    #[error("CSeq out of order")]
    CSeqOutOfOrder,
}

impl SubscribeError {
    pub fn code(self) -> u16 {
        use SubscribeError::*;
        match self {
            BadEvent | BadDiffProcessing => 489,
            MissingBody | MalformedBody | BadEntry | EmptyList | TooManyEntries | NodeSelector => {
                400
            }
            UnsupportedMediaType => 415,
            NotAcceptable => 406,
            IntervalTooBrief => 423,
            Forbidden | GlobalTree | IdentityMismatch => 403,
            TooManySubscriptions => 503,
            NoSuchSubscription => 481,
            CSeqOutOfOrder => 500,
        }
    }

    pub fn reason(self) -> &'static str {
        use SubscribeError::*;
        match self {
            BadEvent => "Bad Event",
            BadDiffProcessing => "Bad Event - Unknown diff-processing",
            MissingBody => "Bad Request - Missing resource-lists body",
            MalformedBody => "Bad Request - Malformed resource-lists body",
            BadEntry => "Bad Request - Malformed resource-lists entry",
            EmptyList => "Bad Request - Empty resource-lists",
            TooManyEntries => "Bad Request - Too many resource-lists entries",
            NodeSelector => "Bad Request - Element subscriptions not supported",
            UnsupportedMediaType => "Unsupported Media Type",
            NotAcceptable => "Not Acceptable",
            IntervalTooBrief => "Interval Too Brief",
            Forbidden => "Forbidden - Not your document",
            GlobalTree => "Forbidden - Global documents not subscribable",
            IdentityMismatch => "Forbidden - Subscriber identity changed",
            TooManySubscriptions => "Service Unavailable - Too many subscriptions",
            NoSuchSubscription => "Subscription Does Not Exist",
            CSeqOutOfOrder => "Server Internal Error - CSeq out of order",
        }
    }
}

/// Longest detail put into a reason phrase.
const MAX_DETAIL_LEN: usize = 200;

/// A refusal ready for the wire: the cause, an optional detail for the reason phrase (the path
/// that was refused), and the headers the response must carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub error: SubscribeError,
    /// Already sanitised (printable ASCII, bounded): safe in a status line.
    pub detail: Option<String>,
    pub headers: Vec<(&'static str, String)>,
}

impl Rejection {
    pub fn new(error: SubscribeError) -> Rejection {
        Rejection {
            error,
            detail: None,
            headers: Vec::new(),
        }
    }

    /// Adds a detail (untrusted text: control and non-ASCII bytes are dropped, length bounded).
    pub fn with_detail(mut self, detail: &str) -> Rejection {
        let clean: String = detail
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(MAX_DETAIL_LEN)
            .collect();
        self.detail = Some(clean);
        self
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Rejection {
        self.headers.push((name, value));
        self
    }

    pub fn code(&self) -> u16 {
        self.error.code()
    }

    /// The reason phrase, with the detail when there is one.
    pub fn reason_phrase(&self) -> String {
        match &self.detail {
            Some(d) => format!("{}: {d}", self.error.reason()),
            None => self.error.reason().to_owned(),
        }
    }
}

impl From<SubscribeError> for Rejection {
    fn from(error: SubscribeError) -> Rejection {
        Rejection::new(error)
    }
}
