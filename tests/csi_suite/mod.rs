//! The CSI suite: every RPC's happy path, each call twice (idempotency), the error codes
//! the CSI spec requires, the volume lifecycle for filesystem and block volumes,
//! read-only publishing, expansion, capacity and metrics, all through `lvmd-csi`'s real
//! socket. The same cases run on the host against `lvmd --simulate` (`tests/csi.rs`)
//! and in the VM against the real daemon on loop devices, with the plugin in its own
//! mount namespace (`tests/vm_csi.rs`); there they also check what only a real kernel
//! shows: data written and read back, sizes `statfs` reports after an online grow,
//! writes refused on read-only publishes, and lvm2's view of the LVs.
#![allow(dead_code)]

mod env;
mod ephemeral;
pub mod group_snapshots;
mod leaks;
pub mod snapshots;

use crate::common;
pub use env::*;
pub use ephemeral::*;
pub use leaks::*;
use lvmd::csi::pb::controller_client::ControllerClient;
use lvmd::csi::pb::identity_client::IdentityClient;
use lvmd::csi::pb::node_client::NodeClient;
use lvmd::csi::pb::volume_capability::access_mode::Mode;
use lvmd::csi::pb::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use lvmd::csi::pb::*;

use std::path::{Path, PathBuf};
use tonic::Code;

/// One `#[test]` per case, each with a fresh bed from `$env`.
#[macro_export]
macro_rules! csi_cases {
    ($env:expr) => {
        #[test]
        fn encrypted_lifecycle() {
            csi_suite::encrypted_lifecycle(&$env)
        }
        #[test]
        fn encrypted_keys_leak_nowhere() {
            csi_suite::encrypted_keys_leak_nowhere(&mut $env)
        }
        #[test]
        fn encrypted_block_lifecycle() {
            csi_suite::encrypted_block_lifecycle(&$env)
        }
        #[test]
        fn identity() {
            csi_suite::identity(&$env)
        }
        #[test]
        fn create_volume_rules() {
            csi_suite::create_volume_rules(&$env)
        }
        #[test]
        fn capacity_goes_down_and_up() {
            csi_suite::capacity_goes_down_and_up(&$env)
        }
        #[test]
        fn controller_expansion_changes_nothing() {
            csi_suite::controller_expansion_changes_nothing(&$env)
        }
        #[test]
        fn filesystem_lifecycle_ext4() {
            csi_suite::filesystem_lifecycle(&$env, "ext4")
        }
        #[test]
        fn filesystem_lifecycle_xfs() {
            csi_suite::filesystem_lifecycle(&$env, "xfs")
        }
        #[test]
        fn block_lifecycle() {
            csi_suite::block_lifecycle(&$env)
        }
        #[test]
        fn deleted_volumes_leave_nothing_readable() {
            csi_suite::deleted_volumes_leave_nothing_readable(&$env)
        }
        #[test]
        fn mirror_lifecycle() {
            csi_suite::mirror_lifecycle(&$env)
        }
        #[test]
        fn integrity_mirror_class() {
            csi_suite::integrity_mirror_class(&$env)
        }
        #[test]
        fn read_only_publish() {
            csi_suite::read_only_publish(&$env)
        }
        #[test]
        fn read_only_block_publish() {
            csi_suite::read_only_block_publish(&$env)
        }
        #[test]
        fn node_errors() {
            csi_suite::node_errors(&$env)
        }
        #[test]
        fn required_fields_before_lookup() {
            $crate::csi_suite::required_fields_before_lookup(&$env);
        }
        #[test]
        fn metrics_port() {
            csi_suite::metrics_port(&$env)
        }
        #[test]
        fn ephemeral_lifecycle() {
            csi_suite::ephemeral_lifecycle(&$env)
        }
        #[test]
        fn ephemeral_sizes_and_classes() {
            csi_suite::ephemeral_sizes_and_classes(&$env)
        }
        #[test]
        fn ephemeral_encrypted_lifecycle() {
            csi_suite::ephemeral_encrypted_lifecycle(&$env)
        }
        #[test]
        fn ephemeral_refusals() {
            csi_suite::ephemeral_refusals(&$env)
        }
        #[test]
        fn ephemeral_failed_publish_leaves_nothing() {
            csi_suite::ephemeral_failed_publish_leaves_nothing(&$env)
        }
        #[test]
        fn ephemeral_leaves_foreign_lv_alone() {
            csi_suite::ephemeral_leaves_foreign_lv_alone(&$env)
        }
        #[test]
        fn ephemeral_crash_cleanup() {
            csi_suite::ephemeral_crash_cleanup(&mut $env)
        }
    };
}

pub fn mount_cap(fs: &str) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            mount_flags: vec!["noatime".into()],
            volume_mount_group: String::new(),
        })),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    }
}

pub fn block_cap() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    }
}

pub fn req(name: &str, required: i64, params: &[(&str, &str)]) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: required,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![mount_cap("")],
        parameters: map(params),
        accessibility_requirements: Some(TopologyRequirement {
            requisite: vec![topo(NODE)],
            preferred: vec![topo(NODE)],
        }),
        ..Default::default()
    }
}

pub fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> tonic::Status {
    r.expect_err("expected an error")
}

