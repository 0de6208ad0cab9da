//! `loadgen churn` end to end: against the real `imserver` binary (embedded GLMS, XCAP changes
//! pushed to the IM Server by xcap-diff NOTIFY), and against a mock whose GLMS accepts changes
//! that never reach the SIP side (the run must fail).

#[allow(dead_code)]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Fault, MockServer};
use loadgen::dataset::{Dataset, DatasetParams};

/// Longest a missing `imserver` debug build may take.
const BUILD_BOUND: Duration = Duration::from_secs(30 * 60);

fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("run loadgen")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-churn-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn json_of(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("json file")).expect("valid json")
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The workspace's `imserver` debug binary; built with `cargo build -p imserver` (bounded) when
/// it is missing. loadgen does not depend on imserver, so Cargo cannot hand us its path.
fn imserver_binary() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let binary = workspace.join("target/debug/imserver");
    if binary.exists() {
        return binary;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut child = Command::new(cargo)
        .args([
            "build",
            "-p",
            "imserver",
            "--bin",
            "imserver",
            "--manifest-path",
        ])
        .arg(workspace.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", workspace.join("target"))
        .spawn()
        .expect("start cargo build -p imserver");
    let started = Instant::now();
    // Bounded by BUILD_BOUND.
    let status = loop {
        if let Some(status) = child.try_wait().expect("cargo build status") {
            break status;
        }
        if started.elapsed() > BUILD_BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("building imserver took over {BUILD_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        status.success() && binary.exists(),
        "cargo build -p imserver failed ({status}); {} is needed",
        binary.display()
    );
    binary
}

/// A running `imserver run`, killed on drop.
struct Imserver {
    child: Child,
    sip: String,
    xcap: String,
}

impl Drop for Imserver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Imserver {
    fn start(binary: &Path, data: &Path, log: &Path) -> Self {
        Self::start_with(binary, data, log, &[], true)
    }

    /// `extra` flags after the defaults; `want_xcap`: the ready line must name an XCAP address
    /// (false with `--glms none`, e.g. when a policy file gives the lists).
    fn start_with(binary: &Path, data: &Path, log: &Path, extra: &[&str], want_xcap: bool) -> Self {
        let mut child = Command::new(binary)
            .args([
                "run",
                "--sip",
                "127.0.0.1:0",
                "--metrics",
                "127.0.0.1:0",
                "--xcap",
                "127.0.0.1:0",
                "--workers",
                "1",
                "--data",
            ])
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("start imserver");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Ends at EOF, when the server exits.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("imserver ready") {
                    let _ = tx.send(line);
                }
            }
        });
        let mut server = Self {
            child,
            sip: String::new(),
            xcap: String::new(),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "imserver did not print its ready line within 60 s; log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            });
        for word in line.split_whitespace() {
            if let Some(addr) = word.strip_prefix("sip=") {
                server.sip = addr.to_owned();
            } else if let Some(addr) = word.strip_prefix("xcap=") {
                server.xcap = addr.to_owned();
            }
        }
        assert!(
            !server.sip.is_empty() && (!want_xcap || !server.xcap.is_empty()),
            "ready line without sip= or xcap=: {line}"
        );
        server
    }
}

