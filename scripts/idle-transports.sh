#!/usr/bin/env bash
# Idle memory per connection over every transport, side by side in one run
# (docs/BENCHMARKS.md, "Idle memory per connection over TCP, WebSocket,
# TLS and WSS"): the gateway over tcp, ws, tls and wss, mosquitto over tcp,
# ws, tls and wss, nats-server over tcp, ws and tls, each holding N idle
# connections (30 s heartbeats); then the TLS 1.3 full handshakes per
# second the gateway takes on this box.
#
#   scripts/idle-transports.sh [N] [ROUNDS]
#
# Every system runs fresh for each measurement (`gateway-bench connect
# --gateway-pid` reads its RSS before and after), so one transport's freed
# memory is not the next one's head start. The CA and the server
# certificate (P-256, for 127.0.0.1) are made by openssl in the output
# directory. N stays under 20,000: the brokers are one process each and
# need a descriptor per connection. Prints the medians of the rounds.
set -euo pipefail
N=${1:-19000}
ROUNDS=${2:-3}
RATE=${RATE:-1000}
HOLD=${HOLD:-10}
cd "$(dirname "$0")/.."
cargo build --release --bins -q || exit 1
B=./target/release/gateway-bench
export GATEWAY_JWT_SECRET=bench-secret-at-least-32-bytes-long-0123
OUT=${OUT:-target/bench/idle-transports}; rm -rf "$OUT"; mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# The run's own CA and a certificate for 127.0.0.1 signed by it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=idle-transports-ca -keyout "$OUT/ca.key" -out "$OUT/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj /CN=127.0.0.1 -keyout "$OUT/key.pem" -out "$OUT/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$OUT/ext.cnf"
openssl x509 -req -in "$OUT/server.csr" -CA "$OUT/ca.pem" -CAkey "$OUT/ca.key" -CAcreateserial \
  -days 2 -extfile "$OUT/ext.cnf" -out "$OUT/cert.pem" 2>/dev/null
TLS_FILES=(--tls-cert "$OUT/cert.pem" --tls-key "$OUT/key.pem")

# One gateway config with every listener; each run connects to one.
cat > "$OUT/gateway.toml" <<EOF
[listen]
websocket = "127.0.0.1:17912"
client_tls = "127.0.0.1:17913"
websocket_tls = "127.0.0.1:17914"
[tls]
cert = "$OUT/cert.pem"
key = "$OUT/key.pem"
EOF
declare -A GW_PORT=([tcp]=17910 [ws]=17912 [tls]=17913 [wss]=17914)

PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; true' EXIT
wait_port() { for _ in $(seq 100); do ss -Hltn "( sport = :$1 )" | grep -q . && return; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }
stop() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; }

measure() { # label peer transport port [extra connect args...]
  local label=$1 peer=$2 transport=$3 port=$4; shift 4
  wait_port "$port"
  $B connect --peer "$peer" --transport "$transport" --target 127.0.0.1:"$port" \
      --control 127.0.0.1:17911 --tls-ca "$OUT/ca.pem" \
      -n "$N" --rate "$RATE" --settle-secs 5 --hold-secs "$HOLD" --gateway-pid "$PID" "$@" \
      --json "$OUT/$label-$r.json" > "$OUT/$label-$r.txt" 2>&1 || true
  stop
  python3 - "$OUT/$label-$r.json" "$label" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["runs"][0]
m = r["metrics"]
print(f"{sys.argv[2]:<18} {'VALID' if r['valid'] else 'INVALID':<8} held {m.get('held_after_hold', '-')}"
      f"  RSS {m.get('target_rss_bytes_per_conn', '-')} B/conn  CPU {m.get('target_cpu_pct_of_core_during_hold', '-')} %")
PY
}

