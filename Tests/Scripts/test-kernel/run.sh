#!/bin/bash
# make test-kernel: boot Debian's kernel (linux-image-amd64 ships wireguard.ko) under qemu with an
# initramfs of static busybox, the release `lanrage` (static Swift stdlib, libnl/libsodium copied in)
# and the WireGuard modules; the guest test prints a marker line on the serial console.
# With SKIP_OK=1 (from `make test`) a missing prerequisite is reported as SKIPPED and exits 0.
set -uo pipefail
cd "$(dirname "$0")/../../.."
WORK=.build/test-kernel
MARK="LANRAGE-KERNEL-TEST"
skip() {
    echo "=================================================================="
    echo "test-kernel: SKIPPED — $*"
    echo "=================================================================="
    [ "${SKIP_OK:-0}" = 1 ] && exit 0 || exit 1
}
fail() { echo "test-kernel: FAILED — $*"; exit 1; }

command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 missing (apt-get install qemu-system-x86, or make deps)"
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] && [[ "$(ldd "$BUSYBOX" 2>&1 || true)" == *"not a dynamic executable"* ]] || skip "a static busybox is needed (apt-get install busybox-static)"
command -v cpio >/dev/null || skip "cpio missing (apt-get install cpio)"

# The kernel: Debian's linux-image-amd64, unpacked into the build folder (the host's boot is untouched).
mkdir -p "$WORK"
if ! ls "$WORK"/root/boot/vmlinuz-* >/dev/null 2>&1; then
    PACKAGE=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
    [ -n "$PACKAGE" ] || skip "apt-cache does not know linux-image-amd64 (apt-get update?)"
    (cd "$WORK" && apt-get download "$PACKAGE" >/dev/null 2>&1) || skip "cannot download $PACKAGE (no network?)"
    rm -rf "$WORK/root" && mkdir -p "$WORK/root"
    dpkg-deb -x "$WORK"/"$PACKAGE"_*.deb "$WORK/root" || fail "cannot unpack $PACKAGE"
    rm -f "$WORK"/"$PACKAGE"_*.deb
fi
KERNEL=$(ls "$WORK"/root/boot/vmlinuz-* | head -1)
VERSION=${KERNEL##*/vmlinuz-}
MODULES="$WORK/root/lib/modules/$VERSION"

# The binary under test: the shipped lanrage, release, static Swift stdlib.
# The flags of `make release` (the Makefile passes them), so the binary is the one `make footprint` measured.
read -r -a FLAGS <<< "${RELEASE_FLAGS:--c release --static-swift-stdlib}"
swift build "${FLAGS[@]}" --product lanrage >/dev/null || fail "release build failed"
BINARY=$(swift build "${FLAGS[@]}" --product lanrage --show-bin-path)/lanrage

# The initramfs.
INITRD="$WORK/initramfs"
rm -rf "$INITRD" && mkdir -p "$INITRD"/{bin,modules,proc,sys,dev,tmp}
cp "$BUSYBOX" "$INITRD/bin/busybox"
cp "$BINARY" "$INITRD/lanrage"
cp Tests/Scripts/test-kernel/init "$INITRD/init"
cp Tests/Scripts/test-kernel/guest-test.sh "$INITRD/guest-test.sh"
# wireguard-tools' wg, for the side-by-side benchmark (BENCH=1) only.
if [ "${BENCH:-0}" = 1 ]; then
    command -v wg >/dev/null || skip "wg (wireguard-tools) is needed for the benchmark"
    cp "$(command -v wg)" "$INITRD/wg"
    for library in $(ldd "$(command -v wg)" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }'); do
        mkdir -p "$INITRD/$(dirname "$library")"; cp -L "$library" "$INITRD/$library"
    done
fi
chmod +x "$INITRD/init"
for library in $(ldd "$BINARY" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }'); do
    mkdir -p "$INITRD/$(dirname "$library")"
    cp -L "$library" "$INITRD/$library"
done

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
echo "test-kernel: kernel $VERSION, modules: ${ORDER[*]}"
(cd "$INITRD" && find . | cpio -o -H newc --quiet | gzip -1) > "$WORK/initramfs.cpio.gz"

run_vm() {
    local accel=$1 cpu=$2 limit=$3
    timeout "$limit" qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -m 1024 -smp 2 -nographic -no-reboot -nic none \
        -kernel "$KERNEL" -initrd "$WORK/initramfs.cpio.gz" \
        -append "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init LANRAGE_BENCH=${BENCH:-0}" > "$WORK/console.log" 2>&1
}
START=$(date +%s)
ACCEL=tcg
if [ -r /dev/kvm ] && [ -w /dev/kvm ] && [ "${NO_KVM:-0}" != 1 ]; then
    ACCEL=kvm
    (run_vm kvm host 120) 2>/dev/null
    grep -q "$MARK: booted" "$WORK/console.log" || { echo "test-kernel: KVM did not boot, falling back to TCG"; ACCEL=tcg; }
fi
[ "$ACCEL" = tcg ] && run_vm tcg,thread=multi max 300
sed -n '/LANRAGE-KERNEL-TEST: booted/,$p' "$WORK/console.log" | grep -v '^\s*$' | tail -60
ELAPSED=$(( $(date +%s) - START ))
grep -q "$MARK: booted" "$WORK/console.log" || fail "the VM did not boot ($ACCEL, ${ELAPSED}s); see $WORK/console.log"
grep -q "$MARK: PASS" "$WORK/console.log" || fail "$(grep "$MARK: FAIL" "$WORK/console.log" | head -1) ($ACCEL, ${ELAPSED}s; $WORK/console.log)"
grep "LANRAGE-BENCH:" "$WORK/console.log" | sed 's/^/test-kernel: /' || true
echo "test-kernel: PASSED on Linux $VERSION with the real wireguard.ko ($ACCEL, ${ELAPSED}s)"
