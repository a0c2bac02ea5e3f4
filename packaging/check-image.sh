#!/usr/bin/env bash
# Runs the image packaging/build-image.sh wrote, with runc on a bundle umoci unpacks
# from the archive (the image's own config: user, entrypoint), confined as the chart
# confines the plugin (read-only root, no capabilities, no new privileges), and fails
# unless:
#   - the archive names the image the chart deploys (values.yaml image.repository:tag);
#   - `lvmd-csi --version` prints the crate's version;
#   - started as the resizer Deployment starts it (--controller-only), it runs as the
#     chart's uid and gid, holds no capabilities and creates its CSI socket, owned by
#     that uid and gid, in a directory bound in from the host;
#   - the image holds no shell and no program but lvmd-csi (its files are listed);
#   - the archive and the unpacked root stay under the size bounds below.
# Run as root.   packaging/check-image.sh [target/lvmd-csi-image.tar]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
archive=$(realpath "${1:-$top/target/lvmd-csi-image.tar}")
# lvmd-csi without debug info is ~7.5 MiB, glibc and libgcc_s ~5 MiB, the gzipped layer
# ~5 MiB: twice that is a regression (a library or tool pulled in), not noise.
MAX_ARCHIVE_KIB=$((10 * 1024))
MAX_ROOT_KIB=$((24 * 1024))

fail() { echo "check-image: FAIL: $*" >&2; exit 1; }
step() { echo "check-image: $*"; }

work=$(mktemp -d)
id="lvmd-csi-check-$$"
cleanup() {
  runc kill "$id" KILL 2>/dev/null || true
  runc delete --force "$id" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -n1)
read -r repository tag uid gid < <(python3 - "$top/packaging/manifests/lvmd-csi.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
dep = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "lvmd-csi-resizer"][0]
c = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "lvmd-csi"][0]
repo, tag = c["image"].rsplit(":", 1)
sc = c["securityContext"]
print(repo, tag, sc["runAsUser"], sc["runAsGroup"])
EOF
)
step "the chart deploys $repository:$tag as $uid:$gid"

mkdir "$work/layout"
tar -C "$work/layout" -xf "$archive"
name=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["manifests"]; assert len(m)==1, m; print(m[0]["annotations"]["io.containerd.image.name"], m[0]["annotations"]["org.opencontainers.image.ref.name"])' "$work/layout/index.json")
[[ $name == "$repository:$tag $tag" ]] || fail "the archive names \"$name\", the chart deploys $repository:$tag"

umoci unpack --image "$work/layout:$tag" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
cfg="$work/bundle/config.json"
if python3 - "$cfg" "$uid" "$gid" <<'EOF'
import json, sys
cfg, uid, gid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = json.load(open(cfg))
u = c["process"]["user"]
assert (u["uid"], u["gid"]) == (uid, gid), f"the image's user is {u}, the chart's {uid}:{gid}"
assert c["process"]["args"][0] == "/usr/bin/lvmd-csi", c["process"]["args"]
EOF
then :; else fail "the image's config does not match the chart (above)"; fi
step "image config: user $uid:$gid, entrypoint /usr/bin/lvmd-csi"

# What the image holds: no shell, no program but lvmd-csi.
step "files in the image:"
(cd "$rootfs" && find . ! -type d | sort | sed 's/^\./  /')
for sh in bin/sh bin/bash bin/dash usr/bin/sh bin/busybox usr/bin/env; do
  [[ ! -e $rootfs/$sh && ! -L $rootfs/$sh ]] || fail "the image holds /$sh"
done
progs=$(cd "$rootfs" && find . -type f -perm /111 ! -name '*.so' ! -name '*.so.*' | sort)
[[ $progs == ./usr/bin/lvmd-csi ]] || fail "programs besides lvmd-csi in the image: $progs"

archive_kib=$(du -k "$archive" | cut -f1)
root_kib=$(du -sk "$rootfs" | cut -f1)
step "size: archive $archive_kib KiB (bound $MAX_ARCHIVE_KIB), unpacked $root_kib KiB (bound $MAX_ROOT_KIB)"
((archive_kib <= MAX_ARCHIVE_KIB)) || fail "the archive is $archive_kib KiB"
((root_kib <= MAX_ROOT_KIB)) || fail "the unpacked image is $root_kib KiB"

# Confined like the chart's container: read-only root, no capabilities, no new
# privileges; the socket directory bound in read-write as the pod's emptyDir is.
mkdir -m 0777 "$work/csi"
run_config() {
  python3 - "$cfg" "$work/csi" "$@" <<'EOF'
import json, sys
cfg, csi, args = sys.argv[1], sys.argv[2], sys.argv[3:]
c = json.load(open(cfg))
p = c["process"]
p["args"] = ["/usr/bin/lvmd-csi"] + args
p["terminal"] = False
p["noNewPrivileges"] = True
p["capabilities"] = {k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")}
c["root"]["readonly"] = True
c["mounts"] = [m for m in c["mounts"] if m["destination"] != "/csi"] + [
    {"destination": "/csi", "type": "bind", "source": csi, "options": ["rbind", "rw"]}]
json.dump(c, open(cfg, "w"), indent=1)
EOF
}

run_config --version
out=$(cd "$work/bundle" && runc run "$id" </dev/null 2>&1) || fail "lvmd-csi --version in the image: $out"
[[ $out == "lvmd-csi $version" ]] || fail "lvmd-csi --version printed \"$out\", want \"lvmd-csi $version\""
step "lvmd-csi --version in the image: $out"

run_config --csi-endpoint=unix:///csi/csi.sock --node-id=check-image --controller-only --log-format=json
(cd "$work/bundle" && runc run -d "$id" </dev/null >"$work/log" 2>&1) || fail "runc run: $(cat "$work/log")"
for _ in $(seq 100); do
  [[ -S $work/csi/csi.sock ]] && break
  sleep 0.1
done
[[ -S $work/csi/csi.sock ]] || fail "no CSI socket after 10 s; log: $(cat "$work/log")"
pid=$(runc state "$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
status=$(cat "/proc/$pid/status")
grep -qE "^Uid:\s+$uid\s+$uid\s+$uid\s+$uid$" <<<"$status" || fail "lvmd-csi runs as $(grep ^Uid <<<"$status")"
grep -qE "^Gid:\s+$gid\s+$gid\s+$gid\s+$gid$" <<<"$status" || fail "lvmd-csi runs as $(grep ^Gid <<<"$status")"
grep -qE "^CapEff:\s+0+$" <<<"$status" || fail "lvmd-csi holds capabilities: $(grep ^CapEff <<<"$status")"
owner=$(stat -c %u:%g "$work/csi/csi.sock")
[[ $owner == "$uid:$gid" ]] || fail "the CSI socket is owned by $owner"
step "lvmd-csi serves /csi/csi.sock as $uid:$gid ($(stat -c %A "$work/csi/csi.sock")), no capabilities"
runc kill "$id" TERM
for _ in $(seq 100); do
  [[ $(runc state "$id" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null) == running ]] || break
  sleep 0.1
done
step "ok"
