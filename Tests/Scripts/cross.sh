#!/usr/bin/env bash
# make cross: the lanrage executable in Embedded Swift, static, for ARCH (aarch64, armv7 or x86_64),
# from the same sources as the hosted build: .build/cross/ARCH/lanrage (stripped), and beside it
# `run`, which starts it (under qemu-user on ARM). Each module of Package.swift's product is
# compiled on its own (-wmo, -Osize, position-independent) against musl's headers, in dependency
# order, then linked statically by the target's gcc with musl (Debian's musl-dev for the target),
# libnl's and libsodium's archives, and Sources/CLinux/musl-link.c for the few glibc symbols those
# archives name. LIBC=glibc links glibc's static archives instead (0.9–1.1 MB larger).
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
outline=()
case $arch in
    aarch64) target=aarch64-none-none-elf gnu=aarch64-linux-gnu musl=aarch64-linux-musl link=-static-pie optimize=-O ;;
    # Soft-float armel: the static binary runs on armhf systems too. Static, not static-pie
    # (Debian's armel libc has no rcrt1.o).
    armv7) target=armv7-none-none-eabi gnu=arm-linux-gnueabi musl=arm-linux-musleabi link=-static ;;
    # x86-64 with LLVM's machine outliner: repeated instruction sequences become calls (−53 KB).
    x86_64) target=x86_64-unknown-linux-gnu gnu=x86_64-linux-gnu musl=x86_64-linux-musl link=-static-pie
            outline=(-Xllvm -enable-machine-outliner=always) ;;
    *) echo "unknown architecture $arch (aarch64, armv7, x86_64)" >&2; exit 64 ;;
esac
if [ "$arch" = x86_64 ]; then cc=gcc sysroot=/; else cc=$gnu-gcc sysroot=/usr/$gnu; fi
libdir=/usr/lib/$gnu
out=.build/cross/$arch
mkdir -p "$out/modules"

# The product's modules, each after those it imports (Package.swift).
modules=(Time Output Commands Net StateChart EventLoop DNS STUN Rendezvous WireGuard Punch Peer Relay Control Agent)

commit=$(git describe --always --dirty --abbrev=12 2>/dev/null || true)
clang_flags=(-Xcc -D__linux__ -Xcc -D__unix__ -Xcc -I/usr/include/libnl3 -Xcc "-DLANRAGE_COMMIT=\"$commit\"")
libc=${LIBC:-musl}
if [ "$libc" = musl ]; then
    # musl's headers alone first (64-bit time_t everywhere), then the kernel's UAPI headers of the
    # target (linux/, asm/), then /usr/include for libnl's and libsodium's.
    if [ "$arch" = x86_64 ]; then uapi=/usr/include/$gnu; else uapi=$sysroot/include; fi
    clang_flags+=(-Xcc -nostdlibinc -Xcc -isystem -Xcc "/usr/include/$musl" -Xcc -idirafter -Xcc "$uapi" -Xcc -idirafter -Xcc /usr/include)
    # musl's specs for gcc, made to link a static-pie executable: the self-relocating start file,
    # no program interpreter, musl's libc.a.
    sed -e 's#/Scrt1\.o#/rcrt1.o#' -e 's#^-dynamic-linker [^ ]* #-static -pie --no-dynamic-linker -z text #' \
        "/usr/lib/$musl/musl-gcc.specs" > "$out/musl-gcc.specs"
    cc_libc=(-specs "$out/musl-gcc.specs")
    link=-static-pie
else
    clang_flags+=(-Xcc --sysroot="$sysroot")
    # 64-bit time_t and off_t on 32-bit ARM: wall-clock times past 2038, files past 2 GiB.
    if [ "$arch" = armv7 ]; then clang_flags+=(-Xcc -D_TIME_BITS=64 -Xcc -D_FILE_OFFSET_BITS=64); fi
    # The target's C library headers first; /usr/include (libsodium's, the kernel's UAPI headers) only after them.
    if [ "$arch" != x86_64 ]; then clang_flags+=(-Xcc -isystem -Xcc "$sysroot/include" -Xcc -idirafter -Xcc /usr/include); fi
    cc_libc=()
fi
common=(-target "$target" -enable-experimental-feature Embedded -package-name lanrage -wmo -Xllvm -relocation-model=pic "${outline[@]}"
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

if [ "$libc" = musl ]; then
    "$cc" "${cc_libc[@]}" -Os -fPIC -c Sources/CLinux/musl-link.c -o "$out/musl-link.o"
    objects+=("$out/musl-link.o")
fi
# Linked by the toolchain's lld, which folds identical sections (--icf=all; x86-64: -64 KB): Swift's
# functions, each in a section of its own, most of those folded generic specialisations that came
# out the same (Swift's data is not split into sections, so no two metadata records are folded). Swift
# cannot compare function addresses; the C libraries' folded constants and functions are checked by
# the cross tests under emulation, the NAT lab and the kernel tests, which run this very binary.
"$cc" "${cc_libc[@]}" $link -fuse-ld=lld -B"$(dirname "$(realpath "$swiftc")")" -Wl,--gc-sections -Wl,--icf=all \
    -o "$out/lanrage.unstripped" "${objects[@]}" \
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
