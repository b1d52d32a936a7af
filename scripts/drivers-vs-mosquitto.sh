#!/usr/bin/env bash
# Same session, one after the other: the gateway on io_uring, on epoll, and
# mosquitto, each holding N idle connections (30 s heartbeats) for HOLD s,
# then one broadcast to N and 20 back-to-back broadcasts to N on each.
#
#   scripts/drivers-vs-mosquitto.sh [N] [HOLD_SECS]   (BIN_DIR: default target/release)
set -uo pipefail
cd "$(dirname "$0")/.."
N=${1:-19000}; HOLD=${2:-60}
B=${BIN_DIR:-target/release}
export GATEWAY_JWT_SECRET=bench-secret-at-least-32-bytes-long-0123
OUT=${OUT:-target/bench/drivers}; rm -rf "$OUT"; mkdir -p "$OUT"
RATE=$(python3 -c "print($N / 30)")
wait_port() { for _ in $(seq 100); do ss -Hltn "( sport = :$1 )" | grep -q . && return; sleep 0.1; done; echo "nothing listens on $1" >&2; }
start() { # system -> PID, PEER, PORT
  case $1 in
    io_uring|epoll) $B/gateway --driver $1 --listen 127.0.0.1:17900 --control 127.0.0.1:17901 --shards 2 >>"$OUT/$1.log" 2>&1 & PID=$!; PEER=gateway; PORT=17900;;
    mosquitto) $B/gateway-bench peer mosquitto --port 17902 --dir "$OUT" 2>"$OUT/mosquitto.log" & PID=$!; PEER=mqtt; PORT=17902;;
  esac
  wait_port $PORT
}
stop() { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=; sleep 2; }
for sys in io_uring epoll mosquitto; do
  start $sys
  $B/gateway-bench connect --peer $PEER --target 127.0.0.1:$PORT --control 127.0.0.1:17901 -n $N --rate $RATE --settle-secs 12 --hold-secs $HOLD --gateway-pid $PID --json $OUT/idle-$sys.json > $OUT/idle-$sys.txt 2>&1
  stop
  for m in 1 20; do
    start $sys
    $B/gateway-bench fanout --peer $PEER --target 127.0.0.1:$PORT --control 127.0.0.1:17901 --jwt-secret $GATEWAY_JWT_SECRET -n $N --connect-rate 3000 -m $m --msg-rate 0 --all --json $OUT/fanout$m-$sys.json > $OUT/fanout$m-$sys.txt 2>&1
    stop
  done
done
for f in $OUT/*.json; do
python3 - "$f" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["runs"][0]; m = r["metrics"]
keys = ["target_rss_bytes_per_conn","target_cpu_pct_of_core_during_hold","held_after_hold","completion_p99_us","deliveries_per_s","lost","duplicates"]
print(sys.argv[1].split('/')[-1], "VALID" if r["valid"] else "INVALID", {k: m[k] for k in keys if k in m})
PY
done
