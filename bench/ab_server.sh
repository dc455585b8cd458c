#!/usr/bin/env bash
# ab_server.sh: durable deducts through tallyd, one binary against another
# (issue 5), with the CPU each process spent a deduct.
#
#   bench/ab_server.sh [--tallyd PATH]... [--tally-bench PATH] [--load CxDxK]
#                      [--rounds N] [--warm-s W] [--measure-s M]
#
# For each round, each --tallyd in turn (A/B, alternating): a fresh tallyd on
# a temporary data directory, listening on a free loopback port (both at
# nice -10 when allowed); W seconds of the workload unmeasured, so the
# history ring has wrapped and the pre-fault threads are done (a server in
# service); then M seconds measured:
#
#   tally-bench --server 127.0.0.1:P --token T --json --workload deduct
#     --wallets 100000 --orgs 16 --connections C --depth D --ops-per-frame K
#     --duration-s M --warmup-s 0
#
# then the tallyd is stopped (SIGTERM, by its PID) and its directory removed.
# One line per run:
#   <tallyd> round=R ops_per_s=.. p50_us=.. p99_us=.. tallyd_us_per_op=..
#       bench_us_per_op=.. idle_pct=.. verified=true|false
# tallyd_us_per_op: the process's user + system CPU (every thread: I/O,
# shards, sync, pre-fault) over the measured run (its set-up and the final
# verification included), divided by the run's operations;
# bench_us_per_op the same for tally-bench; idle_pct: the machine's idle and
# I/O-wait share over the run (/proc/stat).  Then each binary's medians.
# The same --tally-bench drives every side, so only the server differs.
# Defaults: build/ci/tallyd, build/ci/tally-bench, 16x1x8000, 3 rounds,
# W = 20, M = 6.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tallyds=()
bench=build/ci/tally-bench
load=16x1x8000
rounds=3
warm_s=20
measure_s=6
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tallyd) tallyds+=("$2"); shift 2 ;;
    --tally-bench) bench="$2"; shift 2 ;;
    --load) load="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --warm-s) warm_s="$2"; shift 2 ;;
    --measure-s) measure_s="$2"; shift 2 ;;
    *) echo "ab_server.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ ${#tallyds[@]} -gt 0 ]] || tallyds=(build/ci/tallyd)
IFS=x read -r connections depth per_frame <<<"$load"
nice_cmd=(nice -n -10)
"${nice_cmd[@]}" true 2>/dev/null || nice_cmd=()

work=$(mktemp -d "${TMPDIR:-/tmp}/ab-server-XXXXXX")
pid=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
idle_ticks() { awk '/^cpu / { print $5 + $6; exit }' /proc/stat; }
ticks_per_s=$(getconf CLK_TCK)
cpus=$(nproc)

bench_args() {  # bench_args PORT TOKEN SECONDS
  echo --server "127.0.0.1:$1" --token "$2" --quiet --json --workload deduct \
    --wallets 100000 --orgs 16 --connections "$connections" --depth "$depth" \
    --ops-per-frame "$per_frame" --duration-s "$3" --warmup-s 0
}

run_one() {  # run_one TALLYD ROUND
  local tallyd=$1 round=$2 data port token c0 c1 i0 i1 json
  data="$work/data"
  port=$((20000 + RANDOM % 20000))
  # A --tallyd may carry flags of its own: split on spaces on purpose.
  # shellcheck disable=SC2086
  "${nice_cmd[@]}" $tallyd --data "$data" --listen "127.0.0.1:$port" >"$work/tallyd.log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do
    grep -q "listening" "$work/tallyd.log" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/tallyd.log" >&2; exit 1; }
    sleep 0.05
  done
  token=$(grep -v '^#' "$data/tokens" | head -1 | cut -d' ' -f1)
  # shellcheck disable=SC2046
  "${nice_cmd[@]}" "$bench" $(bench_args "$port" "$token" "$warm_s") --no-verify >/dev/null
  c0=$(cpu_ticks "$pid")
  i0=$(idle_ticks)
  local TIMEFORMAT='%U %S'  # bash's time: the measured run's user and system CPU
  # shellcheck disable=SC2046
  { time "${nice_cmd[@]}" "$bench" $(bench_args "$port" "$token" "$measure_s") \
      >"$work/bench.json" 2>"$work/bench.err"; } 2>"$work/bench.time"
  json=$(cat "$work/bench.json")
  c1=$(cpu_ticks "$pid")
  i1=$(idle_ticks)
  kill "$pid"
  wait "$pid" || true
  pid=""
  rm -rf "$data"
  python3 - "$tallyd" "$round" "$json" "$c0" "$c1" "$i0" "$i1" "$(cat "$work/bench.time")" \
    "$ticks_per_s" "$cpus" "$measure_s" <<'PY'
import json, sys
tallyd, rnd, text = sys.argv[1], sys.argv[2], sys.argv[3]
c0, c1, i0, i1 = map(float, sys.argv[4:8])
bench_user, bench_sys = map(float, sys.argv[8].split()[-2:])
hz, cpus, seconds = float(sys.argv[9]), float(sys.argv[10]), float(sys.argv[11])
j = json.loads(text)
ops = j["ops_total"]
verified = isinstance(j.get("verify"), dict) and j["verify"].get("ok") is True
print("%s round=%s ops_per_s=%.0f p50_us=%.0f p99_us=%.0f tallyd_us_per_op=%.3f "
      "bench_us_per_op=%.3f idle_pct=%.1f verified=%s" % (
          tallyd, rnd, j["ops_per_s"], j["latency_us"]["p50"], j["latency_us"]["p99"],
          (c1 - c0) / hz / ops * 1e6, (bench_user + bench_sys) / ops * 1e6,
          (i1 - i0) / hz / (cpus * seconds) * 100, str(verified).lower()))
PY
}

results="$work/results"
: >"$results"
for round in $(seq "$rounds"); do
  for tallyd in "${tallyds[@]}"; do
    run_one "$tallyd" "$round" | tee -a "$results"
  done
done

echo "medians over $rounds rounds, load $load:"
python3 - "$results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rest = line.split(" round=", 1)
    fields = dict(kv.split("=") for kv in rest.split()[1:])
    rows.setdefault(name, []).append(fields)
for name, runs in rows.items():
    med = lambda k: statistics.median(float(r[k]) for r in runs)
    print("  %s ops_per_s=%.0f tallyd_us_per_op=%.3f bench_us_per_op=%.3f all_verified=%s" % (
        name, med("ops_per_s"), med("tallyd_us_per_op"), med("bench_us_per_op"),
        str(all(r["verified"] == "true" for r in runs)).lower()))
PY
