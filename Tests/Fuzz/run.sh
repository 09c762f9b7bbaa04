#!/usr/bin/env bash
# Runs the STUN decoder fuzzer: JOBS processes sharing one corpus, RUNS executions in all.
# Usage: Tests/Fuzz/run.sh BINARY RUNS JOBS
set -uo pipefail
binary=$1 runs=$2 jobs=$3
dir=.build-fuzz
mkdir -p "$dir/corpus" "$dir/artifacts"
cp -n Tests/Fuzz/seeds/* "$dir/corpus/" 2>/dev/null || true
pids=()
for i in $(seq 1 "$jobs"); do
  "$binary" -runs=$((runs / jobs)) -seed="$i" -max_len=1024 -print_final_stats=1 \
    -artifact_prefix="$dir/artifacts/" "$dir/corpus" > "$dir/job$i.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
executions=0
for i in $(seq 1 "$jobs"); do
  n=$(grep -m1 '^stat::number_of_executed_units' "$dir/job$i.log" | awk '{print $2}')
  executions=$((executions + ${n:-0}))
done
crashes=$(find "$dir/artifacts" -type f | wc -l)
echo "fuzz: $executions executions in $jobs jobs, $crashes crash/leak/timeout artifacts in $dir/artifacts, corpus $(ls "$dir/corpus" | wc -l) inputs"
if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
  grep -h -A5 -E '^==[0-9]+==ERROR|Fatal error|deadly signal' "$dir"/job*.log | head -40
  exit 1
fi
