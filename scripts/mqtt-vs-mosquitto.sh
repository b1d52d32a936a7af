#!/usr/bin/env bash
# The gateway's MQTT listener side by side with mosquitto (docs/BENCHMARKS.md,
# "MQTT listener side by side with mosquitto (issue 20)"). Rounds alternate
# the systems (gateway first in odd rounds, mosquitto first in even ones),
# a fresh server for every run:
#   idle     connect -n N at N/30 per second (30 s keep-alive, so the
#            PINGREQs are spread evenly), settle 12 s, hold HOLD s: the
#            server's RSS delta / connection, kernel Slab / connection, CPU
#   fanout   -n N subscribers, -m 20 back-to-back 256-byte messages:
#            deliveries/s, completion p99; the gateway twice, broadcasts
#            ({"all": true}, on $gateway/all) and topic pushes (SUBSCRIBE
#            "bench"), mosquitto through the harness's MQTT publisher
#   unicast  10,000 users, 20,000 pushes/s for 10 s, one publisher: delivery
#            p99 (the gateway: POST /v1/push to each user, on
#            $gateway/user/{U}; mosquitto: one topic per user)
# The gateway: 2 shards, embedded defaults plus `[listen] mqtt`, every
# address on port 0 (read back from its --ready-file), clients over
# `gateway-bench --transport mqtt`. mosquitto: `gateway-bench peer mosquitto`
# (the config `make bench` uses), on MOSQ_PORT, which it binds itself.
#
#   scripts/mqtt-vs-mosquitto.sh [ROUNDS] [N] [HOLD_SECS]
#
# BIN_DIR: gateway and gateway-bench (default target/release, built first).
# BENCHES: which of "idle fanout unicast" (default all). SYSTEMS: which
# systems, in the odd rounds' order (default "gateway mosquitto"; also
# gateway-tcp: the same gateway's v1 TCP listener, for what the MQTT mapping
# itself costs). OUT: where the
# reports go (default target/bench/mqtt-vs-mosquitto). One TSV line a run on
# stdout and in $OUT/runs.tsv; a figure counts only from a VALID run.
set -uo pipefail
ROUNDS=${1:-3}; N=${2:-19000}; HOLD=${3:-30}
cd "$(dirname "$0")/.."
if [ -z "${BIN_DIR:-}" ]; then
  nice cargo build --release --bins -q || exit 1
  BIN_DIR=target/release
fi
B=$(cd "$BIN_DIR" && pwd)
BENCHES=${BENCHES:-idle fanout unicast}
SYSTEMS=${SYSTEMS:-gateway mosquitto}
REVERSED=$(echo $SYSTEMS | tr ' ' '\n' | tac | tr '\n' ' ')
MOSQ_PORT=${MOSQ_PORT:-17912}
export GATEWAY_JWT_SECRET=bench-secret-at-least-32-bytes-long-0123
OUT=${OUT:-target/bench/mqtt-vs-mosquitto}; rm -rf "$OUT"; mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
printf '[listen]\nmqtt = "127.0.0.1:0"\n' > "$OUT/gateway.toml"
RATE=$(python3 -c "print($N / 30)")
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; true' EXIT

# Starts `sys` (gateway, gateway-tcp or mosquitto): PID, PEER, TARGET,
# CONTROL, FLAGS.
start() {
  local sys=$1 run=$2
  if [ "$sys" != mosquitto ]; then
    rm -f "$OUT/ready"
    "$B/gateway" --config "$OUT/gateway.toml" --listen 127.0.0.1:0 --control 127.0.0.1:0 \
      --shards 2 --ready-file "$OUT/ready" --data-dir "$OUT/data-$run" >>"$OUT/gateway.log" 2>&1 &
    PID=$!
    for _ in $(seq 100); do grep -qs '^mqtt=' "$OUT/ready" && break; sleep 0.1; done
    TARGET=$(sed -n 's/^mqtt=//p' "$OUT/ready"); CONTROL=$(sed -n 's/^control=//p' "$OUT/ready")
    [ -n "$TARGET" ] || { echo "the gateway wrote no ready file (see $OUT/gateway.log)" >&2; exit 1; }
    PEER=gateway; FLAGS=(--transport mqtt)
    if [ "$sys" = gateway-tcp ]; then
      TARGET=$(sed -n 's/^client=//p' "$OUT/ready"); FLAGS=(--transport tcp)
    fi
  else
    if ss -Hltn "( sport = :$MOSQ_PORT )" | grep -q .; then
      echo "port $MOSQ_PORT is in use: give MOSQ_PORT another" >&2; exit 1
    fi
    # `gateway-bench peer` execs mosquitto: $! is mosquitto's own pid.
    "$B/gateway-bench" peer mosquitto --port "$MOSQ_PORT" --dir "$OUT" 2>>"$OUT/mosquitto.log" &
    PID=$!
    for _ in $(seq 100); do ss -Hltn "( sport = :$MOSQ_PORT )" | grep -q . && break; sleep 0.1; done
    TARGET=127.0.0.1:$MOSQ_PORT; CONTROL=127.0.0.1:9; PEER=mqtt; FLAGS=()
  fi
}
stop() { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=; rm -rf "$OUT"/data-*; sleep 2; }

