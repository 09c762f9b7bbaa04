#!/bin/bash
# make test-kernel [ARCH=x86_64|aarch64]: boot Debian's kernel for ARCH (linux-image-amd64 or
# linux-image-arm64, both ship wireguard.ko) under qemu with an initramfs of static busybox, the
# Embedded Swift lanrage of Tests/Scripts/cross.sh ARCH (fully static) and the WireGuard modules;
# the guest test prints a marker line on the serial console.
# With SKIP_OK=1 (from `make test`) a missing prerequisite is reported as SKIPPED and exits 0.
# LANRAGE_BIN=path boots that (static) binary instead of building one.
set -uo pipefail
cd "$(dirname "$0")/../../.."
ARCH=${ARCH:-x86_64}
MARK="LANRAGE-KERNEL-TEST"
skip() {
    echo "=================================================================="
    echo "test-kernel ($ARCH): SKIPPED — $*"
    echo "=================================================================="
    [ "${SKIP_OK:-0}" = 1 ] && exit 0 || exit 1
}
fail() { echo "test-kernel ($ARCH): FAILED — $*"; exit 1; }

# Per architecture: Debian's name for it, the GNU triplet of its cross toolchain (cross.sh's), the
# qemu system emulator and its package, the machine, the serial console, and the time limits
# (seconds) of the guest test and of the whole VM under TCG.
case $ARCH in
    x86_64) DEBARCH=amd64 GNU=x86_64-linux-gnu QEMU=qemu-system-x86_64 QEMU_PACKAGE=qemu-system-x86
            MACHINE=() CONSOLE=ttyS0 TCG_CPU=max GUEST_LIMIT=240 VM_LIMIT=300 ;;
    aarch64) DEBARCH=arm64 GNU=aarch64-linux-gnu QEMU=qemu-system-aarch64 QEMU_PACKAGE=qemu-system-arm
             MACHINE=(-M virt) CONSOLE=ttyAMA0 TCG_CPU=cortex-a57 GUEST_LIMIT=240 VM_LIMIT=300 ;;
    *) fail "unknown ARCH '$ARCH' (x86_64 or aarch64)" ;;
esac
HOSTARCH=$(dpkg --print-architecture 2>/dev/null)
WORK=.build/test-kernel/$ARCH

command -v "$QEMU" >/dev/null || skip "$QEMU missing (apt-get install $QEMU_PACKAGE, or make deps)"
command -v cpio >/dev/null || skip "cpio missing (apt-get install cpio)"
if [ "${BENCH:-0}" = 1 ] && [ "$ARCH" != x86_64 ]; then
    skip "BENCH=1 runs on x86_64 only (it boots the host's wg)"
fi
# Packages of a foreign architecture come from Debian's multiarch lists.
if [ "$DEBARCH" != "$HOSTARCH" ] && ! dpkg --print-foreign-architectures | grep -qx "$DEBARCH"; then
    skip "$DEBARCH is not a dpkg architecture here (dpkg --add-architecture $DEBARCH; apt-get update)"
fi

# The toolchain and static libraries cross.sh links with.
if [ -z "${LANRAGE_BIN:-}" ]; then
    if [ "$ARCH" = x86_64 ]; then CC=gcc; else CC=$GNU-gcc; fi
    command -v "$CC" >/dev/null || skip "$CC missing for the cross build (apt-get install gcc-$GNU)"
    for archive in libnl-3 libnl-genl-3 libsodium; do
        [ -f "/usr/lib/$GNU/$archive.a" ] || skip "/usr/lib/$GNU/$archive.a missing for the cross build (apt-get install libnl-3-dev:$DEBARCH libnl-genl-3-dev:$DEBARCH libsodium-dev:$DEBARCH)"
    done
fi

mkdir -p "$WORK"
# busybox, static: the installed one for the host's own architecture, else Debian's
# busybox-static:ARCH unpacked into the build folder (never installed).
if [ "$DEBARCH" = "$HOSTARCH" ]; then
    BUSYBOX=$(command -v busybox || true)
    [ -n "$BUSYBOX" ] && [[ "$(ldd "$BUSYBOX" 2>&1 || true)" == *"not a dynamic executable"* ]] || skip "a static busybox is needed (apt-get install busybox-static)"
else
    BUSYBOX=$WORK/busybox/bin/busybox
    if [ ! -x "$BUSYBOX" ]; then
        rm -rf "$WORK/busybox" "$WORK"/busybox-static_*.deb
        (cd "$WORK" && apt-get download "busybox-static:$DEBARCH" >/dev/null 2>&1) || skip "cannot download busybox-static:$DEBARCH (no network? apt-get update?)"
        dpkg-deb -x "$WORK"/busybox-static_*.deb "$WORK/busybox" || fail "cannot unpack busybox-static:$DEBARCH"
        rm -f "$WORK"/busybox-static_*.deb
    fi
fi

