#!/usr/bin/env bash
# The default release binary (static Swift stdlib, shared glibc/libnl/libsodium) beside the fully
# static one (`make static`): stripped size, xz size, idle RSS and threads of `lanrage stun-server`.
# Also checks the static binary: no dynamic section, it runs, netlink fails cleanly without the
# kernel module, and no reachable code calls glibc's NSS functions (getaddrinfo, getpwnam, …), which
# a static glibc can only serve by loading the shared NSS modules of its own version at run time.
#   Tests/Scripts/footprint-static.sh DEFAULT_BINARY STATIC_BINARY   (both unstripped: the NSS check
#   reads the static one's symbols; sizes are measured on stripped copies)
set -euo pipefail
default=$1
static=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
fail() { echo "FAIL: $*"; status=1; }

# Prints: stripped-size xz-size idle-RSS-KiB threads
measure() {
    local bin="$work/$1" rss threads
    cp "$2" "$bin" && strip "$bin"
    xz -9e -k -c "$bin" > "$bin.xz"
    read -r rss threads < <("$(dirname "$0")/idle-rss.sh" "$bin")
    echo "$(stat -c %s "$bin") $(stat -c %s "$bin.xz") $rss $threads"
}

# The static binary works on its own.
linkage=$(ldd "$static" 2>&1 || true)
grep -q 'not a dynamic executable' <<< "$linkage" || fail "$static is dynamically linked: $linkage"
"$static" version >/dev/null || fail "$static version"
key=$("$static" genkey) && pub=$("$static" pubkey <<< "$key") && [ "${#pub}" = 44 ] || fail "$static genkey | pubkey"
set +e
"$static" wg show --backend netlink >/dev/null 2>"$work/wg.err"; wg_status=$?
set -e
# 0 with the kernel module, 69 (unavailable) without it, 77 without CAP_NET_ADMIN; a crash is >= 128.
case $wg_status in 0|69|77) ;; *) fail "lanrage wg show --backend netlink exited $wg_status: $(cat "$work/wg.err")";; esac

# NSS: every caller of these must be one of libnl's helpers that LANrage never calls, and those
# helpers must have no callers.
nss='getaddrinfo|getnameinfo|gethostbyname[0-9_r]*|gethostbyaddr[_r]*|getpw(nam|uid)[_r]*|getgr(nam|gid)[_r]*|getserv(byname|byport)[_r]*|getproto(byname|bynumber)[_r]*|initgroups|getspnam[_r]*'
unused='nl_addr_info|nl_addr_resolve|nl_str2ip_proto|nl_ip_proto2str'
objdump -d --no-show-raw-insn "$static" > "$work/dis"
grep -q '^[0-9a-f]* <_start>:$' "$work/dis" || fail "$static has no symbols (stripped?): cannot check NSS callers"
callers() { awk -v pat="<($1)>" '/^[0-9a-f]+ <.*>:$/ {fn=$2} $0 ~ "(call|jmp) +[0-9a-f]+ " pat {print substr(fn, 2, length(fn) - 3)}' "$work/dis" | sort -u; }
bad=$(callers "$nss" | grep -v -x -E "$unused|$nss" || true)
[ -z "$bad" ] || fail "NSS functions are called from: $(echo $bad)"
bad=$(callers "$unused" | grep -v -x -E "$unused" || true)
[ -z "$bad" ] || fail "libnl's NSS helpers are called from: $(echo $bad)"

read -r d_size d_xz d_rss d_threads <<< "$(measure default "$default")"
read -r s_size s_xz s_rss s_threads <<< "$(measure static "$static")"
libraries=$(ldd "$default" | awk '$1 !~ /^(linux-vdso|\/)/ {print $1}' | tr '\n' ' ')
mib() { [ "$1" = "?" ] && echo "?" || echo "scale=2; $1/1024" | bc; }
printf '%-24s %22s %22s\n' "" "default (release)" "static (make static)"
printf '%-24s %16d bytes %16d bytes\n' "binary, stripped" "$d_size" "$s_size"
printf '%-24s %16d bytes %16d bytes\n' "binary, xz -9e" "$d_xz" "$s_xz"
printf '%-24s %12s KiB (%4s MiB) %8s KiB (%4s MiB)\n' "idle RSS, stun-server" "$d_rss" "$(mib "$d_rss")" "$s_rss" "$(mib "$s_rss")"
printf '%-24s %22s %22s\n' "threads" "$d_threads" "$s_threads"
printf '%-24s %s\n' "shared libraries" "default: $libraries; static: none"
[ "$s_threads" = 1 ] || fail "the static idle server runs $s_threads threads, not 1"
exit $status
