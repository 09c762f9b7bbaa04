#!/usr/bin/env bash
# make deb: the Debian package of a shipped binary (make cross), built with dpkg-deb from a staging
# tree — /usr/bin/lanrage, the systemd units of docs/service/ with ExecStart at /usr/bin/lanrage, the
# example configurations in /etc/lanrage, the docs in /usr/share/doc/lanrage, and the maintainer
# scripts beside this file — at OUT/lanrage_VERSION_ARCH.deb. VERSION is the binary's release
# (Sources/lanrage/VersionCommand.swift). Timestamps are the commit's (SOURCE_DATE_EPOCH), so the
# same commit gives the same package.
#   packaging/deb/build.sh BINARY DEB_ARCH [OUT]   (DEB_ARCH: amd64, arm64 or armhf;
#   DEB_MAINTAINER: the Maintainer field, default the last commit's author)
set -euo pipefail
cd "$(dirname "$0")/../.."
binary=${1:?usage: $0 BINARY amd64|arm64|armhf [OUT]}
arch=${2:?usage: $0 BINARY amd64|arm64|armhf [OUT]}
out=${3:-.build/deb}
here=packaging/deb

# The ELF machine each Debian architecture runs (readelf -h).
case $arch in
    amd64) machine="Advanced Micro Devices X86-64" ;;
    arm64) machine="AArch64" ;;
    armhf) machine="ARM" ;;
    *) echo "deb: unknown architecture $arch (amd64, arm64, armhf)" >&2; exit 64 ;;
esac
[ -x "$binary" ] || { echo "deb: no binary at $binary (make cross)" >&2; exit 66; }
found=$(readelf -h "$binary" | sed -n 's/^ *Machine: *//p')
[ "$found" = "$machine" ] || { echo "deb: $binary is for $found, not $arch ($machine)" >&2; exit 65; }
readelf -l "$binary" | grep -q 'INTERP' && { echo "deb: $binary has a program interpreter: not the static shipped build" >&2; exit 65; }

version=$(sed -n 's/^ *static let version = "\([^"]*\)"$/\1/p' Sources/lanrage/VersionCommand.swift)
[ -n "$version" ] || { echo "deb: no version in Sources/lanrage/VersionCommand.swift" >&2; exit 65; }
# A binary this machine runs must be that release.
if [ "$arch" = "$(dpkg --print-architecture)" ]; then
    printed=$("$binary" version)
    case $printed in "lanrage $version "*) ;; *) echo "deb: $binary prints '$printed', not lanrage $version" >&2; exit 65 ;; esac
fi
commit=$(git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
maintainer=${DEB_MAINTAINER:-$(git log -1 --format='%an <%ae>' 2>/dev/null || echo "LANrage maintainers <root@localhost>")}

stage=$out/stage-$arch
rm -rf "$stage"
install -d -m 0755 "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/usr/share/doc/lanrage"
install -d -m 0700 "$stage/etc/lanrage"
install -m 0755 "$binary" "$stage/usr/bin/lanrage"

# The units of docs/service/, running the packaged binary.
for unit in docs/service/*.service; do
    target=$stage/lib/systemd/system/$(basename "$unit")
    sed 's#/usr/local/bin/lanrage#/usr/bin/lanrage#g' "$unit" > "$target"
    chmod 0644 "$target"
    grep -q '^ExecStart=/usr/bin/lanrage ' "$target" || { echo "deb: $unit: no ExecStart=/usr/local/bin/lanrage to rewrite" >&2; exit 65; }
done

# Examples only: the agent must not start before an administrator writes agent.conf.
install -m 0644 docs/service/agent.conf.example docs/service/control.env.example "$stage/etc/lanrage/"

# Docs: compressed when over 4 KiB, as Debian policy asks; the changelog in Debian's format names
# the commit, the changes themselves are in CHANGELOG.md.gz.
doc=$stage/usr/share/doc/lanrage
install -m 0644 "$here/copyright" "$doc/copyright"
for file in README.md CHANGELOG.md docs/INSTALL.md docs/CONFIGURATION.md docs/CLI.md docs/TROUBLESHOOTING.md; do
    gzip -9 -n -c "$file" > "$doc/$(basename "$file").gz"
done
{
    echo "lanrage ($version) unstable; urgency=medium"
    echo
    echo "  * Built from commit $commit; the changes are in CHANGELOG.md.gz."
    echo
    echo " -- $maintainer  $(date -R -u -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9 -n > "$doc/changelog.gz"
chmod 0644 "$doc"/*

for script in postinst prerm postrm; do install -m 0755 "$here/$script" "$stage/DEBIAN/$script"; done
(cd "$stage" && find etc -type f | sed 's#^#/#' | sort) > "$stage/DEBIAN/conffiles"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
size=$(du -k -s --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s|@MAINTAINER@|$maintainer|" \
    "$here/control" > "$stage/DEBIAN/control"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"
find "$stage" -exec touch --no-dereference -d "@$SOURCE_DATE_EPOCH" {} +

package=$out/lanrage_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$package" >/dev/null
echo "deb: $package ($(stat -c %s "$package") bytes, installed $size KiB, commit $commit)"