pub fn identity(e: &Env) {
    let mut id = IdentityClient::new(e.ch());
    e.rt.block_on(async {
        for _ in 0..2 {
            let info = id.get_plugin_info(GetPluginInfoRequest {}).await.unwrap();
            assert_eq!(info.get_ref().name, "lvmd.csi.local");
            assert!(!info.get_ref().vendor_version.is_empty());
            let caps = id
                .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
                .await
                .unwrap()
                .into_inner()
                .capabilities;
            assert_eq!(caps.len(), 4, "{caps:?}");
            use plugin_capability::{service::Type as S, Type as P};
            assert!(
                caps.iter().any(|c| matches!(&c.r#type,
                    Some(P::Service(s)) if s.r#type == S::GroupControllerService as i32)),
                "{caps:?}"
            );
            let p = id.probe(ProbeRequest {}).await.unwrap().into_inner();
            assert_eq!(p.ready, Some(true));
        }
        let info = NodeClient::new(e.ch())
            .node_get_info(NodeGetInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.node_id, NODE);
        assert_eq!(info.max_volumes_per_node, 100);
        assert_eq!(info.accessible_topology, Some(topo(NODE)));
        let n = NodeClient::new(e.ch())
            .node_get_capabilities(NodeGetCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(n.capabilities.len(), 4);
        let c = ControllerClient::new(e.ch())
            .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner();
        // Volumes (create/delete, list, capacity, expand) and snapshots (create/delete,
        // list, clone), the latter answered with a clear error on thick classes.
        assert_eq!(c.capabilities.len(), 7);
    });
}

pub fn create_volume_rules(e: &Env) {
    // Rounded up to whole 4 MiB extents; the same request again is the same volume.
    let v = e.create(req("pvc-1", 5 * MIB, &[])).unwrap();
    assert_eq!(v.capacity_bytes, 8 * MIB);
    assert_eq!(v.volume_id, "node-a#ssd#pvc-1");
    assert_eq!(v.accessible_topology, vec![topo(NODE)]);
    assert_eq!(e.create(req("pvc-1", 5 * MIB, &[])).unwrap(), v);
    // Same name, incompatible size.
    let s = code(e.create(req("pvc-1", 64 * MIB, &[])));
    assert_eq!(s.code(), Code::AlreadyExists, "{s:?}");
    // No size: the default.
    let mut r = req("pvc-default", 0, &[]);
    r.capacity_range = None;
    assert_eq!(e.create(r).unwrap().capacity_bytes, GIB);
    // No topology asked for: this plugin's node.
    let n = e
        .create(CreateVolumeRequest {
            accessibility_requirements: None,
            ..req("pvc-anywhere", MIB, &[])
        })
        .unwrap();
    assert_eq!(n.accessible_topology, vec![topo(NODE)]);
    assert_eq!(n.volume_id, "node-a#ssd#pvc-anywhere");
    e.delete(&n.volume_id);
    // xfs volumes come at least as big as mkfs.xfs makes them, within the limit.
    let x = e
        .create(req("pvc-small-xfs", 64 * MIB, &[("fsType", "xfs")]))
        .unwrap();
    assert_eq!(x.capacity_bytes, 300 * MIB);
    let mut r = req("pvc-tiny-xfs", 64 * MIB, &[("fsType", "xfs")]);
    r.capacity_range.as_mut().unwrap().limit_bytes = 100 * MIB;
    let s = code(e.create(r));
    assert_eq!(s.code(), Code::OutOfRange);
    assert!(s.message().contains("xfs"), "{s:?}");
    e.delete(&x.volume_id);
    // Limit below the rounded size.
    let mut r = req("pvc-oor", 5 * MIB, &[]);
    r.capacity_range.as_mut().unwrap().limit_bytes = 6 * MIB;
    assert_eq!(code(e.create(r)).code(), Code::OutOfRange);
    // Striped, tagged.
    let params = [
        ("deviceClass", "wide"),
        ("layout", "striped"),
        ("stripeSize", "128KiB"),
        ("csi.storage.k8s.io/pv/name", "pvc-2"),
        ("csi.storage.k8s.io/pvc/name", "data"),
        ("csi.storage.k8s.io/pvc/namespace", "team a"),
    ];
    let w = e.create(req("pvc-2", 10 * MIB, &params)).unwrap();
    assert_eq!(w.volume_id, "node-a#wide#pvc-2");
    assert_eq!(w.capacity_bytes, 16 * MIB, "2 stripes of 4 MiB extents");
    assert_eq!(e.create(req("pvc-2", 10 * MIB, &params)).unwrap(), w);
    if e.is_real() {
        // What an admin sees with `lvs -o +lv_tags`.
        let (size, tags) = e.lvm2_lvs(1)["pvc-2"].clone();
        assert_eq!(size, 16 * MIB);
        for t in [
            "csi.driver=lvmd.csi.local",
            "csi.pv=pvc-2",
            "csi.pvc=data",
            "csi.ns=team_a",
        ] {
            assert!(tags.iter().any(|x| x == t), "{t} not in {tags:?}");
        }
        assert_eq!(e.lvm2_lvs(0)["pvc-1"].0, 8 * MIB);
    }

    let errs: Vec<(CreateVolumeRequest, Code)> = vec![
        (req("", MIB, &[]), Code::InvalidArgument),
        (
            CreateVolumeRequest {
                volume_capabilities: vec![],
                ..req("x", MIB, &[])
            },
            Code::InvalidArgument,
        ),
        (req("x", MIB, &[("colour", "red")]), Code::InvalidArgument),
        (
            req("x", MIB, &[("encryption", "luks2")]),
            Code::InvalidArgument,
        ),
        (
            req("x", MIB, &[("layout", "mirror")]),
            Code::InvalidArgument,
        ),
        (
            req("x", MIB, &[("deviceClass", "nope")]),
            Code::InvalidArgument,
        ),
        (req("x", MIB, &[("fsType", "btrfs")]), Code::InvalidArgument),
        (req("x", 1 << 50, &[]), Code::OutOfRange),
        (
            CreateVolumeRequest {
                accessibility_requirements: Some(TopologyRequirement {
                    requisite: vec![topo("node-b")],
                    preferred: vec![],
                }),
                ..req("x", MIB, &[])
            },
            Code::ResourceExhausted,
        ),
        (
            CreateVolumeRequest {
                volume_capabilities: vec![VolumeCapability {
                    access_mode: Some(AccessMode {
                        mode: Mode::MultiNodeMultiWriter as i32,
                    }),
                    ..mount_cap("")
                }],
                ..req("x", MIB, &[])
            },
            Code::InvalidArgument,
        ),
        (
            CreateVolumeRequest {
                volume_content_source: Some(VolumeContentSource::default()),
                ..req("x", MIB, &[])
            },
            Code::InvalidArgument,
        ),
    ];
    for (r, want) in errs {
        let s = code(e.create(r.clone()));
        assert_eq!(s.code(), want, "{r:?}: {s:?}");
        assert!(!s.message().is_empty());
    }

    // ListVolumes, paged.
    let mut ctl = e.ctl();
    e.rt.block_on(async {
        let all = ctl
            .list_volumes(ListVolumesRequest::default())
            .await
            .unwrap()
            .into_inner();
        let ids: Vec<String> = all
            .entries
            .iter()
            .map(|x| x.volume.as_ref().unwrap().volume_id.clone())
            .collect();
        assert_eq!(
            ids,
            [
                "node-a#ssd#pvc-1",
                "node-a#ssd#pvc-default",
                "node-a#wide#pvc-2"
            ]
        );
        let p1 = ctl
            .list_volumes(ListVolumesRequest {
                max_entries: 2,
                starting_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((p1.entries.len(), p1.next_token.as_str()), (2, "2"));
        let p2 = ctl
            .list_volumes(ListVolumesRequest {
                max_entries: 2,
                starting_token: p1.next_token,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((p2.entries.len(), p2.next_token.as_str()), (1, ""));
        let bad = ctl
            .list_volumes(ListVolumesRequest {
                max_entries: 0,
                starting_token: "zz".into(),
            })
            .await;
        assert_eq!(code(bad).code(), Code::Aborted);

        // ValidateVolumeCapabilities.
        let ok = ctl
            .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
                volume_id: v.volume_id.clone(),
                volume_capabilities: vec![block_cap()],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(ok.confirmed.is_some());
        let missing = ctl
            .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
                volume_id: "node-a#ssd#nope".into(),
                volume_capabilities: vec![block_cap()],
                ..Default::default()
            })
            .await;
        assert_eq!(code(missing).code(), Code::NotFound);
        let no_caps = ctl
            .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
                volume_id: v.volume_id.clone(),
                ..Default::default()
            })
            .await;
        assert_eq!(code(no_caps).code(), Code::InvalidArgument);

        // DeleteVolume: idempotent, and unknown ids are already gone.
        for id in [
            &v.volume_id,
            &v.volume_id,
            &w.volume_id,
            &"garbage".to_string(),
        ] {
            ctl.delete_volume(DeleteVolumeRequest {
                volume_id: id.clone(),
                secrets: Default::default(),
            })
            .await
            .unwrap();
        }
        let s = ctl.delete_volume(DeleteVolumeRequest::default()).await;
        assert_eq!(code(s).code(), Code::InvalidArgument);
        let left = ctl
            .list_volumes(ListVolumesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .entries;
        assert_eq!(left.len(), 1);
    });
}

pub fn capacity_goes_down_and_up(e: &Env) {
    let (avail, max) = e.capacity(&[]);
    assert!(avail > GIB && max > GIB && max <= avail, "{avail} {max}");
    assert_eq!(e.capacity(&[]), (avail, max), "stable");
    // More than the whole volume group could ever hold.
    let s = code(e.create(req("pvc-too-big", max + 4 * MIB, &[])));
    assert_eq!(s.code(), Code::OutOfRange, "{s:?}");
    assert_eq!(
        e.capacity(&[]),
        (avail, max),
        "a refused create takes nothing"
    );
    let half = avail / 2 / (4 * MIB) * (4 * MIB);
    let v = e.create(req("pvc-cap", half, &[])).unwrap();
    let (a2, m2) = e.capacity(&[]);
    assert_eq!(a2, avail - half);
    assert!(m2 <= a2);
    // Honest: the largest volume that fits is offered, and one extent more is not.
    let s = code(e.create(req("pvc-too-big", m2 + 4 * MIB, &[])));
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    // Exactly the advertised maximum fits, and then nothing is left.
    let all = e.create(req("pvc-rest", m2, &[])).unwrap();
    assert_eq!(all.capacity_bytes, m2);
    assert_eq!(e.capacity(&[]).0, a2 - m2);
    // Another node's topology: nothing here.
    let r =
        e.rt.block_on(e.ctl().get_capacity(GetCapacityRequest {
            accessible_topology: Some(topo("node-b")),
            ..Default::default()
        }))
        .unwrap()
        .into_inner();
    assert_eq!(r.available_capacity, 0);
    let (wa, wm) = e.capacity(&[("deviceClass", "wide"), ("layout", "striped")]);
    assert!(wa > GIB && wm > GIB && wm <= wa, "{wa} {wm}");
    let w = e
        .create(req(
            "pvc-wide",
            wm,
            &[("deviceClass", "wide"), ("layout", "striped")],
        ))
        .unwrap();
    assert_eq!(w.capacity_bytes, wm, "the striped maximum fits too");
    let bad = e.rt.block_on(e.ctl().get_capacity(GetCapacityRequest {
        parameters: map(&[("bogus", "1")]),
        ..Default::default()
    }));
    assert_eq!(code(bad).code(), Code::InvalidArgument);
    for id in [&v.volume_id, &all.volume_id, &w.volume_id] {
        e.delete(id);
    }
    // Volumes over lvmd's inline wipe limit (1 GiB) are zeroed in the background after
    // DeleteVolume: their space comes back when that is done, not before.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while e.capacity(&[]) != (avail, max) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(e.capacity(&[]), (avail, max), "back up");
    assert_eq!(
        e.capacity(&[("deviceClass", "wide"), ("layout", "striped")]),
        (wa, wm)
    );
}

/// The volume's size as ListVolumes reports it (lvmd's LV).
pub fn size_of(e: &Env, id: &str) -> i64 {
    e.rt.block_on(async {
        let all = e
            .ctl()
            .list_volumes(ListVolumesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .entries;
        all.into_iter()
            .filter_map(|en| en.volume)
            .find(|v| v.volume_id == id)
            .map(|v| v.capacity_bytes)
            .unwrap_or_else(|| panic!("no volume {id}"))
    })
}

pub fn controller_expansion_changes_nothing(e: &Env) {
    let v = e.create(req("pvc-grow", 8 * MIB, &[])).unwrap();
    let mut ctl = e.ctl();
    e.rt.block_on(async {
        let grow = |mib: i64, cap: Option<VolumeCapability>| ControllerExpandVolumeRequest {
            volume_id: v.volume_id.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: mib * MIB,
                limit_bytes: 0,
            }),
            secrets: Default::default(),
            volume_capability: cap,
        };
        for cap in [Some(mount_cap("ext4")), Some(block_cap()), None] {
            let r = ctl
                .controller_expand_volume(grow(30, cap))
                .await
                .unwrap()
                .into_inner();
            // Rounded up to whole 4 MiB extents; the node grows it.
            assert_eq!(r.capacity_bytes, 32 * MIB);
            assert!(r.node_expansion_required);
        }
        // Any node's volume: the resizer is one replica for the whole cluster.
        let r = ctl
            .controller_expand_volume(ControllerExpandVolumeRequest {
                volume_id: "node-b#ssd#elsewhere".into(),
                ..grow(64, None)
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.capacity_bytes, 64 * MIB);
        assert!(r.node_expansion_required);
        let s = ctl
            .controller_expand_volume(ControllerExpandVolumeRequest {
                volume_id: "not-an-id".into(),
                ..grow(64, None)
            })
            .await;
        assert_eq!(code(s).code(), Code::NotFound);
        let s = ctl
            .controller_expand_volume(ControllerExpandVolumeRequest {
                volume_id: String::new(),
                ..grow(64, None)
            })
            .await;
        assert_eq!(code(s).code(), Code::InvalidArgument);
        let s = ctl
            .controller_expand_volume(ControllerExpandVolumeRequest {
                capacity_range: None,
                ..grow(64, None)
            })
            .await;
        assert_eq!(code(s).code(), Code::InvalidArgument);
        for (required, limit) in [(0, 0), (-1, 0), (64 * MIB, 32 * MIB), (33 * MIB, 34 * MIB)] {
            let s = ctl
                .controller_expand_volume(ControllerExpandVolumeRequest {
                    capacity_range: Some(CapacityRange {
                        required_bytes: required,
                        limit_bytes: limit,
                    }),
                    ..grow(64, None)
                })
                .await;
            assert_eq!(code(s).code(), Code::OutOfRange, "[{required}, {limit}]");
        }
    });
    assert_eq!(
        size_of(e, &v.volume_id),
        8 * MIB,
        "the controller grew nothing"
    );
}

pub fn stage_req(e: &Env, id: &str, cap: VolumeCapability) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: e.path("plugins/kubernetes.io/csi/lvmd.csi.local/x/globalmount"),
        volume_capability: Some(cap),
        ..Default::default()
    }
}

pub fn publish_req(e: &Env, id: &str, cap: VolumeCapability) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: id.into(),
        staging_target_path: e.path("plugins/kubernetes.io/csi/lvmd.csi.local/x/globalmount"),
        target_path: e.path("pods/uid/volumes/kubernetes.io~csi/pv/mount"),
        volume_capability: Some(cap),
        ..Default::default()
    }
}