gateway() { rm -rf "$OUT/gateway-data"; ./target/release/gateway --config "$OUT/gateway.toml" --data-dir "$OUT/gateway-data" --listen 127.0.0.1:17910 \
  --control 127.0.0.1:17911 --shards 2 >>"$OUT/gateway.log" 2>&1 & PID=$!; }
# `gateway-bench peer` execs the peer with the harness's own config, so $!
# is the peer's pid.
peer() { # server transport port
  local files=()
  case $2 in tls|wss) files=("${TLS_FILES[@]}") ;; esac
  $B peer "$1" --port "$3" --transport "$2" "${files[@]}" --dir "$OUT/$1-$2" 2>>"$OUT/$1-$2.log" & PID=$!
}

for r in $(seq "$ROUNDS"); do
  echo "round $r"
  for t in tcp ws tls wss; do gateway; measure "gateway-$t" gateway "$t" "${GW_PORT[$t]}"; done
  for t in tcp ws tls wss; do peer mosquitto "$t" 17920; measure "mosquitto-$t" mqtt "$t" 17920; done
  for t in tcp ws tls; do peer nats-server "$t" 17930; measure "nats-$t" nats "$t" 17930; done
done

# TLS 1.3 full handshakes per second: 8,000 opened at once, as fast as the
# harness can, harness and gateway on the same 2 cores. 8,000 stays under
# the two shards' bound on handshakes in progress (shard.max_handshakes,
# 4,096 each), over which the gateway refuses new ones.
for r in $(seq "$ROUNDS"); do
  gateway; wait_port 17913
  $B connect --transport tls --target 127.0.0.1:17913 --control 127.0.0.1:17911 --tls-ca "$OUT/ca.pem" \
      -n 8000 --rate 0 --settle-secs 0 --hold-secs 0 --gateway-pid "$PID" \
      --json "$OUT/handshakes-$r.json" > "$OUT/handshakes-$r.txt" 2>&1 || true
  stop
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys, pathlib
out, rounds = pathlib.Path(sys.argv[1]), int(sys.argv[2])
def runs(label):
    for i in range(1, rounds + 1):
        p = out / f"{label}-{i}.json"
        if p.exists():
            yield json.load(open(p))["runs"][0]
print("\nmedians of the VALID rounds (user-space RSS per idle connection):")
print(f"{'system':<18} {'valid':>5}  {'RSS B/conn':>10}  {'CPU % of a core':>15}")
for label in [f"gateway-{t}" for t in ("tcp", "ws", "tls", "wss")] + \
             [f"mosquitto-{t}" for t in ("tcp", "ws", "tls", "wss")] + \
             [f"nats-{t}" for t in ("tcp", "ws", "tls")]:
    ok = [r for r in runs(label) if r["valid"]]
    rss = [r["metrics"]["target_rss_bytes_per_conn"] for r in ok if "target_rss_bytes_per_conn" in r["metrics"]]
    cpu = [r["metrics"]["target_cpu_pct_of_core_during_hold"] for r in ok if "target_cpu_pct_of_core_during_hold" in r["metrics"]]
    med = lambda v: f"{statistics.median(v):.0f}" if v else "-"
    medc = lambda v: f"{statistics.median(v):.2f}" if v else "-"
    print(f"{label:<18} {len(ok)}/{rounds}  {med(rss):>10}  {medc(cpu):>15}")
hs = [r for r in runs("handshakes") if r["valid"]]
rates = [r["metrics"].get("tls_full_handshakes_per_s") for r in hs]
rates = [x for x in rates if x]
cpu = [r["metrics"].get("target_cpu_us_per_connect") for r in hs]
cpu = [x for x in cpu if x]
print(f"\nTLS 1.3 full handshakes/s (8,000 as fast as possible, VALID {len(hs)}/{rounds}): "
      f"{statistics.median(rates):.0f}" if rates else "\nTLS handshakes: no VALID round")
if cpu:
    print(f"gateway CPU per TLS connect (median): {statistics.median(cpu):.0f} µs")
PY
