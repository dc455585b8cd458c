#!/usr/bin/env bash
# replay_server.sh: how long a whole tallyd takes to recover (issue 3), one
# binary against another, on the same data directory.
#
#   bench/replay_server.sh [--tallyd PATH]... [--tally-bench PATH] [--shards N]
#                          [--fill-s S] [--rounds N] [--dir DIR]
#
# Fills a data directory once, with the first --tallyd: 1,000,000 wallets in
# 16 orgs, a snapshot of them (a restart with --snapshot-every-s 1), then S
# seconds of deducts (frames of 8,000, 4 connections x depth 2) over 100,000
# wallets of 16 more orgs with snapshots off, so each shard's log after its
# snapshot holds millions of deducts.  Then, for each round, each --tallyd in
# turn (A/B, alternating) starts on that directory with snapshots off; the
# script times exec -> its "listening" line (wall), reads the process's CPU
# time then (/proc/PID/stat) and each shard's "replayed" line, and kills it
# (SIGKILL: a start that is killed at once appends nothing).  Prints one line
# per start:
#   <tallyd> round=R wall_s=W cpu_s=C commands=N agg_Mops_per_s=N/W
#       shard<i>_replay_s=... (the replay alone, from the shard's line)
# A --tallyd may carry flags of its own ("build/ci/tallyd --prefault off").
# shard<i>_replay_cpu_s is the replaying thread's CPU, shard<i>_load_cpu_s
# its CPU for the snapshot's load (binaries that print them).
# replay_Mops_per_s is the replay of all shards together: commands over the
# window from the first shard's end of snapshot load to the last shard's end
# of replay (the shards recover in parallel from the same moment, so the
# window holds every shard's replay; it errs low, never high).
# --drop-caches empties the page cache before each start (root; the whole
# machine's cache): a recovery that reads its log and snapshot from the disk,
# as after a reboot, instead of from the previous round's cache.  Defaults: build/ci/tallyd, build/ci/tally-bench, 2 shards, 4 s, 3 rounds,
# a fresh directory under ${TMPDIR:-/tmp} (removed at the end unless --dir).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tallyds=()
bench=build/ci/tally-bench
shards=2
fill_s=4
rounds=3
dir=""
drop_caches=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tallyd) tallyds+=("$2"); shift 2 ;;
    --tally-bench) bench="$2"; shift 2 ;;
    --shards) shards="$2"; shift 2 ;;
    --fill-s) fill_s="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --drop-caches) drop_caches=1; shift ;;
    *) echo "replay_server.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ ${#tallyds[@]} -gt 0 ]] || tallyds=(build/ci/tallyd)
keep=1
if [[ -z "$dir" ]]; then
  dir=$(mktemp -d "${TMPDIR:-/tmp}/replay-server-XXXXXX")
  keep=0
fi
data="$dir/data"
pid=""
cleanup() {
  if [[ -n "$pid" ]]; then kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [[ $keep -eq 0 ]]; then rm -rf "$dir"; fi
}
trap cleanup EXIT

