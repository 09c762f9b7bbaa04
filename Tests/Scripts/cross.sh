#!/usr/bin/env bash
# make cross: the lanrage executable in Embedded Swift, static, for ARCH (aarch64, armv7 or x86_64),
# from the same sources as the hosted build: .build/cross/ARCH/lanrage (stripped). Each module of
# Package.swift's product is compiled on its own (-wmo, -Osize, position-independent), in dependency
# order, then linked with the target's gcc against its libc and its static libnl and libsodium.
#   Tests/Scripts/cross.sh ARCH
set -euo pipefail
cd "$(dirname "$0")/../.."
arch=${1:?usage: $0 aarch64|armv7|x86_64}
swiftc=${SWIFTC:-$(command -v swiftc)}
embedded=$(dirname "$(dirname "$(realpath "$swiftc")")")/lib/swift/embedded

case $arch in
    aarch64) target=aarch64-none-none-elf gnu=aarch64-linux-gnu link=-static-pie ;;
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

clang_flags=(-Xcc --sysroot="$sysroot" -Xcc -D__linux__ -Xcc -D__unix__ -Xcc -I/usr/include/libnl3)
if [ "$arch" != x86_64 ]; then clang_flags+=(-Xcc -isystem -Xcc "$sysroot/include" -Xcc -isystem -Xcc /usr/include); fi
common=(-target "$target" -enable-experimental-feature Embedded -wmo -Osize -Xllvm -relocation-model=pic
        -Xfrontend -function-sections -I "$out/modules" -I Sources/CLinux -I Sources/CSodium -I Sources/CNetlink
        "${clang_flags[@]}")

objects=()
for module in "${modules[@]}"; do
    "$swiftc" "${common[@]}" -parse-as-library -module-name "$module" -emit-module -emit-module-path "$out/modules/$module.swiftmodule" \
        Sources/"$module"/*.swift -c -o "$out/$module.o"
    objects+=("$out/$module.o")
done
"$swiftc" "${common[@]}" -module-name lanrage Sources/lanrage/*.swift -c -o "$out/lanrage.o"
objects+=("$out/lanrage.o")

"$cc" $link -Wl,--gc-sections -o "$out/lanrage.unstripped" "${objects[@]}" \
    "$libdir/libnl-genl-3.a" "$libdir/libnl-3.a" "$libdir/libsodium.a" -lpthread -lm \
    "$embedded/$target/libswiftUnicodeDataTables.a"
"$gnu-strip" -o "$out/lanrage" "$out/lanrage.unstripped" 2>/dev/null || strip -o "$out/lanrage" "$out/lanrage.unstripped"
ls -l "$out/lanrage"
