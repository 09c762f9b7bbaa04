#!/usr/bin/env bash
# make cross-tests, part one: the cross build of ARCH (make cross) run under qemu-user (natively for
# x86_64) against independent references: every state chart equals StateCharts/NAME.dot byte for
# byte; keys agree with wireguard-tools' wg; stun-server answers the stun client's binding request;
# version names the architecture and Embedded Swift. Prints one line per check, exits 1 on a failure.
#   Tests/Scripts/cross-check.sh ARCH
set -uo pipefail
umask 077
cd "$(dirname "$0")/../.."
arch=${1:?usage: $0 aarch64|armv7|x86_64}
binary=.build/cross/$arch/lanrage
case $arch in
    aarch64) run=(qemu-aarch64-static "$binary") ;;
    armv7) run=(qemu-arm-static "$binary") ;;
    x86_64) run=("$binary") ;;
    *) echo "unknown architecture $arch" >&2; exit 64 ;;
esac
[ -x "$binary" ] || { echo "$binary missing: make cross" >&2; exit 1; }
work=$(mktemp -d)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

failures=0
check() { # NAME RESULT DETAIL
    if [ "$2" = 0 ]; then echo "cross-check $arch: ok   $1"; else echo "cross-check $arch: FAIL $1: $3"; failures=$((failures + 1)); fi
}

version=$("${run[@]}" --version 2>&1)
[[ "$version" == "lanrage "*"$arch, Embedded Swift)" ]]; check "version" $? "$version"

for chart in StateCharts/*.dot; do
    name=$(basename "$chart" .dot)
    "${run[@]}" chart "$name" > "$work/$name.dot" 2>&1
    cmp -s "$work/$name.dot" "$chart"; check "chart $name equals $chart" $? "$(diff "$chart" "$work/$name.dot" | head -5)"
done

for round in 1 2 3; do
    "${run[@]}" genkey > "$work/private"
    ours=$("${run[@]}" pubkey < "$work/private" 2>&1)
    theirs=$(wg pubkey < "$work/private" 2>&1)
    [ -n "$ours" ] && [ "$ours" = "$theirs" ]; check "genkey/pubkey agree with wg ($round)" $? "lanrage: $ours, wg: $theirs"
    wg genkey > "$work/wg-private"
    ours=$("${run[@]}" pubkey < "$work/wg-private" 2>&1)
    theirs=$(wg pubkey < "$work/wg-private")
    [ "$ours" = "$theirs" ]; check "pubkey of wg genkey agrees with wg ($round)" $? "lanrage: $ours, wg: $theirs"
done

port=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom) % 20000 ))
"${run[@]}" stun-server --listen "127.0.0.1:$port" --log-level error > "$work/stun-server.log" 2>&1 &
server=$!
answer=""
for _ in $(seq 50); do # up to 10 s: qemu starts the server slowly
    answer=$(timeout 3 stun "127.0.0.1:$port" 1 -v 2>&1 | grep '^MappedAddress = ' || true)
    [ -n "$answer" ] && break
    sleep 0.2
done
[[ "$answer" == "MappedAddress = 127.0.0.1:"* ]]; check "stun-server answers a binding request" $? "no answer ($(tail -3 "$work/stun-server.log"))"

[ "$failures" = 0 ] || { echo "cross-check $arch: $failures failed"; exit 1; }
