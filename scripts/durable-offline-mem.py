#!/usr/bin/env python3
"""Memory and disk per durable push kept for offline users (issue 17).

    scripts/durable-offline-mem.py --control 127.0.0.1:17701 --pid PID \
        [--pushes 100000] [--users 100000] [--batch 1000] [--payload 256]

Posts PUSHES durable pushes ("ack": true) round-robin to USERS users who
are not connected (u-off-0, u-off-1, ...) through POST /v1/push/batch,
BATCH lines per request on one keep-alive connection, and checks that every
line was answered "stored": true. Before and after (once the gateway's
counters have settled) it reads the gateway's VmRSS (/proc/PID/status) and
the store's gauges in GET /v1/stats, and prints, per stored push: the RSS
delta, store_ram_bytes and store_disk_bytes. Exits 1 when a line was not
stored or the store holds fewer pushes than were stored.
"""

import argparse
import http.client
import json
import sys
import time


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise SystemExit(f"no VmRSS for pid {pid}")


def totals(conn):
    # A fresh connection each time: the kernel spreads them over the
    # shards, and a shard publishes its counters when it answers.
    conn = http.client.HTTPConnection(conn.host, conn.port, timeout=10)
    conn.request("GET", "/v1/stats")
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        raise SystemExit(f"GET /v1/stats answered {r.status}: {body[:200]!r}")
    return json.loads(body)["totals"]


def settled(conn):
    last = totals(conn)
    for _ in range(20):
        time.sleep(0.3)
        now = totals(conn)
        if now == last:
            return now
        last = now
    return last


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--control", default="127.0.0.1:7101")
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--pushes", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--payload", type=int, default=256)
    a = ap.parse_args()
    host, port = a.control.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    payload = "p" * a.payload
    before = settled(conn)
    rss0 = rss_bytes(a.pid)
    stored = 0
    refused = {}
    t0 = time.monotonic()
    i = 0
    while i < a.pushes:
        n = min(a.batch, a.pushes - i)
        lines = [
            json.dumps(
                {"to": {"user": f"u-off-{(i + k) % a.users}"}, "payload": payload, "ack": True}
            )
            for k in range(n)
        ]
        conn.request(
            "POST",
            "/v1/push/batch",
            body="\n".join(lines) + "\n",
            headers={"content-type": "application/x-ndjson"},
        )
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            refused[str(r.status)] = refused.get(str(r.status), 0) + n
        else:
            for res in json.loads(body)["results"]:
                if res.get("stored") is True:
                    stored += 1
                else:
                    why = res.get("error", "not stored")
                    refused[why] = refused.get(why, 0) + 1
        i += n
    secs = time.monotonic() - t0
    # A shard publishes its counters when its loop turns: one that went
    # idle right after its last commit shows them when it next answers a
    # request, so ask until the gauge has them all.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if totals(conn).get("store_pushes", 0) - before.get("store_pushes", 0) >= stored:
            break
        time.sleep(0.3)
    after = settled(conn)
    rss1 = rss_bytes(a.pid)
    d = lambda k: after.get(k, 0) - before.get(k, 0)
    kept = d("store_pushes")
    out = {
        "pushes_posted": a.pushes,
        "users": a.users,
        "payload": a.payload,
        "stored": stored,
        "refused": refused,
        "post_secs": round(secs, 2),
        "posted_per_s": round(a.pushes / secs) if secs > 0 else None,
        "store_pushes_delta": kept,
        "store_commits_delta": d("store_commits"),
        "rss_before": rss0,
        "rss_after": rss1,
        "rss_delta_per_push": round((rss1 - rss0) / stored, 1) if stored else None,
        "store_ram_bytes_per_push": round(after.get("store_ram_bytes", 0) / after["store_pushes"], 1)
        if after.get("store_pushes")
        else None,
        "store_disk_bytes_per_push": round(after.get("store_disk_bytes", 0) / after["store_pushes"], 1)
        if after.get("store_pushes")
        else None,
        "store_ram_bytes": after.get("store_ram_bytes"),
        "store_disk_bytes": after.get("store_disk_bytes"),
    }
    print(json.dumps(out, indent=2))
    if stored != a.pushes or kept < stored:
        print("not every push was stored and kept", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
