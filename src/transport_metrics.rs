//! Renders the transport's per-worker counters in Prometheus text format.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

use crate::metrics::header;
use crate::transport::TransportStats;

/// A metric family: name, help, and how to read it off one worker's counters.
type Family = (
    &'static str,
    &'static str,
    fn(&crate::transport::WorkerCounters) -> u64,
);

pub fn render(stats: &TransportStats, s: &mut String) {
    let per_worker = stats.per_worker();
    let families: [Family; 14] = [
        (
            "imserver_udp_received_total",
            "UDP datagrams received",
            |c| c.udp_rx,
        ),
        ("imserver_udp_sent_total", "UDP datagrams sent", |c| {
            c.udp_tx
        }),
        (
            "imserver_tcp_received_total",
            "SIP messages received over TCP",
            |c| c.tcp_rx,
        ),
        (
            "imserver_tcp_sent_total",
            "SIP messages sent over TCP",
            |c| c.tcp_tx,
        ),
        (
            "imserver_tcp_accepted_total",
            "TCP connections accepted",
            |c| c.tcp_accepted,
        ),
        (
            "imserver_tcp_refused_total",
            "TCP connections refused at the limit",
            |c| c.tcp_refused,
        ),
        (
            "imserver_tcp_closed_idle_total",
            "TCP connections closed for idleness",
            |c| c.tcp_closed_idle,
        ),
        (
            "imserver_tcp_bad_stream_total",
            "TCP streams closed because they could not be framed",
            |c| c.tcp_bad_stream,
        ),
        (
            "imserver_tcp_oversize_total",
            "TCP messages over the size limit",
            |c| c.tcp_oversize,
        ),
        (
            "imserver_send_errors_total",
            "Sends the kernel refused or that had no connection",
            |c| c.send_errors,
        ),
        (
            "imserver_mailbox_full_total",
            "Cross-thread sends dropped at a full mailbox",
            |c| c.mailbox_full,
        ),
        (
            "imserver_udp_rx_drops_total",
            "Datagrams the kernel dropped at a full socket buffer (SO_MEMINFO, read at least once a second)",
            |c| c.rx_drops,
        ),
        (
            "imserver_keepalives_total",
            "RFC 5626 CRLF keep-alive pings answered",
            |c| c.keepalives,
        ),
        (
            "imserver_uring_active",
            "1 when the worker uses io_uring for UDP",
            |c| c.uring_active,
        ),
    ];
    for (name, help, pick) in families {
        header(
            s,
            name,
            help,
            if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            },
        );
        for (i, c) in per_worker.iter().enumerate() {
            let _ = writeln!(s, "{name}{{worker=\"{i}\"}} {}", pick(c));
        }
    }
}
