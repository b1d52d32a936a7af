#!/usr/bin/env bash
# Idle CPU side by side (docs/BENCHMARKS.md, "Idle connections"): the
# gateway (idle wake-up batching on, then off), mosquitto and nats-server
# each hold N connections heartbeating every 30 s, and gateway-bench
# reports the server's CPU over the hold and its RSS per connection.
#
#   scripts/idle-cpu-peers.sh [N] [HOLD_SECS] [ROUNDS]
#
# Connections open at N/30 per second, so each one's heartbeats fall at its
# own moment in the 30 s and the whole population's are spread evenly.
# N stays under 20,000: mosquitto and nats-server are one process each and
# need one descriptor per connection.
set -euo pipefail
N=${1:-19000}
HOLD=${2:-60}
ROUNDS=${3:-2}
cd "$(dirname "$0")/.."
cargo build --release --bins -q || exit 1
export GATEWAY_JWT_SECRET=bench-secret-at-least-32-bytes-long-0123
OUT=target/bench/idle-cpu; rm -rf "$OUT"; mkdir -p "$OUT"
printf '[shard]\nidle_batch_ms = 0\n' > "$OUT/no-batching.toml"
RATE=$(python3 -c "print($N / 30)")
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; true' EXIT
wait_port() { for _ in $(seq 100); do ss -Hltn "( sport = :$1 )" | grep -q . && return; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }
run() { # label peer port
  local label=$1 peer=$2 port=$3
  wait_port "$port"
  ./target/release/gateway-bench connect --peer "$peer" --target 127.0.0.1:"$port" --control 127.0.0.1:17901 \
      -n "$N" --rate "$RATE" --settle-secs 12 --hold-secs "$HOLD" --gateway-pid "$PID" \
      --json "$OUT/$label-$r.json" > "$OUT/$label-$r.txt" 2>&1 || true
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
  python3 - "$OUT/$label-$r.json" "$label" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["runs"][0]
m = r["metrics"]
def g(k):
    v = m.get(k)
    return "-" if v is None else v
print(f"{sys.argv[2]:<22} {'VALID' if r['valid'] else 'INVALID':<8} held {g('held_after_hold')}  CPU {g('target_cpu_pct_of_core_during_hold')} % of a core  RSS {g('target_rss_bytes_per_conn')} B/conn")
PY
}
for r in $(seq "$ROUNDS"); do
  ./target/release/gateway --listen 127.0.0.1:17900 --control 127.0.0.1:17901 --shards 2 2>>"$OUT/gw.log" & PID=$!
  run gateway gateway 17900
  ./target/release/gateway --config "$OUT/no-batching.toml" --listen 127.0.0.1:17900 --control 127.0.0.1:17901 --shards 2 2>>"$OUT/gw-nb.log" & PID=$!
  run gateway-no-batching gateway 17900
  # `gateway-bench peer` execs the peer with the config `make bench` uses,
  # so $! is the peer's own pid.
  ./target/release/gateway-bench peer mosquitto --port 17902 --dir "$OUT" 2>"$OUT/mosquitto.log" & PID=$!
  run mosquitto mqtt 17902
  ./target/release/gateway-bench peer nats-server --port 17903 2>"$OUT/nats.log" & PID=$!
  run nats-server nats 17903
done