/// NodeGetVolumeStats of a mounted filesystem: (total bytes, total inodes).
fn fs_stats(e: &Env, id: &str, path: &str) -> (i64, i64) {
    let stats =
        e.rt.block_on(e.node().node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: id.into(),
            volume_path: path.into(),
            staging_target_path: String::new(),
        }))
        .unwrap()
        .into_inner();
    assert!(
        !stats.volume_condition.as_ref().unwrap().abnormal,
        "{stats:?}"
    );
    assert_eq!(stats.usage[0].unit, volume_usage::Unit::Bytes as i32);
    assert_eq!(stats.usage.len(), 2, "bytes and inodes: {stats:?}");
    assert_eq!(stats.usage[1].unit, volume_usage::Unit::Inodes as i32);
    (stats.usage[0].total, stats.usage[1].total)
}

fn expand_req(id: &str, path: &str, staging: &str, mib: i64) -> NodeExpandVolumeRequest {
    NodeExpandVolumeRequest {
        volume_id: id.into(),
        volume_path: path.into(),
        staging_target_path: staging.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: mib * MIB,
            limit_bytes: 0,
        }),
        volume_capability: Some(mount_cap("")),
        ..Default::default()
    }
}

/// Create, stage (formats), publish, write, stats, online grow (three times, one a
/// no-op), unpublish, unstage, stage again (no format: the data is still there), and
/// delete, each call twice.
pub fn filesystem_lifecycle(e: &Env, fs: &str) {
    // xfsprogs refuses filesystems under 300 MiB.
    let base = if fs == "xfs" { 320 } else { 64 };
    let v = e
        .create(req(&format!("pvc-{fs}"), base * MIB, &[("fsType", fs)]))
        .unwrap();
    let id = v.volume_id.clone();
    let mut node = e.node();
    // Kubelet hands CreateVolume's volume context (the StorageClass's fsType) on.
    let stage = NodeStageVolumeRequest {
        volume_context: v.volume_context.clone(),
        ..stage_req(e, &id, mount_cap(""))
    };
    let publish = NodePublishVolumeRequest {
        volume_context: v.volume_context.clone(),
        ..publish_req(e, &id, mount_cap(""))
    };
    let staging = stage.staging_target_path.clone();
    let target = publish.target_path.clone();
    e.rt.block_on(async {
        // Publishing before staging would bind an empty directory.
        let s = node.node_publish_volume(publish.clone()).await;
        assert_eq!(code(s).code(), Code::FailedPrecondition);
        for _ in 0..2 {
            node.node_stage_volume(stage.clone()).await.unwrap();
        }
        for _ in 0..2 {
            node.node_publish_volume(publish.clone()).await.unwrap();
        }
    });
    let (mut total, inodes) = fs_stats(e, &id, &target);
    if e.is_real() {
        assert_eq!(
            e.host_mounts(),
            [PathBuf::from(&staging), PathBuf::from(&target)]
        );
        // Written through the pod's path, read through the staging mount.
        std::fs::write(Path::new(&target).join("hello"), b"through csi\n").unwrap();
        assert_eq!(
            std::fs::read(Path::new(&staging).join("hello")).unwrap(),
            b"through csi\n"
        );
        // statfs of the real filesystem: most of the LV, never more.
        assert!(
            total > base * MIB * 3 / 4 && total <= base * MIB,
            "{fs} of {base} MiB reports {total} bytes"
        );
        assert!(inodes > 0);
        assert_eq!(e.host_fs_type(&staging).as_deref(), Some(fs));
        let lvs = e.lvm2_lvs(0);
        assert_eq!(lvs[&format!("pvc-{fs}")].0, base * MIB, "{lvs:?}");
    } else {
        // The simulated node's directory is on the test's filesystem: its statvfs.
        assert!(total > 0 && inodes > 0, "{total} bytes, {inodes} inodes");
    }
    // Online expansion: lvmd grows the LV and the filesystem, at the staging path or
    // (kubelet naming none) through the pod's bind of it; again is a no-op.
    for (mib, at) in [
        (base + 36, &staging),
        (base + 36, &String::new()),
        (base + 66, &String::new()),
    ] {
        let grown =
            e.rt.block_on(node.node_expand_volume(expand_req(&id, &target, at, mib)))
                .unwrap_or_else(|s| panic!("NodeExpandVolume {mib} MiB: {s:?}"))
                .into_inner();
        let lv_size = (mib + 3) / 4 * 4 * MIB;
        assert_eq!(grown.capacity_bytes, lv_size);
        let (now, _) = fs_stats(e, &id, &target);
        if e.is_real() {
            assert!(
                now >= total && now > lv_size * 3 / 4 && now <= lv_size,
                "{fs} after growing to {lv_size}: {now} bytes (was {total})"
            );
            assert_eq!(e.lvm2_lvs(0)[&format!("pvc-{fs}")].0, lv_size);
        }
        total = now;
    }
    e.rt.block_on(async {
        // Shrinking is refused; another node's volume is not here.
        let s = node
            .node_expand_volume(expand_req(&id, &target, "", base))
            .await;
        assert_eq!(code(s).code(), Code::InvalidArgument);
        let s = node
            .node_expand_volume(expand_req(
                &id.replacen(NODE, "node-b", 1),
                &target,
                "",
                base * 2,
            ))
            .await;
        assert_eq!(code(s).code(), Code::NotFound);
    });
    for _ in 0..2 {
        unpublish(e, &id, &target).unwrap();
    }
    e.rt.block_on(async {
        let stats = node
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: id.clone(),
                volume_path: target.clone(),
                staging_target_path: String::new(),
            })
            .await;
        // Unpublish removed the target: the volume is not at that path.
        assert_eq!(code(stats).code(), Code::NotFound);
    });
    for _ in 0..2 {
        unstage(e, &id, &staging).unwrap();
    }
    assert!(!Path::new(&target).exists(), "unpublish removes the target");
    if e.is_real() {
        assert_eq!(e.host_mounts(), Vec::<PathBuf>::new());
    }
    // Staged again, even naming the other filesystem: mounted as it is, never formatted.
    let other = if fs == "xfs" { "ext4" } else { "xfs" };
    e.rt.block_on(node.node_stage_volume(stage_req(e, &id, mount_cap(other))))
        .unwrap();
    if e.is_real() {
        assert_eq!(
            std::fs::read(Path::new(&staging).join("hello")).unwrap(),
            b"through csi\n",
            "the data survived unstage and stage"
        );
    }
    unstage(e, &id, &staging).unwrap();
    for _ in 0..2 {
        e.delete(&id);
    }
    if e.is_real() {
        assert!(e.lvm2_lvs(0).is_empty(), "{:?}", e.lvm2_lvs(0));
    }
}

