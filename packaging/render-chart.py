#!/usr/bin/env python3
"""Renders packaging/helm/lvmd-csi into plain manifests without helm.

helm is not packaged for Debian, PyPI or npm, so this implements the small subset of
Go templates the chart uses (and refuses anything else, so the chart cannot silently
outgrow it): `{{ .Values.a.b }}`, `{{ .Release.Namespace }}`, `{{ $.Values.x }}`,
`{{ . }}` (the range item), `| quote`, `{{- range .Values.list }}`, `{{- if .field }}`, `{{- end }}`.

  render-chart.py                 print the manifests (namespace lvmd-csi)
  render-chart.py --write         write packaging/manifests/lvmd-csi.yaml
  render-chart.py --check         fail if that file is stale, and check the rendered
                                  objects (parse as YAML, the properties the driver needs,
                                  every sidecar flag and RBAC rule against the SIDECARS
                                  table; with LVMD_CSI=<binary>, every lvmd-csi flag
                                  against its --help)
"""
import json, os, re, subprocess, sys
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
CHART = os.path.join(HERE, "helm", "lvmd-csi")
OUT = os.path.join(HERE, "manifests", "lvmd-csi.yaml")
NAMESPACE = "lvmd-csi"
EXPR = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")


def lookup(path, ctx, root):
    if path == ".":
        return ctx
    if path.startswith("$."):
        obj, parts = root, path[2:].split(".")
    elif path.startswith(".Values.") or path.startswith(".Release."):
        obj, parts = root, path[1:].split(".")
    elif path.startswith("."):
        obj, parts = ctx, path[1:].split(".")
    else:
        raise SystemExit(f"unsupported template expression: {path!r}")
    for p in parts:
        if not isinstance(obj, dict) or p not in obj:
            return None
        obj = obj[p]
    return obj


def value(expr, ctx, root):
    parts = [p.strip() for p in expr.split("|")]
    v = lookup(parts[0], ctx, root)
    if v is None:
        raise SystemExit(f"{parts[0]} has no value")
    for f in parts[1:]:
        if f != "quote":
            raise SystemExit(f"unsupported template function: {f!r}")
        v = json.dumps(str(v))
    return v if isinstance(v, str) else json.dumps(v) if isinstance(v, bool) else str(v)


def render(lines, ctx, root):
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        m = re.fullmatch(r"\s*\{\{-\s*(range|if)\s+(\S+)\s*\}\}\s*", line)
        if m:
            depth, j = 1, i + 1
            while depth:
                if re.fullmatch(r"\s*\{\{-\s*(range|if)\s.*", lines[j]):
                    depth += 1
                elif re.fullmatch(r"\s*\{\{-\s*end\s*\}\}\s*", lines[j]):
                    depth -= 1
                j += 1
            body = lines[i + 1 : j - 1]
            v = lookup(m.group(2), ctx, root)
            if m.group(1) == "range":
                for item in v or []:
                    out += render(body, item, root)
            elif v:
                out += render(body, ctx, root)
            i = j
            continue
        if "{{" in line and re.search(r"\{\{-?\s*(range|if|end|else|define|include)", line):
            raise SystemExit(f"unsupported template line: {line!r}")
        out.append(EXPR.sub(lambda m: value(m.group(1), ctx, root), line))
        i += 1
    return out


