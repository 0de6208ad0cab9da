//! `udp-echo`: the floor for benchmark reports. A minimal `recvmmsg`/`sendmmsg` loop that sends
//! every datagram back to its source and counts them. Loopback only; bounded by `--duration-s`;
//! stops on SIGINT/SIGTERM. Prints `listening on ADDR` first, and the count at the end.
#![forbid(unsafe_code)]

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use clap::Parser;
use loadgen::sys::{self, MAX_BATCH, RawAddr, RecvBatch};

#[derive(Parser, Debug)]
#[command(
    name = "udp-echo",
    version,
    about = "UDP echo floor for loadgen benchmarks (loopback only)"
)]
struct Args {
    /// Address to bind (loopback only; port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: String,
    /// Datagrams per recvmmsg/sendmmsg call (1..=64).
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Exit after this many seconds.
    #[arg(long, default_value_t = 3600)]
    duration_s: u64,
    /// SO_RCVBUF / SO_SNDBUF.
    #[arg(long, default_value_t = 4 << 20)]
    sockbuf_bytes: usize,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("udp-echo: error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let bind = loadgen::target::parse_loopback(&args.bind)?;
    anyhow::ensure!(
        (1..=MAX_BATCH).contains(&args.batch),
        "--batch must be in 1..={MAX_BATCH}"
    );
    let socket = loadgen::engine::conn::bind_udp(bind.ip(), bind.port(), args.sockbuf_bytes)?;
    // Blocking with a short timeout, so the loop notices signals and the deadline.
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    sys::install_stop_signals();
    println!("listening on {}", socket.local_addr()?);
    let fd = socket.as_raw_fd();
    let deadline = Instant::now() + Duration::from_secs(args.duration_s.min(7 * 24 * 3600));
    let mut batch = RecvBatch::new();
    let (mut received, mut echoed, mut send_errors) = (0u64, 0u64, 0u64);
    let mut dests = Vec::with_capacity(MAX_BATCH);
    let mut replies: Vec<Vec<u8>> = (0..MAX_BATCH).map(|_| Vec::with_capacity(2048)).collect();
    // Bounded by the deadline and the stop signal.
    while !sys::stop_requested() && Instant::now() < deadline {
        let n = match wait_readable(&socket).and_then(|()| batch.recv(fd, args.batch)) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                0
            }
            Err(e) => return Err(e.into()),
        };
        dests.clear();
        for i in 0..n {
            let (data, source) = batch.datagram(i);
            let Some(source) = source else { continue };
            replies[dests.len()].clear();
            replies[dests.len()].extend_from_slice(data);
            dests.push(RawAddr::new(source));
        }
        received += n as u64;
        if !dests.is_empty() {
            let slices: Vec<&[u8]> = replies[..dests.len()].iter().map(Vec::as_slice).collect();
            let sent = sys::send_batch(fd, &slices, &dests).unwrap_or(0);
            echoed += sent as u64;
            send_errors += (dests.len() - sent) as u64;
        }
    }
    println!("received {received} echoed {echoed} send_errors {send_errors}");
    Ok(())
}

/// Blocks (up to the socket's read timeout) until a datagram is waiting, without consuming it.
fn wait_readable(socket: &std::net::UdpSocket) -> std::io::Result<()> {
    let mut probe = [0u8; 1];
    socket.peek(&mut probe).map(|_| ())
}
