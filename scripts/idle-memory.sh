#!/usr/bin/env bash
# Memory and idle CPU of the gateway holding N idle authenticated
# connections (docs/BENCHMARKS.md, "Idle connections").
#
#   scripts/idle-memory.sh [N] [HOLD_SECS]
#
# GATEWAY_CONFIG=file.toml runs the gateway with that config instead of
# the embedded defaults (e.g. `[shard] idle_batch_ms = 0` to compare).
# TRANSPORT=ws holds the connections over WebSocket instead of TCP: the
# gateway gets `[listen] websocket = 127.0.0.1:$WS_PORT` (17602) in a config
# of its own (GATEWAY_CONFIG's content first, when given), and the holders
# upgrade before their Hello.
# BIN_DIR=dir takes `gateway` and `e2e-holder` from dir instead of building
# ./target/release (no `cargo build` then): scripts/bench-pair.sh uses it to
# compare two builds.
#
# Starts the release gateway on 2 shards (SHARDS=n for another count), opens N connections from holder
# processes (8000 each, over 127.0.0.2.. so no process exceeds its fd limit),
# heartbeating every 30 s with each holder's Pings spread evenly over the
# 30 s (as a population of clients that connected at different times would
# send them), and reports:
#   - user-space RSS delta / N (VmRSS of the gateway, before vs after),
#   - kernel memory delta / N (/proc/meminfo Slab, before vs after; includes
#     both ends of each loopback pair, so the gateway's share is about half),
#   - gateway CPU while idle over HOLD_SECS: utime+stime from /proc/PID/stat.
#     The kernel scales that pair to the scheduler's exact run time of every
#     thread, exited ones included (cputime_adjust), so it is exact to its
#     10 ms unit. (A sum of /proc/PID/task/*/schedstat is not: it loses the
#     time of threads that exit during the hold, such as io_uring's io-wq
#     workers.) The window starts SETTLE (10) s after the connect storm,
#     once the shards batch their wake-ups (shard.idle_batch_after_ms);
#   - how often the gateway's threads went to sleep (wake-ups per second).
set -euo pipefail
N=${1:-39000}
HOLD=${2:-60}
BIN=
if [ -n "${BIN_DIR:-}" ]; then
  BIN=$(cd "$BIN_DIR" && pwd)   # absolute: the script changes directory below
  [ -x "$BIN/gateway" ] && [ -x "$BIN/e2e-holder" ] || { echo "$BIN lacks gateway or e2e-holder" >&2; exit 1; }
fi
cd "$(dirname "$0")/.."
if [ -z "$BIN" ]; then
  cargo build --release --bins -q || exit 1
  BIN=./target/release
fi
PORT=${PORT:-17600}
CTL=${CTL:-17601}
export GATEWAY_JWT_SECRET=bench-secret-at-least-32-bytes-long-0123
# SO_REUSEPORT would let a second gateway share the port and split the
# connections between two processes: refuse instead.
if ss -Hltn "( sport = :$PORT or sport = :$CTL )" | grep -q .; then
  echo "port $PORT or $CTL is in use (another run?)" >&2; exit 1
fi
TARGET_PORT=$PORT
CONFIG=${GATEWAY_CONFIG:-}
HOLDER_FLAGS=()
if [ "${TRANSPORT:-tcp}" = ws ]; then
  WS_PORT=${WS_PORT:-17602}
  CONFIG=/tmp/idle-memory-ws.toml
  { [ -n "${GATEWAY_CONFIG:-}" ] && cat "$GATEWAY_CONFIG"; printf '[listen]\nwebsocket = "127.0.0.1:%s"\n' "$WS_PORT"; } > "$CONFIG"
  TARGET_PORT=$WS_PORT
  HOLDER_FLAGS=(--websocket)
elif [ "${TRANSPORT:-tcp}" != tcp ]; then
  echo "TRANSPORT is tcp or ws, not $TRANSPORT" >&2; exit 1
