#!/bin/bash
# make bench-wg: time to apply and to read back 1,000 peers through LANrage's UAPI backend, side by
# side with wireguard-tools (`wg set` with the same peers in one call, `wg show dump`) against the
# same wireguard-go interface, in a network namespace of its own. Prints the medians and the ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEERS=${PEERS:-1000}
ROUNDS=${ROUNDS:-5}
[ "$(id -u)" = 0 ] || { echo "bench-wg: needs root (network namespaces, wireguard-go)"; exit 1; }
command -v wireguard-go >/dev/null && command -v wg >/dev/null || { echo "bench-wg: needs wireguard-go and wireguard-tools (make deps)"; exit 1; }

read -r -a FLAGS <<< "${RELEASE_FLAGS:--c release --static-swift-stdlib}"
swift build "${FLAGS[@]}" --product lanrage >/dev/null
L=$(swift build "${FLAGS[@]}" --product lanrage --show-bin-path)/lanrage
NS="lwbench$$"
IF="lwb$$"
TMP=$(mktemp -d)
cleanup() {
    ip -n "$NS" link del "$IF" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
in_ns() { ip netns exec "$NS" "$@"; }
now() { date +%s%N; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

PRIVATE=$("$L" genkey)
HEADER="[Interface]
PrivateKey = $PRIVATE
ListenPort = 51899
Address = 100.64.0.1/16
"
printf '%s' "$HEADER" > "$TMP/empty.conf"
cp "$TMP/empty.conf" "$TMP/peers.conf"
WG_ARGS=()
for i in $(seq 1 "$PEERS"); do
    KEY=$(head -c 32 /dev/urandom | base64)
    IP="100.64.$((i / 250 + 1)).$((i % 250 + 1))/32"
    ENDPOINT="203.0.113.$((i % 250 + 1)):$((20000 + i))"
    printf '\n[Peer]\nPublicKey = %s\nEndpoint = %s\nAllowedIPs = %s\n' "$KEY" "$ENDPOINT" "$IP" >> "$TMP/peers.conf"
    WG_ARGS+=(peer "$KEY" endpoint "$ENDPOINT" allowed-ips "$IP")
done
in_ns "$L" --log-level warning wg apply "$IF" "$TMP/empty.conf" --backend uapi >/dev/null

declare -a LA LS WA WS
for round in $(seq 1 "$ROUNDS"); do
    t0=$(now); in_ns "$L" --log-level warning wg apply "$IF" "$TMP/peers.conf" --backend uapi > "$TMP/out"; t1=$(now)
    grep -q "$PEERS peer(s) added" "$TMP/out" || { echo "lanrage apply did not add $PEERS peers: $(cat "$TMP/out")"; exit 1; }
    LA+=($(( (t1 - t0) / 1000 )))
    t0=$(now); in_ns "$L" wg show "$IF" --json --backend uapi > "$TMP/show.json"; t1=$(now)
    [ "$(grep -c '"allowed_ips"' "$TMP/show.json")" = "$PEERS" ] || { echo "lanrage show did not read back $PEERS peers"; exit 1; }
    LS+=($(( (t1 - t0) / 1000 )))
    in_ns "$L" --log-level warning wg apply "$IF" "$TMP/empty.conf" --backend uapi >/dev/null

    t0=$(now); in_ns wg set "$IF" "${WG_ARGS[@]}"; t1=$(now)
    WA+=($(( (t1 - t0) / 1000 )))
    t0=$(now); in_ns wg show "$IF" dump > "$TMP/dump"; t1=$(now)
    [ "$(wc -l < "$TMP/dump")" = $((PEERS + 1)) ] || { echo "wg show dump did not read back $PEERS peers"; exit 1; }
    WS+=($(( (t1 - t0) / 1000 )))
    in_ns "$L" --log-level warning wg apply "$IF" "$TMP/empty.conf" --backend uapi >/dev/null
done
la=$(printf '%s\n' "${LA[@]}" | median); ls=$(printf '%s\n' "${LS[@]}" | median)
wa=$(printf '%s\n' "${WA[@]}" | median); ws=$(printf '%s\n' "${WS[@]}" | median)
echo "bench-wg: $PEERS peers, wireguard-go $(wireguard-go --version 2>/dev/null | head -1 | awk '{print $NF}'), median of $ROUNDS rounds (whole process: start, parse, UAPI, exit)"
awk -v la="$la" -v ls="$ls" -v wa="$wa" -v ws="$ws" -v n="$PEERS" 'BEGIN {
    printf "  %-34s %10s %10s %8s\n", "", "lanrage", "wg", "ratio"
    printf "  %-34s %7.1f ms %7.1f ms %7.2fx\n", "apply " n " peers (uapi set)", la / 1000, wa / 1000, la / wa
    printf "  %-34s %7.1f ms %7.1f ms %7.2fx\n", "read back " n " peers (uapi get)", ls / 1000, ws / 1000, ls / ws
}'
