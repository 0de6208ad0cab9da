#!/usr/bin/env bash
# The IM application and GLMS figures: REGISTER and PUBLISH handled per second on one core,
# import of 1,000,000 users, XCAP GET/PUT requests per second, and block-propagation latency
# with 1,000,000 users provisioned and 1,000 list changes per second while MESSAGEs flow.
# The server under test is pinned to CPU 0, the generators to CPU 1. Loopback only; every
# process is started here, recorded by PID and killed by PID; every step is bounded in time.
# Needs: release binaries (cargo build --release --workspace), wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
B=target/release
M=perf/out/app-$(date -u +%Y%m%dT%H%M%SZ)
USERS_BIG=${USERS_BIG:-1000000}
mkdir -p "$M"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
command -v wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
start() { # start DATA_DIR OUT extra-args...; sets SIP XCAP PID
  local data=$1 out=$2; shift 2
  taskset -c 0 $B/imserver run --sip 127.0.0.1:0 --metrics 127.0.0.1:0 --xcap 127.0.0.1:0 --data "$data" --workers 1 "$@" >"$out" 2>"$out.err" &
  PID=$!; PIDS+=("$PID")
  for _ in $(seq 200); do grep -q ready "$out" && break; sleep 0.1; done
  SIP=$(sed -n 's/.*sip=\([^ ]*\).*/\1/p' "$out"); XCAP=$(sed -n 's/.*xcap=\([^ ]*\).*/\1/p' "$out")
}
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) cores, $(uname -r)"

echo "== REGISTER and PUBLISH (third-party from the trusted core, 100,000 users, closed loop 64 x 4)"
$B/loadgen dataset --users 100000 --seed 3 --out "$M/ds100k" >/dev/null
start "$M/d-reg" "$M/reg.out" --glms none
timeout 120 taskset -c 1 $B/loadgen register --target "$SIP" --dataset "$M/ds100k" --window 64 --sockets 4 --duration-s 10 --json "$M/register.json" | grep -E "PASS|FAIL|rate|requests"
timeout 120 taskset -c 1 $B/loadgen publish --target "$SIP" --dataset "$M/ds100k" --window 64 --sockets 4 --duration-s 10 --json "$M/publish.json" | grep -E "PASS|FAIL|rate|requests"
kill "$PID"

echo "== import $USERS_BIG users"
$B/loadgen dataset --users "$USERS_BIG" --seed 1 --out "$M/dsbig" >/dev/null
$B/loadgen dataset --users 10000 --seed 2 --out "$M/ds10k" >/dev/null
$B/imserver glms import --data "$M/d-big" "$M/dsbig/xcap.jsonl"
# u1..u10000 take the 10,000-user set's documents, so churn's expectations match them.
$B/imserver glms import --data "$M/d-big" "$M/ds10k/xcap.jsonl"

start "$M/d-big" "$M/big.out"
echo "== XCAP GET and PUT (whole document, durable), wrk 1 thread, 16 connections, 10 s each"
timeout 30 taskset -c 1 wrk -t1 -c16 -d10s -H 'X-XCAP-Asserted-Identity: "sip:u500000@example.com"' \
  "http://$XCAP/xcap-root/resource-lists/users/sip:u500000@example.com/index" | grep -E "Requests/sec|Latency|requests in|Non-2xx" || true
cat >"$M/put.lua" <<'LUA'
wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/resource-lists+xml"
wrk.headers["X-XCAP-Asserted-Identity"] = "\"sip:u600000@example.com\""
wrk.body = '<?xml version="1.0" encoding="UTF-8"?><resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="oma_blockedcontacts"><entry uri="sip:u7@example.com"/></list></resource-lists>'
LUA
timeout 30 taskset -c 1 wrk -t1 -c16 -d10s -s "$M/put.lua" \
  "http://$XCAP/xcap-root/resource-lists/users/sip:u600000@example.com/index" | grep -E "Requests/sec|Latency|requests in|Non-2xx" || true
kill "$PID"

# A fresh server on the imported documents (the PUTs above changed none of u1..u10000).
start "$M/d-big" "$M/churn.out"
echo "== churn: 10,000 registered users of $USERS_BIG provisioned, 1,000 changes/s, 2,000 MESSAGEs/s, 10 s"
timeout 300 taskset -c 1 $B/loadgen churn --target "$SIP" --xcap "http://$XCAP/xcap-root" --dataset "$M/ds10k" \
  --changes-per-s 1000 --rate 2000 --duration-s 10 --xcap-connections 8 --json "$M/churn.json" \
  | grep -E "PASS|FAIL|mismatches|propagation|propag|policy wait|churn  |churn failures|latency  "
echo "results in $M"
