#!/usr/bin/env python3
"""perf/lib/perf.py: helpers for perf/run.sh (standard library only).

Subcommands:
  freeports N                 first port P such that P..P+N-1 bind on 127.0.0.1, UDP and TCP
  log2 N DIV MAX              ceil(log2(N / DIV)) clamped to [4, MAX] (hash table exponents)
  kamdata POLICY OUTDIR       Kamailio htable tables `users`, `blocked` (SQLite) from policy.jsonl
  judge LOADGEN_JSON          "OK RATE": OK=1 if sustained (< 0.1% errors; open loop: schedule kept,
                              median latency <= 10 ms); RATE = completed/s
  report OUT REPORT PLOTS     perf/REPORT.md and the SVG plots from a run directory
"""
import json
import math
import os
import random
import socket
import sys


def freeports(n):
    rng = random.Random(os.getpid())
    for _ in range(200):  # bounded search
        base = rng.randrange(20000, 60000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    s = socket.socket(socket.AF_INET, kind)
                    socks.append(s)
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise SystemExit("no free port range found")


def log2(n, div, mx):
    v = max(1, int(n) // int(div))
    return max(4, min(int(mx), math.ceil(math.log2(v))))


def kamdata(policy, outdir):
    """kam.sqlite with two htable tables: `users` (one row per user) and `blocked` (one row per
    (recipient, sender) pair). Columns are htable's: key_name key_type value_type key_value
    expires. The key of `blocked` is "<recipient user>|<sender user>" (URI user parts; one
    domain). SQLite (db_sqlite) loads 10M rows in seconds; db_text took minutes for 1M."""
    import sqlite3

    path = os.path.join(outdir, "kam.sqlite")
    if os.path.exists(path):
        os.remove(path)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    for t in ("users", "blocked"):
        db.execute(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, key_name TEXT NOT NULL, "
                   "key_type INTEGER NOT NULL DEFAULT 0, value_type INTEGER NOT NULL DEFAULT 0, "
                   "key_value TEXT NOT NULL DEFAULT '', expires INTEGER NOT NULL DEFAULT 0)")
    users = pairs = 0

    def rows():
        nonlocal users, pairs
        with open(policy) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                o = json.loads(line)
                if "format" in o:
                    continue
                rcpt = user_part(o["xui"])
                users += 1
                yield ("users", rcpt)
                for b in o.get("blocked", []):
                    pairs += 1
                    yield ("blocked", f"{rcpt}|{user_part(b)}")

    batch = {"users": [], "blocked": []}
    for table_name, k in rows():
        batch[table_name].append((k,))
        if len(batch[table_name]) >= 100_000:
            db.executemany(f"INSERT INTO {table_name} (key_name, key_type, value_type, key_value, expires) "
                           "VALUES (?, 0, 1, '1', 0)", batch[table_name])
            batch[table_name].clear()
    for table_name, b in batch.items():
        if b:
            db.executemany(f"INSERT INTO {table_name} (key_name, key_type, value_type, key_value, expires) "
                           "VALUES (?, 0, 1, '1', 0)", b)
    db.commit()
    db.close()
    with open(os.path.join(outdir, "pairs"), "w") as f:
        f.write(f"{pairs}\n")
    print(json.dumps({"users": users, "pairs": pairs}))


def user_part(uri):
    u = uri.split(":", 1)[-1]
    return u.split("@", 1)[0]


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def errors_of(r):
    res = r["results"]
    return (res.get("unanswered", 0) + res.get("send_failed", 0) + res.get("inflight_full", 0)
            + res.get("mismatches", {}).get("total", 0))


def judge(path):
    import report
    r = load_json(path)
    if not r:
        print("0 0")
        return
    res = r["results"]
    sent = res.get("sent", 0)
    rate = res.get("completed_rate_per_s", 0.0)
    ok = report.is_sustained(sent, errors_of(r), res.get("offered_rate_per_s"),
                             res.get("sent_rate_per_s", 0.0),
                             res.get("latency_us", {}).get("p50_us"))
    print(f"{1 if ok else 0} {rate:.0f}")


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    cmd = argv[1]
    if cmd == "freeports":
        print(freeports(int(argv[2])))
    elif cmd == "log2":
        print(log2(argv[2], argv[3], argv[4]))
    elif cmd == "kamdata":
        kamdata(argv[2], argv[3])
    elif cmd == "judge":
        judge(argv[2])
    elif cmd == "report":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import report

        report.write(argv[2], argv[3], argv[4])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
