//! A StorageClass whose parameters the plugin refuses (`layout: mirror`, a device class
//! lvmd does not have), seen as a user sees it: the external-provisioner calls
//! GetCapacity with the class's parameters on every poll, and CreateVolume with them
//! plus the PVC's name. The plugin's log must say so once per parameter set, clearly,
//! and `/metrics` count every refusal by reason. `lvmd-csi` against `lvmd --simulate`.
#![allow(clippy::result_large_err)]
// csi_suite re-exports helpers only its case macro uses.
#![allow(unused_imports)]

mod common;
mod csi_suite;
mod tools;

use csi_suite::{map, mount_cap, topo, Env, NODE};
use lvmd::csi::pb::*;
use tonic::Code;

fn metric(m: &csi_suite::Scraped, reason: &str) -> u64 {
    m.value(
        "lvmd_csi_storage_class_refused_total",
        &[("reason", reason)],
    ) as u64
}

#[test]
fn refused_storage_class_is_logged_once_and_counted_by_reason() {
    let e = Env::simulated();
    let before = e.metrics();
    assert_eq!(metric(&before, "invalid_parameter"), 0);
    assert_eq!(metric(&before, "unknown_device_class"), 0);

    let capacity = |params: &[(&str, &str)]| {
        e.rt.block_on(e.ctl().get_capacity(GetCapacityRequest {
            volume_capabilities: vec![],
            parameters: map(params),
            accessible_topology: Some(topo(NODE)),
        }))
    };
    let mirror = [("deviceClass", "ssd"), ("layout", "mirror")];
    let unknown = [("deviceClass", "nvme"), ("fsType", "xfs")];
    // Three polls of each bad class, one of a good one.
    for _ in 0..3 {
        let s = capacity(&mirror).unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(s.message().contains("mirror"), "{s:?}");
        let s = capacity(&unknown).unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(s.message().contains("nvme"), "{s:?}");
    }
    capacity(&[("deviceClass", "ssd"), ("layout", "linear")]).unwrap();
    // A PVC of the mirror class (immediate binding would get here): the same parameter
    // set, whatever the PVC's name.
    for pvc in ["a", "b"] {
        let mut params = map(&mirror);
        params.insert("csi.storage.k8s.io/pvc/name".into(), pvc.into());
        params.insert("csi.storage.k8s.io/pvc/namespace".into(), "default".into());
        params.insert("csi.storage.k8s.io/pv/name".into(), format!("pvc-{pvc}"));
        let s =
            e.rt.block_on(e.ctl().create_volume(CreateVolumeRequest {
                name: format!("pvc-{pvc}"),
                volume_capabilities: vec![mount_cap("ext4")],
                parameters: params,
                ..Default::default()
            }))
            .unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    }

    let after = e.metrics();
    assert_eq!(metric(&after, "invalid_parameter"), 5, "{}", after.text);
    assert_eq!(metric(&after, "unknown_device_class"), 3, "{}", after.text);
    let logs = e.logs();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("refused StorageClass parameters"))
        .collect();
    assert_eq!(lines.len(), 2, "one line per parameter set:\n{logs}");
    assert!(
        lines[0].contains("deviceClass=ssd,layout=mirror") && lines[0].contains("ERROR"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("invalid_parameter"), "{}", lines[0]);
    assert!(
        lines[1].contains("deviceClass=nvme,fsType=xfs") && lines[1].contains("nvme"),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("unknown_device_class"), "{}", lines[1]);
    assert!(
        lines.iter().all(|l| l.contains("stay Pending")),
        "{lines:?}"
    );
}

/// The chart's StorageClasses (`packaging/helm/lvmd-csi`, rendered as
/// `packaging/render-chart.py` does) are ones the plugin takes: GetCapacity with each
/// one's parameters, as the external-provisioner sends them (its `csi.storage.k8s.io/`
/// keys taken out; the secret references stay with the PV), answers; a PVC of the
/// encrypted class gets an encrypted volume whose stage needs its key.
#[test]
fn the_chart_s_storage_classes_are_ones_the_plugin_takes() {
    if !tools::require(
        "the_chart_s_storage_classes_are_ones_the_plugin_takes",
        "python3 with PyYAML",
        "python3-yaml",
        tools::runs("python3", &["-c", "import yaml"]),
    ) {
        return;
    }
    let script = r#"
import importlib.util, json, sys, yaml
spec = importlib.util.spec_from_file_location("rc", sys.argv[1])
rc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rc)
docs = [d for d in yaml.safe_load_all(rc.render_chart()) if d and d["kind"] == "StorageClass"]
print(json.dumps({d["metadata"]["name"]: d["parameters"] for d in docs}))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/render-chart.py"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let classes: std::collections::BTreeMap<String, std::collections::HashMap<String, String>> =
        serde_json::from_slice(&out.stdout).unwrap();
    assert!(classes.contains_key("lvmd-linear-encrypted"), "{classes:?}");
    // The chart's device classes as a node would have them: `ssd` with two PVs (the
    // simulated engine gives a class as many as its stripes), so its mirror classes fit,
    // and `thin` with a pool.
    let e = Env::simulated_with(
        ["vg-ssd".into(), "vg-thin".into()],
        "[device_classes.ssd]\nvolume_group = \"vg-ssd\"\ndefault = true\nstripes = 2\n\
         encryption = { pbkdf = { type = \"pbkdf2\", iterations = 1000 } }\n\
         [device_classes.thin]\nvolume_group = \"vg-thin\"\n\
         thin_pool = { name = \"pool\", size = \"50%\" }\n",
    );
    let sent = |params: &std::collections::HashMap<String, String>| {
        params
            .iter()
            .filter(|(k, _)| !k.starts_with("csi.storage.k8s.io/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<std::collections::HashMap<_, _>>()
    };
    for (name, params) in &classes {
        e.rt.block_on(e.ctl().get_capacity(GetCapacityRequest {
            volume_capabilities: vec![],
            parameters: sent(params),
            accessible_topology: Some(topo(NODE)),
        }))
        .unwrap_or_else(|s| panic!("StorageClass {name}: {s:?}"));
    }
    let enc = &classes["lvmd-linear-encrypted"];
    let v =
        e.rt.block_on(e.ctl().create_volume(CreateVolumeRequest {
            name: "pvc-chart".into(),
            volume_capabilities: vec![mount_cap(&enc["csi.storage.k8s.io/fstype"])],
            parameters: sent(enc),
            accessibility_requirements: Some(TopologyRequirement {
                requisite: vec![topo(NODE)],
                preferred: vec![topo(NODE)],
            }),
            ..Default::default()
        }))
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(
        v.volume_context.get("encryption").map(String::as_str),
        Some("true")
    );
    let stage = |secrets: std::collections::HashMap<String, String>| {
        e.rt.block_on(e.node().node_stage_volume(NodeStageVolumeRequest {
            volume_id: v.volume_id.clone(),
            staging_target_path: e.path("plugins/chart/globalmount"),
            volume_capability: Some(mount_cap("ext4")),
            volume_context: v.volume_context.clone(),
            secrets,
            ..Default::default()
        }))
    };
    let s = stage(Default::default()).unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    // What kubelet passes from the Secret ${pvc.name}-luks: its data, `passphrase`.
    stage(csi_suite::secrets("the PVC's own key")).unwrap();
}