# start BINARY FLAGS...: runs tallyd on $data in the background, waits (at
# most 120 s) for its listening line; sets pid, address, wall_s.
start() {
  local -a spec
  read -ra spec <<<"$1"; shift
  : >"$dir/out"; : >"$dir/err"
  local t0; t0=$(date +%s.%N)
  "${spec[@]}" --data "$data" --listen 127.0.0.1:0 --shards "$shards" "$@" >"$dir/out" 2>"$dir/err" &
  pid=$!
  for _ in $(seq 1 12000); do
    if grep -q "listening on" "$dir/out"; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then cat "$dir/err" >&2; echo "tallyd exited" >&2; exit 1; fi
    sleep 0.01
  done
  local t1; t1=$(date +%s.%N)
  wall_s=$(echo "$t1 - $t0" | bc -l)
  address=$(sed -n 's/^tallyd listening on //p' "$dir/out")
  [[ -n "$address" ]] || { echo "no listening line" >&2; exit 1; }
}
stop() {  # stop SIGNAL
  kill -"$1" "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}
token() { awk '!/^#/ && $2 == "admin" { print $1; exit }' "$data/tokens"; }
fill() {  # fill ORG_BASE WALLETS SECONDS
  nice -n 5 "$bench" --server "$address" --token "$(token)" --quiet --workload deduct \
    --org-base "$1" --orgs 16 --wallets "$2" --connections 4 --depth 2 --ops-per-frame 8000 \
    --duration-s "$3" --warmup-s 0.5 >/dev/null
}

first="${tallyds[0]}"
off=(--snapshot-every-records 0 --snapshot-every-s 0)
if [[ ! -e "$data/shards" ]]; then
  echo "filling $data ..." >&2
  start "$first" "${off[@]}"
  fill 1 1000000 1
  stop TERM
  # The million wallets into a snapshot: one is due a second after the start.
  start "$first" --snapshot-every-records 0 --snapshot-every-s 1
  for _ in $(seq 1 600); do
    n=$(find "$data" -name "snapshot-*.snap" | wc -l)
    [[ $n -ge $shards ]] && break
    sleep 0.1
  done
  sleep 2
  stop TERM
  start "$first" "${off[@]}"
  fill 1001 100000 "$fill_s"
  stop TERM
  du -sh "$data"/shard-*/wal >&2
fi

# A binary from before the commands count in the "replayed" line prints
# records only: every start replays the same log, so the count of any start
# that prints it serves all (the lines are printed after the last round).
runs=()
commands=0
for round in $(seq 1 "$rounds"); do
  for bin in "${tallyds[@]}"; do
    if [[ $drop_caches -eq 1 ]]; then sync; echo 3 >/proc/sys/vm/drop_caches; fi
    start "$bin" "${off[@]}"
    read -r utime stime < <(awk '{ print $14, $15 }' "/proc/$pid/stat")
    stop KILL
    cpu_s=$(echo "($utime + $stime) / $(getconf CLK_TCK)" | bc -l)
    n=$(sed -n 's/.*replayed [0-9]* records, \([0-9]*\) commands.*/\1/p' "$dir/err" |
        awk '{ s += $1 } END { print s + 0 }')
    [[ "$n" -gt 0 ]] && commands=$n
    run="$bin round=$round wall_s=$(printf %.3f "$wall_s") cpu_s=$(printf %.2f "$cpu_s")"
    window_start=""
    window_end=""
    for ((i = 0; i < shards; i++)); do
      s=$(sed -n "s/^tallyd: shard $i: .*replayed .* in \([0-9.]*\) s,.*/\1/p" "$dir/err")
      c=$(sed -n "s/^tallyd: shard $i: .*replayed .*, \([0-9.]*\) s CPU$/\1/p" "$dir/err")
      l=$(sed -n "s/^tallyd: shard $i: .* loaded in [0-9.]* s, \([0-9.]*\) s CPU.*/\1/p" "$dir/err")
      lw=$(sed -n "s/^tallyd: shard $i: .* loaded in \([0-9.]*\) s,.*/\1/p" "$dir/err")
      run+=" shard${i}_replay_s=${s:-?} shard${i}_replay_cpu_s=${c:-?} shard${i}_load_cpu_s=${l:-?}"
      if [[ -n "$s" ]]; then
        lw=${lw:-0}
        e=$(echo "$lw + $s" | bc -l)
        if [[ -z "$window_start" ]] || (( $(echo "$lw < $window_start" | bc -l) )); then window_start=$lw; fi
        if [[ -z "$window_end" ]] || (( $(echo "$e > $window_end" | bc -l) )); then window_end=$e; fi
      fi
    done
    replay_window_s=""
    [[ -n "$window_end" ]] && replay_window_s=$(echo "$window_end - $window_start" | bc -l)
    runs+=("$wall_s|$replay_window_s|$run")
    echo "$run" >&2
  done
done
for r in "${runs[@]}"; do
  w=${r%%|*}
  rest=${r#*|}
  rw=${rest%%|*}
  line="${rest#*|} commands=$commands agg_Mops_per_s=$(printf %.2f "$(echo "$commands / $w / 1000000" | bc -l)")"
  if [[ -n "$rw" ]]; then
    line+=" replay_window_s=$(printf %.3f "$rw")"
    line+=" replay_Mops_per_s=$(printf %.2f "$(echo "$commands / $rw / 1000000" | bc -l)")"
  fi
  echo "$line"
done
