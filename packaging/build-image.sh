#!/usr/bin/env bash
# Builds lvmd-csi's container image without a container engine, a registry or a base
# image: the binary built on this machine, the Debian packages of the shared libraries
# it links (found with ldd and dpkg -S, fetched at this machine's versions with
# apt-get download, unpacked with dpkg-deb -x), made into an OCI image with umoci and
# written as an OCI archive. Run as root (umoci keeps file ownership).
#
#   packaging/build-image.sh                  cargo build --release, then the archive:
#                                             target/lvmd-csi-image.tar
#   packaging/build-image.sh --root DIR BIN   only assemble the root file system in DIR
#                                             around BIN (packaging/Containerfile's way)
#
# The image's name and tag are the chart's (packaging/helm/lvmd-csi/values.yaml,
# image.repository and image.tag), and the tag must be the crate's version, so the
# chart names exactly what this builds. The archive's index carries the name both ways
# the usual loaders read it (`io.containerd.image.name` for containerd, and the tag as
# `org.opencontainers.image.ref.name`, the OCI layout's own):
#   ctr -n k8s.io images import target/lvmd-csi-image.tar
#   skopeo copy oci-archive:target/lvmd-csi-image.tar:0.1.0 \
#     containers-storage:ghcr.io/lvmd/lvmd-csi:0.1.0
# packaging/check-image.sh runs it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

# The uid and gid the chart runs the plugin as (runAsUser/runAsGroup in its templates;
# render-chart.py --check holds the two to this value).
IMAGE_UID=65532
IMAGE_GID=65532

# The root file system: BIN as /usr/bin/lvmd-csi and the Debian packages holding the
# libraries it loads, nothing else (no shell, no package manager, no dpkg database).
assemble_root() {
  local root=$1 bin=$2
  local debs libs pkgs=() path pkg
  install -d -m 0755 "$root"
  debs=$(mktemp -d)
  # Every library the dynamic loader resolves for BIN, the loader itself included.
  libs=$(ldd "$bin" | awk '$2 == "=>" { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
  for path in $libs; do
    # Debian registers merged-/usr files under either spelling.
    pkg=$(dpkg -S "$path" 2>/dev/null || dpkg -S "${path#/usr}" 2>/dev/null ||
      dpkg -S "/usr$path" 2>/dev/null) || {
      echo "build-image: no Debian package holds $path (ldd $bin)" >&2
      exit 1
    }
    pkgs+=("${pkg%%:*}")
  done
  mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
  local p v dep
  # libgcc-s1's gcc-N-base holds its copyright file.
  for p in "${pkgs[@]}"; do
    for dep in $(dpkg-query -W -f='${Depends}\n' "$p" | tr ',' '\n' | sed 's/^ *//; s/[ (|].*//'); do
      if [[ $dep == gcc-*-base && " ${pkgs[*]} " != *" $dep "* ]]; then pkgs+=("$dep"); fi
    done
  done
  echo "build-image: packages: ${pkgs[*]}" >&2
  for p in "${pkgs[@]}"; do
    # The version this machine runs (what BIN was linked against); the archive's
    # current one if that is no longer offered.
    v=$(dpkg-query -W -f='${Version}' "$p")
    (cd "$debs" && { apt-get download -qq "$p=$v" 2>/dev/null || apt-get download -qq "$p"; }) || {
      # No package lists yet (a fresh or cleaned machine): fetch them once.
      apt-get update -qq && (cd "$debs" && { apt-get download -qq "$p=$v" 2>/dev/null || apt-get download -qq "$p"; })
    }
  done
  for d in "$debs"/*.deb; do
    dpkg-deb -x "$d" "$root"
  done
  rm -rf "$debs"
  # glibc's iconv modules (8 MiB) and documentation: lvmd-csi calls neither iconv nor
  # setlocale. The copyright files stay (the libraries' licences travel with them).
  rm -rf "$root/usr/lib/x86_64-linux-gnu/gconv" "$root/usr/share/lintian"
  find "$root/usr/share/doc" -type f ! -name copyright -delete 2>/dev/null || true
  find "$root/usr/share" -depth -type d -empty -delete 2>/dev/null || true
  # Debug info stripped (the release profile keeps line tables for backtraces).
  install -d -m 0755 "$root/usr/bin" "$root/etc"
  objcopy --strip-debug "$bin" "$root/usr/bin/lvmd-csi"
  chmod 0755 "$root/usr/bin/lvmd-csi"
  # Names for the two ids the plugin can run as, for tools that print them.
  printf 'root:x:0:0:root:/:/nonexistent\nlvmd-csi:x:%d:%d:lvmd-csi:/:/nonexistent\n' \
    "$IMAGE_UID" "$IMAGE_GID" > "$root/etc/passwd"
  printf 'root:x:0:\nlvmd-csi:x:%d:\n' "$IMAGE_GID" > "$root/etc/group"
  chmod 0644 "$root/etc/passwd" "$root/etc/group"
}

if [[ ${1:-} == --root ]]; then
  [[ $# == 3 ]] || { echo "usage: $0 --root DIR BINARY" >&2; exit 2; }
  assemble_root "$2" "$3"
  exit 0
fi
[[ $# == 0 ]] || { echo "usage: $0 [--root DIR BINARY]" >&2; exit 2; }

cd "$top"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
read -r repository tag < <(python3 -c '
import sys, yaml
v = yaml.safe_load(open(sys.argv[1]))["image"]
print(v["repository"], v["tag"])' packaging/helm/lvmd-csi/values.yaml)
if [[ $tag != "$version" ]]; then
  echo "build-image: the chart's image.tag $tag is not the crate's version $version" >&2
  exit 1
fi
name="$repository:$tag"

cargo build --release --locked --bin lvmd-csi
bin=target/release/lvmd-csi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
layout="$work/layout"
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
# umoci unpack/repack around an empty image: one layer holding the whole root.
umoci unpack --image "$layout:$tag" "$work/bundle" >/dev/null
assemble_root "$work/bundle/rootfs" "$bin"
created=$(date -u -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)" +%Y-%m-%dT%H:%M:%SZ)
umoci repack --image "$layout:$tag" \
  --history.created_by "packaging/build-image.sh: lvmd-csi and the Debian packages of its libraries" \
  --history.created "$created" "$work/bundle"
umoci config --image "$layout:$tag" --no-history \
  --created "$created" --os linux --architecture "$(dpkg --print-architecture)" \
  --config.user "$IMAGE_UID:$IMAGE_GID" \
  --config.entrypoint /usr/bin/lvmd-csi --config.workingdir / \
  --config.env PATH=/usr/bin \
  --config.label "org.opencontainers.image.title=lvmd-csi" \
  --config.label "org.opencontainers.image.version=$version" \
  --config.label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)"
umoci gc --layout "$layout"
# The full name beside umoci's tag, for containerd's importer.
python3 - "$layout/index.json" "$name" <<'EOF'
import json, sys
path, name = sys.argv[1:]
idx = json.load(open(path))
assert len(idx["manifests"]) == 1, idx
idx["manifests"][0].setdefault("annotations", {})["io.containerd.image.name"] = name
json.dump(idx, open(path, "w"))
EOF
out=target/lvmd-csi-image.tar
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@0" -C "$layout" -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "build-image: $name -> $out ($(du -k "$out" | cut -f1) KiB)" >&2
echo "$out"
