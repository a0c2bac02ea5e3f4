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
