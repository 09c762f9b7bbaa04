#!/usr/bin/env bash
# make cross: the lanrage executable in Embedded Swift, static, for ARCH (aarch64, armv7 or x86_64),
# from the same sources as the hosted build: .build/cross/ARCH/lanrage (stripped), and beside it
# `run`, which starts it (under qemu-user on ARM). Each module of Package.swift's product is
# compiled on its own (-wmo, -Osize, position-independent), in dependency order, then linked with
# the target's gcc against its libc and its static libnl and libsodium.
#   Tests/Scripts/cross.sh ARCH
set -euo pipefail
cd "$(dirname "$0")/../.."
arch=${1:?usage: $0 aarch64|armv7|x86_64}
swiftc=${SWIFTC:-$(command -v swiftc)}
embedded=$(dirname "$(dirname "$(realpath "$swiftc")")")/lib/swift/embedded

# -Osize, but -O for aarch64: Swift 6.3.1's Embedded aarch64 code at -Osize loses the small-string
# flags of a String read back from a class (the control server's party names: 0xE3 became 0x83 in the
# string's top byte, and the first read of it recursed until the stack ran out); -O does not.
optimize=-Osize
case $arch in
    aarch64) target=aarch64-none-none-elf gnu=aarch64-linux-gnu link=-static-pie optimize=-O ;;
    # Soft-float armel: the static binary runs on armhf systems too. Static, not static-pie
    # (Debian's armel libc has no rcrt1.o).
    armv7) target=armv7-none-none-eabi gnu=arm-linux-gnueabi link=-static ;;
    x86_64) target=x86_64-unknown-linux-gnu gnu=x86_64-linux-gnu link=-static-pie ;;
    *) echo "unknown architecture $arch (aarch64, armv7, x86_64)" >&2; exit 64 ;;
esac
if [ "$arch" = x86_64 ]; then cc=gcc sysroot=/; else cc=$gnu-gcc sysroot=/usr/$gnu; fi
libdir=/usr/lib/$gnu
out=.build/cross/$arch
mkdir -p "$out/modules"

# The product's modules, each after those it imports (Package.swift).
modules=(Output Commands Net StateChart Rendezvous WireGuard Peer STUN Punch EventLoop Relay Control Agent)

commit=$(git describe --always --dirty --abbrev=12 2>/dev/null || true)
clang_flags=(-Xcc --sysroot="$sysroot" -Xcc -D__linux__ -Xcc -D__unix__ -Xcc -I/usr/include/libnl3
             -Xcc "-DLANRAGE_COMMIT=\"$commit\"")
# 64-bit time_t and off_t on 32-bit ARM: wall-clock times past 2038, files past 2 GiB.
if [ "$arch" = armv7 ]; then clang_flags+=(-Xcc -D_TIME_BITS=64 -Xcc -D_FILE_OFFSET_BITS=64); fi
# The target's C library headers first; /usr/include (libsodium's, the kernel's UAPI headers) only after them.
if [ "$arch" != x86_64 ]; then clang_flags+=(-Xcc -isystem -Xcc "$sysroot/include" -Xcc -idirafter -Xcc /usr/include); fi
common=(-target "$target" -enable-experimental-feature Embedded -package-name lanrage -wmo -Xllvm -relocation-model=pic
        -Xfrontend -function-sections -I "$out/modules" -I Sources/CLinux -I Sources/CSodium -I Sources/CNetlink
        "${clang_flags[@]}")

objects=()
for module in "${modules[@]}"; do
    "$swiftc" "${common[@]}" "$optimize" -parse-as-library -module-name "$module" -emit-module -emit-module-path "$out/modules/$module.swiftmodule" \
        Sources/"$module"/*.swift -c -o "$out/$module.o"
    objects+=("$out/$module.o")
done
"$swiftc" "${common[@]}" "$optimize" -module-name lanrage Sources/lanrage/*.swift -c -o "$out/lanrage.o"
objects+=("$out/lanrage.o")

"$cc" $link -Wl,--gc-sections -o "$out/lanrage.unstripped" "${objects[@]}" \
    "$libdir/libnl-genl-3.a" "$libdir/libnl-3.a" "$libdir/libsodium.a" -lpthread -lm \
    "$embedded/$target/libswiftUnicodeDataTables.a"
"$gnu-strip" -o "$out/lanrage" "$out/lanrage.unstripped" 2>/dev/null || strip -o "$out/lanrage" "$out/lanrage.unstripped"
# What the lab tests start as LANRAGE_BIN: the binary itself, or qemu-user with it.
case $arch in
    aarch64) emulator="qemu-aarch64-static " ;;
    armv7) emulator="qemu-arm-static " ;;
    *) emulator="" ;;
esac
printf '#!/bin/sh\nexec %s"%s" "$@"\n' "$emulator" "$(realpath "$out/lanrage")" > "$out/run"
chmod +x "$out/run"
ls -l "$out/lanrage"
