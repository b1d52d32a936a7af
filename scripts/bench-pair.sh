#!/usr/bin/env bash
# Paired benchmark runs of two gateway builds on the same box
# (docs/BENCHMARKS.md asks for "paired runs against the commit before").
#
#   scripts/bench-pair.sh OLD_DIR NEW_DIR [ROUNDS]     # ROUNDS: default 5
#
# OLD_DIR and NEW_DIR each hold release binaries `gateway`, `gateway-bench`
# and `e2e-holder` (e.g. target/release of two worktrees). In each round
# every selected benchmark runs once per build, old and new one after the
# other; odd rounds run old first, even rounds new first. Each run gets a
# fresh gateway on 2 shards, and no two runs overlap:
#   idle      scripts/idle-memory.sh N_IDLE HOLD (with BIN_DIR): user-space
#             RSS delta per connection right after connecting, and the
#             gateway's CPU over the idle hold (% of one core)
#   bcast     gateway-bench fanout -n N_FANOUT --connect-rate 3000 -m 1
#             --msg-rate 0 --all: first -> last recipient of one broadcast
#             (the harness's completion_p99_us)
#   bcast100  the same with -m 100 --batch 100: deliveries/s
#   unicast   gateway-bench unicast -n N_UNICAST --connect-rate 3000
#             --rate 20000 --pushes PUSHES --publishers 1: delivery p99
# A run counts only when it is VALID: the harness said VALID (exit 0, JSON
# "valid": true), every expected delivery arrived (none lost), none arrived
# twice, and for idle every connection was held. Any other run is shown in
# the table as INVALID or FAILED, with its reason below the table, and left
# out of the medians. new/old is the ratio of the medians (per round too).
#
# Output: the machine, the binaries and the commands, then one markdown
# table per figure and a summary table (stdout, ready to paste into
# docs/BENCHMARKS.md; progress goes to stderr). Logs, the harness's JSON
# reports and results.tsv stay in OUT (default: a new /tmp/bench-pair.*).
# Exit code: 0 when every run was VALID, 3 when any was not (as the
# harness), 2 on a usage error.
#
# Environment (defaults are the sizes of docs/BENCHMARKS.md):
#   BENCHES=idle,bcast,bcast100,unicast   which benchmarks, in this order
#   N_IDLE=38000 HOLD=60 N_FANOUT=38000 N_UNICAST=10000 PUSHES=200000
#   HARNESS=new   gateway-bench and e2e-holder of NEW_DIR drive both builds,
#                 so only the gateway differs; HARNESS=own: each dir's own
#   COOLDOWN=3    seconds of pause after each run
#   RUN_TIMEOUT=900  seconds one run may take (idle: HOLD + this)
#   IDLE_PORT=17600 IDLE_CTL=17601   fixed ports of the idle runs
#   PORT=17800 CTL=17801   fixed ports, used only for a gateway without
#                          --ready-file (otherwise port 0 and the ready file)
#   OUT=dir       where logs and reports go
set -euo pipefail

usage() { echo "usage: scripts/bench-pair.sh OLD_DIR NEW_DIR [ROUNDS]   (environment: see the header of $0)" >&2; exit 2; }
[ $# -ge 2 ] && [ $# -le 3 ] || usage
ROUNDS=${3:-${ROUNDS:-5}}
BENCHES=${BENCHES:-idle,bcast,bcast100,unicast}
N_IDLE=${N_IDLE:-38000}
HOLD=${HOLD:-60}
N_FANOUT=${N_FANOUT:-38000}
N_UNICAST=${N_UNICAST:-10000}
PUSHES=${PUSHES:-200000}
CONNECT_RATE=3000
UNICAST_RATE=20000
HARNESS=${HARNESS:-new}
COOLDOWN=${COOLDOWN:-3}
RUN_TIMEOUT=${RUN_TIMEOUT:-900}
IDLE_PORT=${IDLE_PORT:-17600}
IDLE_CTL=${IDLE_CTL:-17601}
PORT=${PORT:-17800}
CTL=${CTL:-17801}

die() { echo "bench-pair: $*" >&2; exit 2; }
is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
for v in ROUNDS N_IDLE HOLD N_FANOUT N_UNICAST PUSHES RUN_TIMEOUT; do
  is_count "${!v}" || die "$v must be a positive integer (got '${!v}')"
done
[[ $COOLDOWN =~ ^[0-9]+$ ]] || die "COOLDOWN must be a whole number of seconds"
case $HARNESS in new|own) ;; *) die "HARNESS must be new or own" ;; esac
IFS=, read -r -a BENCH_LIST <<<"$BENCHES"
for b in "${BENCH_LIST[@]}"; do
  case $b in idle|bcast|bcast100|unicast) ;; *) die "unknown benchmark '$b' in BENCHES (idle,bcast,bcast100,unicast)" ;; esac
