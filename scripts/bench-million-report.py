#!/usr/bin/env python3
"""Markdown table of a scripts/bench-million.sh run, from the harness's JSON.

usage: bench-million-report.py OUT N SHARDS RATE HB_MS HOLD
Every figure is copied from a gateway-bench report (gateway-bench/report/v1);
a run that is not VALID is marked so, with the harness's reasons.
"""
import json
import os
import sys

out, n, shards, rate, hb_ms, hold = sys.argv[1:7]
n = int(n)


def run(name):
    path = os.path.join(out, f"million-{name}.json")
    try:
        doc = json.load(open(path))
    except (OSError, ValueError):
        return None
    return doc["runs"][0] if doc.get("runs") else None


def m(r, k):
    return None if r is None else r["metrics"].get(k)


def h(r, k, q):
    if r is None or k not in r["histograms"]:
        return None
    return r["histograms"][k].get(q)


def num(v, unit="", nd=0):
    if v is None:
        return "–"
    return f"{v:,.{nd}f}{unit}"


def verdict(r):
    if r is None:
        return "no report (not run, or the run failed: see its log)"
    if r["valid"]:
        return "VALID"
    return "INVALID (" + "; ".join(r["invalid_reasons"]) + ")"


def fails(r):
    if r is None:
        return "–"
    f = r.get("failures") or {}
    return "0" if not f else ", ".join(f"{k}: {v}" for k, v in f.items())


floor, conn, f1, f10 = run("floor"), run("connect"), run("fanout1"), run("fanout10")
print(f"Run of `scripts/bench-million.sh` (N={n:,}, {shards} shards, {rate}/s, heartbeat {hb_ms} ms, hold {hold} s).")
print()
print("| figure | value | run |")
print("|---|---|---|")
print(f"| connections held after the hold | {num(m(conn, 'held_after_hold'))} of {n:,} | connect: {verdict(conn)} |")
print(f"| connect failures | {fails(conn)} | |")
cr = m(conn, "connections_per_s")
print(f"| connect rate achieved | {num(cr, '/s')} ({num(n / cr if cr else None, ' s', 1)} for {n:,}) | |")
print(f"| handshake latency p50 / p99 / max (from intended start) | {num(h(conn, 'handshake', 'p50_us'), ' µs')} / {num(h(conn, 'handshake', 'p99_us'), ' µs')} / {num(h(conn, 'handshake', 'max_us'), ' µs')} | |")
print(f"| gateway RSS after connecting | {num(m(conn, 'target_rss_mb'), ' MB')} | |")
print(f"| gateway RSS delta / connection | {num(m(conn, 'target_rss_bytes_per_conn'), ' B')} | |")
slab = None
if conn:
    for k, v in conn["metrics"].items():
        if "slab" in k:
            slab = (k, v)
print(f"| kernel Slab delta / connection (both ends of each loopback pair) | {num(slab[1], ' B') if slab else '–'} | |")
print(f"| gateway CPU over the {hold} s idle hold | {num(m(conn, 'target_cpu_pct_of_core_during_hold'), ' % of one core', 2)} | |")
print(f"| one broadcast, first → last recipient | {num(h(f1, 'completion', 'max_us') and h(f1, 'completion', 'max_us') / 1000, ' ms', 1)} | fanout -m 1: {verdict(f1)} |")
print(f"| same, last delivery after the intended send (delivery max) | {num(h(f1, 'delivery', 'max_us') and h(f1, 'delivery', 'max_us') / 1000, ' ms', 1)}; p50 {num(h(f1, 'delivery', 'p50_us') and h(f1, 'delivery', 'p50_us') / 1000, ' ms', 1)} | |")
print(f"| push API answer (`POST /v1/push/batch`, publish_call) | {num(h(f1, 'publish_call', 'max_us') and h(f1, 'publish_call', 'max_us') / 1000, ' ms', 1)} | |")
print(f"| one broadcast: lost / late | {num(m(f1, 'lost'))} / {num(m(f1, 'late'))} | |")
fl = m(floor, "send_us")
print(f"| floor: one blocking loopback send (9,900 pairs, 2 threads) | {num(fl, ' µs', 2)} → {n:,} sends over 2 threads {num(fl and fl * n / 2 / 1000, ' ms', 0)} | floor: {verdict(floor)} |")
print(f"| 10 back-to-back broadcasts: deliveries/s | {num(m(f10, 'deliveries_per_s'), '/s')} | fanout -m 10: {verdict(f10)} |")
print(f"| same, push API answer | {num(h(f10, 'publish_call', 'max_us') and h(f10, 'publish_call', 'max_us') / 1000, ' ms', 1)} | |")
print(f"| 10 broadcasts: lost / late / duplicates | {num(m(f10, 'lost'))} / {num(m(f10, 'late'))} / {num(m(f10, 'duplicates'))} | |")
print()
for name, r in (("connect", conn), ("fanout1", f1), ("fanout10", f10)):
    for note in (r or {}).get("notes", []):
        print(f"- {name}: {note}")
print()
names = [f"`{out}/million-{x}.html`" for x in ("connect", "fanout1", "fanout10", "floor")
         if os.path.exists(os.path.join(out, f"million-{x}.html"))]
print(f"Reports: {', '.join(names)} (JSON beside each, summaries in `{out}/million-*.log`).")
