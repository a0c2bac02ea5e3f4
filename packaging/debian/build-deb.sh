#!/bin/sh
# Builds the lvmd Debian package (daemon, lvmd-ctl, systemd units, example config) with
# dpkg-deb alone: no debhelper, no cargo-deb.
#   packaging/debian/build-deb.sh [BIN_DIR] [OUT_DIR]
# BIN_DIR holds the built lvmd and lvmd-ctl (default target/release); the .deb goes to
# OUT_DIR (default target/debian). Prints the path of the .deb.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin=${1:-$top/target/release}
out=${2:-$top/target/debian}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -n1)
arch=$(dpkg --print-architecture)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"
install -D -m 0755 "$bin/lvmd" "$root/usr/bin/lvmd"
install -D -m 0755 "$bin/lvmd-ctl" "$root/usr/bin/lvmd-ctl"
install -D -m 0644 "$top/systemd/lvmd.service" "$root/usr/lib/systemd/system/lvmd.service"
install -D -m 0644 "$top/systemd/lvmd.socket" "$root/usr/lib/systemd/system/lvmd.socket"
install -D -m 0644 "$top/systemd/lvmd.toml" "$root/etc/lvmd/lvmd.toml"
install -D -m 0644 "$top/LICENSE" "$root/usr/share/doc/lvmd/copyright"
install -d "$root/DEBIAN"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" "$here/control.in" > "$root/DEBIAN/control"
echo "Installed-Size: $(du -ks "$root" | cut -f1)" >> "$root/DEBIAN/control"
echo /etc/lvmd/lvmd.toml > "$root/DEBIAN/conffiles"
install -m 0755 "$here/postinst" "$here/prerm" "$root/DEBIAN/"
mkdir -p "$out"
deb="$out/lvmd_${version}_${arch}.deb"
# DEB_COMPRESSION=none makes test builds of debug binaries fast.
dpkg-deb --root-owner-group -Z"${DEB_COMPRESSION:-xz}" --build "$root" "$deb" >/dev/null
echo "$deb"
