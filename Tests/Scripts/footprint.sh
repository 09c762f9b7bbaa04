#!/usr/bin/env bash
# Footprint of the shipped binary: size (stripped, and xz-compressed), RSS, threads, and the
# dependency budget (no Foundation). Exits non-zero when the budget is broken.
#   Tests/Scripts/footprint.sh BINARY [BUDGET_BYTES]   (default 8 MiB)
set -euo pipefail
binary=$1
budget=${2:-8388608}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cp "$binary" "$work/lanrage"
strip "$work/lanrage"
size=$(stat -c %s "$work/lanrage")
xz -9e -k -c "$work/lanrage" > "$work/lanrage.xz"
compressed=$(stat -c %s "$work/lanrage.xz")

status=0
foundation=$(nm "$binary" 2>/dev/null | grep -c -E 'Foundation(Essentials|Internationalization)?[0-9]|\$s10Foundation|FoundationEssentials' || true)
if [ "$foundation" != 0 ]; then
    echo "FAIL: the release binary links Foundation ($foundation symbols):"
    nm "$binary" | grep -E 'FoundationEssentials|\$s10Foundation' | head -5
    status=1
fi
if ldd "$binary" | grep -q -i foundation; then
    echo "FAIL: the release binary loads a Foundation library: $(ldd "$binary" | grep -i foundation)"
    status=1
fi
if ldd "$binary" | grep -q 'libstdc++'; then
    echo "FAIL: the release binary loads libstdc++.so (make links libstdc++.a; is libstdc++-12-dev installed?)"
    status=1
fi
if [ "$size" -gt "$budget" ]; then
    echo "FAIL: stripped binary is $size bytes, over the budget of $budget"
    status=1
fi

# Peak RSS of one short command, and the idle RSS and threads of a long-running one (a STUN
# server on loopback, its event loop asleep).
rss_chart=$( { /usr/bin/time -f '%M' "$work/lanrage" chart peer >/dev/null; } 2>&1 | tail -1)
read -r idle_rss threads < <("$(dirname "$0")/idle-rss.sh" "$work/lanrage")
if [ "$threads" != 1 ]; then
    echo "FAIL: the idle server runs $threads threads, not 1"
    status=1
fi
libraries=$(ldd "$binary" | awk '{print $1}' | tr '\n' ' ')
# The link order of the agent's code (make order-file): how much of it still names this binary's
# functions. A stale list costs resident memory only; regenerate it when this falls.
order=$(dirname "$0")/../../Sources/lanrage/lanrage.order
ordered=$(nm "$binary" | awk '{print $NF}' | sort -u | comm -12 - <(sort -u "$order") | wc -l)

printf 'binary (stripped):      %8d bytes  (%.2f MiB, %.2f MB; budget %d bytes = %.2f MiB)\n' "$size" "$(echo "$size/1048576" | bc -l)" "$(echo "$size/1000000" | bc -l)" "$budget" "$(echo "$budget/1048576" | bc -l)"
printf 'binary (xz -9e):        %8d bytes  (%.1f MB)\n' "$compressed" "$(echo "$compressed/1000000" | bc -l)"
printf 'peak RSS, chart peer:   %8d KiB\n' "$rss_chart"
printf 'idle RSS, stun-server:  %8s KiB  (threads: %s)\n' "$idle_rss" "$threads"
echo "shared libraries:       $libraries"
echo "Foundation symbols:     $foundation"
echo "code order:             $ordered of $(wc -l < "$order") functions of make order-file's list found"
exit $status
