#!/usr/bin/env bash
# A million connections on one box (docs/BENCHMARKS.md, "A million
# connections"; `make bench-million`).
#
#   scripts/bench-million.sh            # N=1000000 on 52 shards at 10,000/s
#   N=20000 SHARDS=2 HOLD=20 scripts/bench-million.sh   # a quick dry run
#
# Drives existing gateway-bench scenarios against one release gateway
# process (started here, killed on exit):
#   0. floor: `gateway-bench floor` at what one process can hold (9,900
#      loopback pairs under RLIMIT_NOFILE 20000), for the per-send cost;
#   1. connect: N connections at RATE/s, heartbeat HB_MS, then an idle hold
#      of HOLD s: failures, connect rate, gateway RSS and kernel Slab per
#      connection, the gateway's CPU over the hold. With HOLD = HB_MS every
#      connection sends exactly one Ping in the window (the connect phase
#      lasts N/RATE < HB_MS), so the figure is the steady average;
#   2. fanout -m 1: one broadcast (256 B) to N: first→last completion, the
#      push API's answer time (publish_call);
#   3. fanout -m 10 --batch 10: 10 back-to-back broadcasts: deliveries/s.
# Each scenario reconnects its N (the harness has no scenario that chains
# them). Every run must be VALID with 0 lost: the harness exits 3 otherwise;
# the script goes on with the next run, marks it in the table and exits 3.
#
# Writes target/bench/million-*.{json,html,log} and target/bench/million.md
# (the figures as a markdown table); with WRITE_DOC=1 (the make target) the
# table replaces the block between the bench-million markers in
# docs/BENCHMARKS.md. Bounded: every scenario has its own timeouts, and the
# make target wraps the script in `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000000}
SHARDS=${SHARDS:-52}
RATE=${RATE:-10000}
HB_MS=${HB_MS:-300000}
HOLD=${HOLD:-$((HB_MS / 1000))}
PORT=${PORT:-17900}
CTL=${CTL:-17901}
OUT=${OUT:-target/bench}
# Which of the runs below to do (the floor always runs).
STEPS=${STEPS:-connect fanout1 fanout10}
step() { case " $STEPS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
BIN=${CARGO_TARGET_DIR:-target}/release
export GATEWAY_JWT_SECRET=million-bench-secret-at-least-32-bytes-0123
mkdir -p "$OUT"
if ss -Hltn "( sport = :$PORT or sport = :$CTL )" | grep -q .; then
  echo "port $PORT or $CTL is in use (another run?)" >&2; exit 1
fi

GW=
BENCH=
FAILED=
cleanup() {
  [ -n "$BENCH" ] && kill -- "$BENCH" 2>/dev/null || true
  [ -n "$GW" ] && kill "$GW" 2>/dev/null || true
  [ -n "$GW" ] && { timeout 30 tail --pid="$GW" -f /dev/null 2>/dev/null || kill -9 "$GW" 2>/dev/null || true; }
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs one gateway-bench scenario in the background (so the trap can stop it
# and its worker processes, which exit when their parent's pipes close),
# teeing its summary to $OUT/million-NAME.log.
bench() {
  local name=$1; shift
  echo "== $(date -u +%T) $name: gateway-bench $*" >"$OUT/million-$name.log"
  "$BIN/gateway-bench" "$@" --json "$OUT/million-$name.json" --html "$OUT/million-$name.html" \
    >>"$OUT/million-$name.log" 2>&1 &
  BENCH=$!
  local rc=0
  wait "$BENCH" || rc=$?
  BENCH=
  cat "$OUT/million-$name.log"
  if [ "$rc" -ne 0 ]; then
    echo "bench-million: $name exited $rc (3 = INVALID); its figures do not count" >&2
    FAILED="$FAILED $name(rc=$rc)"
  fi
}

slab() { awk '/^Slab:/ {print $2}' /proc/meminfo; }
echo "bench-million: N=$N SHARDS=$SHARDS RATE=$RATE/s HB=${HB_MS} ms HOLD=${HOLD} s; $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg); MemAvailable $(awk '/MemAvailable/ {print int($2/1048576)}' /proc/meminfo) GiB" | tee "$OUT/million-host.log"

# 0. The floor, before the gateway exists (it needs 2 descriptors per pair).
bench floor floor -n 9900 -m 10 --threads 2

# The gateway: SHARDS shards, embedded defaults (max_connections per shard
# follows RLIMIT_NOFILE: 19,936 here; SHARDS x that must exceed N, with room
# for SO_REUSEPORT's uneven spread).
# handshake_timeout_ms is raised from 10 s to 60 s: on this 2-CPU box,
# shared with other work, 52 shards got so little CPU that a first attempt
# at 15,000/s (2026-12-01 22:32) had 677,286 of 1,000,000 accepted
# connections time out before the gateway read their Hello (the harness had
# sent it). Handshake latency is still measured from each intended start.
cat >"$OUT/million-gateway.toml" <<TOML
[protocol]
handshake_timeout_ms = ${HANDSHAKE_TIMEOUT_MS:-60000}
TOML
"$BIN/gateway" --config "$OUT/million-gateway.toml" --listen 127.0.0.1:$PORT --control 127.0.0.1:$CTL --shards "$SHARDS" \
  >"$OUT/million-gateway.log" 2>&1 &
GW=$!
for _ in $(seq 100); do curl -sf 127.0.0.1:$CTL/healthz >/dev/null && break; sleep 0.1; done
curl -sf 127.0.0.1:$CTL/healthz >/dev/null || { echo "gateway did not come up" >&2; cat "$OUT/million-gateway.log" >&2; exit 1; }
sleep 2
echo "gateway pid $GW, RSS $(awk '/VmRSS/ {print $2}' /proc/$GW/status) kB idle at $SHARDS shards" | tee -a "$OUT/million-host.log"

# The harness's own schedule-lag bound is widened from 10 ms to 200 ms (as
# in "The push API answers before the fan-out"): with SHARDS >> CPUs the
# harness's threads wait for a core. Latencies are still measured from each
# event's intended time, and the issued-rate rule (>= 95 %) still holds.
# A delivery phase ends after QUIET_SECS with no delivery (default 30, not
# the harness's 5): at 1M the ten broadcasts' 2.8 GB exceed the kernel's
# tcp_mem on a stock host, and under TCP memory pressure a stalled socket
# waits for a retransmission timer, seconds, before its data moves on.
# Such deliveries are late, not lost; the table counts them as late.
COMMON=(--target 127.0.0.1:$PORT --control 127.0.0.1:$CTL --heartbeat-ms "$HB_MS" --max-lag-us "${MAX_LAG_US:-200000}"
  --quiet-secs "${QUIET_SECS:-30}")
CONNECT_TIMEOUT=$((N / RATE + 120))

# 1. Connect and idle hold.
step connect && bench connect connect "${COMMON[@]}" -n "$N" --rate "$RATE" --settle-secs 12 \
  --hold-secs "$HOLD" --gateway-pid "$GW" --timeout-secs "$CONNECT_TIMEOUT"
# Let the harness's sockets close on the gateway before the next connect.
wait_empty() {
  for _ in $(seq 600); do
    c=$(curl -s 127.0.0.1:$CTL/v1/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["totals"]["connections"])' 2>/dev/null || echo 1)
    [ "$c" = 0 ] && return 0; sleep 0.2
  done
  echo "bench-million: gateway still holds $c connections after 120 s" >&2; exit 1
}
step connect && wait_empty

# 2. One broadcast to N.
step fanout1 && bench fanout1 fanout "${COMMON[@]}" -n "$N" --connect-rate "$RATE" --timeout-secs "$CONNECT_TIMEOUT" \
  -m 1 --msg-rate 0 --all --payload 256
step fanout1 && wait_empty

# 3. Ten back-to-back broadcasts to N, in one /v1/push/batch request.
step fanout10 && bench fanout10 fanout "${COMMON[@]}" -n "$N" --connect-rate "$RATE" --timeout-secs "$CONNECT_TIMEOUT" \
  -m 10 --msg-rate 0 --batch 10 --all --payload 256

python3 scripts/bench-million-report.py "$OUT" "$N" "$SHARDS" "$RATE" "$HB_MS" "$HOLD" > "$OUT/million.md"
cat "$OUT/million.md"
if [ "${WRITE_DOC:-0}" = 1 ]; then
  python3 - "$OUT/million.md" docs/BENCHMARKS.md <<'PY'
import sys
table = open(sys.argv[1]).read()
doc = open(sys.argv[2]).read()
b, e = "<!-- bench-million: begin -->", "<!-- bench-million: end -->"
if b in doc and e in doc:
    head, rest = doc.split(b, 1)
    _, tail = rest.split(e, 1)
    open(sys.argv[2], "w").write(head + b + "\n" + table + e + tail)
    print("bench-million: docs/BENCHMARKS.md updated")
else:
    print("bench-million: no bench-million markers in docs/BENCHMARKS.md; table left in", sys.argv[1])
PY
fi
if [ -n "$FAILED" ]; then echo "bench-million: not VALID:$FAILED" >&2; exit 3; fi
