#!/usr/bin/env bash
# Checks packaging/openwrt/lanrage as far as this machine allows: the package Makefile installs
# its files (evaluated with stub rules.mk and package.mk), and in a chroot with busybox's sh and
# stub rc.common, procd helpers, functions.sh and uci (Tests/Scripts/openwrt-stubs): the init
# script starts nothing without a configuration, runs a hand-written agent.conf, writes
# agent.conf from /etc/config/lanrage — which the shipped binary's parser accepts (`agent --check`
# in the chroot) — regenerates it on reload, and registers its triggers; the uci-defaults script
# adds the firewall zone and port rule once. Root (chroot).
#   Tests/Scripts/check-openwrt-package.sh [STATIC_LANRAGE_BINARY]   (default .build/cross/x86_64/lanrage)
set -uo pipefail
cd "$(dirname "$0")/../.."
binary=$(realpath "${1:-.build/cross/x86_64/lanrage}")
package=packaging/openwrt/lanrage
stubs=Tests/Scripts/openwrt-stubs
status=0
passed=0
ok() { passed=$((passed + 1)); [ -z "${VERBOSE:-}" ] || echo "ok: $*"; }
fail() { echo "FAIL: $*"; status=1; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

[ -x "$binary" ] || { echo "FAIL: no static binary at $binary (make cross)"; exit 1; }
busybox=$(command -v busybox) || { echo "FAIL: busybox is not installed (apt-get install busybox-static)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The package Makefile, with stubs of OpenWrt's rules.mk and package.mk.
mkdir -p "$work/stub" "$work/staged"
cat > "$work/stub/rules.mk" <<'EOF'
INSTALL_DIR:=install -d -m0755
INSTALL_BIN:=install -m0755
INSTALL_CONF:=install -m0600
INSTALL_DATA:=install -m0644
ARCH?=x86_64
EOF
cat > "$work/stub/package.mk" <<'EOF'
define BuildPackage
.PHONY: install
install:
	$$(call Package/$(1)/install,$$(DESTDIR))
endef
EOF
if make -s -C "$package" TOPDIR="$work/stub" INCLUDE_DIR="$work/stub" DESTDIR="$work/staged" LANRAGE_BINARY="$binary" install \
    > "$work/make.log" 2>&1; then
    ok "package Makefile: install"
else
    fail "package Makefile: install"; cat "$work/make.log"
fi
for file in usr/bin/lanrage:755 etc/init.d/lanrage:755 etc/config/lanrage:600 etc/uci-defaults/90-lanrage:755; do
    path=$work/staged/${file%%:*}
    check "package installs /${file%%:*} mode ${file##*:}" test "$(stat -c %a "$path" 2>/dev/null)" = "${file##*:}"
done

# Shell syntax, as busybox's sh reads it.
for script in "$package/files/lanrage.init" "$package/files/lanrage.defaults"; do
    check "busybox sh -n $script" "$busybox" sh -n "$script"
done

# The chroot: busybox, the stubs, the package as installed.
root=$work/root
mkdir -p "$root/bin" "$root/tmp" "$root/var/etc" "$root/etc/lanrage" "$root/dev"
mknod -m 666 "$root/dev/null" c 1 3
cp "$busybox" "$root/bin/busybox"
chroot "$root" /bin/busybox --install -s /bin
cp -r "$stubs"/. "$root/"
cp -r "$work/staged"/. "$root/"
run() { chroot "$root" /bin/sh -c "$1"; }
procd() { cat "$root/tmp/procd.log" 2>/dev/null; }
reset() { rm -f "$root/tmp/procd.log" "$root/tmp/uci-store" "$root/var/etc/lanrage/agent.conf" "$root/etc/lanrage/agent.conf"; }

# Disabled in UCI, no agent.conf: nothing starts, and it says why.
reset
if output=$(run '/bin/sh /etc/rc.common /etc/init.d/lanrage start' 2>&1); then fail "start without a configuration succeeded"; else ok "start without a configuration fails"; fi
check "start without a configuration says why" grep -q "not started: enable the agent in /etc/config/lanrage" <<< "$output"
check "start without a configuration opens no instance" test -z "$(procd)"

# A hand-written agent.conf, UCI disabled: run as it is.
reset
echo "[Interface]" > "$root/etc/lanrage/agent.conf"
run '/bin/sh /etc/rc.common /etc/init.d/lanrage start' > /dev/null 2>&1
check "a hand-written agent.conf is run" grep -q -x 'set_param command /usr/bin/lanrage agent --config /etc/lanrage/agent.conf --log-level info' <<< "$(procd)"
check "respawn and logd" grep -q -x 'set_param stderr 1' <<< "$(procd)"

# UCI enabled: agent.conf written from it, with real keys and a real certificate, accepted by the binary.
reset
lanrage() { "$binary" "$@"; }
(umask 077; lanrage genkey > "$root/etc/lanrage/private.key"; lanrage genkey > "$work/control.key")
lanrage ca genkey -o "$work/ca.key"
authority=$(lanrage ca pubkey < "$work/ca.key")
member=$(lanrage pubkey < "$root/etc/lanrage/private.key")
lanrage ca sign --key "$work/ca.key" --party home --member "$member" --address 100.64.0.7/32 -o "$root/etc/lanrage/member.cert" > /dev/null
sed -i -e "s#option enabled '0'#option enabled '1'#" \
       -e "s#option control_key '.*'#option control_key '$(lanrage pubkey < "$work/control.key")'#" \
       -e "s#option authority '.*'#option authority '$authority'#" \
       -e "s#option log_level 'info'#option log_level 'debug'#" \
       -e "s|#list address '100.64.0.2/32'|list address '100.64.0.7/32'|" \
       -e "s|#option mtu '1420'|option mtu '1412'|" \
       -e "s|#list prefer '192.0.2.20:40000'|list prefer '192.0.2.20:40000'\n\tlist prefer '192.0.2.21:40000'|" \
       -e "s|#list stun '192.0.2.1:3478'|list stun '192.0.2.1:3478'|" "$root/etc/config/lanrage"
run '/bin/sh /etc/rc.common /etc/init.d/lanrage start' > /dev/null 2>&1
generated=$root/var/etc/lanrage/agent.conf
check "UCI enabled: the generated agent.conf is run" grep -q -x 'set_param command /usr/bin/lanrage agent --config /var/etc/lanrage/agent.conf --log-level debug' <<< "$(procd)"
check "the generated agent.conf is mode 600" test "$(stat -c %a "$generated" 2>/dev/null)" = 600
expected=$(cat <<EOF
# Written by /etc/init.d/lanrage from /etc/config/lanrage: edit that file instead.
[Interface]
PrivateKeyFile = /etc/lanrage/private.key
ListenPort = 51820
Name = lanrage0
MTU = 1412
Address = 100.64.0.7/32

[Party]
Control = 192.0.2.1:3478
ControlKey = $(lanrage pubkey < "$work/control.key")
Name = home
Authority = $authority
Certificate = /etc/lanrage/member.cert

[Relay]
Enabled = yes
Prefer = 192.0.2.20:40000
Prefer = 192.0.2.21:40000

[Agent]
Backend = auto
STUN = 192.0.2.1:3478
EOF
)
if [ "$(cat "$generated" 2>/dev/null)" = "$expected" ]; then ok "the generated agent.conf says what /etc/config/lanrage says"; else
    fail "the generated agent.conf:"; diff <(echo "$expected") "$generated"; fi
# The binary reads its arguments from /proc/self/cmdline (Embedded Swift has no CommandLine): /proc as on the router.
mkdir -p "$root/proc"
if missing=$(chroot "$root" /usr/bin/lanrage version 2>&1); then fail "the binary ran without /proc"; else
    check "without /proc the binary says so" grep -q "cannot read its command line from /proc/self/cmdline: is /proc mounted?" <<< "$missing"; fi
mount -t proc proc "$root/proc"
trap 'umount "$root/proc" 2>/dev/null; rm -rf "$work"' EXIT
check "the binary accepts the generated agent.conf (agent --check)" chroot "$root" /usr/bin/lanrage agent --check --config /var/etc/lanrage/agent.conf
umount "$root/proc"

# Reload: written again, then SIGHUP.
sed -i "s#option relay '1'#option relay '0'#" "$root/etc/config/lanrage"
rm -f "$root/tmp/procd.log"
run '/bin/sh /etc/rc.common /etc/init.d/lanrage reload' > /dev/null 2>&1
check "reload sends SIGHUP" grep -q -x 'send_signal lanrage \* HUP' <<< "$(procd)"
check "reload writes agent.conf again" grep -q -x 'Enabled = no' "$generated"
rm -f "$root/tmp/procd.log"
run '/bin/sh /etc/rc.common /etc/init.d/lanrage triggers' > /dev/null 2>&1
check "a change of /etc/config/lanrage reloads" grep -q -x 'reload_trigger lanrage' <<< "$(procd)"
check "the WAN coming up reloads" grep -q 'interface_trigger interface.\*.up wan /etc/init.d/lanrage reload' <<< "$(procd)"

# First boot: the firewall zone and the port rule, once.
run '/bin/sh /etc/uci-defaults/90-lanrage'
run '/bin/sh /etc/uci-defaults/90-lanrage'
store=$(cat "$root/tmp/uci-store" 2>/dev/null)
for line in 'firewall.lanrage=zone' 'firewall.lanrage.device=lanrage0' 'firewall.lanrage.input=ACCEPT' \
            'firewall.lanrage_port.dest_port=51820' 'firewall.lanrage_port.src=wan' 'firewall.lanrage_port.proto=udp'; do
    check "uci-defaults: $line" test "$(grep -c -x "$line" <<< "$store")" = 1
done

echo "openwrt package: $passed checks passed$([ $status = 0 ] || echo ", some FAILED")"
exit $status
