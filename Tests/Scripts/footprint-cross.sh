#!/usr/bin/env bash
# Footprint of the shipped binaries (make cross: Embedded Swift, static), one line per architecture:
# stripped and xz sizes against the ceiling; that each is static (no program interpreter, no
# shared library needed); that no reachable code calls a name-service function (LANrage resolves no
# names; with LIBC=glibc a static glibc would serve them only by loading its own version's shared
# modules at run time); and for x86_64, which runs here,
# the idle RSS and threads of `lanrage stun-server`. Exits 1 when one of them is broken.
#   Tests/Scripts/footprint-cross.sh CEILING_BYTES ARCH...
set -uo pipefail
cd "$(dirname "$0")/../.."
ceiling=$1; shift
status=0
fail() { echo "FAIL: $*"; status=1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Every caller of an NSS function must be one of libnl's helpers that LANrage never calls, and
# those helpers must have no callers.
nss='getaddrinfo|getnameinfo|gethostbyname[0-9_r]*|gethostbyaddr[_r]*|getpw(nam|uid)[_r]*|getgr(nam|gid)[_r]*|getserv(byname|byport)[_r]*|getproto(byname|bynumber)[_r]*|initgroups|getspnam[_r]*'
unused='nl_addr_info|nl_addr_resolve|nl_str2ip_proto|nl_ip_proto2str'

printf '%-8s %12s %12s %14s %8s\n' arch "stripped" "xz -9e" "idle RSS" threads
for arch in "$@"; do
    case $arch in
        aarch64) objdump=aarch64-linux-gnu-objdump calls='bl?' ;;
        armv7) objdump=arm-linux-gnueabi-objdump calls='bl?x?(eq|ne)?' ;;
        x86_64) objdump=objdump calls='call|jmp' ;;
        *) fail "unknown architecture $arch"; continue ;;
    esac
    binary=.build/cross/$arch/lanrage
    [ -f "$binary" ] || { fail "$binary missing (make cross)"; continue; }
    size=$(stat -c %s "$binary")
    xz -9e -k -c "$binary" > "$work/$arch.xz"
    compressed=$(stat -c %s "$work/$arch.xz")
    [ "$size" -le "$ceiling" ] || fail "$arch: $size bytes, over the ceiling of $ceiling"
    readelf -lW "$binary" | grep -q 'program interpreter' && fail "$arch: needs a program interpreter (not static)"
    readelf -dW "$binary" | grep -q '(NEEDED)' && fail "$arch: needs shared libraries: $(readelf -dW "$binary" | grep NEEDED)"
    "$objdump" -d --no-show-raw-insn ".build/cross/$arch/lanrage.unstripped" > "$work/dis" 2>/dev/null \
        || fail "$arch: $objdump cannot read the unstripped binary"
    callers() { awk -v pat="<($1)>" -v calls="^($calls)\$" '/^[0-9a-f]+ <.*>:$/ {fn=$2} $2 ~ calls && $0 ~ pat {print substr(fn, 2, length(fn) - 3)}' "$work/dis" | sort -u; }
    bad=$(callers "$nss" | grep -v -x -E "$unused|$nss" || true)
    [ -z "$bad" ] || fail "$arch: NSS functions are called from: $(echo $bad)"
    bad=$(callers "$unused" | grep -v -x -E "$unused" || true)
    [ -z "$bad" ] || fail "$arch: libnl's NSS helpers are called from: $(echo $bad)"
    rss="-" threads="-"
    if [ "$arch" = x86_64 ]; then
        read -r rss threads < <(Tests/Scripts/idle-rss.sh "$binary")
        [ "$threads" = 1 ] || fail "x86_64: the idle server runs $threads threads, not 1"
        rss="$rss KiB"
    fi
    printf '%-8s %12d %12d %14s %8s\n' "$arch" "$size" "$compressed" "$rss" "$threads"
done
echo "ceiling: $ceiling bytes"
exit $status
