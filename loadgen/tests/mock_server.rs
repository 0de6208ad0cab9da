//! End-to-end: the `loadgen` binary against an in-test mock IM server, and the `raw` mode
//! against the `udp-echo` binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use common::{Fault, MockServer};
use loadgen::dataset::{Dataset, DatasetParams};

const USERS: u32 = 300;
const SEED: u64 = 11;

fn dataset() -> Arc<Dataset> {
    let mut params = DatasetParams::new(USERS, SEED);
    params.max_blocked = 20;
    params.isb_share = 0.03;
    params.unregistered_share = 0.1;
    Arc::new(Dataset::generate(params).expect("dataset"))
}

fn data_flags() -> Vec<String> {
    [
        "--users",
        "300",
        "--seed",
        "11",
        "--max-blocked",
        "20",
        "--isb-share",
        "0.03",
        "--unregistered-share",
        "0.1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn loadgen(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("run loadgen")
}

fn json_of(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("json file")).expect("valid json")
}

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("loadgen-it-{}-{name}", std::process::id()))
}

fn message_args(target: &str, json: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "message",
        "--target",
        target,
        "--duration-s",
        "10",
        "--timeout-ms",
        "3000",
        "--blocked-share",
        "0.2",
        "--to-unknown-share",
        "0.05",
        "--to-unregistered-share",
        "0.05",
        "--sockets",
        "2",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if !extra.contains(&"--rate") && !extra.contains(&"--window") {
        args.extend(["--rate".to_owned(), "2000".to_owned()]);
    }
    if !extra.contains(&"--count") {
        args.extend(["--count".to_owned(), "3000".to_owned()]);
    }
    args.extend(data_flags());
    args.extend(["--json".to_owned(), json.display().to_string()]);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

#[test]
fn honest_mock_gives_zero_mismatches() {
    let mock = MockServer::start(dataset(), Fault::None);
    let json = temp("honest.json");
    let out = loadgen(&message_args(&mock.addr.to_string(), &json, &[]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("PASS"));
    eprintln!("{stdout}");
    let report = json_of(&json);
    let results = &report["results"];
    assert_eq!(results["sent"], 3000);
    assert_eq!(results["completed"], 3000);
    assert_eq!(results["mismatches"]["total"], 0);
    assert_eq!(results["unanswered"], 0);
    for code in ["200", "603", "404", "480"] {
        assert!(
            results["responses_by_code"][code].as_u64().unwrap_or(0) > 0,
            "no {code} in {}",
            results["responses_by_code"]
        );
    }
    // Every 200 was a relay the recipient side received and answered.
    let relays = results["responses_by_code"]["200"].as_u64().expect("200s");
    assert_eq!(report["recipients"]["delivered"].as_u64(), Some(relays));
    assert_eq!(
        mock.relayed.load(std::sync::atomic::Ordering::Relaxed),
        relays
    );
    assert!(results["latency_us"]["p99_us"].as_u64().expect("p99") > 0);
    assert_eq!(report["setup"][0]["name"], "register");
    assert_eq!(report["setup"][0]["failed"], 0);
    assert_eq!(report["setup"][1]["name"], "publish-isb");
    let _ = std::fs::remove_file(json);
}

#[test]
fn leaking_mock_is_caught_and_fails_the_run() {
    let mock = MockServer::start(dataset(), Fault::LeakBlocked);
    let json = temp("leak.json");
    let out = loadgen(&message_args(&mock.addr.to_string(), &json, &[]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{stdout}");
    assert!(stdout.contains("FAIL"));
    let report = json_of(&json);
    let mismatches = &report["results"]["mismatches"];
    let leaked = mismatches["blocked_delivered"].as_u64().expect("count");
    assert!(leaked > 0, "{mismatches}");
    // The recipients saw the same leaks from their side.
    assert_eq!(
        mismatches["recipient_unexpected_deliveries"].as_u64(),
        Some(leaked)
    );
    assert_eq!(report["verdict"]["pass"], false);
    let _ = std::fs::remove_file(json);
}

#[test]
fn tcp_run_against_tcp_mock() {
    let mock = MockServer::start_tcp(dataset(), Fault::None);
    let json = temp("tcp.json");
    let out = loadgen(&message_args(
        &mock.addr.to_string(),
        &json,
        &["--transport", "tcp"],
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_of(&json);
    assert_eq!(report["results"]["completed"], 3000);
    assert_eq!(report["results"]["mismatches"]["total"], 0);
    assert!(report["recipients"]["delivered"].as_u64().unwrap_or(0) > 0);
    let _ = std::fs::remove_file(json);
}

#[test]
fn untrusted_identity_answers_digest_challenges() {
    let mock = MockServer::start(dataset(), Fault::Untrusted);
    let json = temp("digest.json");
    let out = loadgen(&message_args(
        &mock.addr.to_string(),
        &json,
        &["--identity", "from", "--rate", "500", "--count", "1000"],
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_of(&json);
    assert_eq!(report["results"]["mismatches"]["total"], 0);
    // Every MESSAGE was challenged once and answered (404s for unknown users too).
    assert_eq!(report["results"]["auth_retries"], 1000);
    assert_eq!(report["setup"][0]["failed"], 0);
    let _ = std::fs::remove_file(json);
}

#[test]
fn mixed_run_against_mock() {
    let mock = MockServer::start(dataset(), Fault::None);
    let json = temp("mixed.json");
    let mut args = message_args(&mock.addr.to_string(), &json, &["--count", "2000"]);
    args[0] = "mixed".to_owned();
    args.extend([
        "--mix".to_owned(),
        "message=8,register=1,publish=1".to_owned(),
    ]);
    let out = loadgen(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}");
    let report = json_of(&json);
    let expected = &report["results"]["expected_by_decision"];
    assert!(
        expected["registered"].as_u64().unwrap_or(0) > 100,
        "{expected}"
    );
    assert!(
        expected["published"].as_u64().unwrap_or(0) > 100,
        "{expected}"
    );
    assert_eq!(report["results"]["mismatches"]["total"], 0);
    let _ = std::fs::remove_file(json);
}

#[test]
fn closed_loop_with_dataset_files_and_policy_file() {
    let dir = temp("dataset");
    let mut args = vec![
        "dataset".to_owned(),
        "--out".to_owned(),
        dir.display().to_string(),
    ];
    args.extend(data_flags());
    let out = loadgen(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The file the lead's tests read is the same data set the mock is built from.
    let from_file = Arc::new(Dataset::read_policy(&dir.join("policy.jsonl")).expect("policy file"));
    assert_eq!(*from_file, *dataset());
    let mock = MockServer::start(Arc::clone(&from_file), Fault::None);
    let json = temp("closed.json");
    let args: Vec<String> = [
        "message",
        "--target",
        &mock.addr.to_string(),
        "--window",
        "4",
        "--count",
        "1500",
        "--duration-s",
        "10",
        "--policy-file",
        &dir.join("policy.jsonl").display().to_string(),
        "--threads",
        "2",
        "--sockets",
        "4",
        "--json",
        &json.display().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let out = loadgen(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report = json_of(&json);
    assert_eq!(report["results"]["completed"], 1500);
    assert_eq!(report["results"]["mismatches"]["total"], 0);
    assert!(report["results"]["offered_rate_per_s"].is_null());
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(json);
}

#[test]
fn raw_round_trips_against_udp_echo() {
    let mut echo = Command::new(env!("CARGO_BIN_EXE_udp-echo"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--duration-s",
            "60",
            "--batch",
            "32",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn udp-echo");
    let mut lines = BufReader::new(echo.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("utf8");
    let addr = first
        .strip_prefix("listening on ")
        .expect("listening line")
        .to_owned();
    let json = temp("raw.json");
    let args: Vec<String> = [
        "raw",
        "--target",
        &addr,
        "--rate",
        "2000",
        "--count",
        "2000",
        "--json",
        &json.display().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let out = loadgen(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report = json_of(&json);
    assert_eq!(report["results"]["completed"], 2000);
    // SIGTERM stops the echo, which reports what it counted.
    let status = Command::new("kill")
        .args(["-TERM", &echo.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = echo.wait().expect("wait");
    assert!(exit.success(), "{exit:?}");
    let last = lines.next().expect("count line").expect("utf8");
    assert!(last.starts_with("received 2000 echoed 2000"), "{last}");
    let _ = std::fs::remove_file(json);
}

#[test]
fn refusals_are_clear_errors() {
    let out = loadgen(&[
        "message".into(),
        "--target".into(),
        "192.168.1.10:5060".into(),
        "--rate".into(),
        "10".into(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("non-loopback"));
    let out = loadgen(&["churn".into(), "--rate".into(), "10".into()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --xcap"));
    let out = loadgen(&[
        "churn".into(),
        "--xcap".into(),
        "http://10.0.0.1:8080/xcap-root".into(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("non-loopback"));
}
