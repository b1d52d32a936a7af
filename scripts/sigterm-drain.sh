#!/usr/bin/env bash
# Times a SIGTERM drain: starts the release gateway, holds N authenticated
# connections with e2e-holder (they never close on their own), sends SIGTERM
# and prints how long the gateway took to exit, and its exit code.
# Usage: scripts/sigterm-drain.sh [N=5000]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5000}
bin=${CARGO_TARGET_DIR:-target}/release
dir=$(mktemp -d)
export GATEWAY_JWT_SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
cleanup() { kill "${gw:-}" "${holder:-}" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
"$bin/gateway" --listen 127.0.0.1:0 --control 127.0.0.1:0 --shards 2 --ready-file "$dir/ready" >"$dir/log" 2>&1 &
gw=$!
for _ in $(seq 100); do [ -s "$dir/ready" ] && break; sleep 0.1; done
client=$(sed -n 's/^client=//p' "$dir/ready")
mkfifo "$dir/hold"
"$bin/e2e-holder" --target "$client" --count "$n" --hold-secs 120 <"$dir/hold" >"$dir/holder.out" &
holder=$!
exec 3>"$dir/hold"
for _ in $(seq 600); do grep -q '^ready\|^failed' "$dir/holder.out" 2>/dev/null && break; sleep 0.1; done
head -1 "$dir/holder.out"
start=$(date +%s%N)
kill -TERM "$gw"
rc=0; wait "$gw" || rc=$?
end=$(date +%s%N)
echo "sigterm drain of $n connections: $(( (end - start) / 1000000 )) ms, exit code $rc"
exec 3>&-
