//! One XCAP request: method, URI, access, then the read path or the writer queue; and the
//! mapping of every outcome to an HTTP response (RFC 4825 §7-§8, §11; RFC 9110).
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::super::access::{ASSERTED_IDENTITY, Access, Intent, Refusal, RequestFacts};
use super::super::store::{DocKey, DocStore};
use super::super::xcap::{
    ETag, XCAP_ERROR_MIME, XcapCore, XcapError, XcapUri, check_read_preconditions,
};
use super::writer::{WriteJob, WriteOp, WriteResult};
use super::{HttpLimits, HttpStats, XCAP_ROOT};
use crate::auth::select_for_realm;

/// Shared by every connection.
pub(super) struct State {
    pub core: XcapCore,
    pub store: DocStore,
    pub access: Access,
    pub writes: SyncSender<WriteJob>,
    pub limits: HttpLimits,
    pub stats: Arc<HttpStats>,
}

type Resp = Response<Full<Bytes>>;

/// Hyper's floor for its read buffer.
const MIN_BUF: usize = 8192;
/// Most headers in one request.
const MAX_HEADERS: usize = 64;

pub(super) async fn serve_connection(stream: TcpStream, peer: SocketAddr, state: Arc<State>) {
    let limits = state.limits;
    let timeout = Duration::from_millis(limits.request_timeout_ms.max(1));
    let service = hyper::service::service_fn(move |req| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(handle(&state, peer, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(limits.max_header_bytes.max(MIN_BUF))
        .max_header_size(limits.max_header_bytes.max(MIN_BUF))
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    if let Err(e) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%peer, error = %e, "glms connection ended");
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn handle(state: &State, peer: SocketAddr, req: Request<Incoming>) -> Resp {
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    // RFC 4825 §8: XCAP resources support GET, PUT and DELETE.
    let intent = match *req.method() {
        Method::GET => Intent::Read,
        Method::PUT | Method::DELETE => Intent::Write,
        _ => {
            return error_response(&XcapError::MethodNotAllowed(
                super::super::xcap::Allow::GetPutDelete,
            ));
        }
    };
    let target = req.uri().to_string();
    let uri = match XcapUri::parse(&target, XCAP_ROOT) {
        Ok(u) => u,
        Err(e) => return error_response(&e),
    };
    let headers = req.headers();
    let authorization = select_for_realm(
        headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .map(HeaderValue::as_bytes),
        state.access.realm().as_bytes(),
    );
    let facts = RequestFacts {
        peer: peer.ip(),
        method: req.method().as_str().as_bytes(),
        target: target.as_bytes(),
        authorization,
        asserted: headers.get(ASSERTED_IDENTITY).map(HeaderValue::as_bytes),
        intent,
    };
    // SPEC G3: nothing is read or changed for a refused request.
    if let Err(r) = state.access.check(&facts, &uri, now_s()) {
        state.stats.refused_auth.fetch_add(1, Ordering::Relaxed);
        return refusal_response(&state.access, r);
    }
    let if_match = header_string(headers, header::IF_MATCH);
    let if_none_match = header_string(headers, header::IF_NONE_MATCH);
    if req.method() == Method::GET {
        return get(state, &uri, if_match.as_deref(), if_none_match.as_deref());
    }
    let op = if req.method() == Method::PUT {
        let content_type = header_string(headers, header::CONTENT_TYPE).unwrap_or_default();
        match read_body(state, req).await {
            Ok(body) => WriteOp::Put { content_type, body },
            Err(resp) => return resp,
        }
    } else {
        WriteOp::Delete
    };
    write(state, uri, op, if_match, if_none_match).await
}

/// A header as text; a value that is not visible ASCII counts as absent for `Content-Type`
/// and fails the condition for `If-Match` / `If-None-Match` (the ETag parser refuses it).
fn header_string(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    let v = headers.get(&name)?;
    Some(v.to_str().unwrap_or("\u{0}").to_owned())
}

fn get(state: &State, uri: &XcapUri, if_match: Option<&str>, if_none_match: Option<&str>) -> Resp {
    let read_only = state
        .core
        .registry
        .usage(&uri.auid)
        .is_some_and(|u| u.read_only());
    // The generated xcap-caps document has no stored copy; its tag is that of its content.
    let stored = if read_only {
        None
    } else {
        match state.store.get(&DocKey::from_uri(uri)) {
            Ok(Some(d)) => Some(d),
            Ok(None) => return error_response(&XcapError::NotFound),
            Err(e) => {
                tracing::error!(error = %e, "glms store read failed");
                return plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal Server Error (store)",
                );
            }
        }
    };
    let rep = match state
        .core
        .get(uri, stored.as_ref().map(|d| d.bytes.as_slice()))
    {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let etag = match &stored {
        Some(d) => d.etag.clone(),
        None => ETag::for_document(&rep.body, 0),
    };
    // RFC 9110 §13.1: a matching If-None-Match on a GET is 304, a failed If-Match 412.
    if let Err(e) = check_read_preconditions(if_match, if_none_match, Some(&etag)) {
        let mut r = error_response(&e);
        if e == XcapError::NotModified {
            insert_etag(&mut r, &etag);
        }
        return r;
    }
    let mut r = Response::new(Full::new(Bytes::from(rep.body)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(rep.mime));
    insert_etag(&mut r, &etag);
    r
}

async fn read_body(state: &State, req: Request<Incoming>) -> Result<Bytes, Resp> {
    let max = state.limits.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // Refuse a declared oversize body before reading a byte of it.
    if declared.is_some_and(|n| n > max as u64) {
        return Err(error_response(&XcapError::TooLarge));
    }
    let timeout = Duration::from_millis(state.limits.request_timeout_ms.max(1));
    let collected = tokio::time::timeout(timeout, Limited::new(req.into_body(), max).collect());
    match collected.await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(error_response(&XcapError::TooLarge))
        }
        Ok(Err(_)) => Err(plain(StatusCode::BAD_REQUEST, "Bad Request (body)")),
        Err(_) => Err(plain(StatusCode::REQUEST_TIMEOUT, "Request Timeout (body)")),
    }
}

async fn write(
    state: &State,
    uri: XcapUri,
    op: WriteOp,
    if_match: Option<String>,
    if_none_match: Option<String>,
) -> Resp {
    let (reply, answer) = oneshot::channel();
    let job = WriteJob {
        uri,
        op,
        if_match,
        if_none_match,
        reply,
    };
    // STYLE 6: a full queue sheds load instead of growing.
    if let Err(e) = state.writes.try_send(job) {
        state.stats.overload.fetch_add(1, Ordering::Relaxed);
        let why = match e {
            TrySendError::Full(_) => "Service Unavailable (write queue full)",
            TrySendError::Disconnected(_) => "Service Unavailable (shutting down)",
        };
        return unavailable(why);
    }
    let timeout = Duration::from_millis(state.limits.request_timeout_ms.max(1));
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(WriteResult::Done { created, etag })) => {
            // RFC 4825 §8.2.5: 201 when the resource was created, 200 when it was replaced.
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = status;
            if let Some(t) = &etag {
                insert_etag(&mut r, t);
            }
            r
        }
        Ok(Ok(WriteResult::Refused(e))) => error_response(&e),
        Ok(Ok(WriteResult::StoreFailed)) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error (store)",
        ),
        // The writer went away, or is too slow: the outcome is unknown to us.
        Ok(Err(_)) | Err(_) => unavailable("Service Unavailable (store busy)"),
    }
}