#[test]
fn churn_against_the_real_imserver_sees_every_change_without_mismatches() {
    let binary = imserver_binary();
    let dir = temp_dir("real");
    let dataset_dir = dir.join("dataset");
    let data_flags = ["--users", "50", "--max-blocked", "10", "--seed", "7"];
    let mut args = vec![
        "dataset",
        "--out",
        dataset_dir.to_str().expect("utf-8 path"),
    ];
    args.extend(data_flags);
    let out = loadgen(&args);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let data = dir.join("data");
    let import = Command::new(&binary)
        .args(["glms", "import", "--data"])
        .arg(&data)
        .arg(dataset_dir.join("xcap.jsonl"))
        .output()
        .expect("imserver glms import");
    assert!(import.status.success(), "{}", describe(&import));
    let server = Imserver::start(&binary, &data, &dir.join("imserver.log"));
    let json = dir.join("churn.json");
    let xcap = format!("http://{}/xcap-root", server.xcap);
    let mut args = vec![
        "churn",
        "--target",
        &server.sip,
        "--xcap",
        &xcap,
        "--changes-per-s",
        "20",
        "--rate",
        "500",
        "--duration-s",
        "3",
        "--churn-pairs",
        "12",
        "--churn-share",
        "0.3",
        "--json",
        json.to_str().expect("utf-8 path"),
    ];
    args.extend(data_flags);
    let out = loadgen(&args);
    eprintln!("{}", describe(&out));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json_of(&json);
    let results = &report["results"];
    assert_eq!(results["mismatches"]["total"], 0, "{results}");
    assert_eq!(results["unanswered"], 0);
    let churn = &report["churn"];
    let changes = churn["changes"].as_u64().expect("changes");
    assert!(changes >= 50, "20/s for 3 s, got {changes}");
    assert_eq!(churn["committed"].as_u64(), Some(changes), "{churn}");
    assert_eq!(churn["observed"].as_u64(), Some(changes), "{churn}");
    assert_eq!(churn["failures"]["total"], 0, "{churn}");
    assert!(churn["blocks"].as_u64() > Some(0) && churn["unblocks"].as_u64() > Some(0));
    assert_eq!(
        churn["block_propagation_us"]["count"].as_u64(),
        churn["blocks"].as_u64()
    );
    assert_eq!(
        churn["unblock_propagation_us"]["count"].as_u64(),
        churn["unblocks"].as_u64()
    );
    // The load did hit the churned pairs, and the policy wait covered every user.
    assert!(churn["messages_to_churned_pairs"].as_u64() > Some(0));
    assert_eq!(churn["policy_wait"]["known"], 50);
    assert_eq!(report["verdict"]["pass"], true);
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

/// A GLMS that answers XCAP like the real one but whose changes never reach the SIP side.
struct DeafGlms {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for DeafGlms {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl DeafGlms {
    fn start(dataset: Arc<Dataset>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let started = Instant::now();
            // Bounded: stop flag or two minutes.
            while !thread_stop.load(Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(120)
            {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let dataset = Arc::clone(&dataset);
                        std::thread::spawn(move || serve_xcap(stream, &dataset));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { addr, stop }
    }
}

/// `.../users/sip:u12@example.com/...entry%5b@uri=%22sip:u7@example.com%22%5d` -> (12, 7).
fn pair_of(path: &str) -> Option<(u32, u32)> {
    let number = |s: &str| -> Option<u32> {
        let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let owner = number(path.split("/users/sip:u").nth(1)?)?;
    let entry = number(path.split("@uri=%22sip:u").nth(1)?)?;
    Some((owner, entry))
}

fn serve_xcap(mut stream: TcpStream, dataset: &Dataset) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Bounded: 100,000 requests per connection, and the read timeout.
    for _ in 0..100_000 {
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let length = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_owned())
            })
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < end + length {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..end + length);
        let mut words = head.split(' ');
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let (status, body) = match method {
            "GET" if path.ends_with("/xcap-caps/global/index") => (200, "<xcap-caps/>"),
            "GET" => match pair_of(path) {
                Some((owner, entry)) if dataset.is_blocked(owner, entry) => (200, "<entry/>"),
                _ => (404, ""),
            },
            "PUT" => (201, ""),
            "DELETE" => (200, ""),
            _ => (405, ""),
        };
        let answer = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn changes_that_never_reach_the_server_fail_the_run() {
    let mut params = DatasetParams::new(100, 5);
    params.max_blocked = 10;
    let dataset = Arc::new(Dataset::generate(params).expect("dataset"));
    let mock = MockServer::start(Arc::clone(&dataset), Fault::None);
    let glms = DeafGlms::start(dataset);
    let dir = temp_dir("deaf");
    let json = dir.join("churn.json");
    let target = mock.addr.to_string();
    let xcap = format!("http://{}/xcap-root", glms.addr);
    let out = loadgen(&[
        "churn",
        "--target",
        &target,
        "--xcap",
        &xcap,
        "--users",
        "100",
        "--seed",
        "5",
        "--max-blocked",
        "10",
        "--changes-per-s",
        "10",
        "--rate",
        "200",
        "--duration-s",
        "2",
        "--churn-pairs",
        "50",
        "--probe-timeout-ms",
        "200",
        "--json",
        json.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report = json_of(&json);
    let churn = &report["churn"];
    let changes = churn["changes"].as_u64().expect("changes");
    assert!(changes > 0, "{churn}");
    assert_eq!(churn["committed"].as_u64(), Some(changes));
    assert_eq!(churn["observed"], 0, "{churn}");
    assert_eq!(churn["failures"]["never_observed"].as_u64(), Some(changes));
    // Unseen changes leave their pairs undecided, which is not a mismatch.
    assert_eq!(report["results"]["mismatches"]["total"], 0);
    let reasons = report["verdict"]["reasons"].to_string();
    assert!(reasons.contains("never observed"), "{reasons}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The CI smoke of issue 5: `loadgen message` against the real server, a few thousand MESSAGEs
/// over UDP and over TCP (blocked lists from the data set's policy file), zero mismatches.
#[test]
fn message_smoke_against_the_real_imserver_has_no_mismatches() {
    let binary = imserver_binary();
    let dir = temp_dir("smoke");
    let ds = dir.join("ds");
    let out = loadgen(&[
        "dataset",
        "--users",
        "200",
        "--seed",
        "5",
        "--out",
        ds.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let policy = ds.join("policy.jsonl");
    let data = dir.join("data");
    let server = Imserver::start_with(
        &binary,
        &data,
        &dir.join("imserver.log"),
        &["--policy-file", policy.to_str().unwrap()],
        false,
    );
    for transport in ["udp", "tcp"] {
        let json = dir.join(format!("smoke-{transport}.json"));
        let out = loadgen(&[
            "message",
            "--target",
            &server.sip,
            "--transport",
            transport,
            "--policy-file",
            policy.to_str().unwrap(),
            "--rate",
            "1000",
            "--count",
            "3000",
            "--duration-s",
            "10",
            "--json",
            json.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{transport}: {}", describe(&out));
        let j = json_of(&json);
        let text = j.to_string();
        let num = |p: &str| j.pointer(p).and_then(|v| v.as_u64());
        assert_eq!(
            num("/results/mismatches/total"),
            Some(0),
            "{transport}: {text}"
        );
        assert_eq!(num("/results/completed"), Some(3000), "{transport}: {text}");
        assert_eq!(num("/results/unanswered"), Some(0), "{transport}: {text}");
    }
}
