#!/usr/bin/env bash
# Regenerates the link order of the release binary's code (lld --symbol-ordering-file): the
# functions the agent runs go first in .text, side by side, the Swift stdlib's one-section core
# after them, everything else behind.
#
# Why: the kernel maps a program's code 64 KiB at a time around each page it runs (fault-around),
# and in the linker's own order the agent's code is spread over all 5 MB of .text: a party of 50
# mapped 4.4 of its 5.1 MiB.
# Packed, the same run maps about 3 MiB (see BENCHMARKS.md, "Footprint").
#
# How: the lab bench (a few NAT cells and the party of 50) runs with node 0's agent under
# callgrind, which lists every function that ran; the linker map of the same objects says which
# section holds each. One symbol per section is written, in the map's order. Big one-section
# blocks of which a single function runs (Concurrency, libdispatch start-up) are left where
# they are: moving them would spread the hot code again.
#
#   Tests/Scripts/order-file.sh OUTPUT LAB_BENCH   (root: the lab; RELEASE_FLAGS in the environment)
set -euo pipefail
output=$1
bench=$2
work=$(mktemp -d /tmp/lanrage-order.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The map of the release link (its layout does not matter here, only which section holds a symbol).
# shellcheck disable=SC2086 # RELEASE_FLAGS is a list of flags
swift build $RELEASE_FLAGS -Xlinker --no-demangle -Xlinker "-Map=$work/lanrage.map" --product lanrage
binary=$(swift build $RELEASE_FLAGS --show-bin-path)/lanrage

cat > "$work/lanrage" <<EOF
#!/bin/bash
case "\$*" in
    agent*node0.conf*) exec valgrind --tool=callgrind --demangle=no --callgrind-out-file=$work/callgrind.%p $binary "\$@" ;;
esac
exec $binary "\$@"
EOF
chmod +x "$work/lanrage"
# Under callgrind node 0 is ~50 times slower: the party of 50 may not finish; what ran is what counts.
LANRAGE_LAB_RUNS=1 LANRAGE_LAB_IMPLS=lanrage LANRAGE_BIN="$work/lanrage" \
    LANRAGE_LAB_CELLS="open-open restricted-double port-symmetric symmetric-symmetric" \
    timeout -s INT 900 "$bench" | grep 'LAB-BENCH' || true
profiles=("$work"/callgrind.*)
[ -e "${profiles[0]}" ] || { echo "order-file: no callgrind profile was written" >&2; exit 1; }

awk -v out="$output.tmp" '
    function hex(text,    value, i) {
        value = 0
        for (i = 1; i <= length(text); i++) value = value * 16 + index("0123456789abcdef", substr(text, i, 1)) - 1
        return value
    }
    # Callgrind: "fn=(id) name" / "cfn=(id) name" name a function once, later lines only its id.
    FILENAME ~ /callgrind/ {
        if (match($0, /^c?fn=\([0-9]+\) /)) { name = substr($0, RLENGTH + 1); sub(/\047[0-9]+$/, "", name); ran[name] = 1 }
        next
    }
    # The map (VMA LMA Size Align, then an output section, an input section "file:(section)" one
    # level in, or a symbol two levels in): the input sections of .text and their symbols.
    NF == 5 && $5 == ".text" && !outputColumn { outputColumn = index($0, ".text") }
    NF == 5 && index($0, $5) == outputColumn { inText = ($5 == ".text"); section = ""; next }
    !inText || NF != 5 { next }
    index($5, ":(") { section = $5; size[section] = hex($3); order[++sections] = section; next }
    section != "" && ($5 in ran) && !(section in chosen) { chosen[section] = $5 }
    END {
        for (i = 1; i <= sections; i++) {
            s = order[i]
            if (!(s in chosen)) continue
            if (s ~ /libswiftCore\.a\(Swift\.o\):\(\.text\)$/) { core = chosen[s]; continue }
            if (s ~ /:\(\.text(\.unlikely\.|\.startup)?\)$/ && size[s] > 16384) continue
            print chosen[s] > out; written++
        }
        if (core != "") { print core > out; written++ }
        printf "order-file: %d sections, of %d functions that ran\n", written, length(ran)
    }
' "${profiles[@]}" "$work/lanrage.map"
mv "$output.tmp" "$output"