fn insert_etag(r: &mut Resp, etag: &ETag) {
    // Tags are validated visible ASCII without quotes, so the header value is always valid.
    if let Ok(v) = HeaderValue::from_str(&etag.to_header()) {
        r.headers_mut().insert(header::ETAG, v);
    }
}

fn set_reason(r: &mut Resp, reason: &str) {
    if let Ok(p) = hyper::ext::ReasonPhrase::try_from(reason.as_bytes()) {
        r.extensions_mut().insert(p);
    }
}

/// A response with a reason phrase and the same text as a `text/plain` body.
fn plain(status: StatusCode, reason: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(reason.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    set_reason(&mut r, reason);
    r
}

fn unavailable(reason: &'static str) -> Resp {
    let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, reason);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// The response for an XCAP error: 409 with an `application/xcap-error+xml` body (RFC 4825
/// §11), 405 with `Allow`, 304 without a body, the others with a short text body.
pub(super) fn error_response(e: &XcapError) -> Resp {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(body) = e.body() {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(XCAP_ERROR_MIME),
        );
        return r;
    }
    if status == StatusCode::NOT_MODIFIED {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = status;
        return r;
    }
    let text = e.to_string();
    let mut r = Response::new(Full::new(Bytes::from(text.clone())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(allow) = e.allow() {
        r.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static(allow.header_value()),
        );
    }
    if let XcapError::BadRequest(why) = e {
        set_reason(&mut r, &format!("Bad Request ({why})"));
    }
    r
}

fn refusal_response(access: &Access, refusal: Refusal) -> Resp {
    match refusal {
        Refusal::Challenge { stale } => {
            let mut r = plain(StatusCode::UNAUTHORIZED, "Unauthorized");
            // RFC 7616 §3.7: one challenge per algorithm, preferred (SHA-256) first.
            for v in access.challenges(now_s(), stale) {
                if let Ok(v) = HeaderValue::from_bytes(&v) {
                    r.headers_mut().append(header::WWW_AUTHENTICATE, v);
                }
            }
            r
        }
        Refusal::BadRequest(why) => plain(StatusCode::BAD_REQUEST, why),
        Refusal::Forbidden(why) => plain(StatusCode::FORBIDDEN, why),
    }
}