/// Raw block: publish binds the device node (no staging work); data written through
/// one publish reads back through another; online grow shows in the device's size.
pub fn block_lifecycle(e: &Env) {
    let mut r = req("pvc-blk", 16 * MIB, &[]);
    r.volume_capabilities = vec![block_cap()];
    let id = e.create(r).unwrap().volume_id;
    let mut node = e.node();
    let stage = stage_req(e, &id, block_cap());
    let publish = |n: &str| NodePublishVolumeRequest {
        target_path: e.path(&format!(
            "plugins/kubernetes.io/csi/volumeDevices/publish/pv/{n}"
        )),
        ..publish_req(e, &id, block_cap())
    };
    let (a, b) = (publish("pod-a"), publish("pod-b"));
    e.rt.block_on(async {
        for _ in 0..2 {
            node.node_stage_volume(stage.clone()).await.unwrap();
            node.node_publish_volume(a.clone()).await.unwrap();
        }
        node.node_publish_volume(b.clone()).await.unwrap();
    });
    let stats =
        e.rt.block_on(node.node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: id.clone(),
            volume_path: a.target_path.clone(),
            staging_target_path: String::new(),
        }))
        .unwrap()
        .into_inner();
    assert_eq!(stats.usage.len(), 1, "{stats:?}");
    assert_eq!(stats.usage[0].total, 16 * MIB, "{stats:?}");
    // Kubelet opens the published path (a device node, or the sim's stand-in file).
    for p in [&a, &b] {
        std::fs::File::open(&p.target_path).unwrap();
    }
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    if e.is_real() {
        assert_eq!(device_size(&a.target_path), 16 * MIB);
        write_at(&a.target_path, MIB as u64, &pattern).unwrap();
        assert_eq!(read_at(&b.target_path, MIB as u64, 4096), pattern);
    }
    e.rt.block_on(async {
        let grown = node
            .node_expand_volume(NodeExpandVolumeRequest {
                volume_id: id.clone(),
                volume_path: a.target_path.clone(),
                volume_capability: Some(block_cap()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(grown.capacity_bytes, 16 * MIB, "no size asked: as it is");
        let grown = node
            .node_expand_volume(NodeExpandVolumeRequest {
                volume_id: id.clone(),
                volume_path: a.target_path.clone(),
                capacity_range: Some(CapacityRange {
                    required_bytes: 40 * MIB,
                    limit_bytes: 0,
                }),
                volume_capability: Some(block_cap()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(grown.capacity_bytes, 40 * MIB);
        let stats = node
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: id.clone(),
                volume_path: b.target_path.clone(),
                staging_target_path: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stats.usage[0].total, 40 * MIB, "{stats:?}");
    });
    if e.is_real() {
        assert_eq!(device_size(&a.target_path), 40 * MIB, "online grow");
        assert_eq!(read_at(&b.target_path, MIB as u64, 4096), pattern);
        assert_eq!(e.lvm2_lvs(0)["pvc-blk"].0, 40 * MIB);
    }
    for _ in 0..2 {
        for p in [&a, &b] {
            unpublish(e, &id, &p.target_path).unwrap();
        }
        unstage(e, &id, &stage.staging_target_path).unwrap();
    }
    for p in [&a, &b] {
        assert!(
            !Path::new(&p.target_path).exists(),
            "unpublish removes the target"
        );
    }
    if e.is_real() {
        assert_eq!(e.host_mounts(), Vec::<PathBuf>::new());
    }
    e.delete(&id);
}

/// No data remanence (issue 10): a raw block volume filled by its pod, then deleted,
/// leaves nothing the next volume on its extents can read; and the csi-sanity sequence
/// that found the bug (grow a filesystem volume, delete it, create a smaller one)
/// stages a new, empty filesystem of the new size instead of failing to mount the old.
pub fn deleted_volumes_leave_nothing_readable(e: &Env) {
    let mut node = e.node();
    let block_target = e.path("plugins/kubernetes.io/csi/volumeDevices/publish/pv/pod");
    let fill = vec![0xa5u8; (16 * MIB) as usize];
    for (name, write) in [("pvc-first-blk", true), ("pvc-next-blk", false)] {
        let mut r = req(name, 16 * MIB, &[]);
        r.volume_capabilities = vec![block_cap()];
        let id = e.create(r).unwrap().volume_id;
        let stage = stage_req(e, &id, block_cap());
        let publish = NodePublishVolumeRequest {
            target_path: block_target.clone(),
            ..publish_req(e, &id, block_cap())
        };
        e.rt.block_on(async {
            node.node_stage_volume(stage.clone()).await.unwrap();
            node.node_publish_volume(publish.clone()).await.unwrap();
        });
        if e.is_real() {
            if write {
                write_at(&block_target, 0, &fill).unwrap();
                assert_eq!(read_at(&block_target, 0, fill.len()), fill);
            } else {
                let back = read_at(&block_target, 0, fill.len());
                let left = back.iter().filter(|&&b| b != 0).count();
                assert_eq!(left, 0, "{left} bytes of the deleted volume readable");
            }
        }
        unpublish(e, &id, &block_target).unwrap();
        unstage(e, &id, &stage.staging_target_path).unwrap();
        e.delete(&id);
    }

    let ext4 = [("fsType", "ext4")];
    let v = e.create(req("pvc-grown", 64 * MIB, &ext4)).unwrap();
    let id = v.volume_id.clone();
    let stage = NodeStageVolumeRequest {
        volume_context: v.volume_context.clone(),
        ..stage_req(e, &id, mount_cap(""))
    };
    let publish = NodePublishVolumeRequest {
        volume_context: v.volume_context.clone(),
        ..publish_req(e, &id, mount_cap(""))
    };
    let target = publish.target_path.clone();
    e.rt.block_on(async {
        node.node_stage_volume(stage.clone()).await.unwrap();
        node.node_publish_volume(publish.clone()).await.unwrap();
        node.node_expand_volume(expand_req(&id, &target, "", 128))
            .await
            .unwrap();
    });
    if e.is_real() {
        std::fs::write(Path::new(&target).join("old"), b"previous tenant\n").unwrap();
    }
    unpublish(e, &id, &target).unwrap();
    unstage(e, &id, &stage.staging_target_path).unwrap();
    e.delete(&id);

    let v = e.create(req("pvc-smaller", 64 * MIB, &ext4)).unwrap();
    let id = v.volume_id.clone();
    let stage = NodeStageVolumeRequest {
        volume_context: v.volume_context.clone(),
        ..stage_req(e, &id, mount_cap(""))
    };
    let publish = NodePublishVolumeRequest {
        volume_context: v.volume_context.clone(),
        ..publish_req(e, &id, mount_cap(""))
    };
    e.rt.block_on(async {
        node.node_stage_volume(stage.clone())
            .await
            .unwrap_or_else(|s| panic!("staging the smaller volume: {s:?}"));
        node.node_publish_volume(publish.clone()).await.unwrap();
    });
    if e.is_real() {
        assert!(!Path::new(&target).join("old").exists());
        let (total, _) = fs_stats(e, &id, &target);
        assert!(
            total > 48 * MIB && total <= 64 * MIB,
            "a 64 MiB volume's filesystem reports {total} bytes"
        );
    }
    unpublish(e, &id, &target).unwrap();
    unstage(e, &id, &stage.staging_target_path).unwrap();
    e.delete(&id);
}

/// A raid1 StorageClass (`layout: raid1` on the two-PV class): capacity says the
/// largest mirror, which fits and one extent more does not; three copies on two PVs
/// are refused; a block volume's bytes land on both copies (read straight from each
/// leg's device in the VM, where lvm2 shows its legs on different PVs and the kernel
/// has it in sync); DeleteVolume takes the legs too.
pub fn mirror_lifecycle(e: &Env) {
    let raid = [("deviceClass", "wide"), ("layout", "raid1")];
    let (_, largest) = e.capacity(&raid);
    let (_, striped_largest) = e.capacity(&[("deviceClass", "wide")]);
    assert!(
        largest > 0 && largest < striped_largest,
        "{largest} vs {striped_largest}"
    );
    // Larger than any mirror could be on these PVs, and three copies on two PVs.
    let too_big = e.create(req("pvc-mirror-huge", largest + 4 * MIB, &raid));
    assert_eq!(code(too_big).code(), Code::OutOfRange);
    let three = [
        ("deviceClass", "wide"),
        ("layout", "raid1"),
        ("mirrors", "2"),
    ];
    let s = code(e.create(req("pvc-mirror-3", 16 * MIB, &three)));
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("PVs"), "{s:?}");
    let bad = [
        ("deviceClass", "wide"),
        ("layout", "raid1"),
        ("stripes", "2"),
    ];
    assert_eq!(
        code(e.create(req("pvc-mirror-x", 16 * MIB, &bad))).code(),
        Code::InvalidArgument
    );

    let mut r = req("pvc-mirror", 32 * MIB, &raid);
    r.volume_capabilities = vec![block_cap()];
    let id = e.create(r.clone()).unwrap().volume_id;
    assert_eq!(e.create(r.clone()).unwrap().volume_id, id, "idempotent");
    // The same name as a linear volume is another volume.
    let mut linear = r.clone();
    linear.parameters = map(&[("deviceClass", "wide"), ("layout", "linear")]);
    assert_eq!(code(e.create(linear)).code(), Code::AlreadyExists);
    let (_, after) = e.capacity(&raid);
    assert_eq!(
        after,
        largest - 32 * MIB - 4 * MIB,
        "both copies and their metadata are taken"
    );

    let mut node = e.node();
    let target = e.path("plugins/kubernetes.io/csi/volumeDevices/publish/pv/mirror");
    let stage = stage_req(e, &id, block_cap());
    let publish = NodePublishVolumeRequest {
        target_path: target.clone(),
        ..publish_req(e, &id, block_cap())
    };
    e.rt.block_on(async {
        node.node_stage_volume(stage.clone()).await.unwrap();
        node.node_publish_volume(publish.clone()).await.unwrap();
    });
    if e.is_real() {
        assert_eq!(device_size(&target), 32 * MIB);
        let pattern: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
        write_at(&target, 4 << 20, &pattern).unwrap();
        let rows = e.lvm2_rows(1, "lv_name,segtype,devices");
        let lv = rows
            .iter()
            .find(|r| common::text(r, "segtype") == "raid1")
            .map(|r| common::text(r, "lv_name"))
            .unwrap_or_else(|| panic!("no raid1 LV in {rows:?}"));
        // Each copy, read from its own leg's device, holds the bytes.
        let vg = &e.vgs[1];
        let mut devices = Vec::new();
        for i in 0..2 {
            let leg = format!("{lv}_rimage_{i}");
            let dm = format!(
                "/dev/mapper/{}-{}",
                vg.replace('-', "--"),
                leg.replace('-', "--")
            );
            assert_eq!(
                read_at(&dm, 4 << 20, pattern.len()),
                pattern,
                "copy {i} ({dm})"
            );
            let row = rows
                .iter()
                .find(|r| common::text(r, "lv_name") == format!("[{leg}]"))
                .unwrap_or_else(|| panic!("no leg {leg} in {rows:?}"));
            devices.push(
                common::text(row, "devices")
                    .split('(')
                    .next()
                    .unwrap()
                    .to_owned(),
            );
        }
        assert_ne!(devices[0], devices[1], "both copies on one PV");
        // dm-raid syncs the copies (a new mirror's regions start out of sync): the
        // kernel's status (lvm2 here runs with activation off and cannot ask) goes to
        // every region in sync, every leg alive (`A`).
        let top_dm = format!(
            "/dev/mapper/{}-{}",
            vg.replace('-', "--"),
            lv.replace('-', "--")
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let status = common::run_ok("dmsetup", &["status", &top_dm]);
            // 0 <len> raid raid1 2 <health> <synced>/<total> <action> ...
            let f: Vec<&str> = status.split_whitespace().collect();
            assert_eq!(&f[2..5], ["raid", "raid1", "2"], "{status}");
            let (done, all) = f[6].split_once('/').unwrap();
            if f[5] == "AA" && done == all {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not in sync: {status}"
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
    unpublish(e, &id, &target).unwrap();
    unstage(e, &id, &stage.staging_target_path).unwrap();
    e.delete(&id);
    let (_, back) = e.capacity(&raid);
    assert_eq!(back, largest, "the legs went with the volume");
    if e.is_real() {
        let rows = e.lvm2_rows(1, "lv_name");
        assert!(rows.is_empty(), "left behind: {rows:?}");
    }
}

/// An integrity mirror StorageClass (`layout: mirror`, `integrity: "true"`, as
/// csi-driver-lvm's): capacity says the largest such mirror, smaller than a plain one
/// by each leg's integrity metadata, and it fits while one extent more does not; the
/// volume is a raid1 with integrity (idempotent; the same name without integrity is
/// another volume); integrity with any other layout is refused naming it; DeleteVolume
/// gives every extent back.
pub fn integrity_mirror_class(e: &Env) {
    let plain = [("deviceClass", "wide"), ("layout", "raid1")];
    let im = [
        ("deviceClass", "wide"),
        ("layout", "mirror"),
        ("integrity", "true"),
    ];
    let (_, plain_largest) = e.capacity(&plain);
    let (_, largest) = e.capacity(&im);
    assert!(
        largest > 0 && largest < plain_largest,
        "{largest} vs {plain_largest}"
    );
    for layout in ["linear", "striped"] {
        let bad = [
            ("deviceClass", "wide"),
            ("layout", layout),
            ("integrity", "true"),
        ];
        let s = code(e.create(req("pvc-im-bad", 16 * MIB, &bad)));
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(s.message().contains("integrity"), "{s:?}");
    }
    let too_big = e.create(req("pvc-im-huge", largest + 4 * MIB, &im));
    assert!(
        matches!(
            code(too_big).code(),
            Code::OutOfRange | Code::ResourceExhausted
        ),
        "one extent more than the largest fits"
    );
    let r = req("pvc-im", largest, &im);
    let id = e.create(r.clone()).unwrap().volume_id;
    assert_eq!(e.create(r.clone()).unwrap().volume_id, id, "idempotent");
    let mut without = r.clone();
    without.parameters = map(&plain);
    assert_eq!(code(e.create(without)).code(), Code::AlreadyExists);
    let (_, after) = e.capacity(&im);
    assert_eq!(after, 0, "the largest integrity mirror took the room");
    if e.is_real() {
        let rows = e.lvm2_rows(1, "lv_name,segtype");
        let images = rows
            .iter()
            .filter(|r| common::text(r, "segtype") == "integrity")
            .count();
        assert_eq!(images, 2, "{rows:?}");
    }
    e.delete(&id);
    let (_, back) = e.capacity(&im);
    assert_eq!(back, largest, "every sub-LV went with the volume");
}

/// Read-only publishing of a filesystem: the pod reads what was written through a
/// writable publish and cannot write itself. A reader-only volume that holds no
/// filesystem yet cannot be staged (a read-only mount cannot format it).
pub fn read_only_publish(e: &Env) {
    let id = e.create(req("pvc-ro", 64 * MIB, &[])).unwrap().volume_id;
    let mut node = e.node();
    let reader = VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeReaderOnly as i32,
        }),
        ..mount_cap("ext4")
    };
    let s =
        e.rt.block_on(node.node_stage_volume(stage_req(e, &id, reader.clone())));
    assert_eq!(code(s).code(), Code::FailedPrecondition);
    let stage = stage_req(e, &id, mount_cap("ext4"));
    let rw = publish_req(e, &id, mount_cap("ext4"));
    let ro = NodePublishVolumeRequest {
        target_path: e.path("pods/uid-ro/volumes/kubernetes.io~csi/pv/mount"),
        readonly: true,
        ..rw.clone()
    };
    e.rt.block_on(async {
        node.node_stage_volume(stage.clone()).await.unwrap();
        node.node_publish_volume(rw.clone()).await.unwrap();
        for _ in 0..2 {
            node.node_publish_volume(ro.clone()).await.unwrap();
        }
        let s = node
            .node_stage_volume(NodeStageVolumeRequest {
                volume_capability: Some(reader.clone()),
                ..stage.clone()
            })
            .await;
        assert_eq!(code(s).code(), Code::AlreadyExists, "staged read-write");
    });
    republish_with_the_other_flag_is_refused(e, &[&rw, &ro]);
    if e.is_real() {
        std::fs::write(
            Path::new(&rw.target_path).join("shared"),
            b"from the writer",
        )
        .unwrap();
        assert_eq!(
            std::fs::read(Path::new(&ro.target_path).join("shared")).unwrap(),
            b"from the writer"
        );
        let err = std::fs::write(Path::new(&ro.target_path).join("nope"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    }
    for p in [&ro, &rw] {
        unpublish(e, &id, &p.target_path).unwrap();
    }
    unstage(e, &id, &stage.staging_target_path).unwrap();
    // Now it holds ext4: a reader-only stage mounts it read-only.
    e.rt.block_on(node.node_stage_volume(stage_req(e, &id, reader.clone())))
        .unwrap();
    if e.is_real() {
        let staged = Path::new(&stage.staging_target_path);
        assert_eq!(
            std::fs::read(staged.join("shared")).unwrap(),
            b"from the writer"
        );
        let err = std::fs::write(staged.join("nope"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    }
    unstage(e, &id, &stage.staging_target_path).unwrap();
    e.delete(&id);
}

/// Publishing again where the volume is, with the other read-only flag: ALREADY_EXISTS
/// (published, but incompatible), as the spec says.
fn republish_with_the_other_flag_is_refused(e: &Env, published: &[&NodePublishVolumeRequest]) {
    for r in published {
        let flipped = NodePublishVolumeRequest {
            readonly: !r.readonly,
            ..(*r).clone()
        };
        let s = code(e.rt.block_on(e.node().node_publish_volume(flipped)));
        assert_eq!(
            s.code(),
            Code::AlreadyExists,
            "readonly={}: {s:?}",
            !r.readonly
        );
    }
}

/// Raw block, read-only: the pod's device refuses writes.
pub fn read_only_block_publish(e: &Env) {
    let mut node = e.node();
    let mut r = req("pvc-ro-blk", 8 * MIB, &[]);
    r.volume_capabilities = vec![block_cap()];
    let bid = e.create(r).unwrap().volume_id;
    let target = |n: &str| {
        e.path(&format!(
            "plugins/kubernetes.io/csi/volumeDevices/publish/pv-ro/{n}"
        ))
    };
    let writer = NodePublishVolumeRequest {
        target_path: target("writer"),
        ..publish_req(e, &bid, block_cap())
    };
    let reader = NodePublishVolumeRequest {
        target_path: target("reader"),
        readonly: true,
        ..writer.clone()
    };
    e.rt.block_on(async {
        node.node_publish_volume(writer.clone()).await.unwrap();
        for _ in 0..2 {
            node.node_publish_volume(reader.clone()).await.unwrap();
        }
    });
    republish_with_the_other_flag_is_refused(e, &[&writer, &reader]);
    if e.is_real() {
        let data = vec![0xa5u8; 4096];
        write_at(&writer.target_path, 0, &data).unwrap();
        assert_eq!(read_at(&reader.target_path, 0, 4096), data);
        let err = write_at(&reader.target_path, 0, &[0u8; 4096])
            .expect_err("a read-only block publish took a write");
        assert!(
            matches!(
                err.raw_os_error(),
                Some(libc::EROFS | libc::EPERM | libc::EACCES)
            ),
            "{err}"
        );
        assert_eq!(read_at(&writer.target_path, 0, 4096), data);
    }
    for p in [&reader, &writer] {
        for _ in 0..2 {
            unpublish(e, &bid, &p.target_path).unwrap();
        }
    }
    if e.is_real() {
        assert_eq!(e.host_mounts(), Vec::<PathBuf>::new());
    }
    e.delete(&bid);
}

pub fn unpublish(e: &Env, id: &str, target: &str) -> Result<(), tonic::Status> {
    e.rt.block_on(e.node().node_unpublish_volume(NodeUnpublishVolumeRequest {
        volume_id: id.into(),
        target_path: target.into(),
    }))
    .map(|_| ())
}

pub fn unstage(e: &Env, id: &str, staging: &str) -> Result<(), tonic::Status> {
    e.rt.block_on(e.node().node_unstage_volume(NodeUnstageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging.into(),
    }))
    .map(|_| ())
}

/// A secrets map with the passphrase `key`, as kubelet passes the StorageClass's
/// node-stage (or -publish, -expand) secret.
pub fn secrets(key: &str) -> std::collections::HashMap<String, String> {
    [("passphrase".to_owned(), key.to_owned())].into()
}

/// The device-mapper node of `vg/lv` (lvm2's name, each `-` doubled).
pub fn dm_node(vg: &str, lv: &str) -> String {
    format!(
        "/dev/mapper/{}-{}",
        vg.replace('-', "--"),
        lv.replace('-', "--")
    )
}

/// The crypt mapping lvmd opens for `vg/lv`.
pub fn crypt_node(vg: &str, lv: &str) -> PathBuf {
    lvmd::crypt::CryptName::for_volume(vg, lv)
        .unwrap()
        .device_path()
}

/// `encryption: "true"` (issue 13): create; stage without the secret (refused, naming
/// the key only); stage (LUKS2 format, then the filesystem on the mapping); publish,
/// write; grow online with the key (LV, mapping, filesystem); unstage (mapping gone,
/// the LV holds a LUKS2 header cryptsetup reads); stage with a wrong key
/// (PERMISSION_DENIED, the header unchanged byte for byte, nothing mounted); stage
/// with the key (the file is there); delete.
pub fn encrypted_lifecycle(e: &Env) {
    const KEY: &str = "correct horse battery staple";
    let v = e
        .create(req("pvc-sec", 64 * MIB, &[("encryption", "true")]))
        .unwrap();
    assert_eq!(
        v.volume_context.get("encryption").map(String::as_str),
        Some("true")
    );
    let id = v.volume_id.clone();
    let mut node = e.node();
    let stage = NodeStageVolumeRequest {
        volume_context: v.volume_context.clone(),
        secrets: secrets(KEY),
        ..stage_req(e, &id, mount_cap("ext4"))
    };
    let publish = NodePublishVolumeRequest {
        volume_context: v.volume_context.clone(),
        ..publish_req(e, &id, mount_cap("ext4"))
    };
    let staging = stage.staging_target_path.clone();
    let target = publish.target_path.clone();
    let crypt = crypt_node(&e.vgs[0], "pvc-sec");
    let lv_dev = dm_node(&e.vgs[0], "pvc-sec");
    // No secret: INVALID_ARGUMENT naming the key.
    let err = code(
        e.rt.block_on(node.node_stage_volume(NodeStageVolumeRequest {
            secrets: Default::default(),
            ..stage.clone()
        })),
    );
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("\"passphrase\""), "{err:?}");
    e.rt.block_on(async {
        for _ in 0..2 {
            node.node_stage_volume(stage.clone()).await.unwrap();
        }
        node.node_publish_volume(publish.clone()).await.unwrap();
    });
    if e.is_real() {
        assert!(crypt.exists(), "{} not open", crypt.display());
        assert_eq!(e.host_fs_type(&staging).as_deref(), Some("ext4"));
        std::fs::write(Path::new(&target).join("secret"), b"at rest\n").unwrap();
        // The LV itself holds a LUKS header, no filesystem.
        assert_eq!(&read_at(&lv_dev, 0, 6), b"LUKS\xba\xbe");
    }
    // Online grow: without the key refused, with it LV, mapping and filesystem.
    let err = code(e.rt.block_on(node.node_expand_volume(expand_req(&id, &target, &staging, 96))));
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("passphrase"), "{err:?}");
    let grown =
        e.rt.block_on(node.node_expand_volume(NodeExpandVolumeRequest {
            secrets: secrets(KEY),
            ..expand_req(&id, &target, &staging, 96)
        }))
        .unwrap()
        .into_inner();
    assert_eq!(grown.capacity_bytes, 96 * MIB);
    if e.is_real() {
        // The filesystem fills the grown mapping: the LV less the 16 MiB header.
        let (total, _) = fs_stats(e, &id, &target);
        assert!(
            total > 64 * MIB && total <= 80 * MIB,
            "ext4 on the grown mapping: {total} bytes"
        );
        assert_eq!(device_size(crypt.to_str().unwrap()), 80 * MIB);
    }
    unpublish(e, &id, &target).unwrap();
    for _ in 0..2 {
        unstage(e, &id, &staging).unwrap();
    }
    let header = if e.is_real() {
        assert!(!crypt.exists(), "mapping left open after unstage");
        let dump = std::process::Command::new("cryptsetup")
            .args(["luksDump", &lv_dev])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&dump.stdout);
        assert!(dump.status.success(), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("Version:") && l.trim_end().ends_with('2')),
            "{text}"
        );
        assert!(
            text.contains("pbkdf2") && text.contains("aes-xts-plain64"),
            "{text}"
        );
        read_at(&lv_dev, 0, (16 * MIB) as usize)
    } else {
        Vec::new()
    };
    // A wrong key: PERMISSION_DENIED, nothing changed, nothing mounted.
    let err = code(
        e.rt.block_on(node.node_stage_volume(NodeStageVolumeRequest {
            secrets: secrets("not the key"),
            ..stage.clone()
        })),
    );
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(!err.message().contains("not the key"), "{err:?}");
    if e.is_real() {
        assert_eq!(read_at(&lv_dev, 0, (16 * MIB) as usize), header);
        assert!(!crypt.exists());
        assert_eq!(e.host_mounts(), Vec::<PathBuf>::new());
    }
    // The key again: opened, not formatted, the file is there.
    e.rt.block_on(node.node_stage_volume(stage.clone()))
        .unwrap();
    if e.is_real() {
        assert_eq!(
            std::fs::read(Path::new(&staging).join("secret")).unwrap(),
            b"at rest\n"
        );
        assert!(!e.logs().contains(KEY), "the key is in a log");
    }
    unstage(e, &id, &staging).unwrap();
    e.delete(&id);
    if e.is_real() {
        assert!(!e.lvm2_lvs(0).contains_key("pvc-sec"));
    }
}

/// An encrypted raw block volume: published with the node-publish secret, what the pod
/// gets is the opened mapping (the LV less its LUKS2 header); data survives an
/// unpublish and a publish; the mapping is closed by the unpublish.
pub fn encrypted_block_lifecycle(e: &Env) {
    const KEY: &str = "block key";
    let mut r = req("pvc-secblk", 48 * MIB, &[("encryption", "true")]);
    r.volume_capabilities = vec![block_cap()];
    let v = e.create(r).unwrap();
    let id = v.volume_id.clone();
    let mut node = e.node();
    e.rt.block_on(node.node_stage_volume(stage_req(e, &id, block_cap())))
        .unwrap();
    let publish = NodePublishVolumeRequest {
        target_path: e.path("plugins/kubernetes.io/csi/volumeDevices/publish/pv/sec"),
        volume_context: v.volume_context.clone(),
        secrets: secrets(KEY),
        ..publish_req(e, &id, block_cap())
    };
    let err = code(
        e.rt.block_on(node.node_publish_volume(NodePublishVolumeRequest {
            secrets: Default::default(),
            ..publish.clone()
        })),
    );
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("\"passphrase\""), "{err:?}");
    let crypt = crypt_node(&e.vgs[0], "pvc-secblk");
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 13 % 251) as u8).collect();
    for round in 0..2 {
        e.rt.block_on(node.node_publish_volume(publish.clone()))
            .unwrap();
        if e.is_real() {
            assert!(crypt.exists());
            assert_eq!(device_size(&publish.target_path), 32 * MIB);
            if round == 0 {
                write_at(&publish.target_path, MIB as u64, &pattern).unwrap();
            }
            assert_eq!(read_at(&publish.target_path, MIB as u64, 4096), pattern);
            // What the pod writes is not on the LV in the clear.
            let lv = read_at(&dm_node(&e.vgs[0], "pvc-secblk"), 17 * MIB as u64, 4096);
            assert_ne!(lv, pattern);
        }
        unpublish(e, &id, &publish.target_path).unwrap();
        if e.is_real() {
            assert!(!crypt.exists(), "mapping left open after unpublish");
        }
    }
    // Read-only: a read-only loop device over the mapping; its unpublish detaches it
    // and closes the mapping.
    let ro = NodePublishVolumeRequest {
        readonly: true,
        ..publish.clone()
    };
    e.rt.block_on(node.node_publish_volume(ro.clone())).unwrap();
    if e.is_real() {
        assert_eq!(read_at(&ro.target_path, MIB as u64, 4096), pattern);
        assert!(write_at(&ro.target_path, MIB as u64, &pattern).is_err());
    }
    unpublish(e, &id, &ro.target_path).unwrap();
    if e.is_real() {
        assert!(
            !crypt.exists(),
            "mapping left open after a read-only unpublish"
        );
    }
    unstage(
        e,
        &id,
        &e.path("plugins/kubernetes.io/csi/lvmd.csi.local/x/globalmount"),
    )
    .unwrap();
    e.delete(&id);
}