done
[ ${#BENCH_LIST[@]} -gt 0 ] || die "BENCHES is empty"

abs_dir() { (cd "$1" 2>/dev/null && pwd) || die "no directory $1"; }
OLD_DIR=$(abs_dir "$1")
NEW_DIR=$(abs_dir "$2")
for d in "$OLD_DIR" "$NEW_DIR"; do
  for b in gateway gateway-bench e2e-holder; do
    [ -x "$d/$b" ] || die "$d/$b is missing or not executable"
  done
done
for tool in python3 curl ss timeout; do
  command -v "$tool" >/dev/null || die "needs $tool"
done
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$(mktemp -d /tmp/bench-pair.XXXXXX)}
mkdir -p "$OUT"
OUT=$(abs_dir "$OUT")
RESULTS=$OUT/results.tsv
: >"$RESULTS"

# bin-old and bin-new: the side's gateway beside the harness binaries that
# drive it (HARNESS), so every command below takes all three from one dir.
for side in old new; do
  dir=$OLD_DIR; [ $side = new ] && dir=$NEW_DIR
  harness=$NEW_DIR; [ "$HARNESS" = own ] && harness=$dir
  rm -rf "$OUT/bin-$side"; mkdir -p "$OUT/bin-$side"
  ln -s "$dir/gateway" "$OUT/bin-$side/gateway"
  ln -s "$harness/gateway-bench" "$OUT/bin-$side/gateway-bench"
  ln -s "$harness/e2e-holder" "$OUT/bin-$side/e2e-holder"
done

GATEWAY_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export GATEWAY_JWT_SECRET

# --- cleanup: the gateway we started and the bounded run in progress -----
GW=
RUN=
stop_gateway() {
  [ -n "$GW" ] || return 0
  kill -TERM "$GW" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$GW" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$GW" 2>/dev/null || true
  wait "$GW" 2>/dev/null || true
  GW=
}
cleanup() {
  # `timeout` passes the signal on to its whole process group (the harness
  # and its workers, or idle-memory.sh, whose own trap stops its gateway
  # and holders).
  if [ -n "$RUN" ]; then
    kill -TERM "$RUN" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$RUN" 2>/dev/null || break; sleep 0.1; done
    wait "$RUN" 2>/dev/null || true
  fi
  stop_gateway
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs "$@" under `timeout SECS`, in the background so that a signal to this
# script reaches the trap at once; returns its exit code (124: timed out).
bounded() {
  local secs=$1; shift
  timeout -k 10 "$secs" "$@" &
  RUN=$!
  local rc=0
  wait "$RUN" || rc=$?
  RUN=
  return $rc
}

steal_ticks() { awk '/^cpu / {print $9; exit}' /proc/stat; }

# Starts the side's gateway (2 shards) and sets GW, TARGET and CONTROL.
# Port 0 and --ready-file when the build has it, else the fixed PORT/CTL
# after checking that nothing listens on them.
start_gateway() {
  local bin=$1 log=$2 ready=$OUT/ready
  rm -f "$ready"
  if "$bin/gateway" --help 2>/dev/null | grep -q -- '--ready-file'; then
    "$bin/gateway" --listen 127.0.0.1:0 --control 127.0.0.1:0 --shards 2 --ready-file "$ready" >"$log" 2>&1 &
    GW=$!
    for _ in $(seq 100); do [ -s "$ready" ] && break; kill -0 "$GW" 2>/dev/null || break; sleep 0.1; done
    [ -s "$ready" ] || return 1
    TARGET=$(sed -n 's/^client=//p' "$ready")
    CONTROL=$(sed -n 's/^control=//p' "$ready")
  else
    if ss -Hltn "( sport = :$PORT or sport = :$CTL )" | grep -q .; then
      echo "port $PORT or $CTL is in use" >>"$log"; return 1
    fi
    "$bin/gateway" --listen 127.0.0.1:$PORT --control 127.0.0.1:$CTL --shards 2 >"$log" 2>&1 &
    GW=$!
    TARGET=127.0.0.1:$PORT
    CONTROL=127.0.0.1:$CTL
    for _ in $(seq 100); do curl -sf "$CONTROL/healthz" >/dev/null && break; kill -0 "$GW" 2>/dev/null || break; sleep 0.1; done
    curl -sf "$CONTROL/healthz" >/dev/null || return 1
  fi
  [ -n "$TARGET" ] && [ -n "$CONTROL" ]
}

# The harness arguments of each benchmark (after --target/--control/--jwt-secret).
bench_args() {
  case $1 in
    bcast) echo "-n $N_FANOUT --connect-rate $CONNECT_RATE -m 1 --msg-rate 0 --all" ;;
    bcast100) echo "-n $N_FANOUT --connect-rate $CONNECT_RATE -m 100 --msg-rate 0 --batch 100 --all" ;;
    unicast) echo "-n $N_UNICAST --connect-rate $CONNECT_RATE --rate $UNICAST_RATE --pushes $PUSHES --publishers 1" ;;
  esac
}
bench_scenario() { case $1 in unicast) echo unicast ;; *) echo fanout ;; esac; }
bench_expected() {
  case $1 in bcast) echo "$N_FANOUT" ;; bcast100) echo $((100 * N_FANOUT)) ;; unicast) echo "$PUSHES" ;; esac
}

