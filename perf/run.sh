#!/usr/bin/env bash
# perf/run.sh: the one command that benchmarks imserver against Kamailio and a bare UDP echo.
#
#   perf/run.sh                 standard matrix (100k users), about an hour on a quiet machine
#   QUICK=1 perf/run.sh         smoke run: small data set, 2-second steps, a few minutes
#   FULL=1 perf/run.sh          standard matrix plus 1,000,000 users
#
# Everything is on loopback. Every process this script starts is recorded by PID and ended by
# PID on exit (trap). Every loop is bounded in count, every wait in time. See perf/README.md.
set -euo pipefail

PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$PERF_DIR")
LIB="$PERF_DIR/lib"
PY=(python3 "$LIB/perf.py")

# ---------------------------------------------------------------- configuration (env)
QUICK=${QUICK:-0}
FULL=${FULL:-0}
if [[ $QUICK == 1 ]]; then
    MODE=quick
    : "${USERS:=10000}" "${SAT_S:=2}" "${STEP_S:=2}" "${RAMP:=0.25 0.5 0.9 1.0 1.1 1.25}"
elif [[ $FULL == 1 ]]; then
    MODE=full
    : "${USERS:=100000 1000000}" "${SAT_S:=10}" "${STEP_S:=10}"
else
    MODE=standard
    : "${USERS:=100000}" "${SAT_S:=10}" "${STEP_S:=10}"
fi
: "${RAMP:=0.1 0.25 0.5 0.75 0.9 1.0 1.1 1.25 1.5}"   # open-loop steps, x closed-loop capacity
: "${LOADS:=0.25 0.5 0.75 0.9}"                        # latency steps, x max sustained rate
: "${TRANSPORTS:=udp tcp}"
: "${BLOCKED_SHARES:=0 0.2}"
: "${SYSTEMS:=imserver kamailio echo}"
: "${PAIR_ROUNDS:=$([[ $QUICK == 1 ]] && echo 2 || echo 6)}"  # paired echo/imserver rounds per blocked share (0: none)
: "${PAIR_S:=$([[ $QUICK == 1 ]] && echo 2 || echo 5)}"      # seconds per paired step
: "${RAMP_EXTRA:=4}"       # extra +25% steps when the top of the ramp is still sustained
: "${WINDOW:=64}"          # closed-loop window per generator socket (saturation search)
: "${SOCKETS:=4}"          # generator sockets (UDP source ports / TCP connections)
: "${RECIPIENT_SOCKETS:=4}"
: "${ECHO_SIZE:=420}"      # bytes per echo datagram, about one MESSAGE as loadgen writes it
: "${MAX_BLOCKED:=50}"
: "${SEED:=1}"
: "${SERVER_CPU:=0}"
: "${GEN_CPU:=1}"
: "${KAM_CHILDREN:=1}"
: "${TIMEOUT_MS:=2000}"
: "${HICCUP_S:=$([[ $QUICK == 1 ]] && echo 3 || echo 10)}"  # machine-stall probe per core, start and end
: "${SKIP_INSTALL:=0}"
: "${SKIP_BUILD:=0}"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
: "${OUT:=$PERF_DIR/out/$STAMP}"
: "${REPORT:=$PERF_DIR/REPORT.md}"
: "${PLOTS:=$PERF_DIR/plots}"
export LC_ALL=C