/// The size of the block device behind `path`.
pub fn device_size(path: &str) -> i64 {
    use std::io::Seek;
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(std::io::SeekFrom::End(0)).unwrap() as i64
}

/// Writes through the page cache and syncs, so a read through another path sees it.
pub fn write_at(path: &str, offset: u64, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all_at(data, offset)?;
    f.sync_all()
}

pub fn read_at(path: &str, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset).unwrap();
    buf
}

pub fn node_errors(e: &Env) {
    let id = e.create(req("pvc-n", 8 * MIB, &[])).unwrap().volume_id;
    let mut node = e.node();
    e.rt.block_on(async {
        let p = publish_req(e, &id, mount_cap(""));
        let cases: Vec<(NodePublishVolumeRequest, Code)> = vec![
            (
                NodePublishVolumeRequest {
                    volume_id: "node-a#ssd#unknown".into(),
                    ..p.clone()
                },
                Code::NotFound,
            ),
            (
                NodePublishVolumeRequest {
                    volume_id: "not-ours".into(),
                    ..p.clone()
                },
                Code::NotFound,
            ),
            (
                NodePublishVolumeRequest {
                    volume_id: String::new(),
                    ..p.clone()
                },
                Code::InvalidArgument,
            ),
            (
                NodePublishVolumeRequest {
                    target_path: String::new(),
                    ..p.clone()
                },
                Code::InvalidArgument,
            ),
            (
                NodePublishVolumeRequest {
                    volume_capability: None,
                    ..p.clone()
                },
                Code::InvalidArgument,
            ),
        ];
        for (r, want) in cases {
            let s = code(node.node_publish_volume(r.clone()).await);
            assert_eq!(s.code(), want, "{r:?}: {s:?}");
        }
        let s = stage_req(e, &id, mount_cap(""));
        let bad: Vec<(NodeStageVolumeRequest, Code)> = vec![
            (
                NodeStageVolumeRequest {
                    volume_id: "node-a#ssd#unknown".into(),
                    ..s.clone()
                },
                Code::NotFound,
            ),
            (
                NodeStageVolumeRequest {
                    staging_target_path: String::new(),
                    ..s.clone()
                },
                Code::InvalidArgument,
            ),
            (
                NodeStageVolumeRequest {
                    volume_capability: None,
                    ..s.clone()
                },
                Code::InvalidArgument,
            ),
            (
                NodeStageVolumeRequest {
                    volume_capability: Some(mount_cap("btrfs")),
                    ..s.clone()
                },
                Code::InvalidArgument,
            ),
        ];
        for (r, want) in bad {
            let st = code(node.node_stage_volume(r.clone()).await);
            assert_eq!(st.code(), want, "{r:?}: {st:?}");
        }
        let st = node
            .node_unstage_volume(NodeUnstageVolumeRequest {
                volume_id: id.clone(),
                staging_target_path: String::new(),
            })
            .await;
        assert_eq!(code(st).code(), Code::InvalidArgument);
        let st = node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: String::new(),
                target_path: p.target_path.clone(),
            })
            .await;
        assert_eq!(code(st).code(), Code::InvalidArgument);
        let st = node
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: "node-a#ssd#unknown".into(),
                volume_path: p.target_path.clone(),
                staging_target_path: String::new(),
            })
            .await;
        assert_eq!(code(st).code(), Code::NotFound);
        let st = node
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: id.clone(),
                volume_path: String::new(),
                staging_target_path: String::new(),
            })
            .await;
        assert_eq!(code(st).code(), Code::InvalidArgument);
    });
}