# record ROUND FIGURE SIDE STATUS VALUE STEAL REASON (one results.tsv line)
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" | tr -d '\r' >>"$RESULTS"; }

# One idle run: idle-memory.sh with the side's binaries; two figures.
run_idle() {
  local r=$1 side=$2 base=$OUT/r$1-idle-$2 rc=0 s0 s1
  s0=$(steal_ticks)
  BIN_DIR=$OUT/bin-$side PORT=$IDLE_PORT CTL=$IDLE_CTL \
    bounded $((HOLD + RUN_TIMEOUT)) "$REPO/scripts/idle-memory.sh" "$N_IDLE" "$HOLD" >"$base.log" 2>&1 || rc=$?
  s1=$(steal_ticks)
  cp /tmp/idle-memory-gateway.log "$base.gateway.log" 2>/dev/null || true
  # Prints STATUS|RSS|CPU|REASON (a non-blank separator keeps empty fields).
  local verdict
  verdict=$(python3 - "$base.log" "$rc" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
rc = int(sys.argv[2])
clean = lambda t: " ".join(t.replace("|", "/").split())
held = re.search(r"^connections held\s+(\d+) \(asked (\d+)\)", text, re.M)
rss = re.search(r"^user-space per conn\s+(-?\d+) B right after connecting", text, re.M)
cpu = re.search(r"^idle CPU over \d+ s\s+([\d.]+) %", text, re.M)
if rc != 0:
    last = [l for l in text.splitlines() if l.strip()][-1:] or ["no output"]
    why = "timed out" if rc in (124, 137) else f"exit code {rc}"
    print(f"FAILED|||{why}: {clean(last[0])[:200]} (see {sys.argv[1]})")
elif not (held and rss and cpu):
    print("FAILED|||no figures in the output of idle-memory.sh")
elif int(held[1]) < int(held[2]):
    print(f"INVALID|{rss[1]}|{cpu[1]}|held {held[1]} of {held[2]} connections")
else:
    print(f"ok|{rss[1]}|{cpu[1]}|")
PY
)
  local status rss cpu reason
  IFS='|' read -r status rss cpu reason <<<"$verdict"
  record "$r" idle_rss "$side" "$status" "$rss" $((s1 - s0)) "$reason"
  record "$r" idle_cpu "$side" "$status" "$cpu" $((s1 - s0)) "$reason"
  echo "  idle $side: $status${rss:+ $rss B/conn,}${cpu:+ $cpu % CPU}${reason:+ ($reason)}" >&2
}

