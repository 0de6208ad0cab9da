//! Scanner and writer benchmarks on a realistic ~400-byte pager-mode MESSAGE.
//! Run: `cargo bench --bench scan -- --quick` (or `--warm-up-time 1 --measurement-time 2`).

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use imserver::sip::validate::{Limits, check_request};
use imserver::sip::write::{RelaySpec, write_relay_request, write_response};
use imserver::sip::{ExtraHeader, HeaderName, Parsed, Transport};

const MSG: &[u8] = b"MESSAGE sip:bob@ims.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK3f8a1c2e9d7b4a60;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@ims.example.com>;tag=a73kszlfl\r\n\
To: <sip:bob@ims.example.com>\r\n\
Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.10\r\n\
CSeq: 1 MESSAGE\r\n\
P-Asserted-Identity: <sip:alice@ims.example.com>\r\n\
Accept-Contact: *;+g.oma.sip-im;require;explicit\r\n\
User-Agent: IM-client/OMA1.0 bench/1.0\r\n\
Content-Type: text/plain\r\n\
Content-Length: 38\r\n\
\r\n\
Hello Bob, are we still on for lunch?!";

fn bench(c: &mut Criterion) {
    let mut p = Parsed::new();
    c.bench_function("scan_datagram_message", |b| {
        b.iter(|| {
            p.scan_datagram(black_box(MSG)).unwrap();
            black_box(p.view(MSG).header(HeaderName::CallId));
        })
    });
    c.bench_function("scan_and_check_request", |b| {
        b.iter(|| {
            p.scan_datagram(black_box(MSG)).unwrap();
            check_request(&p.view(MSG), &Limits::default()).unwrap();
        })
    });
    p.scan_datagram(MSG).unwrap();
    let src: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    let mut out = Vec::with_capacity(65536);
    c.bench_function("write_response_200", |b| {
        b.iter(|| {
            let v = p.view(MSG);
            write_response(
                &v,
                src,
                200,
                "OK",
                b"1a2b3c4d5e6f7a8b",
                &[],
                ExtraHeader::None,
                &mut out,
            );
            black_box(out.len());
        })
    });
    let spec = RelaySpec {
        own_transport: Transport::Udp,
        own_host: "10.0.0.1",
        own_port: 5060,
        branch_secret: 0x5eed,
        via_params: b";cid=3.17",
        request_uri: b"sip:bob@192.0.2.50:5062",
        route: None,
        src,
        strip: &[HeaderName::PAssertedIdentity],
    };
    c.bench_function("write_relay_request", |b| {
        b.iter(|| {
            write_relay_request(&p.view(MSG), &spec, &mut out).unwrap();
            black_box(out.len());
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