log() { printf '[perf %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 2; }

# ---------------------------------------------------------------- process bookkeeping
# Only PIDs started here are ever signalled.
STARTED_PIDS=()
cleanup() {
    local pid i
    for pid in "${STARTED_PIDS[@]:-}"; do
        [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null || true
    done
    for ((i = 0; i < 50; i++)); do
        local alive=0
        for pid in "${STARTED_PIDS[@]:-}"; do
            [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && alive=1
        done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${STARTED_PIDS[@]:-}"; do
        [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop_pids PID...: TERM, wait up to 10 s, then KILL; only for PIDs this script started.
stop_pids() {
    local pid i alive
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for ((i = 0; i < 100; i++)); do
        alive=0
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

# ---------------------------------------------------------------- 1. install and build
install_deps() {
    local need=()
    command -v kamailio >/dev/null || need+=(kamailio)
    # db_sqlite (Kamailio's blocked table is loaded from SQLite) is in its own package.
    compgen -G "/usr/lib/*/kamailio/modules/db_sqlite.so" >/dev/null || need+=(kamailio-sqlite-modules)
    command -v taskset >/dev/null || need+=(util-linux)
    command -v pgrep >/dev/null || need+=(procps)
    command -v python3 >/dev/null || need+=(python3-minimal)
    ((${#need[@]})) || return 0
    [[ $SKIP_INSTALL == 1 ]] && die "missing ${need[*]} and SKIP_INSTALL=1"
    log "installing ${need[*]} (Debian packages)"
    # The kamailio package ships a service that would listen on every interface. A policy-rc.d
    # that exits 101 keeps apt from starting it; if there is none, one is put in place for the
    # install only. This script never uses the service: it runs its own instance on loopback.
    local own_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# perf/run.sh: no service starts during this install\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get update -q || rc=$?
    ((rc)) || DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" || rc=$?
    ((own_policy)) && rm -f /usr/sbin/policy-rc.d
    ((rc == 0)) || die "apt-get failed ($rc)"
}

build() {
    [[ $SKIP_BUILD == 1 ]] && return 0
    log "building release binaries"
    (cd "$ROOT" && cargo build --release -p imserver -p loadgen)
}

# ---------------------------------------------------------------- helpers
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
IMSERVER=$TARGET_DIR/release/imserver
LOADGEN=$TARGET_DIR/release/loadgen
UDP_ECHO=$TARGET_DIR/release/udp-echo

# pin CPU cmd...: taskset when the machine has the cores, plain otherwise. It execs, so that
# `pin ... &` leaves $! = the PID of the command itself (not of a subshell).
pin() {
    local cpu=$1; shift
    if ((NCPU >= 2)); then exec taskset -c "$cpu" "$@"; else exec "$@"; fi
}

# wait_line FILE REGEX SECONDS PID: the first line of FILE matching REGEX, bounded in time.
wait_line() {
    local file=$1 re=$2 secs=$3 pid=$4 i line
    for ((i = 0; i < secs * 10; i++)); do
        line=$(grep -m1 -E "$re" "$file" 2>/dev/null || true)
        [[ -n $line ]] && { echo "$line"; return 0; }
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# Children of a PID (Kamailio's workers are direct children of its main process).
child_pids() {
    local parent=$1 f
    for f in /proc/[0-9]*/stat; do
        local s
        s=$(cat "$f" 2>/dev/null) || continue
        s=${s##*) }
        read -r _ ppid _ <<<"$s"
        [[ $ppid == "$parent" ]] && { f=${f#/proc/}; echo "${f%/stat}"; }
    done
}

# cpu_ticks PID...: utime+stime (clock ticks) summed over the processes (all their threads).
cpu_ticks() {
    local total=0 pid s
    for pid in "$@"; do
        s=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        s=${s##*) }
        # after "comm) ": state=1 ... utime=12 stime=13 (fields 14 and 15 of stat)
        read -r -a f <<<"$s"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# core_jiffies CPU: "busy total" jiffies of one CPU from /proc/stat (busy = all but idle+iowait).
core_jiffies() {
    awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# mem_kib PID...: "rss_kib pss_kib" summed (PSS counts shared memory once across processes).
mem_kib() {
    local rss=0 pss=0 pid v
    for pid in "$@"; do
        v=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        rss=$((rss + ${v:-0}))
        v=$(awk '/^Pss:/{print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
        pss=$((pss + ${v:-0}))
    done
    echo "$rss $pss"
}

# ---------------------------------------------------------------- systems under test
SUT_PID=""        # main PID of the system under test
SUT_PIDS=()       # every PID whose CPU counts (Kamailio: main + children)
SUT_ADDR=""       # SIP (or echo) address
SUT_METRICS=""    # imserver metrics address
KAM_CTL=""        # Kamailio control socket

start_imserver() { # start_imserver DIR POLICY|"" 
    local dir=$1 policy=$2 args=()
    mkdir -p "$dir/data"
    [[ -n $policy ]] && args+=(--policy-file "$policy")
    # The blocked lists come from the policy file only: no GLMS (an embedded GLMS would answer
    # the registered users' subscriptions with empty lists and replace the file's lists).
    ((IMSERVER_HAS_GLMS_FLAG)) && args+=(--glms none)
    printf '%q ' taskset -c "$SERVER_CPU" "$IMSERVER" run --sip 127.0.0.1:0 --metrics 127.0.0.1:0 \
        --data "$dir/data" --workers 1 --domain example.com --log warn "${args[@]}" >"$dir/server.cmd"
    pin "$SERVER_CPU" "$IMSERVER" run --sip 127.0.0.1:0 --metrics 127.0.0.1:0 --data "$dir/data" \
        --workers 1 --domain example.com --log warn "${args[@]}" >"$dir/server.out" 2>"$dir/server.err" &
    SUT_PID=$!
    STARTED_PIDS+=("$SUT_PID")
    local line
    line=$(wait_line "$dir/server.out" '^imserver ready' 300 "$SUT_PID") ||
        { tail -20 "$dir/server.err" >&2; log "imserver did not start"; return 1; }
    SUT_ADDR=$(sed -E 's/.*sip=([^ ]+).*/\1/' <<<"$line")
    SUT_METRICS=$(sed -E 's/.*metrics=([^ ]+).*/\1/' <<<"$line")
    SUT_PIDS=("$SUT_PID")
}

start_kamailio() { # start_kamailio DIR KAMDATA_DIR USERS
    local dir=$1 kdata=$2 users=$3 port ulh hth htb shm pkg
    mkdir -p "$dir"
    port=$("${PY[@]}" freeports 1)
    # Table sizes are powers of two: ~one slot per user, ~one slot per 4 blocked pairs.
    ulh=$("${PY[@]}" log2 "$users" 10 20)
    hth=$("${PY[@]}" log2 "$users" 4 20)
    htb=$("${PY[@]}" log2 "$(cat "$kdata/pairs")" 4 22)
    # Shared memory: 128 MiB + ~2 KiB per user + ~256 B per blocked pair. Private (pkg) memory
    # of the main process holds db_sqlite's whole result while the htables load (no fetch).
    local pairs
    pairs=$(cat "$kdata/pairs")
    shm=$((128 + users * 2 / 1024 + pairs / 4096))
    # ~1 KiB per row: 1.1M rows need more than 445 MiB; the pages are touched only while loading.
    pkg=$((64 + (pairs + users) / 1000))
    KAM_CTL="$dir/kamailio_ctl"
    sed -e "s|@SIP_PORT@|$port|g" -e "s|@CTL_SOCK@|$KAM_CTL|g" -e "s|@DBDIR@|$kdata|g" \
        -e "s|@UL_HASH@|$ulh|g" -e "s|@HT_USERS@|$hth|g" -e "s|@HT_BLK@|$htb|g" \
        -e "s|@CHILDREN@|$KAM_CHILDREN|g" -e "s|@DEBUG@|-1|g" \
        "$PERF_DIR/peers/kamailio.cfg" >"$dir/kamailio.cfg"
    kamailio -c -f "$dir/kamailio.cfg" >"$dir/check.log" 2>&1 ||
        { tail -20 "$dir/check.log" >&2; log "kamailio config check failed"; return 1; }
    printf '%q ' taskset -c "$SERVER_CPU" kamailio -f "$dir/kamailio.cfg" -DD -E -m "$shm" -M "$pkg" \
        -w "$dir" >"$dir/server.cmd"
    pin "$SERVER_CPU" kamailio -f "$dir/kamailio.cfg" -DD -E -m "$shm" -M "$pkg" -w "$dir" \
        >"$dir/server.out" 2>"$dir/server.err" &
    SUT_PID=$!
    STARTED_PIDS+=("$SUT_PID")
    local i
    for ((i = 0; i < 3000; i++)); do
        kill -0 "$SUT_PID" 2>/dev/null || { tail -20 "$dir/server.err" >&2; log "kamailio exited"; return 1; }
        kamcmd -s "unix:$KAM_CTL" core.uptime >/dev/null 2>&1 && break
        sleep 0.1
    done
    ((i < 3000)) || { log "kamailio did not answer kamcmd"; stop_pids "$SUT_PID"; return 1; }
    SUT_ADDR=127.0.0.1:$port
    # kamcmd answers as soon as the ctl process is forked; with a large htable the main process
    # forks the rest (UDP and TCP workers) seconds later. Wait until the set of children has not
    # changed for 3 s (bounded), so that every worker's CPU is counted.
    local n=-1 same=0
    for ((i = 0; i < 180 && same < 3; i++)); do
        mapfile -t kids < <(child_pids "$SUT_PID")
        if ((${#kids[@]} == n)); then same=$((same + 1)); else same=0; n=${#kids[@]}; fi
        sleep 1
    done
    refresh_sut_pids
}

# refresh_sut_pids: the server under test and its current children (Kamailio forks workers).
refresh_sut_pids() {
    [[ -n ${SUT_PID:-} ]] || return 0
    local kids
    mapfile -t kids < <(child_pids "$SUT_PID")
    if ((${#SUT_PIDS[@]} > 0 && ${#kids[@]} + 1 != ${#SUT_PIDS[@]})); then
        log "  server processes: ${#SUT_PIDS[@]} -> $((${#kids[@]} + 1))"
    fi
    STARTED_PIDS+=("${kids[@]}")
    SUT_PIDS=("$SUT_PID" "${kids[@]}")
}

start_echo() { # start_echo DIR
    local dir=$1 line
    mkdir -p "$dir"
    printf '%q ' taskset -c "$SERVER_CPU" "$UDP_ECHO" --bind 127.0.0.1:0 --duration-s 7200 >"$dir/server.cmd"
    pin "$SERVER_CPU" "$UDP_ECHO" --bind 127.0.0.1:0 --duration-s 7200 >"$dir/server.out" 2>"$dir/server.err" &
    SUT_PID=$!
    STARTED_PIDS+=("$SUT_PID")
    line=$(wait_line "$dir/server.out" '^listening on' 30 "$SUT_PID") || { log "udp-echo did not start"; return 1; }
    SUT_ADDR=${line##* }
    SUT_PIDS=("$SUT_PID")
}

stop_sut() {
    stop_pids "${SUT_PIDS[@]}"
    SUT_PID=""
    SUT_PIDS=()
}

# counters SYSTEM FILE: the server's own counters, read outside the CPU window.
counters() {
    local sys=$1 file=$2
    case $sys in
    imserver) curl -s --max-time 5 "http://$SUT_METRICS/metrics" >"$file" || : >"$file" ;;
    kamailio) kamcmd -s "unix:$KAM_CTL" stats.get_statistics all >"$file" 2>&1 || : >"$file" ;;
    echo) : >"$file" ;;
    esac
}

# hiccups LABEL: the machine's own stalls. `loadgen hiccup` spins on the clock on each of the
# two cores at once (nothing else of ours running) and counts the gaps; the report sets the
# latency tails beside them.
hiccups() {
    local label=$1 cpu pids=()
    log "hiccup probe ($label): ${HICCUP_S} s on CPUs $SERVER_CPU and $GEN_CPU"
    for cpu in "$SERVER_CPU" "$GEN_CPU"; do
        pin "$cpu" timeout --kill-after=5 $((HICCUP_S + 30)) "$LOADGEN" hiccup --duration-s "$HICCUP_S" \
            --json "$OUT/hiccup-$label-cpu$cpu.json" >"$OUT/hiccup-$label-cpu$cpu.out" 2>&1 &
        pids+=($!)
        STARTED_PIDS+=($!)
    done
    wait "${pids[@]}" || log "  hiccup probe failed (see $OUT/hiccup-$label-*.out)"
}

# ---------------------------------------------------------------- one measured step
STEP_N=0
# step SYSTEM TRANSPORT USERS BLOCKED PHASE FRACTION RATE|"" [SECONDS [ROUND]]: runs one loadgen
# step against the running system and appends its record to $OUT/steps.jsonl. Sets STEP_DIR (no
# subshell, so the PID bookkeeping stays in this shell).
step() {
    local sys=$1 tr=$2 users=$3 blocked=$4 phase=$5 frac=$6 rate=$7 dur_override=${8:-} round=${9:-null} dur
    STEP_N=$((STEP_N + 1))
    local d="$OUT/steps/$(printf %04d $STEP_N)-$sys-$tr-$users-$blocked-$phase-$frac"
    mkdir -p "$d"
    local load=(--target "$SUT_ADDR" --threads 1 --sockets "$SOCKETS" --timeout-ms "$TIMEOUT_MS"
        --json "$d/loadgen.json" --max-unanswered 1000000000)
    if [[ -z $rate ]]; then
        dur=${dur_override:-$SAT_S}
        load+=(--window "$WINDOW" --duration-s "$dur")
    else
        dur=${dur_override:-$STEP_S}
        load+=(--rate "$rate" --duration-s "$dur")
    fi
    local cmd
    if [[ $sys == echo ]]; then
        cmd=("$LOADGEN" raw "${load[@]}" --size "$ECHO_SIZE")
    else
        cmd=("$LOADGEN" message "${load[@]}" --transport "$tr" --users "$users"
            --policy-file "$DATA/policy.jsonl" --no-register --recipient-port "$RCPT_PORT"
            --recipient-sockets "$RECIPIENT_SOCKETS" --blocked-share "$blocked")
    fi
    [[ $sys == kamailio ]] && refresh_sut_pids
    counters "$sys" "$d/counters.before"
    local t0 t1 c0 c1 rc=0
    t0=$(date +%s.%N)
    c0=$(cpu_ticks "${SUT_PIDS[@]}")
    local sb0 st0 gb0 gt0 sb1 st1 gb1 gt1
    read -r sb0 st0 <<<"$(core_jiffies "$SERVER_CPU")"
    read -r gb0 gt0 <<<"$(core_jiffies "$GEN_CPU")"
    printf '%q ' "${cmd[@]}" >"$d/command"
    pin "$GEN_CPU" timeout --kill-after=5 $((dur + TIMEOUT_MS / 1000 + 60)) "${cmd[@]}" \
        >"$d/loadgen.out" 2>"$d/loadgen.err" &
    local lg=$!
    STARTED_PIDS+=("$lg")
    wait "$lg" || rc=$?
    c1=$(cpu_ticks "${SUT_PIDS[@]}")
    read -r sb1 st1 <<<"$(core_jiffies "$SERVER_CPU")"
    read -r gb1 gt1 <<<"$(core_jiffies "$GEN_CPU")"
    t1=$(date +%s.%N)
    counters "$sys" "$d/counters.after"
    read -r rss pss <<<"$(mem_kib "${SUT_PIDS[@]}")"
    printf '{"dir":"%s","system":"%s","transport":"%s","users":%s,"blocked_share":%s,"phase":"%s","fraction":%s,"rate":%s,"duration_s":%s,"rc":%s,"cpu_ticks":%s,"clk_tck":%s,"wall_s":%s,"rss_kib":%s,"pss_kib":%s,"server_core_busy":%s,"server_core_total":%s,"gen_core_busy":%s,"gen_core_total":%s,"round":%s}\n' \
        "$d" "$sys" "$tr" "$users" "$blocked" "$phase" "$frac" "${rate:-null}" "$dur" "$rc" \
        $((c1 - c0)) "$CLK_TCK" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')" \
        "$rss" "$pss" $((sb1 - sb0)) $((st1 - st0)) $((gb1 - gb0)) $((gt1 - gt0)) "$round" >>"$OUT/steps.jsonl"
    ((rc <= 1)) || log "  step $phase $frac: loadgen exit $rc (see $d/loadgen.err)"
    STEP_DIR=$d
}

# register_users DIR TRANSPORT USERS: registers every user once (closed loop) with the running
# system; the contacts are the recipient sockets at a fresh RCPT_PORT, which every later step
# binds again (--no-register). Returns loadgen's exit status.
register_users() {
    local sd=$1 tr=$2 users=$3 rc=0
    RCPT_PORT=$("${PY[@]}" freeports "$RECIPIENT_SOCKETS")
    pin "$GEN_CPU" timeout --kill-after=5 $((600 + users / 200)) "$LOADGEN" register \
        --target "$SUT_ADDR" --transport "$tr" --users "$users" \
        --policy-file "$DATA/policy.jsonl" --recipient-port "$RCPT_PORT" \
        --recipient-sockets "$RECIPIENT_SOCKETS" --window "$WINDOW" --sockets "$SOCKETS" \
        --count "$users" --duration-s $((600 + users / 200)) --json "$sd/register.json" \
        >"$sd/register.out" 2>"$sd/register.err" &
    local lg=$!
    STARTED_PIDS+=("$lg")
    wait "$lg" || rc=$?
    return "$rc"
}

# sustained_rate SYSTEM TRANSPORT USERS BLOCKED: the max sustained rate its sweep found, or 0.
sustained_rate() {
    local line
    line=$(grep -F "{\"system\":\"$1\",\"transport\":\"$2\",\"users\":$3,\"blocked\":$4," \
        "$OUT/sustained.jsonl" 2>/dev/null | tail -1)
    if [[ -n $line ]]; then sed -E 's/.*"best":([0-9]+).*/\1/' <<<"$line"; else echo 0; fi
}

# sweep SYSTEM TRANSPORT USERS BLOCKED: closed-loop capacity, open-loop ramp past it, then the
# latency steps at fractions of the highest rate sustained with < 0.1% errors.
sweep() {
    local sys=$1 tr=$2 users=$3 blocked=$4 d cap f rate best=0 ok failed=0
    step "$sys" "$tr" "$users" "$blocked" closed 1 ""
    d=$STEP_DIR
    cap=$("${PY[@]}" judge "$d/loadgen.json" | awk '{print $2}')
    log "  $sys/$tr/$users/b$blocked: closed-loop capacity ${cap}/s"
    [[ ${cap%.*} -gt 0 ]] || { log "  no capacity measured; skipping"; return 0; }
    for f in $RAMP; do
        rate=$(awk -v c="$cap" -v f="$f" 'BEGIN{printf "%d", c*f}')
        ((rate > 0)) || continue
        step "$sys" "$tr" "$users" "$blocked" ramp "$f" "$rate"
        d=$STEP_DIR
        read -r ok _ <<<"$("${PY[@]}" judge "$d/loadgen.json")"
        log "    ramp ${f}x = ${rate}/s: $([[ $ok == 1 ]] && echo sustained || echo NOT sustained)"
        # The max sustained rate is the last passing step below the first failure: a pass above
        # a failure (noise) does not count.
        if [[ $ok == 1 ]]; then ((failed || rate <= best)) || best=$rate; else failed=1; fi
    done
    # Past saturation: if the top of the ramp was still sustained (the closed loop underrated the
    # server), keep stepping up by 25% until a step fails, at most RAMP_EXTRA more steps.
    local extra
    for ((extra = 0; extra < RAMP_EXTRA; extra++)); do
        [[ $ok == 1 ]] && ((!failed)) || break
        f=$(awk -v f="$f" 'BEGIN{printf "%.3g", f*1.25}')
        rate=$(awk -v c="$cap" -v f="$f" 'BEGIN{printf "%d", c*f}')
        step "$sys" "$tr" "$users" "$blocked" ramp "$f" "$rate"
        d=$STEP_DIR
        read -r ok _ <<<"$("${PY[@]}" judge "$d/loadgen.json")"
        log "    ramp ${f}x = ${rate}/s: $([[ $ok == 1 ]] && echo sustained || echo NOT sustained)"
        [[ $ok == 1 ]] && ((rate > best)) && best=$rate
    done
    echo "{\"system\":\"$sys\",\"transport\":\"$tr\",\"users\":$users,\"blocked\":$blocked,\"best\":$best}" >>"$OUT/sustained.jsonl"
    ((best > 0)) || { log "  nothing sustained; no latency steps"; return 0; }
    log "  max sustained ${best}/s"
    for f in $LOADS; do
        rate=$(awk -v c="$best" -v f="$f" 'BEGIN{printf "%d", c*f}')
        ((rate > 0)) || continue
        step "$sys" "$tr" "$users" "$blocked" latency "$f" "$rate"
    done
}

# paired USERS: the echo floor and imserver (UDP) measured in alternation, minutes apart at
# most, so that both see the same machine. Both servers run on the server core at once (the idle
# one sleeps in a blocking receive); each round runs a closed-loop step of each, then an
# open-loop step of each at 50% of its own max sustained rate (from the sweeps), alternating
# which goes first (ABBA) so that a steady drift of the machine cancels out of the medians.
paired() {
    local users=$1 sd="$OUT/sut/paired-$users" blocked r sys order e_best i_best
    e_best=$(sustained_rate echo udp 0 0)
    ((e_best > 0)) || { log "paired rounds skipped: no echo max sustained rate"; return 0; }
    log "paired rounds: echo and imserver over udp with $users users, $PAIR_ROUNDS rounds of ${PAIR_S} s steps"
    start_imserver "$sd/imserver" "$DATA/policy.jsonl" || return 0
    local im_pid=$SUT_PID im_addr=$SUT_ADDR im_metrics=$SUT_METRICS
    if ! register_users "$sd/imserver" udp "$users"; then
        log "  paired rounds: registration failed (see $sd/imserver/register.err)"
        stop_sut
        return 0
    fi
    start_echo "$sd/echo" || { stop_pids "$im_pid"; return 0; }
    local e_pid=$SUT_PID e_addr=$SUT_ADDR
    for blocked in $BLOCKED_SHARES; do
        i_best=$(sustained_rate imserver udp "$users" "$blocked")
        ((i_best > 0)) || { log "  blocked $blocked: no imserver max sustained rate; skipped"; continue; }
        for ((r = 1; r <= PAIR_ROUNDS; r++)); do
            order="echo imserver"
            ((r % 2 == 0)) && order="imserver echo"
            for phase in pair-closed pair-latency; do
                for sys in $order; do
                    if [[ $sys == echo ]]; then
                        SUT_PID=$e_pid SUT_PIDS=("$e_pid") SUT_ADDR=$e_addr
                    else
                        SUT_PID=$im_pid SUT_PIDS=("$im_pid") SUT_ADDR=$im_addr SUT_METRICS=$im_metrics
                    fi
                    if [[ $phase == pair-closed ]]; then
                        step "$sys" udp "$users" "$blocked" "$phase" 1 "" "$PAIR_S" "$r"
                    else
                        local best=$i_best
                        [[ $sys == echo ]] && best=$e_best
                        step "$sys" udp "$users" "$blocked" "$phase" 0.5 $((best / 2)) "$PAIR_S" "$r"
                    fi
                done
            done
        done
        log "  blocked $blocked: $PAIR_ROUNDS rounds done"
    done
    stop_pids "$e_pid" "$im_pid"
    SUT_PID="" SUT_PIDS=()
}

# ---------------------------------------------------------------- main
main() {
    NCPU=$(nproc)
    CLK_TCK=$(getconf CLK_TCK)
    install_deps
    build
    for b in "$IMSERVER" "$LOADGEN" "$UDP_ECHO"; do [[ -x $b ]] || die "missing $b"; done
    mkdir -p "$OUT" "$PLOTS"
    : >"$OUT/steps.jsonl"
    ((NCPU >= 2)) || log "WARNING: fewer than 2 CPUs; server and generator are not pinned apart"
    IMSERVER_HAS_GLMS_FLAG=0
    "$IMSERVER" run --help 2>/dev/null | grep -q -- '--glms <' && IMSERVER_HAS_GLMS_FLAG=1
    if ! "$IMSERVER" run --help 2>/dev/null | grep -q -- '--policy-file'; then
        log "imserver has no --policy-file: blocked share forced to 0"
        BLOCKED_SHARES=0
        NO_POLICY_FILE=1
    fi
    local start_s=$SECONDS
    {
        echo "mode=$MODE"
        echo "date=$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
        echo "command=$(printf '%q ' env QUICK="$QUICK" FULL="$FULL" "$0")"
        for v in USERS SAT_S STEP_S RAMP RAMP_EXTRA LOADS PAIR_ROUNDS PAIR_S TRANSPORTS BLOCKED_SHARES SYSTEMS WINDOW SOCKETS \
            RECIPIENT_SOCKETS ECHO_SIZE MAX_BLOCKED SEED SERVER_CPU GEN_CPU KAM_CHILDREN TIMEOUT_MS; do
            echo "$v=${!v}"
        done
        echo "ncpu=$NCPU"
        echo "cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
        echo "kernel=$(uname -srm)"
        echo "kamailio=$(kamailio -v 2>/dev/null | head -1)"
        # The binaries carry no commit of their own: say which checkout this is and whether
        # this run built them from it.
        local commit built="built by this run"
        commit=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)
        if [[ -n $(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
            commit+=" with uncommitted changes"
        fi
        [[ $SKIP_BUILD == 1 ]] && built="not built by this run (SKIP_BUILD=1; from $TARGET_DIR)"
        echo "imserver=$("$IMSERVER" --version 2>/dev/null), checkout git $commit, $built"
        echo "loadgen=$("$LOADGEN" --version 2>/dev/null)"
        echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
        echo "no_policy_file=${NO_POLICY_FILE:-0}"
    } >"$OUT/env.txt"
    log "mode $MODE; results in $OUT"

    hiccups start
    # Empty baselines for memory: each server started with no users at all.
    local empty="$OUT/datasets/empty"
    mkdir -p "$empty/kam"
    "${PY[@]}" kamdata /dev/null "$empty/kam" >/dev/null
    for sys in $SYSTEMS; do
        case $sys in
        imserver) start_imserver "$OUT/baseline/imserver" "" || continue ;;
        kamailio) start_kamailio "$OUT/baseline/kamailio" "$empty/kam" 1000 || continue ;;
        *) continue ;;
        esac
        sleep 1
        echo "{\"system\":\"$sys\",\"mem_kib\":\"$(mem_kib "${SUT_PIDS[@]}")\",\"pids\":${#SUT_PIDS[@]}}" >>"$OUT/baseline.jsonl"
        stop_sut
    done

    for users in $USERS; do
        DATA="$OUT/datasets/u$users"
        local t=$SECONDS
        log "data set: $users users"
        "$LOADGEN" dataset --out "$DATA" --users "$users" --seed "$SEED" --max-blocked "$MAX_BLOCKED" \
            >"$OUT/dataset-$users.log" 2>&1 || die "loadgen dataset failed"
        if [[ " $SYSTEMS " == *" kamailio "* ]]; then
            mkdir -p "$DATA/kam"
            "${PY[@]}" kamdata "$DATA/policy.jsonl" "$DATA/kam" >"$DATA/kam/summary"
        fi
        echo "{\"users\":$users,\"dataset_s\":$((SECONDS - t))}" >>"$OUT/setup.jsonl"
        for sys in $SYSTEMS; do
            for tr in $TRANSPORTS; do
                if [[ $sys == echo ]]; then
                    [[ $tr == udp && $users == "${USERS%% *}" ]] || continue
                    log "echo floor (udp)"
                    start_echo "$OUT/sut/echo" || continue
                    sweep echo udp 0 0
                    stop_sut
                    continue
                fi
                local sd="$OUT/sut/$sys-$tr-$users"
                log "$sys over $tr with $users users"
                t=$SECONDS
                case $sys in
                imserver) start_imserver "$sd" "$( [[ ${NO_POLICY_FILE:-0} == 1 ]] || echo "$DATA/policy.jsonl")" ||
                    { echo "{\"system\":\"$sys\",\"transport\":\"$tr\",\"users\":$users,\"failed\":\"start\"}" >>"$OUT/failures.jsonl"; continue; } ;;
                kamailio) start_kamailio "$sd" "$DATA/kam" "$users" ||
                    { echo "{\"system\":\"$sys\",\"transport\":\"$tr\",\"users\":$users,\"failed\":\"start\"}" >>"$OUT/failures.jsonl"; continue; } ;;
                esac
                local ready_s=$((SECONDS - t)) m_ready m_reg
                sleep 1
                m_ready=$(mem_kib "${SUT_PIDS[@]}")
                counters "$sys" "$sd/counters.ready"
                t=$SECONDS
                local rc=0
                register_users "$sd" "$tr" "$users" || rc=$?
                local reg_s=$((SECONDS - t))
                sleep 1
                m_reg=$(mem_kib "${SUT_PIDS[@]}")
                counters "$sys" "$sd/counters.registered"
                echo "{\"system\":\"$sys\",\"transport\":\"$tr\",\"users\":$users,\"ready_s\":$ready_s,\"register_s\":$reg_s,\"register_rc\":$rc,\"mem_ready_kib\":\"$m_ready\",\"mem_registered_kib\":\"$m_reg\",\"pids\":${#SUT_PIDS[@]},\"register_json\":\"$sd/register.json\"}" >>"$OUT/setup.jsonl"
                if ((rc > 1)); then
                    log "  registration failed (exit $rc); see $sd/register.err"
                    echo "{\"system\":\"$sys\",\"transport\":\"$tr\",\"users\":$users,\"failed\":\"register (exit $rc)\"}" >>"$OUT/failures.jsonl"
                    stop_sut
                    continue
                fi
                for blocked in $BLOCKED_SHARES; do
                    sweep "$sys" "$tr" "$users" "$blocked"
                done
                stop_sut
            done
        done
        if ((PAIR_ROUNDS > 0)) && [[ " $SYSTEMS " == *" imserver "* && " $SYSTEMS " == *" echo "* &&
            " $TRANSPORTS " == *" udp "* && ${NO_POLICY_FILE:-0} == 0 ]]; then
            paired "$users"
        fi
    done
    hiccups end
    echo "elapsed_s=$((SECONDS - start_s))" >>"$OUT/env.txt"
    echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"
    log "writing $REPORT"
    "${PY[@]}" report "$OUT" "$REPORT" "$PLOTS"
    log "done in $((SECONDS - start_s)) s"
}

main "$@"