# One harness run against a fresh gateway of the side.
run_harness() {
  local r=$1 bench=$2 side=$3 bin=$OUT/bin-$3 base=$OUT/r$1-$2-$3 rc=0 s0 s1
  rm -f "$base.json"
  s0=$(steal_ticks)
  if start_gateway "$bin" "$base.gateway.log"; then
    # shellcheck disable=SC2046  # bench_args is a list of words
    bounded "$RUN_TIMEOUT" "$bin/gateway-bench" "$(bench_scenario "$bench")" \
      --target "$TARGET" --control "$CONTROL" --jwt-secret "$GATEWAY_JWT_SECRET" \
      $(bench_args "$bench") --json "$base.json" >"$base.log" 2>&1 || rc=$?
    kill -0 "$GW" 2>/dev/null || rc=gateway-died
    stop_gateway
  else
    rc=gateway-did-not-start
    stop_gateway
  fi
  s1=$(steal_ticks)
  local verdict
  verdict=$(python3 - "$bench" "$base.json" "$rc" "$(bench_expected "$bench")" <<'PY'
import json, sys
bench, path, rc, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
clean = lambda t: " ".join(t.replace("|", "/").split())
if rc in ("gateway-died", "gateway-did-not-start"):
    print(f"FAILED||{rc.replace('-', ' ')} (see {path[:-5]}.gateway.log)"); sys.exit()
try:
    run = json.load(open(path))["runs"][0]
except Exception:
    why = "timed out" if rc in ("124", "137") else f"exit code {rc}"
    print(f"FAILED||no report ({why}; see {path[:-5]}.log)"); sys.exit()
m = run.get("metrics", {})
why = list(run.get("invalid_reasons", []))
if not run.get("valid", False) and not why:
    why.append("harness said INVALID")
if rc not in ("0", "3"):
    why.append(f"harness exit code {rc}")
elif rc == "3" and run.get("valid", False):
    why.append("harness exited 3 (INVALID)")
lost = m.get("lost", 0)
got = m.get("deliveries", 0)
if lost > 0 and not any("lost" in w for w in why):
    why.append(f"{lost:.0f} deliveries lost")
if got < expected:
    why.append(f"{got:.0f} of {expected} expected deliveries arrived")
if m.get("duplicates", 0) > 0:
    why.append(f"{m['duplicates']:.0f} duplicate deliveries")
if bench == "bcast":
    v = m.get("completion_p99_us")
    v = None if v is None else v / 1000          # ms
elif bench == "bcast100":
    v = m.get("deliveries_per_s")
    v = None if v is None else v / 1e6           # M/s
else:
    v = run.get("histograms", {}).get("delivery", {}).get("p99_us")
    v = None if v is None else v / 1000          # ms
if v is None:
    why.append("figure missing from the report")
value = "" if v is None else f"{v:.4f}"
print(("INVALID" if why else "ok") + f"|{value}|" + clean("; ".join(why))[:400])
PY
)
  local status value reason
  IFS='|' read -r status value reason <<<"$verdict"
  record "$r" "$bench" "$side" "$status" "$value" $((s1 - s0)) "$reason"
  echo "  $bench $side: $status${value:+ $value}${reason:+ ($reason)}" >&2
}

# --- header ----------------------------------------------------------------
REPORT=$OUT/report.md
{
  echo "## Paired runs: $(basename "$OLD_DIR") (old) vs $(basename "$NEW_DIR") (new), $ROUNDS round(s), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: nproc $(nproc), uname -r $(uname -r), $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/^MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo), load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- old: \`$OLD_DIR\` ($("$OLD_DIR/gateway" --version 2>/dev/null || echo 'version unknown'))"
  echo "- new: \`$NEW_DIR\` ($("$NEW_DIR/gateway" --version 2>/dev/null || echo 'version unknown'))"
  if [ "$HARNESS" = new ]; then
    echo "- load generators (gateway-bench, e2e-holder): new's, for both builds (HARNESS=new)"
  else
    echo "- load generators (gateway-bench, e2e-holder): each build's own (HARNESS=own)"
  fi
  echo "- order: odd rounds old then new, even rounds new then old; each run a fresh gateway on 2 shards, no runs overlap, ${COOLDOWN} s pause after each"
  echo "- commands (BIN = the build's directory):"
  echo
  echo '```sh'
  echo 'export GATEWAY_JWT_SECRET=$(openssl rand -hex 32)'
  gw_said=
  for b in "${BENCH_LIST[@]}"; do
    if [ "$b" = idle ]; then
      echo "BIN_DIR=\$BIN PORT=$IDLE_PORT CTL=$IDLE_CTL scripts/idle-memory.sh $N_IDLE $HOLD"
      continue
    fi
    if [ -z "$gw_said" ]; then
      echo "# each run below against its own fresh gateway; CLIENT and CONTROL are the client= and control= lines of ready"
      echo "\$BIN/gateway --listen 127.0.0.1:0 --control 127.0.0.1:0 --shards 2 --ready-file ready &"
      gw_said=1
    fi
    echo "\$BIN/gateway-bench $(bench_scenario "$b") --target \$CLIENT --control \$CONTROL --jwt-secret \"\$GATEWAY_JWT_SECRET\" $(bench_args "$b")"
  done
  echo '```'
  for side in old new; do
    "$OUT/bin-$side/gateway" --help 2>/dev/null | grep -q -- '--ready-file' ||
      echo "- $side's gateway has no --ready-file: it listens on 127.0.0.1:$PORT, control 127.0.0.1:$CTL (checked free before each run)"
  done
  echo
} | tee "$REPORT"
echo "bench-pair: logs and JSON reports in $OUT" >&2