/// The spec's order for every RPC that takes a volume: a request missing a required
/// field is INVALID_ARGUMENT whatever its volume id, known or not (csi-sanity sends
/// unknown ids with fields left out). Unknown ids are of three kinds: ours but missing,
/// not ours at all, and kubelet's inline-ephemeral form.
pub fn required_fields_before_lookup(e: &Env) {
    let unknown = [
        format!("{NODE}#ssd#unknown"),
        "not-ours".to_string(),
        format!("csi-{}", "ab".repeat(32)),
    ];
    let mut node = e.node();
    let mut ctl = e.ctl();
    let staging = e.path("plugins/kubernetes.io/csi/lvmd.csi.local/u/globalmount");
    let target = e.path("pods/u/volumes/kubernetes.io~csi/pv/mount");
    let range = Some(CapacityRange {
        required_bytes: 8 * MIB,
        limit_bytes: 0,
    });
    e.rt.block_on(async {
        for id in &unknown {
            let mut got: Vec<(String, tonic::Status)> = Vec::new();
            let stage = NodeStageVolumeRequest {
                volume_id: id.clone(),
                staging_target_path: staging.clone(),
                volume_capability: Some(mount_cap("")),
                ..Default::default()
            };
            for (what, r) in [
                (
                    "stage without staging path",
                    NodeStageVolumeRequest {
                        staging_target_path: String::new(),
                        ..stage.clone()
                    },
                ),
                (
                    "stage without capability",
                    NodeStageVolumeRequest {
                        volume_capability: None,
                        ..stage.clone()
                    },
                ),
            ] {
                got.push((what.into(), code(node.node_stage_volume(r).await)));
            }
            let unstage = NodeUnstageVolumeRequest {
                volume_id: id.clone(),
                staging_target_path: String::new(),
            };
            got.push((
                "unstage without staging path".into(),
                code(node.node_unstage_volume(unstage).await),
            ));
            let publish = NodePublishVolumeRequest {
                volume_id: id.clone(),
                staging_target_path: staging.clone(),
                target_path: target.clone(),
                volume_capability: Some(mount_cap("")),
                ..Default::default()
            };
            for (what, r) in [
                (
                    "publish without target path",
                    NodePublishVolumeRequest {
                        target_path: String::new(),
                        ..publish.clone()
                    },
                ),
                (
                    "publish without capability",
                    NodePublishVolumeRequest {
                        volume_capability: None,
                        ..publish.clone()
                    },
                ),
                (
                    "publish (mount) without staging path",
                    NodePublishVolumeRequest {
                        staging_target_path: String::new(),
                        ..publish.clone()
                    },
                ),
            ] {
                got.push((what.into(), code(node.node_publish_volume(r).await)));
            }
            let unpublish = NodeUnpublishVolumeRequest {
                volume_id: id.clone(),
                target_path: String::new(),
            };
            got.push((
                "unpublish without target path".into(),
                code(node.node_unpublish_volume(unpublish).await),
            ));
            let stats = NodeGetVolumeStatsRequest {
                volume_id: id.clone(),
                volume_path: String::new(),
                staging_target_path: String::new(),
            };
            got.push((
                "stats without volume path".into(),
                code(node.node_get_volume_stats(stats).await),
            ));
            let expand = NodeExpandVolumeRequest {
                volume_id: id.clone(),
                volume_path: String::new(),
                capacity_range: range,
                ..Default::default()
            };
            got.push((
                "node expand without volume path".into(),
                code(node.node_expand_volume(expand).await),
            ));
            let validate = ValidateVolumeCapabilitiesRequest {
                volume_id: id.clone(),
                volume_capabilities: vec![],
                ..Default::default()
            };
            got.push((
                "validate without capabilities".into(),
                code(ctl.validate_volume_capabilities(validate).await),
            ));
            let cexpand = ControllerExpandVolumeRequest {
                volume_id: id.clone(),
                capacity_range: None,
                ..Default::default()
            };
            got.push((
                "controller expand without capacity range".into(),
                code(ctl.controller_expand_volume(cexpand).await),
            ));
            for (what, s) in got {
                assert_eq!(s.code(), Code::InvalidArgument, "{what}, id {id}: {s:?}");
            }
        }
    });
}

