"""perf/lib/report.py: turns a perf/run.sh run directory into perf/REPORT.md and SVG plots.

Standard library only; the SVG is written by hand. Every number in the report is computed here
from the files in the run directory (steps.jsonl, each step's loadgen JSON and the server's
counters before and after), so a reader can recompute it.
"""
import json
import os
import re

ERROR_BUDGET = 0.001      # "sustained": fewer than 0.1% of requests failed or went unanswered,
# ... and, in open loop, the server kept up: a step whose median request waited longer than this
# was answered from a growing queue. Overloaded steps reach medians of 50 ms to 1.5 s within 10 s
# (TCP hides it best: its buffers lose nothing, so the error count alone passed them); steps that
# keep up stay under ~12 ms even at the top of the ramp, and this machine's stalls (tens of ms,
# a few percent of the time) do not move a median.
P50_CAP_US = 10_000
GOAL_CPU_RATIO = 5.0      # imserver MESSAGEs per CPU-second >= 5x Kamailio's
GOAL_ECHO_RATIO = 1.5     # imserver CPU per datagram <= 1.5x the echo floor's
GOAL_P99_US = 1000        # p99 < 1 ms at 50% of max sustained load
COLORS = {"imserver": "#1f77b4", "kamailio": "#d62728", "echo": "#2ca02c"}


# ------------------------------------------------------------------ reading

def is_sustained(sent, errors, offered, sent_rate, p50):
    """The one rule for a sustained step (run.sh's ramp, via `perf.py judge`, and this report):
    < 0.1% errors; in open loop also the schedule kept (sent >= 97% of offered) and the median
    latency at most P50_CAP_US."""
    ok = sent > 0 and errors <= ERROR_BUDGET * sent
    if offered:
        ok = ok and sent_rate >= 0.97 * offered and p50 is not None and p50 <= P50_CAP_US
    return ok


def read_jsonl(path):
    out = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    out.append(json.loads(line))
    return out


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_env(path):
    env = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition("=")
                env[k] = v
    return env


PROM = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+([0-9.eE+-]+)$")
KAM = re.compile(r"^\s*([\w.-]+:[\w.-]+)\s*=\s*(-?\d+)")


def read_counters(path):
    """imserver's Prometheus text or `kamcmd stats.get_statistics all`, as {name: value}."""
    c = {}
    try:
        with open(path) as f:
            for line in f:
                m = PROM.match(line.strip()) or KAM.match(line)
                if m:
                    try:
                        c[m.group(1)] = float(m.group(2))
                    except ValueError:
                        pass
    except OSError:
        pass
    return c


def total(c, name):
    """A counter's value; a name without labels sums every labelled series (e.g. per worker)."""
    if "{" in name:
        return c.get(name, 0)
    return sum(v for k, v in c.items() if k == name or k.startswith(name + "{"))


def delta(before, after, name):
    return total(after, name) - total(before, name)


def mem_pair(s):
    try:
        rss, pss = (int(x) for x in s.split())
        return rss, pss
    except (ValueError, AttributeError):
        return 0, 0


# ------------------------------------------------------------------ one step, derived
def derive(rec):
    """Adds the derived numbers of one step to its record."""
    d = dict(rec)
    lg = read_json(os.path.join(rec["dir"], "loadgen.json")) or {}
    d["ok_json"] = bool(lg)
    res = lg.get("results", {})
    lat = res.get("latency_us", {})
    gen = lg.get("generator", {})
    kern = lg.get("kernel_udp", {}).get("delta", {})
    sent = res.get("sent", 0)
    errors = (res.get("unanswered", 0) + res.get("send_failed", 0) + res.get("inflight_full", 0)
              + res.get("mismatches", {}).get("total", 0))
    d.update(
        sent=sent,
        completed=res.get("completed", 0),
        unanswered=res.get("unanswered", 0),
        send_failed=res.get("send_failed", 0),
        inflight_full=res.get("inflight_full", 0),
        mismatches=res.get("mismatches", {}).get("total", 0),
        errors=errors,
        error_ratio=(errors / sent) if sent else 1.0,
        offered=res.get("offered_rate_per_s"),
        sent_rate=res.get("sent_rate_per_s", 0.0),
        completed_rate=res.get("completed_rate_per_s", 0.0),
        elapsed_s=res.get("elapsed_s", 0.0),
        p50=lat.get("p50_us"), p90=lat.get("p90_us"), p99=lat.get("p99_us"),
        p999=lat.get("p999_us"), lmax=lat.get("max_us"),
        codes=res.get("responses_by_code", {}),
        expected=res.get("expected_by_decision", {}),
        delivered=(lg.get("recipients") or {}).get("delivered"),
        gen_cpu_us=(gen.get("process_cpu", {}).get("user_us", 0) + gen.get("process_cpu", {}).get("sys_us", 0)),
        gen_drops=gen.get("sender_socket_drops", 0) + gen.get("recipient_socket_drops", 0),
        kern=kern,
    )
    d["gen_util"] = d["gen_cpu_us"] / 1e6 / d["elapsed_s"] if d["elapsed_s"] else 0.0
    d["sustained"] = is_sustained(sent, errors, d["offered"], d["sent_rate"], d["p50"])
    d["cpu_us"] = rec["cpu_ticks"] * 1e6 / rec["clk_tck"]
    d["srv_util"] = d["cpu_us"] / 1e6 / rec["wall_s"] if rec["wall_s"] else 0.0
    # Contention: the share of the server's core that went to anything but the server (other
    # processes, and softirq work charged to that core), from /proc/stat.
    tot = rec.get("server_core_total") or 0
    d["core_busy"] = rec.get("server_core_busy", 0) / tot if tot else None
    d["core_other"] = max(0.0, d["core_busy"] - rec["cpu_ticks"] / tot) if tot else None
    b = read_counters(os.path.join(rec["dir"], "counters.before"))
    a = read_counters(os.path.join(rec["dir"], "counters.after"))
    sysname = rec["system"]
    if sysname == "imserver":
        handled = delta(b, a, 'imserver_requests_received_total{method="MESSAGE"}')
        dgrams = (delta(b, a, "imserver_udp_received_total") + delta(b, a, "imserver_udp_sent_total"))
        decisions = {k.split('"')[1]: delta(b, a, k) for k in a if k.startswith("imserver_fastpath_decisions_total{")}
        drops = {k.split('"')[1]: delta(b, a, k) for k in a if k.startswith("imserver_drops_total{")}
        drops["udp_rx"] = delta(b, a, "imserver_udp_rx_drops_total")
        drops["send_errors"] = delta(b, a, "imserver_send_errors_total")
        drops["mailbox_full"] = delta(b, a, "imserver_mailbox_full_total")
        d["srv_counters"] = {"decisions": {k: v for k, v in decisions.items() if v},
                             "drops": {k: v for k, v in drops.items() if v}}
    elif sysname == "kamailio":
        handled = delta(b, a, "core:rcv_requests_message")
        # Datagrams through the server: requests and replies in, forwarded and local out.
        dgrams = (delta(b, a, "core:rcv_requests") + delta(b, a, "core:rcv_replies")
                  + delta(b, a, "core:fwd_requests") + delta(b, a, "core:fwd_replies")
                  + delta(b, a, "sl:sent_replies"))
        d["srv_counters"] = {k: delta(b, a, k) for k in (
            "core:rcv_requests_message", "core:fwd_requests", "core:fwd_replies", "sl:sent_replies",
            "sl:603_replies", "sl:404_replies", "sl:480_replies", "core:drop_requests",
            "core:drop_replies", "core:err_requests", "core:err_replies", "sl:failures")
            if delta(b, a, k)}
    else:  # echo: one datagram in and one out per round trip
        handled = sent
        dgrams = sent + d["completed"]
        d["srv_counters"] = {}
    d["handled"] = handled
    d["dgrams"] = dgrams if rec["transport"] == "udp" else None
    d["cpu_us_per_msg"] = d["cpu_us"] / handled if handled else None
    d["msgs_per_cpu_s"] = handled / (d["cpu_us"] / 1e6) if d["cpu_us"] else None
    d["cpu_us_per_dgram"] = d["cpu_us"] / dgrams if (dgrams and rec["transport"] == "udp") else None
    relay = d["expected"].get("relay", 0)
    blocked = d["expected"].get("blocked", 0)
    if sysname == "echo":
        d["kern_expected"] = sent + d["completed"]
    else:
        d["kern_expected"] = 4 * relay + 2 * blocked if rec["transport"] == "udp" else None
    return d


