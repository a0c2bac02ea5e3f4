#!/usr/bin/env python3
"""Renders packaging/helm/lvmd-csi into plain manifests without helm.

helm is not packaged for Debian, PyPI or npm, so this implements the small subset of
Go templates the chart uses (and refuses anything else, so the chart cannot silently
outgrow it): `{{ .Values.a.b }}`, `{{ .Release.Namespace }}`, `{{ $.Values.x }}`,
`{{ . }}` (the range item), `| quote`, `{{- range .Values.list }}`, `{{- if .field }}`, `{{- end }}`.

  render-chart.py                 print the manifests (namespace lvmd-csi)
  render-chart.py --write         write packaging/manifests/lvmd-csi.yaml
  render-chart.py --check         fail if that file is stale, and check the rendered
                                  objects (parse as YAML, the properties the driver needs)
"""
import json, os, re, sys
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


def check(text):
    objs = [o for o in yaml.safe_load_all(text) if o]
    kinds = {}
    for o in objs:
        assert o.get("apiVersion") and o.get("kind") and o["metadata"].get("name"), o
        kinds.setdefault(o["kind"], []).append(o)
    drv = kinds["CSIDriver"][0]["spec"]
    assert drv["storageCapacity"] is True and drv["attachRequired"] is False
    ds = kinds["DaemonSet"][0]["spec"]["template"]["spec"]
    c = {x["name"]: x for x in ds["containers"]}
    assert set(c) == {"lvmd-csi", "node-driver-registrar", "csi-provisioner", "liveness-probe"}, set(c)
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
    assert {s["metadata"]["name"] for s in scs} == {"lvmd-linear", "lvmd-striped"}
    known = {"deviceClass", "layout", "stripes", "stripeSize", "fsType"}
    for s in scs:
        assert s["volumeBindingMode"] == "WaitForFirstConsumer" and s["allowVolumeExpansion"] is True
        assert s["provisioner"] == kinds["CSIDriver"][0]["metadata"]["name"]
        for k, v in s["parameters"].items():
            assert isinstance(v, str), (k, v)
            assert k in known or k.startswith("csi.storage.k8s.io/"), k
    assert "ClusterRole" in kinds and "ClusterRoleBinding" in kinds and "ServiceAccount" in kinds
    csi_peers_allowed(ds)
    csi_peers_allowed(rs["template"]["spec"])
    return len(objs)


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
        print(f"ok: {check(text)} objects")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
