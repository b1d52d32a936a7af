#!/usr/bin/env bash
# The gateway's two drivers side by side with the harness off the gateway's
# core: a one-shard gateway pinned to CPU 0 (taskset), the harness pinned to
# CPU 1, so neither preempts the other, as with clients on other machines.
# On a 2-core box this is the closest to a remote load. In each round every
# figure runs once per driver, alternating which goes first:
#   bcast     gateway-bench fanout -n N --connect-rate 3000 -m 1 --msg-rate 0 --all
#             (completion_p99_us: first -> last recipient)
#   bcast100  the same with -m 100 --batch 100 (deliveries_per_s)
#   unicast   gateway-bench unicast -n 10000 --connect-rate 3000 --rate 20000
#             --pushes 200000 --publishers 1 (delivery p99)
# A run counts only when the harness said VALID and nothing was lost.
#
#   scripts/drivers-pinned.sh [ROUNDS] [N]    (default 3 rounds, N = 19000)
#
# Environment: BIN_DIR (default target/release; needs gateway and
# gateway-bench), OUT (default target/bench/drivers-pinned), BENCHES
# (default bcast,bcast100,unicast). Output: one line per run, then one
# markdown table of medians (stdout). Exit 3 when any run was not VALID.
set -uo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}; N=${2:-19000}
B=${BIN_DIR:-target/release}
BENCHES=${BENCHES:-bcast,bcast100,unicast}
OUT=${OUT:-target/bench/drivers-pinned}; rm -rf "$OUT"; mkdir -p "$OUT"
export GATEWAY_JWT_SECRET=bench-secret-at-least-32-bytes-long-0123
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs" >&2; exit 2; }
BAD=0

run() { # driver bench round -> appends "bench driver round value" to results
  local d=$1 b=$2 r=$3 ready="$OUT/ready-$d-$b-$r" gw args key
  taskset -c 0 "$B/gateway" --driver "$d" --listen 127.0.0.1:0 --control 127.0.0.1:0 \
    --shards 1 --ready-file "$ready" >"$OUT/gw-$d-$b-$r.log" 2>&1 &
  gw=$!
  for _ in $(seq 100); do [ -s "$ready" ] && break; sleep 0.1; done
  local client control
  client=$(sed -n 's/^client=//p' "$ready"); control=$(sed -n 's/^control=//p' "$ready")
  if [ -z "$client" ]; then echo "gateway $d did not start (see $OUT/gw-$d-$b-$r.log)" >&2; kill $gw; BAD=1; return; fi
  case $b in
    bcast) args="fanout -n $N --connect-rate 3000 -m 1 --msg-rate 0 --all";;
    bcast100) args="fanout -n $N --connect-rate 3000 -m 100 --msg-rate 0 --batch 100 --all";;
    unicast) args="unicast -n 10000 --connect-rate 3000 --rate 20000 --pushes 200000 --publishers 1";;
  esac
  # shellcheck disable=SC2086
  timeout 600 taskset -c 1 "$B/gateway-bench" $args --shards 1 --target "$client" \
    --control "$control" --json "$OUT/$b-$d-$r.json" >"$OUT/$b-$d-$r.txt" 2>&1
  kill $gw; wait $gw 2>/dev/null
  python3 - "$OUT/$b-$d-$r.json" "$b" "$d" "$r" >>"$OUT/results" <<'PY' || BAD=1
import json, sys
path, bench, driver, rnd = sys.argv[1:]
try:
    run = json.load(open(path))["runs"][0]
except Exception as e:
    print(f"{bench} {driver} {rnd} FAILED"); sys.exit(1)
m = run["metrics"]
ok = run["valid"] and m.get("lost", 0) == 0
if bench == "bcast":
    v = m["completion_p99_us"] / 1000
elif bench == "bcast100":
    v = m["deliveries_per_s"] / 1e6
else:
    v = run["histograms"]["delivery"]["p99_us"] / 1000
print(f"{bench} {driver} {rnd} {v:.3f}" if ok else f"{bench} {driver} {rnd} INVALID")
sys.exit(0 if ok else 1)
PY
  tail -1 "$OUT/results" >&2
  sleep 2
}

for r in $(seq "$ROUNDS"); do
  for b in ${BENCHES//,/ }; do
    if [ $((r % 2)) -eq 1 ]; then order="io_uring epoll"; else order="epoll io_uring"; fi
    for d in $order; do run "$d" "$b" "$r"; done
  done
done

python3 - "$OUT/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
names = {"bcast": ("one broadcast, first -> last (completion p99)", "ms", False),
         "bcast100": ("100 back-to-back broadcasts", "M deliveries/s", True),
         "unicast": ("unicast at 20,000/s, delivery p99", "ms", False)}
print("| figure | unit | io_uring, per round | epoll, per round | median io_uring | median epoll | epoll / io_uring |")
print("|---|---|---|---|---|---|---|")
for b, (name, unit, higher) in names.items():
    per = {d: [float(r[3]) for r in rows if r[0] == b and r[1] == d and r[3] not in ("INVALID", "FAILED")] for d in ("io_uring", "epoll")}
    if not per["io_uring"] or not per["epoll"]:
        continue
    mu, me = statistics.median(per["io_uring"]), statistics.median(per["epoll"])
    ratio = me / mu
    note = " (higher is better)" if higher else ""
    fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
    print(f"| {name} | {unit} | {fmt(per['io_uring'])} | {fmt(per['epoll'])} | {mu:.2f} | {me:.2f} | **{ratio:.2f}**{note} |")
PY
[ $BAD -eq 0 ] || exit 3
