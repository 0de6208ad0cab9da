//! UDP echo through the transport (mio and, with `--features uring`, io_uring) and through a
//! bare recvmmsg/sendmmsg loop. As a test it only checks that echoes come back and that one
//! client socket reaches every worker; with `IMSERVER_BENCH_MS` set it is the measurement:
//!
//!   IMSERVER_BENCH_MS=3000 cargo test --release [--features uring] --test transport_echo -- --nocapture
//!
//! Optional: IMSERVER_BENCH_WORKERS (default 2), IMSERVER_BENCH_CLIENTS (default 1 = one source).

use imserver::transport::bench_support::{
    EchoBenchConfig, EchoBenchReport, bench_bare_echo, bench_udp_echo,
};

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.parse().ok()
}

fn bench_cfg() -> (EchoBenchConfig, bool) {
    let measuring = env_usize("IMSERVER_BENCH_MS");
    let cfg = EchoBenchConfig {
        workers: env_usize("IMSERVER_BENCH_WORKERS").unwrap_or(2),
        clients: env_usize("IMSERVER_BENCH_CLIENTS").unwrap_or(1),
        duration_ms: measuring.unwrap_or(200) as u64,
        ..EchoBenchConfig::default()
    };
    (cfg, measuring.is_some())
}

fn check(r: &EchoBenchReport, measuring: bool) {
    if measuring {
        println!("{r}");
    }
    assert!(r.echoed > 0, "{r}");
    // One client socket: the spreading program must still feed every worker.
    assert!(r.per_worker_rx.iter().all(|&n| n > 0), "{r}");
}

#[test]
fn transport_echo_mio() {
    let (cfg, measuring) = bench_cfg();
    check(&bench_udp_echo(&cfg).expect("transport echo"), measuring);
}

#[cfg(feature = "uring")]
#[test]
fn transport_echo_uring() {
    let (cfg, measuring) = bench_cfg();
    let cfg = EchoBenchConfig { uring: true, ..cfg };
    check(
        &bench_udp_echo(&cfg).expect("transport echo (uring)"),
        measuring,
    );
}

#[test]
fn bare_echo() {
    let (cfg, measuring) = bench_cfg();
    check(&bench_bare_echo(&cfg).expect("bare echo"), measuring);
}