# The kernel: Debian's linux-image-ARCH, unpacked into the build folder (the host's boot is untouched).
if ! ls "$WORK"/root/boot/vmlinuz-* >/dev/null 2>&1; then
    PACKAGE=$(apt-cache depends "linux-image-$DEBARCH:$DEBARCH" 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
    [ -n "$PACKAGE" ] || skip "apt-cache does not know linux-image-$DEBARCH:$DEBARCH (apt-get update?)"
    PACKAGE=${PACKAGE%%:*}
    rm -f "$WORK"/"$PACKAGE"_*.deb
    (cd "$WORK" && apt-get download "$PACKAGE:$DEBARCH" >/dev/null 2>&1) || skip "cannot download $PACKAGE:$DEBARCH (no network?)"
    rm -rf "$WORK/root" && mkdir -p "$WORK/root"
    dpkg-deb -x "$WORK"/"$PACKAGE"_*.deb "$WORK/root" || fail "cannot unpack $PACKAGE"
    rm -f "$WORK"/"$PACKAGE"_*.deb
fi
KERNEL=$(ls "$WORK"/root/boot/vmlinuz-* | head -1)
VERSION=${KERNEL##*/vmlinuz-}
MODULES="$WORK/root/lib/modules/$VERSION"

# The binary under test: the Embedded Swift build for ARCH, static (no library to copy in).
if [ -n "${LANRAGE_BIN:-}" ]; then
    BINARY=$LANRAGE_BIN
    [ -f "$BINARY" ] || fail "LANRAGE_BIN=$BINARY: no such file"
else
    BUILD_START=$(date +%s)
    Tests/Scripts/cross.sh "$ARCH" > "$WORK/cross.log" 2>&1 || { tail -20 "$WORK/cross.log"; fail "Tests/Scripts/cross.sh $ARCH failed (see $WORK/cross.log)"; }
    BINARY=.build/cross/$ARCH/lanrage
    echo "test-kernel ($ARCH): built $BINARY with Tests/Scripts/cross.sh in $(( $(date +%s) - BUILD_START ))s"
fi

# The initramfs.
INITRD="$WORK/initramfs"
rm -rf "$INITRD" && mkdir -p "$INITRD"/{bin,modules,proc,sys,dev,tmp}
cp "$BUSYBOX" "$INITRD/bin/busybox"
cp "$BINARY" "$INITRD/lanrage"
cp Tests/Scripts/test-kernel/init "$INITRD/init"
cp Tests/Scripts/test-kernel/guest-test.sh "$INITRD/guest-test.sh"
chmod +x "$INITRD/init"
# wireguard-tools' wg, for the side-by-side benchmark (BENCH=1, x86_64) only.
if [ "${BENCH:-0}" = 1 ]; then
    command -v wg >/dev/null || skip "wg (wireguard-tools) is needed for the benchmark"
    cp "$(command -v wg)" "$INITRD/wg"
    for library in $(ldd "$(command -v wg)" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }'); do
        mkdir -p "$INITRD/$(dirname "$library")"; cp -L "$library" "$INITRD/$library"
    done
fi

# Modules: wireguard and veth with their dependencies (modinfo -F depends), decompressed, loaded in order.
find_module() { find "$MODULES/kernel" -name "$1.ko" -o -name "$1.ko.xz" -o -name "$1.ko.zst" | head -1; }
declare -A SEEN=()
ORDER=()
add_module() {
    local name=${1//-/_} file
    [ -n "${SEEN[$name]:-}" ] && return
    SEEN[$name]=1
    file=$(find_module "$1"); [ -n "$file" ] || file=$(find_module "${1//_/-}")
    [ -n "$file" ] || { echo "module $1 not found (built in?)"; return; }
    local dep
    for dep in $(modinfo -F depends "$file" | tr ',' ' '); do add_module "$dep"; done
    case "$file" in
        *.xz) xz -dc "$file" > "$INITRD/modules/$name.ko" ;;
        *.zst) zstd -qdc "$file" > "$INITRD/modules/$name.ko" ;;
        *) cp "$file" "$INITRD/modules/$name.ko" ;;
    esac
    ORDER+=("$name")
}
add_module wireguard
add_module veth
printf '%s\n' "${ORDER[@]}" > "$INITRD/modules/order"
echo "test-kernel ($ARCH): kernel $VERSION, modules: ${ORDER[*]}"
(cd "$INITRD" && find . | cpio -o -H newc --quiet | gzip -1) > "$WORK/initramfs.cpio.gz"

run_vm() {
    local accel=$1 cpu=$2 limit=$3
    timeout "$limit" "$QEMU" "${MACHINE[@]}" -accel "$accel" -cpu "$cpu" -m 1024 -smp 2 -nographic -no-reboot -nic none \
        -kernel "$KERNEL" -initrd "$WORK/initramfs.cpio.gz" \
        -append "console=$CONSOLE panic=-1 quiet loglevel=3 rdinit=/init LANRAGE_BENCH=${BENCH:-0} LANRAGE_GUEST_LIMIT=$GUEST_LIMIT" > "$WORK/console.log" 2>&1
}
START=$(date +%s)
ACCEL=tcg
# KVM only for the host's own architecture, and only when it really boots a guest.
if [ "$DEBARCH" = "$HOSTARCH" ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] && [ "${NO_KVM:-0}" != 1 ]; then
    ACCEL=kvm
    (run_vm kvm host 120) 2>/dev/null
    grep -q "$MARK: booted" "$WORK/console.log" || { echo "test-kernel ($ARCH): KVM did not boot, falling back to TCG"; ACCEL=tcg; }
fi
[ "$ACCEL" = tcg ] && run_vm tcg,thread=multi "$TCG_CPU" "$VM_LIMIT"
sed -n '/LANRAGE-KERNEL-TEST: booted/,$p' "$WORK/console.log" | grep -v '^\s*$' | tail -60
ELAPSED=$(( $(date +%s) - START ))
grep -q "$MARK: booted" "$WORK/console.log" || fail "the VM did not boot ($ACCEL, ${ELAPSED}s); see $WORK/console.log"
grep -q "$MARK: PASS" "$WORK/console.log" || fail "$(grep "$MARK: FAIL" "$WORK/console.log" | head -1) ($ACCEL, ${ELAPSED}s; $WORK/console.log)"
grep "LANRAGE-BENCH:" "$WORK/console.log" | sed "s/^/test-kernel ($ARCH): /" || true
echo "test-kernel ($ARCH): PASSED on Linux $VERSION with the real wireguard.ko ($ACCEL, ${ELAPSED}s)"
