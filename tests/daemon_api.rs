//! The gRPC API end to end over a real unix socket, against the simulated engine,
//! activation and node: every RPC's happy path and its error codes. No root needed.

mod harness;

use harness::*;
use lvmd::rpc::pb;
use lvmd::socket::AccessPolicy;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::Code;

fn names(lvs: &[pb::LogicalVolume]) -> BTreeSet<String> {
    lvs.iter().map(|l| l.name.clone()).collect()
}

#[test]
fn volume_groups() {
    let (d, _sim) = sim_daemon(AccessPolicy::default());
    let (mut vg, ..) = d.clients();
    d.block_on(async {
        let all = vg
            .list_volume_groups(pb::ListVolumeGroupsRequest {})
            .await
            .unwrap()
            .into_inner()
            .volume_groups;
        let names: Vec<&str> = all.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["vg-fast", "vg-wide"]);
        let fast = vg
            .get_volume_group(pb::GetVolumeGroupRequest {
                name: "vg-fast".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(fast.device_classes, ["fast"]);
        assert_eq!(fast.extent_size_bytes, 4 * MIB);
        // 1 GiB less lvm2's 1 MiB data offset, in whole 4 MiB extents.
        assert_eq!(fast.total_bytes, 255 * 4 * MIB);
        assert_eq!(fast.physical_volumes[0].device, "/dev/sim/fast0");

        let s = code(
            vg.get_volume_group(pb::GetVolumeGroupRequest {
                name: "nope".into(),
            })
            .await,
        );
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().contains("nope"), "{s:?}");

        let created = vg
            .create_volume_group(pb::CreateVolumeGroupRequest {
                name: "vg-new".into(),
                devices: vec!["/dev/sim/spare0".into()],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(created.physical_volumes.len(), 1);
        assert!(created.device_classes.is_empty());
        let s = code(
            vg.create_volume_group(pb::CreateVolumeGroupRequest {
                name: "vg-new".into(),
                devices: vec!["/dev/sim/spare1".into()],
            })
            .await,
        );
        assert_eq!(s.code(), Code::AlreadyExists, "{s:?}");
        let extended = vg
            .extend_volume_group(pb::ExtendVolumeGroupRequest {
                name: "vg-new".into(),
                devices: vec!["/dev/sim/spare1".into()],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(extended.physical_volumes.len(), 2);
        assert_eq!(extended.total_bytes, 2 * 255 * 4 * MIB);

        // A PV of another VG: refused, naming the device and its VG.
        let s = code(
            vg.extend_volume_group(pb::ExtendVolumeGroupRequest {
                name: "vg-new".into(),
                devices: vec!["/dev/sim/fast0".into()],
            })
            .await,
        );
        assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
        assert!(s.message().contains("fast0") && s.message().contains("vg-fast"));
        let s = code(
            vg.extend_volume_group(pb::ExtendVolumeGroupRequest {
                name: "vg-new".into(),
                devices: vec!["/dev/sim/missing".into()],
            })
            .await,
        );
        assert_eq!(s.code(), Code::NotFound, "{s:?}");
        assert!(s.message().contains("/dev/sim/missing"));
        for bad in ["bad name", "-x", ""] {
            let s = code(
                vg.create_volume_group(pb::CreateVolumeGroupRequest {
                    name: bad.into(),
                    devices: vec!["/dev/sim/spare2".into()],
                })
                .await,
            );
            assert_eq!(s.code(), Code::InvalidArgument, "{bad:?}: {s:?}");
        }
        let s = code(
            vg.create_volume_group(pb::CreateVolumeGroupRequest {
                name: "vg-empty".into(),
                devices: vec![],
            })
            .await,
        );
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        let s = code(
            vg.extend_volume_group(pb::ExtendVolumeGroupRequest {
                name: "nope".into(),
                devices: vec!["/dev/sim/spare2".into()],
            })
            .await,
        );
        assert_eq!(s.code(), Code::NotFound, "{s:?}");
    });
}

#[test]
fn logical_volumes_and_idempotency() {
    let (d, _sim) = sim_daemon(AccessPolicy::default());
    let (_, mut lv, ..) = d.clients();
    d.block_on(async {
        let mut req = create_req("", "data", 10 * MIB);
        req.tags = vec!["pvc=a".into()];
        let a = lv
            .create_logical_volume(req.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (
                a.volume_group.as_str(),
                a.device_class.as_str(),
                a.size_bytes
            ),
            ("vg-fast", "fast", 12 * MIB)
        );
        assert_eq!(a.layout, pb::Layout::Linear as i32);
        assert!(!a.active);
        // Same request again: the same volume.
        let again = lv
            .create_logical_volume(req.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.uuid, a.uuid);
        // A size that rounds to the same extents is the same request.
        let mut same = req.clone();
        same.size_bytes = 12 * MIB;
        assert_eq!(
            lv.create_logical_volume(same)
                .await
                .unwrap()
                .into_inner()
                .uuid,
            a.uuid
        );
        // Different size, tags, layout: ALREADY_EXISTS naming the difference.
        for (change, word) in [
            (
                Box::new(|r: &mut pb::CreateLogicalVolumeRequest| r.size_bytes = 100 * MIB)
                    as Box<dyn Fn(&mut pb::CreateLogicalVolumeRequest)>,
                "size",
            ),
            (
                Box::new(|r: &mut pb::CreateLogicalVolumeRequest| r.tags = vec![]),
                "tags",
            ),
            (
                Box::new(|r: &mut pb::CreateLogicalVolumeRequest| {
                    r.layout = pb::Layout::Striped as i32;
                    r.stripes = 2;
                }),
                "layout",
            ),
        ] {
            let mut r = req.clone();
            change(&mut r);
            let s = code(lv.create_logical_volume(r).await);
            assert!(
                s.code() == Code::AlreadyExists && s.message().contains(word),
                "{word}: {s:?}"
            );
        }

        let got = lv
            .get_logical_volume(pb::GetLogicalVolumeRequest {
                volume: vref("fast", "data"),
            })
            .await
            .unwrap()
            .into_inner();
        // The client's tags, and lvmd's mark of a volume never handed out.
        assert_eq!(got.tags, ["pvc=a", "lvmd.fresh"]);
        // Addressed by VG name too.
        let by_vg = lv
            .get_logical_volume(pb::GetLogicalVolumeRequest {
                volume: Some(pb::VolumeRef {
                    volume_group: "vg-fast".into(),
                    name: "data".into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(by_vg.uuid, a.uuid);

        // Striped: the class default, and explicit.
        let w = lv
            .create_logical_volume(create_req("wide", "w1", 100 * MIB))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (w.layout, w.stripes, w.stripe_size_bytes),
            (pb::Layout::Striped as i32, 2, 64 << 10)
        );
        assert_eq!(w.size_bytes, 104 * MIB);
        let mut lin = create_req("wide", "w2", 8 * MIB);
        lin.layout = pb::Layout::Linear as i32;
        assert_eq!(
            lv.create_logical_volume(lin)
                .await
                .unwrap()
                .into_inner()
                .stripes,
            1
        );

        let list = lv
            .list_logical_volumes(pb::ListLogicalVolumesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .logical_volumes;
        assert_eq!(names(&list), ["data", "w1", "w2"].map(String::from).into());
        let wide = lv
            .list_logical_volumes(pb::ListLogicalVolumesRequest {
                device_class: "wide".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .logical_volumes;
        assert_eq!(names(&wide), ["w1", "w2"].map(String::from).into());

        // Resize up and down.
        let grown = lv
            .resize_logical_volume(pb::ResizeLogicalVolumeRequest {
                volume: vref("", "data"),
                size_bytes: 40 * MIB,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(grown.size_bytes, 40 * MIB);
        let shrunk = lv
            .resize_logical_volume(pb::ResizeLogicalVolumeRequest {
                volume: vref("", "data"),
                size_bytes: 8 * MIB,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(shrunk.size_bytes, 8 * MIB);

        // Remove, twice.
        let r = lv
            .remove_logical_volume(pb::RemoveLogicalVolumeRequest {
                volume: vref("", "data"),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.existed);
        let r = lv
            .remove_logical_volume(pb::RemoveLogicalVolumeRequest {
                volume: vref("", "data"),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!r.existed);
        let s = code(
            lv.get_logical_volume(pb::GetLogicalVolumeRequest {
                volume: vref("", "data"),
            })
            .await,
        );
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().contains("vg-fast/data"), "{s:?}");
    });
}

#[test]
fn bad_lv_requests_are_refused_with_precise_codes() {
    let (d, sim) = sim_daemon(AccessPolicy::default());
    let (_, mut lv, ..) = d.clients();
    d.block_on(async {
        let cases: Vec<(pb::CreateLogicalVolumeRequest, Code, &str)> = vec![
            (create_req("", "zero", 0), Code::InvalidArgument, "size"),
            (
                create_req("", "bad name", MIB),
                Code::InvalidArgument,
                "bad name",
            ),
            (
                create_req("", "x_tmeta", MIB),
                Code::InvalidArgument,
                "_tmeta",
            ),
            (create_req("", "", MIB), Code::InvalidArgument, "name"),
            (create_req("nvme", "a", MIB), Code::NotFound, "nvme"),
            (
                pb::CreateLogicalVolumeRequest {
                    volume: Some(pb::VolumeRef {
                        volume_group: "vg-none".into(),
                        name: "a".into(),
                        ..Default::default()
                    }),
                    size_bytes: MIB,
                    ..Default::default()
                },
                Code::NotFound,
                "vg-none",
            ),
            (
                create_req("", "huge", 2 * GIB),
                Code::OutOfRange,
                "2147483648",
            ),
            (
                pb::CreateLogicalVolumeRequest {
                    tags: vec!["bad tag".into()],
                    ..create_req("", "t", MIB)
                },
                Code::InvalidArgument,
                "bad tag",
            ),
            // dm-integrity sits under a mirror's copies: refused with any other
            // layout, naming it.
            (
                pb::CreateLogicalVolumeRequest {
                    integrity: Some(true),
                    ..create_req("", "i1", MIB)
                },
                Code::InvalidArgument,
                "integrity: true needs layout RAID1",
            ),
            (
                pb::CreateLogicalVolumeRequest {
                    layout: pb::Layout::Striped as i32,
                    integrity: Some(true),
                    ..create_req("wide", "i2", MIB)
                },
                Code::InvalidArgument,
                "striped",
            ),
            (
                pb::CreateLogicalVolumeRequest {
                    layout: pb::Layout::Striped as i32,
                    stripes: 1,
                    ..create_req("wide", "s1", MIB)
                },
                Code::InvalidArgument,
                "stripe count",
            ),
            (
                pb::CreateLogicalVolumeRequest {
                    layout: pb::Layout::Striped as i32,
                    stripes: 2,
                    stripe_size_bytes: 3000,
                    ..create_req("wide", "s2", MIB)
                },
                Code::InvalidArgument,
                "3000",
            ),
            (
                pb::CreateLogicalVolumeRequest {
                    layout: pb::Layout::Striped as i32,
                    stripes: 3,
                    ..create_req("wide", "s3", 12 * MIB)
                },
                Code::ResourceExhausted,
                "3 stripes",
            ),
            (
                pb::CreateLogicalVolumeRequest {
                    layout: 7,
                    ..create_req("", "l", MIB)
                },
                Code::InvalidArgument,
                "layout",
            ),
            (
                pb::CreateLogicalVolumeRequest {
                    volume: None,
                    ..create_req("", "l", MIB)
                },
                Code::InvalidArgument,
                "volume",
            ),
        ];
        for (req, want, word) in cases {
            let s = code(lv.create_logical_volume(req.clone()).await);
            assert_eq!(s.code(), want, "{req:?}: {s:?}");
            assert!(s.message().contains(word), "{req:?}: {s:?}");
        }
        // Nothing was created by any of them.
        assert!(lv
            .list_logical_volumes(pb::ListLogicalVolumesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .logical_volumes
            .is_empty());

        // No space now (but the VG could hold it empty): RESOURCE_EXHAUSTED.
        lv.create_logical_volume(create_req("", "big", 900 * MIB))
            .await
            .unwrap();
        let s = code(
            lv.create_logical_volume(create_req("", "more", 200 * MIB))
                .await,
        );
        assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
        let s = code(
            lv.resize_logical_volume(pb::ResizeLogicalVolumeRequest {
                volume: vref("", "big"),
                size_bytes: 0,
            })
            .await,
        );
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        let s = code(
            lv.resize_logical_volume(pb::ResizeLogicalVolumeRequest {
                volume: vref("", "big"),
                size_bytes: 4 * GIB,
            })
            .await,
        );
        assert_eq!(s.code(), Code::OutOfRange, "{s:?}");
        let s = code(
            lv.resize_logical_volume(pb::ResizeLogicalVolumeRequest {
                volume: vref("", "ghost"),
                size_bytes: MIB,
            })
            .await,
        );
        assert_eq!(s.code(), Code::NotFound, "{s:?}");
        let s = code(
            lv.remove_logical_volume(pb::RemoveLogicalVolumeRequest {
                volume: vref("", "../x"),
            })
            .await,
        );
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        drop(sim);
    });
}

#[test]
fn activation_and_in_use_refusals() {
    let (d, sim) = sim_daemon(AccessPolicy::default());
    let (_, mut lv, ..) = d.clients();
    d.block_on(async {
        lv.create_logical_volume(create_req("", "v", 16 * MIB))
            .await
            .unwrap();
        let a = lv
            .activate_logical_volume(pb::ActivateLogicalVolumeRequest {
                volume: vref("", "v"),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(a.active);
        assert_eq!(a.device_path, "/dev/lvmd-sim/vg-fast-v");
        // Listed as active.
        let got = lv
            .get_logical_volume(pb::GetLogicalVolumeRequest {
                volume: vref("", "v"),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(got.active);
        // Active: shrinking refused, growing allowed (and the table follows).
        let s = code(
            lv.resize_logical_volume(pb::ResizeLogicalVolumeRequest {
                volume: vref("", "v"),
                size_bytes: 4 * MIB,
            })
            .await,
        );
        assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
        lv.resize_logical_volume(pb::ResizeLogicalVolumeRequest {
            volume: vref("", "v"),
            size_bytes: 32 * MIB,
        })
        .await
        .unwrap();
        let active = sim.act.active_in("vg-fast");
        assert_eq!(active[0].size.0, 32 * MIB);
        // Open: neither deactivate nor remove.
        sim.act.set_open_count("vg-fast", "v", 1);
        let s = code(
            lv.deactivate_logical_volume(pb::DeactivateLogicalVolumeRequest {
                volume: vref("", "v"),
            })
            .await,
        );
        assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
        let s = code(
            lv.remove_logical_volume(pb::RemoveLogicalVolumeRequest {
                volume: vref("", "v"),
            })
            .await,
        );
        assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
        assert!(s.message().contains("vg-fast/v"), "{s:?}");
        sim.act.set_open_count("vg-fast", "v", 0);
        let d2 = lv
            .deactivate_logical_volume(pb::DeactivateLogicalVolumeRequest {
                volume: vref("", "v"),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!d2.active);
        // Remove deactivates first.
        lv.activate_logical_volume(pb::ActivateLogicalVolumeRequest {
            volume: vref("", "v"),
        })
        .await
        .unwrap();
        lv.remove_logical_volume(pb::RemoveLogicalVolumeRequest {
            volume: vref("", "v"),
        })
        .await
        .unwrap();
        assert!(sim.act.active_in("vg-fast").is_empty());
        // No device-mapper: FAILED_PRECONDITION (a module or the host must change
        // first; retrying alone never helps), saying why.
        lv.create_logical_volume(create_req("", "w", MIB))
            .await
            .unwrap();
        sim.act.set_unavailable(Some("no /dev/mapper/control"));
        let s = code(
            lv.activate_logical_volume(pb::ActivateLogicalVolumeRequest {
                volume: vref("", "w"),
            })
            .await,
        );
        assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
        assert!(s.message().contains("/dev/mapper/control"), "{s:?}");
        sim.act.set_unavailable(None);
        let s = code(
            lv.activate_logical_volume(pb::ActivateLogicalVolumeRequest {
                volume: vref("", "ghost"),
            })
            .await,
        );
        assert_eq!(s.code(), Code::NotFound, "{s:?}");
    });
}

#[test]
fn node_work() {
    let (d, sim) = sim_daemon(AccessPolicy::default());
    let (_, mut lv, _, mut node) = d.clients();
    d.block_on(async {
        lv.create_logical_volume(create_req("", "fs", 64 * MIB))
            .await
            .unwrap();
        lv.create_logical_volume(create_req("", "other", 64 * MIB))
            .await
            .unwrap();
        lv.create_logical_volume(create_req("", "raw", 64 * MIB))
            .await
            .unwrap();
        let target = d.target("pods/p1/volumes/fs/mount");
        let mount = |name: &str, target: &str| pb::MountVolumeRequest {
            volume: vref("", name),
            target_path: target.into(),
            fs_type: String::new(),
            mount_options: vec!["noatime".into()],
            read_only: false,
            passphrase: Vec::new(),
        };
        let m = node
            .mount_volume(mount("fs", &target))
            .await
            .unwrap()
            .into_inner();
        assert!(m.formatted);
        assert_eq!(m.fs_type, "ext4");
        assert_eq!(m.device_path, "/dev/lvmd-sim/vg-fast-fs");
        assert_eq!(
            sim.node
                .filesystem_on(std::path::Path::new(&m.device_path))
                .as_deref(),
            Some("ext4")
        );
        // Again: success, no second format.
        let again = node
            .mount_volume(mount("fs", &target))
            .await
            .unwrap()
            .into_inner();
        assert!(!again.formatted);
        // Another volume on the same target: refused.
        let s = code(node.mount_volume(mount("other", &target)).await);
        assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");

        // Bad targets: INVALID_ARGUMENT, nothing activated for them.
        std::os::unix::fs::symlink("/etc", d.root.join("evil")).unwrap();
        let outside = d.path().join("outside").display().to_string();
        for (bad, word) in [
            (d.target("pods/../../../etc/x"), "'..'"),
            (d.target("evil/x"), "symlink"),
            (outside, "allowed root"),
            ("relative/path".to_string(), "absolute"),
            ("/".to_string(), "allowed root"),
        ] {
            let s = code(node.mount_volume(mount("other", &bad)).await);
            assert_eq!(s.code(), Code::InvalidArgument, "{bad}: {s:?}");
            assert!(s.message().contains(word), "{bad}: {s:?}");
        }
        let s = code(node.mount_volume(mount("other", "")).await);
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        let mut xfs3 = mount("other", &d.target("t3"));
        xfs3.fs_type = "btrfs".into();
        let s = code(node.mount_volume(xfs3).await);
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(s.message().contains("btrfs"));
        let mut opt = mount("other", &d.target("t4"));
        opt.mount_options = vec!["rbind".into()];
        let s = code(node.mount_volume(opt).await);
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(
            !sim.act.active_in("vg-fast").iter().any(|a| a.lv == "other"),
            "a refused mount activated the volume"
        );
        let s = code(node.mount_volume(mount("ghost", &d.target("t5"))).await);
        assert_eq!(s.code(), Code::NotFound, "{s:?}");

        // xfs on the other volume, read-only refused on an empty device.
        let mut ro = mount("other", &d.target("ro"));
        ro.read_only = true;
        let s = code(node.mount_volume(ro).await);
        assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
        let mut xfs = mount("other", &d.target("xfs"));
        xfs.fs_type = "xfs".into();
        assert_eq!(
            node.mount_volume(xfs).await.unwrap().into_inner().fs_type,
            "xfs"
        );

        // Stats.
        let st = node
            .get_path_stats(pb::GetPathStatsRequest {
                path: target.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!st.block && st.total_bytes > 0 && st.total_inodes > 0);
        let s = code(
            node.get_path_stats(pb::GetPathStatsRequest {
                path: d.target("nothing"),
            })
            .await,
        );
        assert_eq!(s.code(), Code::NotFound, "{s:?}");

        // Bind mount (CSI publish of a staged volume), raw block publish.
        let publish = d.target("pods/p1/volumes/fs/publish");
        node.bind_mount(pb::BindMountRequest {
            source_path: target.clone(),
            target_path: publish.clone(),
            read_only: true,
        })
        .await
        .unwrap();
        assert_eq!(
            sim.node.mounted(std::path::Path::new(&publish)),
            Some((target.clone().into(), true))
        );
        let s = code(
            node.bind_mount(pb::BindMountRequest {
                source_path: "/etc".into(),
                target_path: d.target("b2"),
                read_only: false,
            })
            .await,
        );
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        let block = d.target("pods/p1/volumeDevices/raw");
        let b = node
            .publish_block(pb::PublishBlockRequest {
                volume: vref("", "raw"),
                target_path: block.clone(),
                read_only: false,
                passphrase: Vec::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(b.device_path, "/dev/lvmd-sim/vg-fast-raw");
        let st = node
            .get_path_stats(pb::GetPathStatsRequest {
                path: block.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(st.block);
        // Idempotent.
        node.publish_block(pb::PublishBlockRequest {
            volume: vref("", "raw"),
            target_path: block.clone(),
            read_only: false,
            passphrase: Vec::new(),
        })
        .await
        .unwrap();

        // Unmount: then again (nothing there) is fine.
        for t in [&publish, &target, &block] {
            let u = node
                .unmount(pb::UnmountRequest {
                    target_path: t.clone(),
                    remove_target: true,
                })
                .await
                .unwrap()
                .into_inner();
            assert!(u.was_mounted, "{t}");
            let u = node
                .unmount(pb::UnmountRequest {
                    target_path: t.clone(),
                    remove_target: true,
                })
                .await
                .unwrap()
                .into_inner();
            assert!(!u.was_mounted, "{t}");
        }
        let s = code(
            node.unmount(pb::UnmountRequest {
                target_path: "/etc".into(),
                remove_target: true,
            })
            .await,
        );
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert_eq!(sim.node.mount_count(), 1, "only the xfs mount is left");
    });
}

#[test]
fn capacity_and_watch() {
    let (d, _sim) = sim_daemon(AccessPolicy::default());
    let (_, mut lv, mut cap, _) = d.clients();
    d.block_on(async {
        let all = cap
            .get_capacity(pb::GetCapacityRequest::default())
            .await
            .unwrap()
            .into_inner()
            .device_classes;
        assert_eq!(all.len(), 2);
        let fast = &all[0];
        assert_eq!(
            (
                fast.device_class.as_str(),
                fast.is_default,
                fast.total_bytes,
                fast.free_bytes
            ),
            ("fast", true, 1020 * MIB, 1020 * MIB)
        );
        assert_eq!(fast.largest_bytes, 1020 * MIB);
        let wide = &all[1];
        assert_eq!((wide.default_stripes, wide.largest_bytes), (2, 2040 * MIB));
        let s = code(
            cap.get_capacity(pb::GetCapacityRequest {
                device_class: "nope".into(),
            })
            .await,
        );
        assert_eq!(s.code(), Code::NotFound);
        let s = code(
            cap.watch_capacity(pb::GetCapacityRequest {
                device_class: "nope".into(),
            })
            .await,
        );
        assert_eq!(s.code(), Code::NotFound);

        let mut watch = cap
            .watch_capacity(pb::GetCapacityRequest {
                device_class: "fast".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let first = watch.next().await.unwrap().unwrap();
        assert_eq!(first.device_classes.len(), 1);
        assert_eq!(first.device_classes[0].free_bytes, 1020 * MIB);
        lv.create_logical_volume(create_req("fast", "a", 100 * MIB))
            .await
            .unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("a capacity update after the create")
            .unwrap()
            .unwrap();
        assert_eq!(next.device_classes[0].free_bytes, 920 * MIB);
        // A change in another class is not pushed to a watcher of this one.
        lv.create_logical_volume(create_req("wide", "b", 100 * MIB))
            .await
            .unwrap();
        lv.remove_logical_volume(pb::RemoveLogicalVolumeRequest {
            volume: vref("fast", "a"),
        })
        .await
        .unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(next.device_classes[0].free_bytes, 1020 * MIB);
    });
}

#[test]
fn health_service() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let (d, _sim) = sim_daemon(AccessPolicy::default());
    let mut h = HealthClient::new(d.channel());
    d.block_on(async {
        for service in ["", "lvmd.v1.LogicalVolumeService", "lvmd.v1.NodeService"] {
            let r = h
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.status, ServingStatus::Serving as i32, "{service}");
        }
        let s = code(
            h.check(HealthCheckRequest {
                service: "nope".into(),
            })
            .await,
        );
        assert_eq!(s.code(), Code::NotFound);
    });
}

#[test]
fn parallel_clients_lose_nothing() {
    let (d, _sim) = sim_daemon(AccessPolicy::default());
    let channel = d.channel();
    d.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..32 {
            let mut lv = LvClient::new(channel.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..6 {
                    let name = format!("c{c}-v{i}");
                    lv.create_logical_volume(create_req("", &name, 4 * MIB))
                        .await
                        .unwrap();
                    // Each client retries one create, as a CSI sidecar would.
                    if i == 0 {
                        lv.create_logical_volume(create_req("", &name, 4 * MIB))
                            .await
                            .unwrap();
                    }
                }
                for i in (0..6).step_by(2) {
                    let r = lv
                        .remove_logical_volume(pb::RemoveLogicalVolumeRequest {
                            volume: vref("", &format!("c{c}-v{i}")),
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    assert!(r.existed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut lv = LvClient::new(channel.clone());
        let list = lv
            .list_logical_volumes(pb::ListLogicalVolumesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .logical_volumes;
        let want: BTreeSet<String> = (0..32)
            .flat_map(|c| [1, 3, 5].map(|i| format!("c{c}-v{i}")))
            .collect();
        assert_eq!(names(&list), want);
        let mut cap = CapClient::new(channel);
        let fast = cap
            .get_capacity(pb::GetCapacityRequest {
                device_class: "fast".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .device_classes
            .remove(0);
        assert_eq!(fast.free_bytes, (1020 - 96 * 4) * MIB);
    });
}

#[test]
fn peers_outside_the_allow_list_are_refused() {
    // SAFETY: geteuid/getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    // Nobody allowed, root not either: whoever runs this test is refused.
    let nobody = AccessPolicy {
        allow_root: false,
        uids: vec![],
        gids: vec![],
    };
    let (d, _sim) = sim_daemon(nobody);
    // The server closes the connection before HTTP/2 starts: either the connect or
    // the first call fails.
    let refused = d.block_on(async {
        match lvmd::rpc::client::connect(&d.socket).await {
            Err(e) => format!("connect: {e}"),
            Ok(ch) => {
                let mut vg = VgClient::new(ch);
                let s = vg
                    .list_volume_groups(pb::ListVolumeGroupsRequest {})
                    .await
                    .expect_err("a refused peer got an answer");
                assert!(
                    matches!(
                        s.code(),
                        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
                    ),
                    "{s:?}"
                );
                format!("call: {s:?}")
            }
        }
    });
    eprintln!("refused as expected: {refused}");
    drop(d);
    // Allowed by uid, then by gid only.
    for policy in [
        AccessPolicy {
            allow_root: false,
            uids: vec![uid],
            gids: vec![],
        },
        AccessPolicy {
            allow_root: false,
            uids: vec![],
            gids: vec![gid],
        },
    ] {
        let (d, _sim) = sim_daemon(policy.clone());
        let (mut vg, ..) = d.clients();
        d.block_on(vg.list_volume_groups(pb::ListVolumeGroupsRequest {}))
            .unwrap_or_else(|e| panic!("{policy:?}: {e:?}"));
    }
}

#[test]
fn expand_volume_grows_the_lv_and_its_filesystem() {
    let (d, sim) = sim_daemon(AccessPolicy::default());
    let (_, mut lv, _, mut node) = d.clients();
    d.block_on(async {
        lv.create_logical_volume(create_req("", "fs", 64 * MIB))
            .await
            .unwrap();
        lv.create_logical_volume(create_req("", "raw", 64 * MIB))
            .await
            .unwrap();
        lv.create_logical_volume(create_req("", "idle", 64 * MIB))
            .await
            .unwrap();
        let target = d.target("pods/p1/volumes/fs/mount");
        let m = node
            .mount_volume(pb::MountVolumeRequest {
                volume: vref("", "fs"),
                target_path: target.clone(),
                fs_type: "xfs".into(),
                mount_options: vec![],
                read_only: false,
                passphrase: Vec::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let expand = |name: &str, size: u64, path: &str| pb::ExpandVolumeRequest {
            volume: vref("", name),
            size_bytes: size,
            target_path: path.into(),
            passphrase: Vec::new(),
        };

        // Grows the LV (rounded up to whole extents) and the filesystem on it.
        let x = node
            .expand_volume(expand("fs", 100 * MIB + 1, &target))
            .await
            .unwrap()
            .into_inner();
        let v = x.volume.unwrap();
        assert_eq!(v.size_bytes, 104 * MIB);
        assert!(v.active);
        assert!(x.filesystem_size_bytes > 0);
        let grows = sim.node.grows();
        assert_eq!(grows.len(), 1);
        assert_eq!(grows[0].device, std::path::Path::new(&m.device_path));
        assert_eq!(grows[0].target, std::path::Path::new(&target));
        assert_eq!(grows[0].fs_type, "xfs");
        // Again: the same size, no change to the LV (the grow is harmless to repeat).
        let again = node
            .expand_volume(expand("fs", 104 * MIB, &target))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.volume.unwrap().size_bytes, 104 * MIB);
        let got = lv
            .get_logical_volume(pb::GetLogicalVolumeRequest {
                volume: vref("", "fs"),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.size_bytes, 104 * MIB);

        // Shrinking: refused, nothing changed.
        let s = code(node.expand_volume(expand("fs", 64 * MIB, &target)).await);
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(s.message().contains("only grow"), "{s:?}");
        let s = code(node.expand_volume(expand("fs", 0, &target)).await);
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");

        // Bad paths: refused before the LV grows.
        std::os::unix::fs::symlink("/etc", d.root.join("evil2")).unwrap();
        for (bad, want) in [
            (d.target("pods/../../../etc/x"), Code::InvalidArgument),
            (d.target("evil2/x"), Code::InvalidArgument),
            ("/etc".to_string(), Code::InvalidArgument),
            // Under the roots but nothing mounted there.
            (d.target("pods/p1/volumes/none"), Code::FailedPrecondition),
        ] {
            let s = code(node.expand_volume(expand("fs", 200 * MIB, &bad)).await);
            assert_eq!(s.code(), want, "{bad}: {s:?}");
        }
        // Another volume's mount point: refused.
        let s = code(node.expand_volume(expand("raw", 200 * MIB, &target)).await);
        assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
        // An inactive volume cannot be mounted anywhere.
        let s = code(node.expand_volume(expand("idle", 200 * MIB, &target)).await);
        assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
        for name in ["fs", "raw", "idle"] {
            let got = lv
                .get_logical_volume(pb::GetLogicalVolumeRequest {
                    volume: vref("", name),
                })
                .await
                .unwrap()
                .into_inner();
            let want = if name == "fs" { 104 } else { 64 };
            assert_eq!(got.size_bytes, want * MIB, "{name} changed");
        }
        assert_eq!(sim.node.grows().len(), 2, "only the two good calls grew");

        // A block volume: no path, no filesystem grow.
        let x = node
            .expand_volume(expand("raw", 128 * MIB, ""))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(x.volume.unwrap().size_bytes, 128 * MIB);
        assert_eq!(x.filesystem_size_bytes, 0);
        assert_eq!(sim.node.grows().len(), 2);
        let s = code(node.expand_volume(expand("ghost", 128 * MIB, "")).await);
        assert_eq!(s.code(), Code::NotFound, "{s:?}");
    });
}

/// What device-mapper says reaches clients with the code its meaning calls for, and the
/// message naming what is at fault: a taken name, a missing target module, a slow udev,
/// no privilege, a kernel that refuses a table for no reason lvmd found.
#[test]
fn device_mapper_refusals_reach_clients_with_their_codes() {
    use lvmd::activate::ActivateError;
    let errno = std::io::Error::from_raw_os_error;
    let (d, sim) = sim_daemon(AccessPolicy::default());
    let (_, mut lv, ..) = d.clients();
    let cases: Vec<(ActivateError, Code, &str)> = vec![
        (
            ActivateError::NameTaken {
                name: "vg-fast-v".into(),
                uuid: "CRYPT-LUKS2-foreign".into(),
                wanted: "LVM-x".into(),
            },
            Code::FailedPrecondition,
            "CRYPT-LUKS2-foreign",
        ),
        (
            ActivateError::TargetMissing {
                device: "vg--fast-v".into(),
                target: "striped".into(),
            },
            Code::FailedPrecondition,
            "dm-striped",
        ),
        (
            ActivateError::Udev {
                why: "/dev/vg-fast/v did not appear".into(),
            },
            Code::Unavailable,
            "did not appear",
        ),
        (
            ActivateError::Dm {
                op: "create",
                device: "vg--fast-v".into(),
                source: errno(libc::EPERM),
            },
            Code::FailedPrecondition,
            "create",
        ),
        (
            ActivateError::TableRejected {
                device: "vg--fast-v".into(),
                table: "0 2048 linear 7:0 2048".into(),
                source: errno(libc::EINVAL),
            },
            Code::Internal,
            "linear 7:0",
        ),
    ];
    d.block_on(async {
        lv.create_logical_volume(create_req("", "v", MIB))
            .await
            .unwrap();
        for (e, want, word) in cases {
            let what = e.to_string();
            sim.act.fail_next_activation(e);
            let s = code(
                lv.activate_logical_volume(pb::ActivateLogicalVolumeRequest {
                    volume: vref("", "v"),
                })
                .await,
            );
            assert_eq!(s.code(), want, "{what}: {s:?}");
            assert!(s.message().contains(word), "{what}: {s:?}");
            assert!(s.message().contains("vg-fast/v"), "{what}: {s:?}");
            assert!(sim.act.active_in("vg-fast").is_empty());
        }
        // The fault was one-shot: the next activation works.
        lv.activate_logical_volume(pb::ActivateLogicalVolumeRequest {
            volume: vref("", "v"),
        })
        .await
        .unwrap();
    });
}

/// A gRPC C-core client (Python grpcio, C++, Ruby) sends a unix socket's path
/// %-encoded as `:authority`, grpc-java and csc the raw path: h2 refuses both (it would
/// reset the stream). Written here as such a client writes it, with an indexing HPACK
/// encoder and two calls on one connection (the second reusing table entries): both are
/// answered by lvmd.
#[test]
fn clients_whose_authority_h2_refuses_are_served() {
    use prost::Message as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
    }

    let (d, _sim) = sim_daemon(AccessPolicy::default());
    for authority in [
        "%2Frun%2Flvmd%2Flvmd.sock".to_owned(),
        d.socket.display().to_string(),
    ] {
        assert!(http::uri::Authority::try_from(authority.as_str()).is_err());
        let mut enc = loona_hpack::Encoder::new();
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        frame(&mut out, 0x4, 0, 0, &[]);
        for stream in [1u32, 3] {
            let headers: [(&[u8], &[u8]); 6] = [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", b"/lvmd.v1.VolumeGroupService/ListVolumeGroups"),
                (b":authority", authority.as_bytes()),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
            ];
            frame(&mut out, 0x1, 0x4, stream, &enc.encode(headers));
            // An empty request message, gRPC-framed; END_STREAM.
            frame(&mut out, 0x0, 0x1, stream, &[0, 0, 0, 0, 0]);
        }
        let (answers, trailers) = d.block_on(async {
            let mut s = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
            s.write_all(&out).await.unwrap();
            let mut dec = loona_hpack::Decoder::new();
            let (mut answers, mut trailers) = (Vec::new(), Vec::new());
            while trailers.len() < 2 {
                let mut head = [0u8; 9];
                tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut head))
                    .await
                    .expect("lvmd answers within 10 s")
                    .unwrap();
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let mut payload = vec![0u8; len];
                s.read_exact(&mut payload).await.unwrap();
                match head[3] {
                    0x3 => panic!("{authority}: stream reset, code {payload:?}"),
                    0x7 => panic!("{authority}: GOAWAY {payload:?}"),
                    0x4 if head[4] & 0x1 == 0 => {
                        let mut ack = Vec::new();
                        frame(&mut ack, 0x4, 0x1, 0, &[]);
                        s.write_all(&ack).await.unwrap();
                    }
                    0x0 if len > 0 => {
                        answers.push(pb::ListVolumeGroupsResponse::decode(&payload[5..]).unwrap())
                    }
                    0x1 => {
                        let h = dec.decode(&payload).unwrap();
                        if head[4] & 0x1 != 0 {
                            trailers.push(h);
                        }
                    }
                    _ => {}
                }
            }
            (answers, trailers)
        });
        assert_eq!(answers.len(), 2, "{authority}");
        for a in &answers {
            let names: Vec<&str> = a.volume_groups.iter().map(|v| v.name.as_str()).collect();
            assert_eq!(names, ["vg-fast", "vg-wide"]);
        }
        for t in trailers {
            let status = t.iter().find(|(n, _)| n == b"grpc-status").unwrap();
            assert_eq!(status.1, b"0", "{authority}: {t:?}");
        }
    }
}