def render_chart():
    with open(os.path.join(CHART, "values.yaml")) as f:
        values = yaml.safe_load(f)
    root = {"Values": values, "Release": {"Namespace": NAMESPACE, "Name": "lvmd-csi"}}
    docs = [f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n"]
    tdir = os.path.join(CHART, "templates")
    for name in sorted(os.listdir(tdir)):
        with open(os.path.join(tdir, name)) as f:
            lines = f.read().splitlines()
        text = "\n".join(render(lines, root["Values"], root)) + "\n"
        for d in re.split(r"^---\s*$", text, flags=re.M):
            if d.strip():
                docs.append(f"# Source: lvmd-csi/templates/{name}\n" + d.strip("\n") + "\n")
    header = "# Rendered from packaging/helm/lvmd-csi by packaging/render-chart.py --write; do not edit.\n"
    return header + "---\n".join(docs)


def check(text, values):
    objs = [o for o in yaml.safe_load_all(text) if o]
    kinds = {}
    for o in objs:
        assert o.get("apiVersion") and o.get("kind") and o["metadata"].get("name"), o
        kinds.setdefault(o["kind"], []).append(o)
    drv = kinds["CSIDriver"][0]["spec"]
    assert drv["storageCapacity"] is True and drv["attachRequired"] is False
    ds = kinds["DaemonSet"][0]["spec"]["template"]["spec"]
    c = {x["name"]: x for x in ds["containers"]}
    assert set(c) == {"lvmd-csi", "node-driver-registrar", "csi-provisioner", "csi-snapshotter", "liveness-probe"}, set(c)
    # Snapshots are local as volumes are: one snapshotter per node, for its own volumes.
    snap = c["csi-snapshotter"]
    assert "--node-deployment" in snap["args"], snap["args"]
    assert any(e["name"] == "NODE_NAME" and e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
               for e in snap["env"]), snap["env"]
    vsc = kinds["VolumeSnapshotClass"]
    assert len(vsc) == 2, vsc
    for v in vsc:
        assert v["driver"] == kinds["CSIDriver"][0]["metadata"]["name"], v
        assert v["deletionPolicy"] == "Delete", v
    # The thin class takes no parameters; the COW class only the one lvmd-csi knows,
    # a share in 1-100 % or a size.
    params = {v["metadata"]["name"]: v.get("parameters") or {} for v in vsc}
    assert params[values["volumeSnapshotClass"]["name"]] == {}, params
    cow = params[values["cowSnapshotClass"]["name"]]
    assert set(cow) == {"cowSize"}, cow
    assert re.fullmatch(r"([1-9][0-9]?|100)%|[0-9]+(\.[0-9]+)?([KMGTP]i?)?", cow["cowSize"]), cow
    # Group snapshots: the snapshotter's gate on, a class for the driver.
    assert "--feature-gates=CSIVolumeGroupSnapshot=true" in snap["args"], snap["args"]
    vgsc = kinds["VolumeGroupSnapshotClass"]
    assert len(vgsc) == 1 and vgsc[0]["driver"] == kinds["CSIDriver"][0]["metadata"]["name"], vgsc
    assert vgsc[0]["apiVersion"] == "groupsnapshot.storage.k8s.io/v1beta2", vgsc
    assert vgsc[0]["deletionPolicy"] == "Delete", vgsc
    # The resizer: one leader-elected replica for the cluster, not one per node.
    deps = {d["metadata"]["name"]: d for d in kinds["Deployment"]}
    rs = deps["lvmd-csi-resizer"]["spec"]
    assert rs["replicas"] == 1, rs
    rc = {x["name"]: x for x in rs["template"]["spec"]["containers"]}
    assert set(rc) == {"lvmd-csi", "csi-resizer"}, set(rc)
    assert "--leader-election" in rc["csi-resizer"]["args"], rc["csi-resizer"]["args"]
    for x in rc.values():
        assert not x.get("securityContext", {}).get("privileged"), x["name"]
    rvols = {v["name"] for v in rs["template"]["spec"]["volumes"]}
    for x in rc.values():
        for m in x.get("volumeMounts", []):
            assert m["name"] in rvols, m
    plugin = c["lvmd-csi"]
    assert plugin["securityContext"]["privileged"] is False
    kube = [m for m in plugin["volumeMounts"] if m["name"] == "kubelet-dir"][0]
    assert kube["mountPropagation"] == "HostToContainer", kube
    for x in ds["containers"]:
        assert not x.get("securityContext", {}).get("privileged"), x["name"]
        for m in x.get("volumeMounts", []):
            assert m.get("mountPropagation") != "Bidirectional", x["name"]
    prov = c["csi-provisioner"]["args"]
    for a in ["--node-deployment", "--enable-capacity", "--extra-create-metadata"]:
        assert a in prov, a
    vols = {v["name"] for v in ds["volumes"]}
    for x in ds["containers"]:
        for m in x.get("volumeMounts", []):
            assert m["name"] in vols, m
    scs = kinds["StorageClass"]
    assert {s["metadata"]["name"] for s in scs} == {
        "lvmd-linear", "lvmd-striped", "lvmd-mirror", "lvmd-mirror-integrity",
        "lvmd-linear-encrypted", "lvmd-thin"}
    known = {"deviceClass", "layout", "stripes", "stripeSize", "mirrors", "integrity", "fsType",
             "encryption"}
    for s in scs:
        assert s["volumeBindingMode"] == "WaitForFirstConsumer"
        # lvmd grows every layout it makes online (raid1: each leg on its own PV):
        # a class that refused it would leave users unable to expand a PVC lvmd could.
        expandable = s["parameters"]["layout"] in ("linear", "striped", "raid1", "thin")
        assert s["allowVolumeExpansion"] is expandable, s["metadata"]["name"]
        assert s["provisioner"] == kinds["CSIDriver"][0]["metadata"]["name"]
        # lvmd-csi refuses integrity with any layout but raid1.
        if "integrity" in s["parameters"]:
            assert s["parameters"]["layout"] == "raid1", s["metadata"]["name"]
            assert s["parameters"]["integrity"] in ("true", "false"), s["metadata"]["name"]
        for k, v in s["parameters"].items():
            assert isinstance(v, str), (k, v)
            assert k in known or k.startswith("csi.storage.k8s.io/"), k
        check_key_secrets(s)
    assert any(s["parameters"].get("encryption") == "true" for s in scs), "no encrypted StorageClass"
    assert "ClusterRole" in kinds and "ClusterRoleBinding" in kinds and "ServiceAccount" in kinds
    # kubelet fetches the node-stage/expand/publish Secrets itself (the node authorizer
    # lets it read those of pods on its node); the provisioner only writes their
    # references into the PV, and the resizer fetches only a controller-expand Secret,
    # which lvmd-csi takes none of. So no sidecar of this chart may read Secrets.
    for role in kinds["ClusterRole"] + kinds.get("Role", []):
        for r in role["rules"]:
            assert not ("" in r["apiGroups"] and {"secrets", "*"} & set(r["resources"])), (
                f"{role['metadata']['name']} grants {r['verbs']} on secrets: nothing here needs it")
    csi_peers_allowed(ds)
    csi_peers_allowed(rs["template"]["spec"])
    pods = [ds, rs["template"]["spec"]]
    check_sidecars(pods, kinds["ClusterRole"][0])
    # The image's user (packaging/build-image.sh) runs the resizer's plugin; the node's
    # runs as root with no capabilities (see the DaemonSet).
    image_ids = dict(re.findall(r"^IMAGE_(UID|GID)=(\d+)$", open(os.path.join(HERE, "build-image.sh")).read(), re.M))
    sc = rc["lvmd-csi"]["securityContext"]
    assert sc.get("runAsNonRoot") is True, sc
    assert (str(sc["runAsUser"]), str(sc["runAsGroup"])) == (image_ids["UID"], image_ids["GID"]), (sc, image_ids)
    assert plugin["securityContext"].get("runAsUser") == 0, plugin["securityContext"]
    for x in [plugin, rc["lvmd-csi"]]:
        assert x["image"] == f"{values['image']['repository']}:{values['image']['tag']}", x["image"]
        assert x["securityContext"]["capabilities"]["drop"] == ["ALL"], x["name"]
        assert x["securityContext"]["readOnlyRootFilesystem"] is True, x["name"]
    flags_checked = check_plugin_flags(pods)
    return len(objs), flags_checked


# What the external-provisioner resolves in a secret reference of a StorageClass at
# provisioning (kubernetes-csi docs, "StorageClass Secrets"): names take these, a
# namespace only ${pv.name} and ${pvc.namespace}. Anything else would reach the PV as
# literal text and kubelet would look for a Secret of that name.
NAME_TEMPLATES = {"pv.name", "pvc.name", "pvc.namespace"}
NAMESPACE_TEMPLATES = {"pv.name", "pvc.namespace"}
# The operations whose Secret kubelet passes an encrypted volume's key in: stage (the
# LUKS open under a filesystem), expand (the mapping's reload needs the key), publish
# (a raw block volume is opened at publish).
KEY_SECRETS = ["node-stage", "node-expand", "node-publish"]
PREFIX = "csi.storage.k8s.io/"


def check_key_secrets(sc):
    """An encrypted class passes every operation the one key of each PVC: a Secret named
    after the PVC in the PVC's namespace, the same for stage, expand and publish. A class
    without encryption references no Secret; no class a Secret lvmd-csi's controller
    would get (it takes none)."""
    name, p = sc["metadata"]["name"], sc["parameters"]
    secrets = {k[len(PREFIX):] for k in p if k.startswith(PREFIX) and "-secret-" in k}
    for k in secrets:
        op = k.rsplit("-secret-", 1)[0]
        assert op in KEY_SECRETS, f"{name}: {PREFIX}{k}: lvmd-csi takes no {op} secret"
    if p.get("encryption") != "true":
        assert "encryption" not in p, f"{name}: encryption {p['encryption']!r}: lvmd-csi takes \"true\""
        assert not secrets, f"{name} is not encrypted but references secrets {sorted(secrets)}"
        return
    refs = set()
    for op in KEY_SECRETS:
        sname, sns = p.get(f"{PREFIX}{op}-secret-name"), p.get(f"{PREFIX}{op}-secret-namespace")
        assert sname and sns, f"{name}: encrypted but no {op} secret (name and namespace)"
        for value, allowed in [(sname, NAME_TEMPLATES), (sns, NAMESPACE_TEMPLATES)]:
            for t in re.findall(r"\$\{([^}]*)\}", value):
                assert t in allowed, f"{name}: {op} secret {value!r}: the provisioner resolves no ${{{t}}} there"
        # One key per volume, owned by the PVC's namespace: a shared Secret would give
        # every volume of the class the same key.
        assert "${pvc.name}" in sname or "${pv.name}" in sname, f"{name}: {op} secret {sname!r} is not per PVC"
        assert sns == "${pvc.namespace}", f"{name}: {op} secret namespace {sns!r} is not the PVC's"
        refs.add((sname, sns))
    assert len(refs) == 1, f"{name}: stage, expand and publish name different secrets {sorted(refs)}"


# The sidecars the chart runs, at the release values.yaml pins, with the flags their
# README documents at that tag that the chart may pass and the RBAC rules their own
# deploy/kubernetes/rbac.yaml asks for (the snapshotter's: its
# deploy/kubernetes/csi-snapshotter/rbac-csi-snapshotter.yaml with its group snapshot
# rules; no leases, as --node-deployment elects no leader).
# Bumping a tag in values.yaml fails --check until this table is checked against the
# new release and its tag updated here. The provisioner's `--feature-gates` is left out
# on purpose: its Topology gate is GA and setting it only warns that it will go; the
# snapshotter's enables group snapshots (CSIVolumeGroupSnapshot, its README's Usage).
SIDECARS = {
    "csi-provisioner": {
        "image": "registry.k8s.io/sig-storage/csi-provisioner",
        "tag": "v6.3.0",
        "flags": {
            "--csi-address", "--node-deployment", "--strict-topology", "--immediate-topology",
            "--extra-create-metadata", "--enable-capacity", "--capacity-ownerref-level",
            "--capacity-poll-interval", "--timeout", "--worker-threads", "--http-endpoint",
            "--metrics-path", "--default-fstype", "--v",
        },
        "rbac": [
            ("", "persistentvolumes", "get list watch create patch delete"),
            ("", "persistentvolumeclaims", "get list watch update"),
            ("storage.k8s.io", "storageclasses", "get list watch"),
            ("", "events", "list watch create update patch"),
            ("storage.k8s.io", "csinodes", "get list watch"),
            ("", "nodes", "get list watch"),
            ("storage.k8s.io", "volumeattachments", "get list watch"),
            ("storage.k8s.io", "csistoragecapacities", "get list watch create update patch delete"),
            ("", "pods", "get"),
            ("apps", "replicasets", "get"),
            ("snapshot.storage.k8s.io", "volumesnapshots", "get list watch update"),
            ("snapshot.storage.k8s.io", "volumesnapshotcontents", "get list"),
        ],
    },
    "csi-snapshotter": {
        "image": "registry.k8s.io/sig-storage/csi-snapshotter",
        "tag": "v8.4.0",
        "flags": {
            "--csi-address", "--node-deployment", "--timeout", "--worker-threads",
            "--retry-interval-start", "--retry-interval-max", "--kube-api-qps",
            "--kube-api-burst", "--resync-period", "--feature-gates",
        },
        "rbac": [
            ("", "events", "list watch create update patch"),
            ("snapshot.storage.k8s.io", "volumesnapshotclasses", "get list watch"),
            ("snapshot.storage.k8s.io", "volumesnapshotcontents", "get list watch update patch"),
            ("snapshot.storage.k8s.io", "volumesnapshotcontents/status", "update patch"),
            ("groupsnapshot.storage.k8s.io", "volumegroupsnapshotclasses", "get list watch"),
            ("groupsnapshot.storage.k8s.io", "volumegroupsnapshotcontents", "get list watch update patch"),
            ("groupsnapshot.storage.k8s.io", "volumegroupsnapshotcontents/status", "update patch"),
        ],
    },
    "node-driver-registrar": {
        "image": "registry.k8s.io/sig-storage/csi-node-driver-registrar",
        "tag": "v2.17.0",
        "flags": {"--csi-address", "--kubelet-registration-path", "--health-port", "--http-endpoint", "--timeout", "--v"},
        "rbac": [],
    },
    "liveness-probe": {
        "image": "registry.k8s.io/sig-storage/livenessprobe",
        "tag": "v2.19.0",
        "flags": {"--csi-address", "--health-port", "--http-endpoint", "--probe-timeout", "--metrics-address", "--v"},
        "rbac": [],
    },
    "csi-resizer": {
        "image": "registry.k8s.io/sig-storage/csi-resizer",
        "tag": "v2.2.1",
        "flags": {
            "--csi-address", "--leader-election", "--leader-election-namespace", "--timeout",
            "--workers", "--http-endpoint", "--metrics-path", "--handle-volume-inuse-error", "--v",
        },
        "rbac": [
            ("", "persistentvolumes", "get list watch patch"),
            ("", "persistentvolumeclaims", "get list watch"),
            ("", "pods", "get list watch"),
            ("", "persistentvolumeclaims/status", "patch"),
            ("", "events", "list watch create update patch"),
            ("storage.k8s.io", "volumeattributesclasses", "get list watch"),
            ("coordination.k8s.io", "leases", "get watch list delete update create"),
        ],
    },
}


def flag_names(args):
    return [a.split("=", 1)[0] for a in args if a.startswith("-")]


def check_sidecars(pods, role):
    seen = set()
    for pod in pods:
        for x in pod["containers"]:
            if x["name"] == "lvmd-csi":
                continue
            want = SIDECARS.get(x["name"])
            assert want, f"container {x['name']} is not in render-chart.py's SIDECARS table"
            seen.add(x["name"])
            image, _, tag = x["image"].rpartition(":")
            assert image == want["image"], (x["name"], x["image"])
            assert tag == want["tag"], (
                f"{x['name']} is pinned at {tag} but render-chart.py's SIDECARS table was "
                f"checked against {want['tag']}: check its flags and RBAC in that release, "
                f"then update the table"
            )
            for f in flag_names(x.get("args", [])):
                assert f in want["flags"], f"{x['name']} {want['tag']} has no flag {f} (SIDECARS table)"
    assert seen == set(SIDECARS), seen
    granted = {}
    for r in role["rules"]:
        for g in r["apiGroups"]:
            for res in r["resources"]:
                granted.setdefault((g, res), set()).update(r["verbs"])
    for name, want in SIDECARS.items():
        for group, res, verbs in want["rbac"]:
            lacks = set(verbs.split()) - granted.get((group, res), set())
            assert not lacks, f"{name} {want['tag']} needs {sorted(lacks)} on {group or 'core'}/{res}"


def check_plugin_flags(pods):
    """Every flag the chart passes lvmd-csi is one its --help lists (LVMD_CSI: the binary)."""
    binary = os.environ.get("LVMD_CSI")
    if not binary:
        return False
    known = set(re.findall(r"--[a-z][a-z0-9-]*", subprocess.run(
        [binary, "--help"], check=True, capture_output=True, text=True).stdout))
    for pod in pods:
        for x in pod["containers"]:
            if x["name"] == "lvmd-csi":
                for f in flag_names(x["args"]):
                    assert f in known, f"lvmd-csi has no flag {f} ({binary} --help)"
    return True


def ids(args, flag):
    return {int(i) for a in args if a.startswith(flag + "=") for i in a.split("=", 1)[1].split(",")}


def csi_peers_allowed(pod):
    """Every container beside the plugin on its socket runs as a uid (or primary gid) the
    plugin's allow list lets in. No runAsUser: the sidecar images' own user, root."""
    c = {x["name"]: x for x in pod["containers"]}
    args = c["lvmd-csi"]["args"]
    uids, gids = {0} | ids(args, "--allow-uid"), ids(args, "--allow-gid")
    for x in pod["containers"]:
        if x["name"] == "lvmd-csi" or not any(m["name"] == "socket-dir" for m in x.get("volumeMounts", [])):
            continue
        sc = {**(pod.get("securityContext") or {}), **(x.get("securityContext") or {})}
        uid, gid = sc.get("runAsUser", 0), sc.get("runAsGroup", 0)
        assert uid in uids or gid in gids, f"{x['name']} runs as {uid}:{gid}, not in lvmd-csi's allow list {args}"


def main():
    text = render_chart()
    if "--write" in sys.argv:
        os.makedirs(os.path.dirname(OUT), exist_ok=True)
        with open(OUT, "w") as f:
            f.write(text)
    elif "--check" in sys.argv:
        with open(OUT) as f:
            if f.read() != text:
                raise SystemExit(f"{OUT} is stale: run packaging/render-chart.py --write")
        with open(os.path.join(CHART, "values.yaml")) as f:
            values = yaml.safe_load(f)
        n, flags_checked = check(text, values)
        print(f"ok: {n} objects" + ("" if flags_checked else "; lvmd-csi's flags not checked (set LVMD_CSI to the binary)"))
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
