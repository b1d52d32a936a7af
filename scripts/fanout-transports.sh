#!/usr/bin/env bash
# Broadcast deliveries/s to 5,000 subscribers over tcp, ws, tls and wss
# (docs/BENCHMARKS.md, "Idle memory per connection over TCP, WebSocket,
# TLS and WSS"): 20 broadcasts back to back, a fresh gateway per run,
# transports alternating within each of 3 rounds. Uses the CA, the
# certificate and the gateway config scripts/idle-transports.sh leaves in
# its output directory (run that first).
#
#   scripts/fanout-transports.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-target/bench/idle-transports}
[ -f "$OUT/gateway.toml" ] && [ -f "$OUT/ca.pem" ] || { echo "run scripts/idle-transports.sh first ($OUT has no gateway.toml or ca.pem)" >&2; exit 1; }
B=./target/release/gateway-bench
export GATEWAY_JWT_SECRET=bench-secret-at-least-32-bytes-long-0123
declare -A P=([tcp]=17910 [ws]=17912 [tls]=17913 [wss]=17914)
for r in 1 2 3; do for t in tcp ws tls wss; do
  rm -rf $OUT/gateway-data
  ./target/release/gateway --config $OUT/gateway.toml --data-dir $OUT/gateway-data --listen 127.0.0.1:17910 --control 127.0.0.1:17911 --shards 2 >>$OUT/fan-gw.log 2>&1 & PID=$!
  for _ in $(seq 100); do ss -Hltn "( sport = :${P[$t]} )" | grep -q . && break; sleep 0.1; done
  $B fanout --transport $t --target 127.0.0.1:${P[$t]} --control 127.0.0.1:17911 --tls-ca $OUT/ca.pem -n 5000 --connect-rate 2000 -m 20 --msg-rate 0 --json $OUT/fan-$t-$r.json > $OUT/fan-$t-$r.txt 2>&1
  kill $PID; wait $PID 2>/dev/null
  python3 -c "
import json;r=json.load(open('$OUT/fan-$t-$r.json'))['runs'][0];m=r['metrics']
print('$t', 'round', $r, 'VALID' if r['valid'] else 'INVALID', int(m.get('deliveries',0)), int(m.get('lost',-1)), m.get('deliveries_per_s'), m.get('completion_p99_us'), m.get('delivery_phase_secs'))"
done; done