fi
"$BIN"/gateway ${CONFIG:+--config "$CONFIG"} --listen 127.0.0.1:$PORT --control 127.0.0.1:$CTL --shards "${SHARDS:-2}" 2>/tmp/idle-memory-gateway.log &
GW=$!
# The holders run inside `sleep | e2e-holder` subshells: killing a subshell
# leaves its holder running (and pinging a closed gateway into the next
# run's measurement), so they are found by their target port.
stop_holders() {
  pkill -f "e2e-holder --target 127.0.0.1:$TARGET_PORT " 2>/dev/null || true
  for _ in $(seq 50); do pgrep -f "e2e-holder --target 127.0.0.1:$TARGET_PORT " >/dev/null || return 0; sleep 0.1; done
}
trap 'kill ${HOLDERS[*]:-} 2>/dev/null || true; stop_holders; kill $GW 2>/dev/null || true; wait $GW 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf 127.0.0.1:$CTL/healthz >/dev/null && break; sleep 0.1; done
sleep 1
rss() { awk '/VmRSS/ {print $2}' /proc/$GW/status; }
slab() { awk '/^Slab:/ {print $2}' /proc/meminfo; }
RSS0=$(rss); SLAB0=$(slab)
HOLDERS=()
i=0; left=$N
rm -rf /tmp/idle-memory; mkdir -p /tmp/idle-memory
while [ "$left" -gt 0 ]; do
  n=$(( left < 8000 ? left : 8000 ))
  (sleep $((HOLD + 120)) | "$BIN"/e2e-holder --target 127.0.0.1:$TARGET_PORT --source 127.0.0.$((2 + i)) \
      --count $n --user-prefix "idle$i" --heartbeat-ms 30000 --hold-secs $((HOLD + 60)) ${HOLDER_FLAGS[@]+"${HOLDER_FLAGS[@]}"} > /tmp/idle-memory/holder$i.out) &
  HOLDERS+=($!)
  left=$((left - n)); i=$((i + 1))
done
for j in $(seq 0 $((i - 1))); do
  f=/tmp/idle-memory/holder$j.out
  for _ in $(seq 600); do grep -qs . "$f" && break; sleep 0.2; done
  grep -q '^ready' "$f" || { echo "holder failed: $(cat "$f")"; exit 1; }
done
for _ in $(seq 100); do
  c=$(curl -s 127.0.0.1:$CTL/v1/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["totals"]["connections"])')
  [ "$c" -ge "$N" ] && break; sleep 0.2
done
sleep 2
RSS1=$(rss); SLAB1=$(slab)
# Measure CPU in the steady idle state: the shards batch their wake-ups
# once they have seen only client traffic for shard.idle_batch_after_ms
# (10 s by default; the connect storm counts as traffic to wait on).
sleep "${SETTLE:-10}"
# The figure includes the loopback peer's receive softirq that runs inside
# the gateway's sends (and leaves out the gateway's own receive work, which
# runs inside the holders' sends).
# Sleeps of the gateway's threads (shards, io-wq workers alive at the time).
wakes() { cat /proc/$GW/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s}'; }
T0=$(awk '{print $14 + $15}' /proc/$GW/stat); W0=$(wakes)
sleep "$HOLD"
T1=$(awk '{print $14 + $15}' /proc/$GW/stat); W1=$(wakes)
RSS2=$(rss); SLAB2=$(slab)
EXH=$(curl -s 127.0.0.1:$CTL/v1/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["totals"]["buffer_pool_exhausted"])')
TICKS=$(getconf CLK_TCK)
python3 - "$N" "$RSS0" "$RSS1" "$SLAB0" "$SLAB1" "$T0" "$T1" "$TICKS" "$HOLD" "$c" "$RSS2" "$SLAB2" "$EXH" "$W0" "$W1" <<'PY'
import sys
n, rss0, rss1, slab0, slab1, t0, t1, ticks, hold, conns, rss2, slab2, exh, w0, w1 = map(float, sys.argv[1:])
print(f"connections held        {int(conns)} (asked {int(n)})")
print(f"gateway RSS             {rss0/1024:.1f} MiB -> {rss1/1024:.1f} MiB")
print(f"user-space per conn     {(rss1-rss0)*1024/n:.0f} B right after connecting, {(rss2-rss0)*1024/n:.0f} B after the hold")
print(f"kernel Slab per conn    {(slab1-slab0)*1024/n:.0f} B right after connecting, {(slab2-slab0)*1024/n:.0f} B after the hold (both ends of each loopback pair)")
print(f"receive pool ran dry    {int(exh)} times (connect storm)")
print(f"idle CPU over {int(hold)} s     {100*(t1-t0)/ticks/hold:.2f} % of one core (utime+stime)")
print(f"gateway wake-ups        {(w1-w0)/hold:.0f} per second (voluntary context switches)")
PY
