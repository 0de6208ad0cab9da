//! Error types: what went wrong while scanning or parsing, each mapped to what goes on the wire.
#![forbid(unsafe_code)]

use thiserror::Error;

/// A message that cannot be framed or whose head is broken. Each variant knows its SIP status
/// and a reason phrase that names the fault; `can_reply` says whether enough of the message was
/// understood to route a response (RFC 3261 §18.2.1 needs Via, and §8.2.6.2 needs From, To,
/// Call-ID and CSeq to build one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error)]
pub enum ScanError {
    #[error("malformed request line")]
    BadRequestLine,
    #[error("malformed header line")]
    BadHeaderLine,
    #[error("too many headers")]
    TooManyHeaders,
    #[error("Content-Length missing on a stream transport")]
    MissingContentLength,
    #[error("malformed or negative Content-Length")]
    BadContentLength,
    #[error("Content-Length appears more than once")]
    DuplicateContentLength,
    #[error("datagram shorter than Content-Length")]
    TruncatedBody,
    #[error("message exceeds the size limit")]
    TooLarge,
    /// A response that does not scan (RFC 4475 bigcode): it is dropped, never answered.
    #[error("malformed response")]
    BadResponse,
    /// A request too broken to route any response to (no Via/From/To/Call-ID/CSeq).
    #[error("request lacks the headers needed to route a response")]
    Unroutable,
}

impl ScanError {
    /// The status to answer with (when `can_reply`).
    pub fn status(&self) -> u16 {
        match self {
            ScanError::TooLarge => 513,
            _ => 400,
        }
    }

    /// A reason phrase that names the fault.
    pub fn reason(&self) -> &'static str {
        match self {
            ScanError::BadRequestLine => "Bad Request - Malformed Request-Line",
            ScanError::BadHeaderLine => "Bad Request - Malformed Header Line",
            ScanError::TooManyHeaders => "Bad Request - Too Many Headers",
            ScanError::MissingContentLength => "Bad Request - Missing Content-Length",
            ScanError::BadContentLength => "Bad Request - Malformed Content-Length",
            ScanError::DuplicateContentLength => "Bad Request - Duplicate Content-Length",
            ScanError::TruncatedBody => "Bad Request - Body Shorter Than Content-Length",
            ScanError::TooLarge => "Message Too Large",
            ScanError::BadResponse => "Malformed Response",
            ScanError::Unroutable => "Bad Request - Unroutable",
        }
    }

    /// False when no response can be routed: the message is dropped and counted.
    pub fn can_reply(&self) -> bool {
        !matches!(self, ScanError::BadResponse | ScanError::Unroutable)
    }
}

/// A header value (or URI) that does not match its grammar. Carries no position: the caller
/// knows which header it asked about, and that is what the 400 reason phrase names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error)]
pub enum SyntaxError {
    #[error("empty value")]
    Empty,
    #[error("unbalanced quotes")]
    Quote,
    #[error("unbalanced angle brackets")]
    Angle,
    #[error("bad character")]
    Char,
    #[error("bad parameter")]
    Param,
    #[error("bad number")]
    Number,
    #[error("number out of range")]
    Range,
    #[error("bad URI")]
    Uri,
    #[error("bad host")]
    Host,
    #[error("bad port")]
    Port,
    #[error("bad sent-protocol")]
    Protocol,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_replyability() {
        assert_eq!(ScanError::TooLarge.status(), 513);
        assert_eq!(ScanError::BadContentLength.status(), 400);
        assert!(
            ScanError::BadContentLength
                .reason()
                .contains("Content-Length")
        );
        assert!(!ScanError::BadResponse.can_reply());
        assert!(!ScanError::Unroutable.can_reply());
        assert!(ScanError::TruncatedBody.can_reply());
    }
}
