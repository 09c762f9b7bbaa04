#!/usr/bin/env bash
# Runs one fuzz target: JOBS processes sharing one corpus, RUNS executions in all.
# Usage: [NAME=…] [CORPUS=…] [SEEDS=…] Tests/Fuzz/run.sh BINARY RUNS JOBS
# NAME names the target's logs and artifacts, CORPUS its corpus, SEEDS the inputs the corpus starts
# from (the defaults are STUN's: .build-fuzz/corpus, Tests/Fuzz/seeds).
set -uo pipefail
binary=$1 runs=$2 jobs=$3
dir=.build-fuzz
name=${NAME:-stun}
corpus=${CORPUS:-$dir/corpus} seeds=${SEEDS:-Tests/Fuzz/seeds}
artifacts=$dir/artifacts-$name
mkdir -p "$corpus" "$artifacts"
cp -n "$seeds"/* "$corpus/" 2>/dev/null || true
# libFuzzer reports crashes itself: the Swift runtime's backtracer would only hold the crashed process.
export SWIFT_BACKTRACE=enable=no
start=$(date +%s)
pids=()
for i in $(seq 1 "$jobs"); do
  "$binary" -runs=$((runs / jobs)) -seed="$i" -max_len=1024 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$corpus" > "$dir/$name-job$i.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
seconds=$(( $(date +%s) - start ))
executions=0
for i in $(seq 1 "$jobs"); do
  n=$(grep -m1 '^stat::number_of_executed_units' "$dir/$name-job$i.log" | awk '{print $2}')
  executions=$((executions + ${n:-0}))
done
crashes=$(find "$artifacts" -type f | wc -l)
echo "fuzz $name: $executions executions in $jobs jobs, ${seconds} s ($(( executions / (seconds > 0 ? seconds : 1) ))/s)," \
  "$crashes crash/leak/timeout artifacts in $artifacts, corpus $(ls "$corpus" | wc -l) inputs"
if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
  grep -h -A5 -E '^==[0-9]+==ERROR|Fatal error|deadly signal' "$dir/$name"-job*.log | head -40
  exit 1
fi