# One run of `sys`: its label, round and gateway-bench arguments (`@PID`
# stands for the server's pid); prints its TSV line.
run() {
  local sys=$1 label=$2 r=$3; shift 3
  local json="$OUT/$label-$sys-$r.json"
  start "$sys" "$label-$r"
  local args=() a
  for a in "$@"; do args+=("${a/@PID/$PID}"); done
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  timeout 900 "$B/gateway-bench" "${args[@]}" --peer "$PEER" "${FLAGS[@]}" --target "$TARGET" \
    --control "$CONTROL" --json "$json" > "$OUT/$label-$sys-$r.txt" 2>&1
  stop
  python3 - "$json" "$sys" "$label" "$r" "$load" <<'PY' | tee -a "$OUT/runs.tsv"
import json, sys
path, system, label, rnd, load = sys.argv[1:]
try:
    run = json.load(open(path))["runs"][0]
except (OSError, ValueError, KeyError, IndexError) as e:
    print(f"{label}\t{system}\t{rnd}\tNO REPORT\t{e}")
    sys.exit()
m = run["metrics"]
h = run.get("histograms", {}).get("delivery", {})
def g(k):
    v = m.get(k)
    return "-" if v is None else f"{v:g}"
figures = {
    "idle": ["held_after_hold", "target_rss_bytes_per_conn", "kernel_slab_bytes_per_conn",
             "target_cpu_pct_of_core_during_hold", "target_rss_mb"],
    "fanout-all": ["receivers", "deliveries", "lost", "late", "duplicates", "deliveries_per_s",
                   "completion_p99_us"],
    "unicast": ["pushes_sent", "deliveries", "lost", "late", "duplicates"],
}
figures["fanout-topic"] = figures["fanout-all"]
row = [f"{k}={g(k)}" for k in figures[label]]
if label == "unicast":
    row += [f"delivery_{q}={h.get(q, '-')}" for q in ("p50_us", "p99_us", "p999_us")]
valid = "VALID" if run["valid"] else "INVALID " + "; ".join(run.get("invalid_reasons", []))
print("\t".join([label, system, rnd, f"load={load}", valid] + row))
PY
}

for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then order=$SYSTEMS; else order=$REVERSED; fi
  for bench in $BENCHES; do
    for sys in $order; do
      case $bench in
        idle)
          run "$sys" idle "$r" connect -n "$N" --rate "$RATE" --settle-secs 12 \
            --hold-secs "$HOLD" --gateway-pid @PID ;;
        fanout)
          run "$sys" fanout-all "$r" fanout -n "$N" --connect-rate 3000 -m 20 --msg-rate 0 --all
          # The gateway again, as topic pushes to subscribers of one topic
          # (mosquitto's run above already is one: the brokers have no "all").
          [ "$sys" != mosquitto ] &&
            run "$sys" fanout-topic "$r" fanout -n "$N" --connect-rate 3000 -m 20 --msg-rate 0 --topic bench ;;
        unicast)
          run "$sys" unicast "$r" unicast -n 10000 --connect-rate 3000 --rate 20000 \
            --pushes 200000 --publishers 1 ;;
      esac
    done
  done
done
python3 - "$OUT/runs.tsv" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    if len(f) > 4 and f[4] == "VALID":
        rows[(f[0], f[1])].append(dict(kv.split("=", 1) for kv in f[5:] if "=" in kv))
print("\nmedians of the VALID runs:")
for (label, system), runs in sorted(rows.items()):
    keys = [k for k in runs[0] if all(r.get(k, "-") != "-" for r in runs)]
    med = {k: statistics.median(float(r[k]) for r in runs) for k in keys}
    print(f"{label:<13} {system:<10} {len(runs)} runs  " + "  ".join(f"{k}={v:g}" for k, v in med.items()))
PY