# ------------------------------------------------------------------ formatting
def fmt(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def pct(v):
    return "–" if v is None else f"{v * 100:.0f}%"


def us(v):
    return "–" if v is None else f"{v:,}"


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        out.append("| " + " | ".join(fmt(x) if not isinstance(x, str) else x for x in r) + " |")
    return "\n".join(out)


def key(s):
    return (s["transport"], s["users"], s["blocked_share"])


# ------------------------------------------------------------------ SVG
def svg_lines(path, title, xlabel, ylabel, series, logy=True):
    """series: [(label, color, dash, [(x, y), ...])]."""
    w, h, ml, mr, mt, mb = 720, 420, 70, 190, 40, 50
    pts = [p for _, _, _, s in series for p in s if p[1] is not None and p[1] > 0]
    if not pts:
        return False
    x0, x1 = 0.0, max(p[0] for p in pts) * 1.05 or 1.0
    ys = [p[1] for p in pts]
    if logy:
        import math
        y0 = 10 ** math.floor(math.log10(min(ys)))
        y1 = 10 ** math.ceil(math.log10(max(ys)))
        if y1 <= y0:
            y1 = y0 * 10
        ty = lambda y: mt + (h - mt - mb) * (1 - (math.log10(y) - math.log10(y0)) / (math.log10(y1) - math.log10(y0)))
        ticks = []
        t = y0
        while t <= y1 * 1.0001:
            ticks.append(t)
            t *= 10
    else:
        y0, y1 = 0.0, max(ys) * 1.1
        ty = lambda y: mt + (h - mt - mb) * (1 - (y - y0) / (y1 - y0))
        ticks = [y1 * i / 5 for i in range(6)]
    tx = lambda x: ml + (w - ml - mr) * (x - x0) / (x1 - x0)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
         f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="{w / 2 - mr / 2}" y="20" text-anchor="middle" font-size="13">{esc(title)}</text>',
         f'<line x1="{ml}" y1="{h - mb}" x2="{w - mr}" y2="{h - mb}" stroke="black"/>',
         f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{h - mb}" stroke="black"/>',
         f'<text x="{(ml + w - mr) / 2}" y="{h - 12}" text-anchor="middle">{esc(xlabel)}</text>',
         f'<text x="16" y="{(mt + h - mb) / 2}" text-anchor="middle" transform="rotate(-90 16 {(mt + h - mb) / 2})">{esc(ylabel)}</text>']
    for t in ticks:
        y = ty(t)
        o.append(f'<line x1="{ml}" y1="{y:.1f}" x2="{w - mr}" y2="{y:.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{ml - 4}" y="{y + 4:.1f}" text-anchor="end">{short(t)}</text>')
    for x in nice_ticks(x1):
        o.append(f'<line x1="{tx(x):.1f}" y1="{h - mb}" x2="{tx(x):.1f}" y2="{h - mb + 4}" stroke="black"/>')
        o.append(f'<text x="{tx(x):.1f}" y="{h - mb + 16}" text-anchor="middle">{short(x)}</text>')
    ly = mt
    for label, color, dash, s in series:
        s = sorted(p for p in s if p[1] is not None and p[1] > 0)
        if not s:
            continue
        d = " ".join(f"{tx(x):.1f},{ty(y):.1f}" for x, y in s)
        o.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>')
        for x, y in s:
            o.append(f'<circle cx="{tx(x):.1f}" cy="{ty(y):.1f}" r="2.5" fill="{color}"/>')
        o.append(f'<line x1="{w - mr + 10}" y1="{ly}" x2="{w - mr + 35}" y2="{ly}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>')
        o.append(f'<text x="{w - mr + 40}" y="{ly + 4}">{esc(label)}</text>')
        ly += 16
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")
    return True


def svg_bars(path, title, ylabel, bars):
    """bars: [(label, color, value)]."""
    bars = [b for b in bars if b[2]]
    if not bars:
        return False
    w, h, ml, mt, mb = 720, 360, 70, 40, 90
    bw = (w - ml - 20) / len(bars)
    y1 = max(b[2] for b in bars) * 1.15
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
         f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="13">{esc(title)}</text>',
         f'<line x1="{ml}" y1="{h - mb}" x2="{w - 20}" y2="{h - mb}" stroke="black"/>',
         f'<text x="16" y="{(mt + h - mb) / 2}" text-anchor="middle" transform="rotate(-90 16 {(mt + h - mb) / 2})">{esc(ylabel)}</text>']
    for i, (label, color, v) in enumerate(bars):
        x = ml + i * bw + bw * 0.15
        bh = (h - mt - mb) * v / y1
        o.append(f'<rect x="{x:.1f}" y="{h - mb - bh:.1f}" width="{bw * 0.7:.1f}" height="{bh:.1f}" fill="{color}"/>')
        o.append(f'<text x="{x + bw * 0.35:.1f}" y="{h - mb - bh - 4:.1f}" text-anchor="middle">{v:.2f}</text>')
        cx = x + bw * 0.35
        o.append(f'<text x="{cx:.1f}" y="{h - mb + 12}" text-anchor="end" transform="rotate(-35 {cx:.1f} {h - mb + 12})">{esc(label)}</text>')
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")
    return True