# --- the rounds --------------------------------------------------------------
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then order="old new"; else order="new old"; fi
  echo "[round $r/$ROUNDS: $order; load average $(cut -d' ' -f1-3 /proc/loadavg)]" >&2
  for b in "${BENCH_LIST[@]}"; do
    for side in $order; do
      if [ "$b" = idle ]; then run_idle "$r" "$side"; else run_harness "$r" "$b" "$side"; fi
      sleep "$COOLDOWN"
    done
  done
done

# --- the tables --------------------------------------------------------------
python3 - "$RESULTS" "$BENCHES" "$N_IDLE" "$HOLD" "$N_FANOUT" "$N_UNICAST" "$PUSHES" <<'PY' | tee -a "$REPORT"
import statistics, sys
path, benches, n_idle, hold, n_fan, n_uni, pushes = sys.argv[1:]
f = lambda n: f"{int(n):,}"
# figure: (title, unit, format, better)
FIGURES = {
    "idle_rss": (f"idle, {f(n_idle)} connections: user-space RSS delta / connection, right after connecting", "B", "{:.0f}", "lower"),
    "idle_cpu": (f"idle, {f(n_idle)} connections: gateway CPU over the {hold} s hold", "% of one core", "{:.2f}", "lower"),
    "bcast": (f"one broadcast to {f(n_fan)}: first → last recipient (completion p99)", "ms", "{:.1f}", "lower"),
    "bcast100": (f"100 back-to-back broadcasts to {f(n_fan)}: deliveries/s", "M/s", "{:.2f}", "higher"),
    "unicast": (f"unicast, {f(n_uni)} users, {f(pushes)} pushes at 20,000/s: delivery p99", "ms", "{:.2f}", "lower"),
}
order = []
for b in benches.split(","):
    order += ["idle_rss", "idle_cpu"] if b == "idle" else [b]
runs = {}  # (figure, round, side) -> (status, value, steal, reason)
for line in open(path):
    r, fig, side, status, value, steal, reason = line.rstrip("\n").split("\t")
    runs[(fig, int(r), side)] = (status, float(value) if value else None, steal, reason)
rounds = sorted({k[1] for k in runs})

def cell(run, fmt):
    if run is None:
        return "–"
    status, value, _, _ = run
    if status == "ok":
        return fmt.format(value)
    return status + ("" if value is None else f" ({fmt.format(value)})")

summary = []
for fig in order:
    title, unit, fmt, better = FIGURES[fig]
    print(f"### {title}, {unit} ({better} is better)\n")
    print("| round | order | old | new | new / old | steal ticks old, new |")
    print("|---|---|---|---|---|---|")
    notes, ok = [], {"old": [], "new": []}
    for r in rounds:
        o, n = runs.get((fig, r, "old")), runs.get((fig, r, "new"))
        ratio = "–"
        if o and n and o[0] == n[0] == "ok" and o[1]:
            ratio = f"{n[1] / o[1]:.2f}"
        for side, run in (("old", o), ("new", n)):
            if run and run[0] == "ok":
                ok[side].append(run[1])
            elif run:
                notes.append(f"- round {r}, {side}: {run[0]}: {run[3] or 'no reason given'}")
        steal = f"{o[2] if o else '–'}, {n[2] if n else '–'}"
        print(f"| {r} | {'old, new' if r % 2 else 'new, old'} | {cell(o, fmt)} | {cell(n, fmt)} | {ratio} | {steal} |")
    med = {s: statistics.median(v) if v else None for s, v in ok.items()}
    mr = f"{med['new'] / med['old']:.2f}" if med["old"] and med["new"] is not None else "–"
    ms = {s: (fmt.format(med[s]) if med[s] is not None else "–") + f" ({len(ok[s])} of {len(rounds)} VALID)" for s in ok}
    print(f"| median | | {ms['old']} | {ms['new']} | **{mr}** | |")
    if notes:
        print("\nLeft out of the medians:\n")
        print("\n".join(notes))
    print()
    summary.append((title, unit, ms["old"], ms["new"], mr, better))

print("### Summary (medians of the VALID runs)\n")
print("| figure | unit | old | new | new / old | better |")
print("|---|---|---|---|---|---|")
for title, unit, o, n, mr, better in summary:
    print(f"| {title} | {unit} | {o} | {n} | **{mr}** | {better} |")
PY
echo "bench-pair: report in $REPORT, logs in $OUT" >&2
# Like the harness: exit 3 when any run was not VALID.
if cut -f4 "$RESULTS" | grep -qv '^ok$'; then exit 3; fi