pub fn metrics_port(e: &Env) {
    let before = e.metrics();
    // The plugin's refusal counters are there from the start, at 0.
    for reason in ["invalid_parameter", "unknown_device_class"] {
        let n = before.value(
            "lvmd_csi_storage_class_refused_total",
            &[("reason", reason)],
        );
        assert_eq!(n, 0.0, "{reason}");
    }
    e.create(req("pvc-m", 8 * MIB, &[])).unwrap();
    let _ = e.create(req("", 8 * MIB, &[]));
    let m = e.metrics();
    let create = [("rpc", "CreateVolume")];
    let rpc = |code| m.value("lvmd_csi_rpc_total", &[create[0], ("code", code)]);
    assert_eq!(rpc("OK"), 1.0);
    assert_eq!(rpc("INVALID_ARGUMENT"), 1.0);
    assert_eq!(m.value("lvmd_csi_rpc_errors_total", &create), 1.0);
    assert_eq!(
        m.histogram_count("lvmd_csi_rpc_duration_seconds", &create),
        2.0
    );
    assert_eq!(m.value("lvmd_csi_lvmd_up", &[]), 1.0);
    let class = [("device_class", "ssd"), ("volume_group", e.vgs[0].as_str())];
    let total = m.value("lvmd_csi_device_class_total_bytes", &class);
    let free = m.value("lvmd_csi_device_class_free_bytes", &class);
    assert!(
        free > 0.0 && free + (8 * MIB) as f64 <= total,
        "free {free} of {total}"
    );
    // The scrape before the volume saw exactly its size more free.
    let free_before = before.value("lvmd_csi_device_class_free_bytes", &class);
    assert!(
        free_before - free >= (8 * MIB) as f64,
        "{free_before} -> {free}"
    );
    assert_eq!(m.value("lvmd_csi_volumes", &[("device_class", "ssd")]), 1.0);
    assert_eq!(
        m.value("lvmd_csi_volumes", &[("device_class", "wide")]),
        0.0
    );
    assert!(m.value("lvmd_csi_volume_bytes", &[("device_class", "ssd")]) >= (8 * MIB) as f64);
    // Each family's help text ends once with a full stop.
    assert!(!m.text.contains(".."), "{}", m.text);
}