def nice_ticks(top, n=6):
    """0, step, 2*step, ... up to top, with step a 1/2/5 x 10^k number."""
    import math
    raw = top / n if top > 0 else 1
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return [i * step for i in range(int(top // step) + 1)]


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def short(v):
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


# ------------------------------------------------------------------ the report
def write(out_dir, report_path, plots_dir):
    env = read_env(os.path.join(out_dir, "env.txt"))
    steps = [derive(r) for r in read_jsonl(os.path.join(out_dir, "steps.jsonl"))]
    setup = read_jsonl(os.path.join(out_dir, "setup.jsonl"))
    baseline = {b["system"]: b for b in read_jsonl(os.path.join(out_dir, "baseline.jsonl"))}
    os.makedirs(plots_dir, exist_ok=True)
    for f in os.listdir(plots_dir):
        if f.endswith(".svg"):
            os.remove(os.path.join(plots_dir, f))
    rel_plots = os.path.relpath(plots_dir, os.path.dirname(os.path.abspath(report_path)))

    systems = [s for s in ("imserver", "kamailio", "echo") if any(x["system"] == s for x in steps)]
    groups = sorted({key(s) for s in steps if s["system"] != "echo"}, key=lambda k: (k[0] != "udp", k[0], k[1], k[2]))

    def pick(system, k, phase):
        return [s for s in steps if s["system"] == system and (system == "echo" or key(s) == k) and s["phase"] == phase]

    def closed(system, k):
        c = pick(system, k, "closed")
        return c[0] if c else None

    def max_sustained(system, k):
        """The last sustained ramp step below the first one that was not (as run.sh decides)."""
        best = None
        for s in sorted(pick(system, k, "ramp"), key=lambda s: s["rate"]):
            if not s["sustained"]:
                break
            best = s
        return best

    echo_closed = closed("echo", None) if "echo" in systems else None

    def median(xs):
        xs = sorted(x for x in xs if x is not None)
        if not xs:
            return None
        m = len(xs) // 2
        return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2

    def rounded(v):
        return None if v is None else round(v)

    def paired_rounds(n, b):
        """The paired rounds of (users, blocked): per round, the echo's and imserver's closed-loop
        and 50% steps, taken minutes apart at most (run.sh `paired`)."""
        rounds = {}
        for s in steps:
            if s["phase"] in ("pair-closed", "pair-latency") and s["users"] == n and s["blocked_share"] == b:
                rounds.setdefault(s.get("round"), {})[(s["system"], s["phase"])] = s
        out = []
        for r in sorted(x for x in rounds if x is not None):
            g = rounds[r]
            ec, ic = g.get(("echo", "pair-closed")), g.get(("imserver", "pair-closed"))
            el, il = g.get(("echo", "pair-latency")), g.get(("imserver", "pair-latency"))
            ratio = None
            if ec and ic and ec["cpu_us_per_dgram"] and ic["cpu_us_per_dgram"] and not invalid(ec, ic):
                ratio = ic["cpu_us_per_dgram"] / ec["cpu_us_per_dgram"]
            out.append({"round": r, "ec": ec, "ic": ic, "el": el, "il": il, "ratio": ratio})
        return out

    def paired_summary(n, b):
        rs = paired_rounds(n, b)
        if not rs:
            return None
        lat_ok = [x["il"] for x in rs if x["il"] and x["il"]["sustained"]]
        return {
            "rounds": rs,
            "ratio": median([x["ratio"] for x in rs]),
            "ratios": [x["ratio"] for x in rs if x["ratio"] is not None],
            "i_dgram": median([x["ic"]["cpu_us_per_dgram"] for x in rs if x["ic"]]),
            "e_dgram": median([x["ec"]["cpu_us_per_dgram"] for x in rs if x["ec"]]),
            "i_p99": rounded(median([x["il"]["p99"] for x in rs if x["il"]])),
            "e_p99": rounded(median([x["el"]["p99"] for x in rs if x["el"]])),
            "i_rate": rs[0]["il"]["rate"] if rs[0]["il"] else None,
            "e_rate": rs[0]["el"]["rate"] if rs[0]["el"] else None,
            "i_all_sustained": len(lat_ok) == len([x for x in rs if x["il"]]),
            "i_under": sum(1 for x in rs if x["il"] and x["il"]["p99"] is not None and x["il"]["p99"] < GOAL_P99_US),
            "e_under": sum(1 for x in rs if x["el"] and x["el"]["p99"] is not None and x["el"]["p99"] < GOAL_P99_US),
        }

    L = []
    L.append("# imserver performance report")
    L.append("")
    L.append(f"Generated by `perf/run.sh` ({env.get('mode', '?')} mode) on {env.get('date', '?')}. "
             "Raw results: `" + os.path.relpath(out_dir, os.path.dirname(os.path.abspath(report_path))) + "`.")
    if env.get("mode") == "quick":
        L.append("")
        L.append("> **QUICK mode: a smoke run** (small data set, 2-second steps, shared and noisy machine). "
                 "The numbers show that the harness works end to end; they are not the measurement. "
                 "Run `perf/run.sh` (or `FULL=1 perf/run.sh`) on a quiet machine for that.")
    L.append("")
    L.append("## Machine and method")
    L.append("")
    L.append(table(["item", "value"], [
        ["CPU", env.get("cpu_model", "?")],
        ["cores", env.get("ncpu", "?")],
        ["kernel", env.get("kernel", "?")],
        ["load average at start / end", f"{env.get('loadavg_start', '?')} / {env.get('loadavg_end', '?')}"],
        ["imserver", env.get("imserver", "?")],
        ["Kamailio", env.get("kamailio", "?")],
        ["loadgen", env.get("loadgen", "?")],
        ["pinning", f"server under test on CPU {env.get('SERVER_CPU')}, generator on CPU {env.get('GEN_CPU')} (taskset)"],
        ["users", env.get("USERS", "?")],
        ["blocked shares", env.get("BLOCKED_SHARES", "?")],
        ["transports", env.get("TRANSPORTS", "?")],
        ["steps", f"closed loop {env.get('SAT_S')} s (window {env.get('WINDOW')} x {env.get('SOCKETS')} sockets), "
                  f"open loop {env.get('STEP_S')} s per step"],
        ["ramp (x closed-loop capacity)", env.get("RAMP", "?")],
        ["latency loads (x max sustained)", env.get("LOADS", "?")],
        ["total run time", f"{env.get('elapsed_s', '?')} s"],
    ]))
    L.append("")
    L.append(f"**The constraint:** the machine has {env.get('ncpu', '?')} cores. The server under test gets one "
             "(imserver with `--workers 1`, so its worker, slow-path and metrics threads share that core; "
             f"Kamailio with `children={env.get('KAM_CHILDREN')}` and `tcp_children={env.get('KAM_CHILDREN')}`, "
             "all its processes on that core; `udp-echo` alone on it) and the "
             "generator gets the other, for both its sender and its recipient threads. Whichever of the two "
             "saturates first sets the rate: the tables give the generator's own CPU use so a reader can tell "
             "(in a closed-loop step, a generator near 100% of its core means the server was not the "
             "limit; in open-loop steps the generator spins while its next send is due within 20 µs, so "
             "its CPU reads near 100% from about 40,000 MESSAGEs/s up whatever the server does, and it is "
             "the schedule check, sent >= 97% of offered, that shows it keeping up). The loopback "
             "kernel work (softirq) is charged to whichever core it runs on, mostly the sender's. "
             "Every UDP socket that sends here sets DF (`IP_PMTUDISC_DO`: imserver's send sockets, the "
             "generator's, `udp-echo`'s, and Kamailio's with `pmtu_discovery=1`), so no system pays the "
             "kernel's per-datagram IP ID hash that the others skip.")
    if env.get("no_policy_file") == "1":
        L.append("")
        L.append("**imserver had no `--policy-file`**: every run used blocked share 0.")
    L.append("")
    L.append("Definitions:")
    L.append("")
    L.append("- **max sustained rate**: the highest open-loop offered rate of the ramp at which fewer than "
             "0.1% of MESSAGEs were unanswered, unsent or answered wrongly, the generator kept the "
             "schedule (sent >= 97% of offered), and the server kept up: the median MESSAGE was answered "
             "within 10 ms (an overloaded server answers from a growing queue, and its median reaches "
             "50 ms to seconds within a step; over TCP nothing is lost meanwhile, so errors alone do not "
             "show it). The ramp's steps are fractions of the closed-loop capacity.")
    L.append("- **latency**: loadgen's HdrHistogram, from the *intended* send time to the final response "
             "(wrk2 rule, free of coordinated omission); open loop at 25/50/75/90% of the max sustained rate.")
    L.append("- **CPU µs per MESSAGE**: utime+stime of every process of the server under test, from "
             "`/proc/PID/stat` before and after the step (clock ticks of "
             f"{1e6 / float(steps[0]['clk_tck']) if steps else 10000:.0f} µs), divided by the MESSAGEs the "
             "server counted itself (imserver `imserver_requests_received_total{method=\"MESSAGE\"}`, "
             "Kamailio `core:rcv_requests_message`). Measured on the closed-loop step, where the server "
             "is as busy as the generator can make it.")
    L.append("- **CPU µs per datagram** (UDP): the same CPU time divided by the datagrams the server received "
             "plus sent (imserver `imserver_udp_received_total` + `imserver_udp_sent_total`; Kamailio "
             "requests and replies received, forwarded and sent; echo: loadgen's sent + echoed).")
    L.append("- **memory per user**: resident memory after registering N users minus the same binary's "
             "resident memory when started with no users at all, over N (\"all state\"); and minus the "
             "resident memory right after start-up with the policy loaded (\"bindings only\"). Kamailio is "
             "several processes sharing memory, so its figure is the sum of PSS "
             "(`/proc/PID/smaps_rollup`), which counts shared pages once; imserver's is its VmRSS.")
    L.append("")

    failures = read_jsonl(os.path.join(out_dir, "failures.jsonl"))
    if failures:
        L.append("## Failures")
        L.append("")
        L.append("These cases did not run (the logs are in the run directory):")
        L.append("")
        L.append(table(["system", "transport", "users", "what failed"],
                       [[f["system"], f["transport"], fmt(f["users"]), f["failed"]] for f in failures]))
        L.append("")

    def invalid(*closed_steps):
        """A goal is not judged on a closed-loop step that lost or mis-answered requests."""
        bad = [c for c in closed_steps if c["error_ratio"] > ERROR_BUDGET]
        if not bad:
            return None
        return "n/a: " + ", ".join(f"{c['system']} {c['error_ratio'] * 100:.1f}% errors" for c in bad)

    broken = [s for s in steps if s["phase"] == "closed" and s["error_ratio"] > 0.5]
    if broken:
        L.append("## Cases that failed outright")
        L.append("")
        L.append("More than half of the closed-loop MESSAGEs were lost or answered wrongly; the numbers of "
                 "these cases measure a fault, not the server's speed. What loadgen and the server said:")
        L.append("")
        rows = []
        for s in broken:
            sc = s.get("srv_counters") or {}
            if s["system"] == "imserver":
                srv = "; ".join(f"{g} " + ", ".join(f"{a} {int(v):,}" for a, v in sorted(sc.get(g, {}).items()))
                                for g in ("decisions", "drops") if sc.get(g))
            else:
                srv = ", ".join(f"{a} {int(v):,}" for a, v in sc.items())
            codes = " ".join(f"{c}:{n:,}" for c, n in sorted(s["codes"].items())) or "none"
            rows.append([s["system"], s["transport"], fmt(s["users"]), str(s["blocked_share"]),
                         f"{s['error_ratio'] * 100:.1f}%", f"sent {s['sent']:,}, responses {codes}, "
                         f"unanswered {s['unanswered']:,}, recipients got {fmt(s['delivered'])}", srv or "–"])
        L.append(table(["system", "transport", "users", "blocked", "errors", "loadgen", "server counters (delta)"], rows))
        L.append("")

    hiccups = []
    for f in sorted(os.listdir(out_dir)):
        if f.startswith("hiccup-") and f.endswith(".json"):
            h = read_json(os.path.join(out_dir, f))
            if h:
                label, cpu = f[len("hiccup-"):-len(".json")].rsplit("-cpu", 1)
                hiccups.append((label, cpu, h))
    # Both cores stall independently and a request needs both (generator and server), so the
    # share of time a request is delayed >= 1 ms by stalls alone is about the sum over the cores;
    # the worse of the start and end probes is the figure.
    by_label = {}
    for label, _, h in hiccups:
        by_label[label] = by_label.get(label, 0.0) + h["delayed_over_1ms_fraction"]
    stall_floor = max(by_label.values()) if by_label else None

    # The paired rounds' summary of each UDP (users, blocked) case that has them.
    paired = {(n, b): ps for tr, n, b in groups if tr == "udp" and (ps := paired_summary(n, b))}

    # ---------------- goals
    L.append("## Goals")
    L.append("")
    rows = []
    for k in groups:
        tr, n, b = k
        im, ka = closed("imserver", k), closed("kamailio", k)
        if im and ka and im["msgs_per_cpu_s"] and ka["msgs_per_cpu_s"]:
            r = im["msgs_per_cpu_s"] / ka["msgs_per_cpu_s"]
            rows.append([f"imserver >= {GOAL_CPU_RATIO:g}x Kamailio's MESSAGEs per CPU-second",
                         f"{tr}, {n:,} users, blocked {b}",
                         f"{im['msgs_per_cpu_s']:,.0f} vs {ka['msgs_per_cpu_s']:,.0f} = **{r:.2f}x**",
                         invalid(im, ka) or ("PASS" if r >= GOAL_CPU_RATIO else "FAIL")])
    for k in groups:
        tr, n, b = k
        im = closed("imserver", k)
        ps = paired.get((n, b)) if tr == "udp" else None
        sweep_txt, sweep_verdict = None, None
        if tr == "udp" and im and echo_closed and im["cpu_us_per_dgram"] and echo_closed["cpu_us_per_dgram"]:
            r = im["cpu_us_per_dgram"] / echo_closed["cpu_us_per_dgram"]
            sweep_txt = f"{im['cpu_us_per_dgram']:.2f} vs {echo_closed['cpu_us_per_dgram']:.2f} µs = {r:.2f}x"
            sweep_verdict = invalid(im, echo_closed) or ("PASS" if r <= GOAL_ECHO_RATIO else "FAIL")
        if ps and ps["ratio"] is not None:
            rs = ps["ratios"]
            rows.append([f"imserver CPU per datagram <= {GOAL_ECHO_RATIO:g}x the echo floor",
                         f"{tr}, {n:,} users, blocked {b}",
                         f"paired, median of {len(rs)} rounds: **{ps['ratio']:.2f}x** "
                         f"({ps['i_dgram']:.2f} vs {ps['e_dgram']:.2f} µs; rounds {min(rs):.2f}x to {max(rs):.2f}x)"
                         + (f"; sweep steps minutes apart: {sweep_txt}" if sweep_txt else ""),
                         "PASS" if ps["ratio"] <= GOAL_ECHO_RATIO else "FAIL"])
        elif sweep_txt:
            rows.append([f"imserver CPU per datagram <= {GOAL_ECHO_RATIO:g}x the echo floor",
                         f"{tr}, {n:,} users, blocked {b}", sweep_txt.replace(" = ", " = **") + "**", sweep_verdict])
    echo_half = [s for s in pick("echo", None, "latency") if abs(s["fraction"] - 0.5) < 1e-9]
    floor = []
    if echo_half and echo_half[0]["p99"] is not None:
        floor.append(f"echo floor p99 at 50%: {us(echo_half[0]['p99'])} µs")
    if stall_floor is not None:
        floor.append(f"machine stalls alone delay a request >= 1 ms {stall_floor * 100:.2f}% of the time")
    for k in groups:
        tr, n, b = k
        half = [s for s in pick("imserver", k, "latency") if abs(s["fraction"] - 0.5) < 1e-9]
        ps = paired.get((n, b)) if tr == "udp" else None
        if ps and ps["i_p99"] is not None:
            nr = len([x for x in ps["rounds"] if x["il"]])
            ok = ps["i_p99"] < GOAL_P99_US and ps["i_all_sustained"]
            sweep_txt = f"; sweep's 50% step: {us(half[0]['p99'])} µs" if half else ""
            rows.append([f"imserver p99 < {GOAL_P99_US / 1000:g} ms at 50% of max sustained load",
                         f"{tr}, {n:,} users, blocked {b}",
                         f"paired, median p99 of {nr} rounds: **{us(ps['i_p99'])} µs** at {ps['i_rate']:,}/s, "
                         f"under 1 ms in {ps['i_under']} of {nr}; echo floor in the same rounds: "
                         f"{us(ps['e_p99'])} µs at {ps['e_rate']:,}/s, under 1 ms in {ps['e_under']} of {nr}"
                         + sweep_txt
                         + ("" if ok or stall_floor is None else
                            f"; machine stalls alone delay a request >= 1 ms {stall_floor * 100:.2f}% of the time"),
                         "PASS" if ok else "FAIL"])
        elif half:
            s = half[0]
            ok = s["p99"] is not None and s["p99"] < GOAL_P99_US and s["sustained"]
            rows.append([f"imserver p99 < {GOAL_P99_US / 1000:g} ms at 50% of max sustained load",
                         f"{tr}, {n:,} users, blocked {b}",
                         f"p99 **{us(s['p99'])} µs** at {s['rate']:,}/s" + ("" if ok or not floor else
                                                                           " (" + "; ".join(floor) + ")"),
                         "PASS" if ok else "FAIL"])
        else:
            rows.append([f"imserver p99 < {GOAL_P99_US / 1000:g} ms at 50% load", f"{tr}, {n:,} users, blocked {b}",
                         "no 50% step (nothing sustained)", "n/a"])
    L.append(table(["goal", "case", "measured", "verdict"], rows) if rows else "No goal could be evaluated.")
    L.append("")
    L.append("Ratios are computed within this run, from the closed-loop step of each system "
             "(same machine, same data set). Where the run has paired rounds (section \"Paired with the "
             "echo floor\"), the echo-floor goals are judged on them: the medians of rounds in which the "
             "echo and imserver ran minutes apart at most, in alternation, so that the machine's drift over "
             "the hour-long run (see the stall probes) does not land on one system's single step. The "
             "sweep's single steps are given beside them.")
    L.append("")
    if hiccups:
        L.append("## Machine stalls")
        L.append("")
        L.append("`loadgen hiccup` spins on the clock on each core, both at once, with nothing else of ours "
                 "running, at the start and at the end of the run, and counts the gaps between readings "
                 "(jHiccup's method). A gap is time the core did not run the probe at all: on this virtual "
                 "machine, the hypervisor taking the vCPU. No server answers faster than the machine lets it "
                 "run: a request whose intended send time falls in the first S − 1 ms of a stall of length S "
                 "waits over 1 ms whatever the server does. The last column adds that share over both cores "
                 "(a request needs both the generator's and the server's); when it is near or above 1%, a p99 "
                 "under 1 ms cannot be measured on this machine for any system, the echo included.")
        L.append("")
        rows = []
        for label, cpu, h in hiccups:
            share = 100.0 * h["stalled_ms_over_1ms"] / 1e3 / max(h["duration_s"], 1e-9)
            rows.append([label, cpu, f"{h['duration_s']:.0f} s", fmt(h["stalls_over_100us"]),
                         fmt(h["stalls_over_1ms"]), f"{h['stalled_ms_over_1ms']:,.1f} ms ({share:.2f}%)",
                         f"{h['max_stall_us']:,.0f} µs", f"{h['delayed_over_1ms_fraction'] * 100:.2f}%",
                         f"{by_label[label] * 100:.2f}%"])
        L.append(table(["probe", "CPU", "length", "stalls >= 100 µs", "stalls >= 1 ms", "time in stalls >= 1 ms",
                        "longest", "delayed >= 1 ms (this core)", "delayed >= 1 ms (both cores)"], rows))
        L.append("")
    noisy = [s for s in steps if s["core_other"] is not None and s["core_other"] > 0.05]
    if noisy:
        worst = max(s["core_other"] for s in noisy)
        L.append(f"> **Contention:** in {len(noisy)} of {len(steps)} steps more than 5% of the server's core "
                 f"went to something other than the server under test (worst {worst * 100:.0f}%; column "
                 "\"others on server core\", from `/proc/stat`; it includes softirq work for loopback "
                 "traffic charged to that core). Throughput and latency in those steps understate the server; "
                 "CPU per MESSAGE, which counts only the server's own time, is less affected.")
        L.append("")

    # ---------------- paired rounds
    paired_keys = [k for k in groups if k[0] == "udp" and (k[1], k[2]) in paired]
    if paired_keys:
        L.append("## Paired with the echo floor")
        L.append("")
        L.append(f"After the sweeps of each data set, imserver and the echo floor run on the server core at the "
                 f"same time (the idle one sleeps in a blocking receive) and the generator loads them in turn: "
                 f"each round is a closed-loop step of each ({env.get('PAIR_S', '?')} s), then an open-loop step "
                 f"of each at 50% of its own max sustained rate from the sweep; odd rounds start with the echo, "
                 f"even rounds with imserver. A round's ratio compares steps taken seconds apart; the medians "
                 f"over the rounds are what the goals use.")
        L.append("")
        for k in paired_keys:
            ps = paired[(k[1], k[2])]
            L.append(f"**udp, {k[1]:,} users, blocked share {k[2]}**")
            L.append("")
            rows = []
            for x in ps["rounds"]:
                ec, ic, el, il = x["ec"], x["ic"], x["el"], x["il"]
                rows.append([str(x["round"]),
                             fmt(ec["cpu_us_per_dgram"], 2) if ec else "–",
                             fmt(ic["cpu_us_per_dgram"], 2) if ic else "–",
                             f"{x['ratio']:.2f}x" if x["ratio"] else "–",
                             f"{ec['srv_util'] * 100:.0f}% / {ic['srv_util'] * 100:.0f}%" if ec and ic else "–",
                             f"{us(el['p50'])} / {us(el['p99'])} / {us(el['p999'])}" if el else "–",
                             f"{us(il['p50'])} / {us(il['p99'])} / {us(il['p999'])}" if il else "–",
                             f"{el['errors']:,} / {il['errors']:,}" if el and il else "–"])
            rows.append(["**median**", fmt(ps["e_dgram"], 2), fmt(ps["i_dgram"], 2),
                         f"**{ps['ratio']:.2f}x**" if ps["ratio"] else "–", "",
                         f"p99 {us(ps['e_p99'])}", f"p99 {us(ps['i_p99'])}", ""])
            L.append(table(["round", "echo CPU µs / datagram", "imserver CPU µs / datagram", "ratio",
                            "server CPU echo / imserver (closed loop)",
                            f"echo p50 / p99 / p99.9 µs at {fmt(ps['e_rate'])}/s",
                            f"imserver p50 / p99 / p99.9 µs at {fmt(ps['i_rate'])}/s",
                            "errors echo / imserver (50%)"], rows))
            L.append("")

    # ---------------- throughput
    L.append("## Throughput and CPU cost")
    L.append("")
    rows = []
    for k in groups + ([("udp", 0, 0)] if echo_closed else []):
        for sysname in systems:
            if (sysname == "echo") != (k[1] == 0):
                continue
            c = closed(sysname, k)
            if not c:
                continue
            ms = max_sustained(sysname, k)
            ramp = pick(sysname, k, "ramp")
            top = max((s["rate"] for s in ramp), default=None)
            ms_txt = fmt(ms["rate"]) if ms else "none"
            if ms and top and ms["rate"] == top:
                ms_txt += " (top of ramp: not saturated)"
            rows.append([sysname, k[0], "–" if sysname == "echo" else fmt(k[1]), "–" if sysname == "echo" else str(k[2]),
                         fmt(c["completed_rate"]), ms_txt,
                         f"{c['srv_util'] * 100:.0f}%", pct(c["core_other"]), f"{c['gen_util'] * 100:.0f}%",
                         fmt(c["cpu_us_per_msg"], 2), fmt(c["msgs_per_cpu_s"]), fmt(c["cpu_us_per_dgram"], 2),
                         fmt(c["error_ratio"] * 100, 3) + "%"])
    L.append(table(["system", "transport", "users", "blocked", "closed-loop rate /s", "max sustained /s",
                    "server CPU", "others on server core", "generator CPU", "CPU µs / MESSAGE",
                    "MESSAGEs / CPU-s", "CPU µs / datagram",
                    "errors (closed loop)"], rows))
    L.append("")
    L.append("For the echo floor a \"MESSAGE\" is one datagram round trip (one in, one out at the server); "
             "a relayed MESSAGE is four datagrams at the server (request in, relay out, 200 in, 200 out), "
             "a blocked one two.")
    L.append("")
    rows = []
    for k in groups:
        im, ka = closed("imserver", k), closed("kamailio", k)
        r1 = (im["msgs_per_cpu_s"] / ka["msgs_per_cpu_s"]) if (im and ka and im["msgs_per_cpu_s"] and ka["msgs_per_cpu_s"]) else None
        r2 = (im["cpu_us_per_dgram"] / echo_closed["cpu_us_per_dgram"]) if (im and echo_closed and im["cpu_us_per_dgram"] and echo_closed["cpu_us_per_dgram"]) else None
        r3 = (ka["cpu_us_per_dgram"] / echo_closed["cpu_us_per_dgram"]) if (ka and echo_closed and ka["cpu_us_per_dgram"] and echo_closed["cpu_us_per_dgram"]) else None
        rows.append([k[0], fmt(k[1]), str(k[2]), fmt(r1, 2) + "x" if r1 else "–",
                     fmt(r2, 2) + "x" if r2 else "–", fmt(r3, 2) + "x" if r3 else "–"])
    if rows:
        L.append("Ratios (same run):")
        L.append("")
        L.append(table(["transport", "users", "blocked", "imserver / Kamailio MESSAGEs per CPU-s",
                        "imserver / echo µs per datagram", "Kamailio / echo µs per datagram"], rows))
        L.append("")

    # ---------------- latency
    L.append("## Latency")
    L.append("")
    for k in groups + ([("udp", 0, 0)] if echo_closed else []):
        for sysname in systems:
            if (sysname == "echo") != (k[1] == 0):
                continue
            lat = sorted(pick(sysname, k, "latency"), key=lambda s: s["fraction"])
            if not lat:
                continue
            title = f"{sysname}, {k[0]}" + ("" if sysname == "echo" else f", {k[1]:,} users, blocked share {k[2]}")
            L.append(f"**{title}**")
            L.append("")
            L.append(table(["load", "offered /s", "completed /s", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "errors",
                            "server CPU", "generator CPU"],
                           [[f"{s['fraction'] * 100:.0f}%", fmt(s["rate"]), fmt(s["completed_rate"]), us(s["p50"]),
                             us(s["p99"]), us(s["p999"]), us(s["lmax"]),
                             f"{s['errors']:,} ({s['error_ratio'] * 100:.3f}%)",
                             f"{s['srv_util'] * 100:.0f}%", f"{s['gen_util'] * 100:.0f}%"] for s in lat]))
            L.append("")

    # ---------------- plots
    L.append("## Plots")
    L.append("")
    dashes = {"p50": "", "p99": "6,3", "p99.9": "2,2"}
    plot_groups = [(k, [x for x in systems if x != "echo"]) for k in groups]
    if echo_closed:
        plot_groups.append((("udp", 0, 0), ["echo"]))
    for k, plot_systems in plot_groups:
        series = []
        for sysname in plot_systems:
            pts = [s for s in steps if s["system"] == sysname and s["phase"] in ("ramp", "latency")
                   and (sysname == "echo" or key(s) == k)]
            for label, field in (("p50", "p50"), ("p99", "p99"), ("p99.9", "p999")):
                series.append((f"{sysname} {label}", COLORS[sysname], dashes[label],
                               [(s["rate"], s[field]) for s in pts if s["sustained"] or s["phase"] == "latency"]))
        if plot_systems == ["echo"]:
            name, title, xl = "latency-echo-udp.svg", "Echo floor: latency vs offered load (udp)", "offered datagrams/s"
        else:
            name = f"latency-{k[0]}-{k[1]}-b{k[2]}.svg"
            title, xl = f"Latency vs offered load ({k[0]}, {k[1]:,} users, blocked {k[2]})", "offered MESSAGEs/s"
        if svg_lines(os.path.join(plots_dir, name), title, xl, "latency µs (log)", series):
            L.append(f"![{esc(title)}]({rel_plots}/{name})")
            L.append("")
    bars = []
    for k in groups:
        for sysname in ("imserver", "kamailio"):
            c = closed(sysname, k)
            if c and c["cpu_us_per_msg"]:
                bars.append((f"{sysname} {k[0]} {short(k[1])} b{k[2]}", COLORS[sysname], c["cpu_us_per_msg"]))
    if echo_closed and echo_closed["cpu_us_per_msg"]:
        bars.append(("echo udp (per round trip)", COLORS["echo"], echo_closed["cpu_us_per_msg"]))
    if svg_bars(os.path.join(plots_dir, "cpu-per-message.svg"), "Server CPU µs per MESSAGE (closed loop)",
                "CPU µs per MESSAGE", bars):
        L.append(f"![CPU per message]({rel_plots}/cpu-per-message.svg)")
        L.append("")
    L.append("Plotted points are the sustained ramp steps and all latency steps; an unsustained step's "
             "latency is dominated by the timeout and is left out of the plot (it is in the ramp table).")
    L.append("")

    # ---------------- memory
    L.append("## Memory per user")
    L.append("")
    rows = []
    for st in setup:
        if "system" not in st:
            continue
        sysname, n = st["system"], st["users"]
        base = baseline.get(sysname)
        rss_e, pss_e = mem_pair(base["mem_kib"]) if base else (0, 0)
        rss_r, pss_r = mem_pair(st["mem_ready_kib"])
        rss_g, pss_g = mem_pair(st["mem_registered_kib"])
        use = (lambda r, p: p) if sysname == "kamailio" else (lambda r, p: r)
        empty, ready, reg = use(rss_e, pss_e), use(rss_r, pss_r), use(rss_g, pss_g)
        sd = os.path.dirname(st.get("register_json", ""))
        shm_r = read_counters(os.path.join(sd, "counters.ready")).get("shmem:real_used_size")
        shm_g = read_counters(os.path.join(sd, "counters.registered")).get("shmem:real_used_size")
        shm_txt = (f"{shm_g / 2**20:,.1f} MiB; {(shm_g - shm_r) / n:,.0f} B/user for bindings"
                   if (shm_r and shm_g and n) else "–")
        rj = read_json(st.get("register_json", "")) or {}
        rres = rj.get("results", {})
        rows.append([sysname, st["transport"], fmt(n), "PSS" if sysname == "kamailio" else "RSS",
                     fmt(empty / 1024, 1), fmt(ready / 1024, 1), fmt(reg / 1024, 1),
                     fmt((reg - empty) * 1024 / n, 0) if n else "–",
                     fmt((reg - ready) * 1024 / n, 0) if n else "–",
                     f"{st['ready_s']} s", f"{st['register_s']} s",
                     f"{rres.get('completed', 0):,}/{rres.get('sent', 0):,}", shm_txt])
    L.append(table(["system", "transport", "users", "measure", "empty MiB", "after start MiB",
                    "after REGISTER MiB", "bytes/user (all state)", "bytes/user (bindings only)",
                    "start-up", "REGISTER phase", "REGISTERs ok/sent", "Kamailio shm in use"], rows))
    L.append("")
    L.append("\"After start\" includes the blocked lists (imserver: `--policy-file`; Kamailio: the "
             "`users` and `blocked` htables, loaded from SQLite at start-up). Kamailio's main process loads "
             "the whole SQLite result into its private (pkg) memory before filling the htables and frees "
             "it afterwards; those pages stay resident (and are shared copy-on-write with the children), "
             "so Kamailio's \"all state\" figure overstates what it needs: its own count of shared memory "
             "in use (`shmem:real_used_size`, last column) is the better measure of its tables. Kamailio's shared memory pool is mapped at start but only the "
             "pages touched count.")
    L.append("")

    # ---------------- cross-check
    L.append("## Counter cross-check")
    L.append("")
    L.append("Per closed-loop step: what the generator sent and got back, what the server counted, and "
             "what the kernel counted (`/proc/net/snmp` Udp, **system-wide**: other traffic on the machine "
             "adds to it). Expected kernel datagrams: 4 per relayed MESSAGE and 2 per blocked one "
             "(each counted once in In and once in Out on loopback); echo: 2 per round trip.")
    L.append("")
    rows = []
    for s in steps:
        if s["phase"] != "closed":
            continue
        kn = s["kern"] or {}
        sc = s.get("srv_counters") or {}
        if s["system"] == "imserver":
            srv = "decisions " + (", ".join(f"{a} {int(v):,}" for a, v in sorted(sc.get("decisions", {}).items())) or "–")
            if sc.get("drops"):
                srv += "; drops " + ", ".join(f"{a} {int(v):,}" for a, v in sorted(sc["drops"].items()))
        elif s["system"] == "kamailio":
            srv = ", ".join(f"{a} {int(v):,}" for a, v in sc.items()) or "–"
        else:
            srv = "–"
        codes = " ".join(f"{c}:{n:,}" for c, n in sorted(s["codes"].items()))
        rows.append([s["system"], s["transport"], "–" if s["system"] == "echo" else fmt(s["users"]),
                     str(s["blocked_share"]), fmt(s["sent"]), fmt(s["completed"]), codes or "–",
                     fmt(s["delivered"]) if s["delivered"] is not None else "–",
                     fmt(int(s["handled"])), srv,
                     f"{kn.get('InDatagrams', 0):,} / {kn.get('OutDatagrams', 0):,}",
                     fmt(s["kern_expected"]) if s["kern_expected"] is not None else "– (TCP)",
                     f"{kn.get('RcvbufErrors', 0):,} / {kn.get('SndbufErrors', 0):,}",
                     fmt(s["gen_drops"]),
                     f"{s['unanswered']:,} / {s['mismatches']:,}"])
    L.append(table(["system", "tr", "users", "blocked", "loadgen sent", "completed", "responses",
                    "recipient got", "server MESSAGEs", "server counters (delta)", "kernel Udp In / Out",
                    "expected", "RcvbufErrors / SndbufErrors", "generator socket drops",
                    "unanswered / mismatches"], rows))
    L.append("")
    drops = [s for s in steps if s["unanswered"] or s["mismatches"] or s["send_failed"] or s["inflight_full"]
             or s["gen_drops"] or (s["kern"] or {}).get("RcvbufErrors")]
    if drops:
        L.append(f"{len(drops)} step(s) lost or mis-answered something or saw socket-buffer drops; every one is "
                 "listed in the ramp table below (most are the steps past saturation, which is their point).")
        L.append("")

    # ---------------- all steps
    L.append("## Every step")
    L.append("")
    rows = []
    for s in steps:
        rows.append([s["system"], s["transport"], "–" if s["system"] == "echo" else fmt(s["users"]),
                     str(s["blocked_share"]), s["phase"], f"{s['fraction']:g}",
                     fmt(s["rate"]) if s["rate"] else "closed", fmt(s["sent_rate"]), fmt(s["completed_rate"]),
                     f"{s['unanswered']:,}", f"{s['mismatches']:,}", f"{s['error_ratio'] * 100:.3f}%",
                     "yes" if s["sustained"] else "**no**", us(s["p50"]), us(s["p99"]), us(s["p999"]),
                     f"{s['srv_util'] * 100:.0f}%", pct(s["core_other"]), f"{s['gen_util'] * 100:.0f}%",
                     fmt(s["cpu_us_per_msg"], 2), f"{(s['kern'] or {}).get('RcvbufErrors', 0):,}"])
    L.append(table(["system", "tr", "users", "blocked", "phase", "x", "offered /s", "sent /s", "completed /s",
                    "unanswered", "mismatches", "errors", "sustained", "p50 µs", "p99 µs", "p99.9 µs",
                    "server CPU", "others on server core", "gen CPU", "CPU µs/msg", "RcvbufErrors"], rows))
    L.append("")

    # ---------------- differences and commands
    L.append("## Where imserver and Kamailio differ in this benchmark")
    L.append("")
    L.append("- Both are stateless for MESSAGE: Kamailio with `sl` and core `forward()` (no `tm` loaded); "
             "imserver's fast path. Both forward the recipient's 200 statelessly by Via.")
    L.append("- The blocked check: Kamailio looks up one htable key `<recipient user>|<sender user>` (URI user "
             "parts, one domain) plus a `users` htable for 404; imserver looks up the recipient's compiled "
             "policy (full identities) in its policy table. Same answers, checked by loadgen for every MESSAGE.")
    L.append("- Kamailio does not know D6 (480 while a policy is being fetched), ISB (PUBLISH of service "
             "settings), Digest for untrusted peers, or 513 size limits; none is exercised here. An untrusted "
             "source gets 403 from Kamailio (imserver would challenge).")
    L.append("- Kamailio's `lookup(\"location\")` copies the contact into the R-URI and `forward()` resolves "
             "it (no DNS: IP literals, `dns=no`). imserver relays to the binding's contact likewise.")
    L.append("- Kamailio runs a main process, timer, ctl and TCP-main processes beside its workers; all of "
             "them are counted, all pinned to the same core. imserver's threads (worker, slow path, metrics) "
             "likewise.")
    L.append("- Kamailio's tables are loaded from an SQLite file (db_sqlite, the stock way to fill an "
             "htable; db_text took minutes for 1M rows), imserver's from policy.jsonl; only start-up "
             "time differs, not the per-MESSAGE work.")
    L.append("")
    L.append("## Commands")
    L.append("")
    L.append("```")
    L.append(env.get("command", "perf/run.sh"))
    L.append("```")
    L.append("")
    L.append("One example of each command the run executed (all of them are in the step directories, "
             "file `command`):")
    L.append("")
    seen = set()
    for s in steps:
        tag = (s["system"], s["phase"], s["transport"])
        if tag in seen:
            continue
        seen.add(tag)
        try:
            with open(os.path.join(s["dir"], "command")) as f:
                cmd = f.read().strip()
        except OSError:
            continue
        L.append(f"- {s['system']} {s['transport']} {s['phase']}:")
        L.append("  ```")
        L.append("  " + cmd)
        L.append("  ```")
    echo_cmd = os.path.join(out_dir, "sut", "echo", "server.cmd")
    if os.path.exists(echo_cmd):
        setup = setup + [{"system": "echo", "register_json": os.path.join(out_dir, "sut", "echo", "x")}]
    for st in setup:
        if "system" in st:
            p = os.path.join(os.path.dirname(st.get("register_json", "")), "server.cmd")
            if os.path.exists(p) and st["system"] not in seen:
                seen.add(st["system"])
                with open(p) as f:
                    L.append(f"- {st['system']} server:")
                    L.append("  ```")
                    L.append("  " + f.read().strip())
                    L.append("  ```")
    L.append("")
    with open(report_path, "w") as f:
        f.write("\n".join(L) + "\n")
