#!/usr/bin/env bash
# make deb-test: the Debian 12 root the package is installed into — debootstrap --variant=minbase
# bookworm with wireguard-go (the agent's data plane where the kernel has no WireGuard module) —
# made once and kept at ROOT. The test installs into an overlay on it, so the root stays as
# debootstrap left it and later runs reuse it; it is made again when PACKAGES change.
#   Tests/Scripts/deb-root.sh ROOT   (DEB_MIRROR: the Debian mirror, default deb.debian.org)
set -euo pipefail
root=${1:?usage: $0 ROOT}
mirror=${DEB_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
packages=wireguard-go
stamp="$suite minbase $packages"
if [ "$(cat "$root/.lanrage-root" 2>/dev/null)" = "$stamp" ]; then
    echo "deb root: $root (cached: $stamp)"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (make deps)"; exit 1; }
# Never delete through a mount: debootstrap mounts /proc and /sys (in a container, /dev) while it runs.
remove() {
    [ -e "$1" ] || return 0
    if findmnt -rn -o TARGET | awk -v p="$(realpath "$1")" '$0 == p || index($0, p "/") == 1 { found = 1 } END { exit !found }'; then
        echo "deb root: something is mounted under $1; unmount it first"; exit 1
    fi
    rm -rf --one-file-system "$1"
}
work=$root.partial
remove "$work"
mkdir -p "$(dirname "$root")"
log=$root.log
started=$(date +%s)
echo "deb root: debootstrap --variant=minbase --include=$packages $suite from $mirror (log: $log)"
if ! timeout 1800 debootstrap --variant=minbase --include="$packages" "$suite" "$work" "$mirror" > "$log" 2>&1; then
    tail -20 "$log"
    echo "deb root: debootstrap failed"
    exit 1
fi
rm -f "$work"/var/cache/apt/archives/*.deb
echo "$stamp" > "$work/.lanrage-root"
remove "$root"
mv "$work" "$root"
echo "deb root: $root in $(( $(date +%s) - started )) s ($(du -sh --one-file-system "$root" | cut -f1))"
