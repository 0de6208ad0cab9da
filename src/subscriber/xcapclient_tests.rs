//! The XCAP client against a tiny HTTP server thread on 127.0.0.1:0.
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc::channel;
use std::thread::JoinHandle;
use std::time::Duration;

use super::machine::FetchResult;
use super::xcapclient::{FetchDone, FetchRequest, Fetcher, MAX_BODY_BYTES, fetch};

const ID: &str = "sip:im-server@example.com";
const TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `responses.len()` connections, one canned response each; returns the requests read.
fn server(responses: Vec<Vec<u8>>) -> (String, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for response in responses {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            seen.push(String::from_utf8_lossy(&req).into_owned());
            if response.is_empty() {
                // Say nothing until the client gives up.
                let _ = conn.read(&mut buf);
                continue;
            }
            let _ = conn.write_all(&response);
        }
        seen
    });
    (
        format!("http://{addr}/xcap-root/resource-lists/users/sip:bob@example.com/index"),
        handle,
    )
}

#[test]
fn ok_with_etag_and_request_headers() {
    let body = "<resource-lists/>";
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/resource-lists+xml\r\nETag: \"e41\"\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (url, h) = server(vec![resp.into_bytes()]);
    let r = fetch(&url, Some("e40"), ID, TIMEOUT);
    assert_eq!(
        r,
        FetchResult::Ok {
            bytes: body.as_bytes().to_vec(),
            etag: Some("e41".into())
        }
    );
    let seen = h.join().unwrap();
    let req = &seen[0];
    assert!(
        req.starts_with(
            "GET /xcap-root/resource-lists/users/sip:bob@example.com/index HTTP/1.1\r\n"
        ),
        "{req}"
    );
    assert!(req.contains("\r\nX-XCAP-Asserted-Identity: \"<sip:im-server@example.com>\"\r\n"));
    assert!(req.contains("\r\nIf-None-Match: \"e40\"\r\n"));
    assert!(req.contains("\r\nHost: 127.0.0.1:"));
}

#[test]
fn not_modified_and_not_found_and_errors() {
    let (url, h) = server(vec![
        b"HTTP/1.1 304 Not Modified\r\nETag: \"e41\"\r\n\r\n".to_vec(),
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec(),
        b"garbage\r\n\r\n".to_vec(),
    ]);
    assert_eq!(
        fetch(&url, Some("e41"), ID, TIMEOUT),
        FetchResult::NotModified
    );
    assert_eq!(fetch(&url, None, ID, TIMEOUT), FetchResult::NotFound);
    assert_eq!(fetch(&url, None, ID, TIMEOUT), FetchResult::Failed);
    assert_eq!(fetch(&url, None, ID, TIMEOUT), FetchResult::Failed);
    let seen = h.join().unwrap();
    assert!(!seen[1].contains("If-None-Match"));
}

#[test]
fn chunked_body() {
    let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: \"c1\"\r\n\r\n\
                 5\r\n<list\r\n3;ext=1\r\n/>!\r\n0\r\nX-Trailer: y\r\n\r\n"
        .to_vec();
    let (url, h) = server(vec![resp]);
    assert_eq!(
        fetch(&url, None, ID, TIMEOUT),
        FetchResult::Ok {
            bytes: b"<list/>!".to_vec(),
            etag: Some("c1".into())
        }
    );
    h.join().unwrap();
}

#[test]
fn body_until_close_and_truncated_body() {
    let (url, h) = server(vec![
        b"HTTP/1.0 200 OK\r\n\r\nabc".to_vec(),
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec(),
    ]);
    assert_eq!(
        fetch(&url, None, ID, TIMEOUT),
        FetchResult::Ok {
            bytes: b"abc".to_vec(),
            etag: None
        }
    );
    assert_eq!(fetch(&url, None, ID, TIMEOUT), FetchResult::Failed);
    h.join().unwrap();
}

#[test]
fn oversized_body_is_refused() {
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY_BYTES + 1
    );
    let (url, h) = server(vec![resp.into_bytes()]);
    assert_eq!(fetch(&url, None, ID, TIMEOUT), FetchResult::Failed);
    h.join().unwrap();
}

#[test]
fn silent_server_times_out() {
    let (url, h) = server(vec![Vec::new()]);
    assert_eq!(
        fetch(&url, None, ID, Duration::from_millis(200)),
        FetchResult::Failed
    );
    h.join().unwrap();
}

#[test]
fn only_http_urls() {
    assert_eq!(
        fetch("https://127.0.0.1:1/x", None, ID, TIMEOUT),
        FetchResult::Failed
    );
    assert_eq!(fetch("ftp://x/y", None, ID, TIMEOUT), FetchResult::Failed);
    assert_eq!(fetch("http:///y", None, ID, TIMEOUT), FetchResult::Failed);
}

#[test]
fn pool_reports_through_the_callback() {
    let resp = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec();
    let (url, h) = server(vec![resp.clone(), resp]);
    let (tx, rx) = channel::<FetchDone>();
    let tx = std::sync::Mutex::new(tx);
    let pool = Fetcher::start(2, 4, ID, TIMEOUT, move |done| {
        let _ = tx.lock().map(|t| t.send(done));
    })
    .unwrap();
    for aor in ["sip:a@x", "sip:b@x"] {
        pool.submit(FetchRequest {
            aor: aor.into(),
            uri: url.clone(),
            if_none_match: None,
        })
        .unwrap();
    }
    let mut got: Vec<FetchDone> = (0..2).map(|_| rx.recv_timeout(TIMEOUT).unwrap()).collect();
    got.sort_by(|a, b| a.aor.cmp(&b.aor));
    assert_eq!(got[0].aor, "sip:a@x");
    assert!(
        got.iter()
            .all(|d| d.result == FetchResult::NotFound && d.uri == url)
    );
    pool.shutdown();
    h.join().unwrap();
}
