#!/usr/bin/env bash
# Durable unicast ceiling (issue 17): gateway-bench unicast with and
# without --ack at several rates, alternating, a fresh gateway per run.
#
#   BIN_DIR=target/release scripts/durable-ceiling.sh "5000 10000 20000" [ROUNDS] [SECS]
#
# Each run: a fresh `gateway --listen 127.0.0.1:17700 --control
# 127.0.0.1:17701 --shards 2 --data-dir <fresh dir under $OUT>` (fsync
# durability, the default), then `gateway-bench unicast -n $USERS
# --connect-rate 3000 --rate R --pushes R*SECS --publishers 1 --payload 256
# [--ack]`. Odd rounds run --ack first at each rate, even rounds plain
# first. One TSV line per run on stdout; logs and JSON reports in $OUT.
set -u
BIN_DIR=${BIN_DIR:-target/release}
RATES=${1:-"5000 10000 20000 30000 50000"}
ROUNDS=${2:-3}
SECS=${3:-15}
USERS=${USERS:-10000}
OUT=${OUT:-$(mktemp -d /var/tmp/durable-ceiling.XXXXXX)}
mkdir -p "$OUT"
export GATEWAY_JWT_SECRET=${GATEWAY_JWT_SECRET:-$(openssl rand -hex 32)}
echo "# out=$OUT bin=$BIN_DIR users=$USERS secs=$SECS" >&2
printf 'round\trate\tmode\tvalid\tstored\tdeliveries\tlost\tredeliv\tdeliv_p50\tdeliv_p99\tdeliv_max\tcall_p50\tcall_p99\tachieved\tcommits\tcommit_ms_max\trss_start_kb\trss_connected_kb\trss_end_kb\tsteal\treasons\n'
rss() { awk '/VmRSS/ {print $2}' /proc/"$1"/status 2>/dev/null || echo 0; }
steal() { awk '/^cpu / {print $9}' /proc/stat; }
run() {
  local round=$1 rate=$2 mode=$3
  local tag="r${round}-${rate}-${mode}"
  local data="$OUT/data-$tag"
  rm -rf "$data"
  "$BIN_DIR/gateway" --listen 127.0.0.1:17700 --control 127.0.0.1:17701 --shards 2 \
    --data-dir "$data" >"$OUT/gw-$tag.log" 2>&1 &
  local gw=$!
  for _ in $(seq 50); do
    curl -fs http://127.0.0.1:17701/healthz >/dev/null 2>&1 && break
    sleep 0.1
  done
  local rss0; rss0=$(rss $gw)
  local flag=""; [ "$mode" = ack ] && flag="--ack"
  local s0; s0=$(steal)
  # RSS once connected: sampled in the background while the run goes.
  ( sleep $(( USERS / 3000 + 2 )); rss $gw >"$OUT/rss-connected-$tag" ) &
  local sampler=$!
  "$BIN_DIR/gateway-bench" unicast $flag --target 127.0.0.1:17700 --control 127.0.0.1:17701 \
    -n "$USERS" --connect-rate 3000 --rate "$rate" --pushes $(( rate * SECS )) \
    --publishers 1 --payload 256 --json "$OUT/$tag.json" >"$OUT/bench-$tag.log" 2>&1
  local s1; s1=$(steal)
  wait $sampler 2>/dev/null
  local rss1; rss1=$(rss $gw)
  kill $gw; wait $gw 2>/dev/null
  python3 - "$OUT/$tag.json" "$round" "$rate" "$mode" "$rss0" "$(cat "$OUT/rss-connected-$tag" 2>/dev/null)" "$rss1" $(( s1 - s0 )) <<'PY'
import json, sys
p, rnd, rate, mode, r0, rc, r1, st = sys.argv[1:]
try:
    run = json.load(open(p))["runs"][0]
except Exception as e:
    print(f"{rnd}\t{rate}\t{mode}\tFAILED\t\t\t\t\t\t\t\t\t\t\t\t\t{r0}\t{rc}\t{r1}\t{st}\t{e}")
    sys.exit()
m = run["metrics"]; h = run["histograms"]
g = lambda k: "" if m.get(k) is None else f"{m[k]:.0f}"
d = h.get("delivery", {}); c = h.get("publish_call", {})
ms = lambda v: "" if v in ("", None) else f"{v/1000:.2f}"
print("\t".join(str(x) for x in [rnd, rate, mode, "VALID" if run["valid"] else "INVALID",
    g("pushes_stored") if mode == "ack" else g("pushes_sent"), g("deliveries"), g("lost"), g("wire_redeliveries"),
    ms(d.get("p50_us")), ms(d.get("p99_us")), ms(d.get("max_us")), ms(c.get("p50_us")), ms(c.get("p99_us")),
    g("push_rate_achieved_per_s"), g("gateway_store_commits"), g("gateway_store_commit_ms_max"), r0, rc, r1, st,
    "; ".join(run.get("invalid_reasons", []))[:300]]))
PY
}
for round in $(seq "$ROUNDS"); do
  for rate in $RATES; do
    if [ $((round % 2)) -eq 1 ]; then order="ack plain"; else order="plain ack"; fi
    for mode in $order; do
      run "$round" "$rate" "$mode"
    done
  done
done
