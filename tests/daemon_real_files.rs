//! The real engine (lvmd's `Lvm` library, with its cache) behind the gRPC API, on image
//! files instead of block devices, so it runs without root. Activation is simulated.

mod harness;

use harness::*;
use lvmd::daemon::engine::Engine;
use lvmd::daemon::{HostNode, RealEngine, SimActivation};
use lvmd::lvm::{Layout, Lvm};
use lvmd::rpc::pb;
use lvmd::socket::AccessPolicy;
use lvmd::store::lock::Locker;
use lvmd::units::Bytes;
use std::sync::Arc;
use tonic::Code;

fn lvm_on(dir: &std::path::Path, images: &[std::path::PathBuf]) -> Lvm {
    let mut lvm = Lvm::new(images.to_vec());
    lvm.locker = Locker::new(dir.join("locks"));
    lvm.backup = None;
    lvm.lvm2_run_dir = dir.join("lvm2-run");
    lvm.lvm2_devices_file.dir = dir.join("lvm2-devices");
    lvm
}

#[test]
fn real_engine_on_image_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("kubelet");
    std::fs::create_dir(&root).unwrap();
    let images: Vec<_> = (0..2)
        .map(|i| {
            let p = dir.path().join(format!("disk{i}.img"));
            std::fs::File::create(&p)
                .unwrap()
                .set_len(64 * MIB)
                .unwrap();
            p
        })
        .collect();
    // The daemon starts knowing no devices: the VG is created through the API.
    let engine = Arc::new(RealEngine::real(
        lvm_on(dir.path(), &[]),
        Arc::new(SimActivation::default()),
        Arc::new(HostNode),
        vec![root.clone()],
    ));
    // The daemon refuses files as PVs: a client could name any file on the host.
    let etc_file = images[0].display().to_string();
    let refused = engine
        .create_volume_group("vg-fast", &[images[0].clone()])
        .unwrap_err();
    assert!(
        refused.to_string().contains("not a block device"),
        "{refused}"
    );
    assert!(refused.to_string().contains(&etc_file));
    let engine = Arc::new(
        Arc::try_unwrap(engine)
            .unwrap_or_else(|_| unreachable!())
            .allow_image_files(),
    );
    let outside = lvm_on(dir.path(), &images);
    let d = Daemon::start_in(
        dir,
        root,
        engine.clone(),
        classes(),
        AccessPolicy::default(),
    );
    let (mut vg, mut lv, mut cap, _) = d.clients();
    d.block_on(async {
        let created = vg
            .create_volume_group(pb::CreateVolumeGroupRequest {
                name: "vg-fast".into(),
                devices: images.iter().map(|p| p.display().to_string()).collect(),
            })
            .await
            .unwrap()
            .into_inner();
        // 64 MiB less the 1 MiB data offset: 15 extents of 4 MiB per PV.
        assert_eq!(created.total_bytes, 30 * 4 * MIB);
        assert_eq!(created.device_classes, ["fast"]);

        let a = lv
            .create_logical_volume(create_req("", "a", 20 * MIB))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(a.size_bytes, 20 * MIB);
        let again = lv
            .create_logical_volume(create_req("", "a", 20 * MIB))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.uuid, a.uuid);
        let s = lv
            .create_logical_volume(create_req("", "a", 40 * MIB))
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::AlreadyExists, "{s:?}");
        let mut striped = create_req("", "s", 16 * MIB);
        striped.layout = pb::Layout::Striped as i32;
        striped.stripes = 2;
        let s = lv
            .create_logical_volume(striped)
            .await
            .unwrap()
            .into_inner();
        assert_eq!((s.stripes, s.size_bytes), (2, 16 * MIB));
        let s = lv
            .create_logical_volume(create_req("", "huge", 200 * MIB))
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::OutOfRange, "{s:?}");
        let s = lv
            .create_logical_volume(create_req("", "more", 100 * MIB))
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");

        // Reads come from the cache while the disks are unchanged ...
        let (hits0, _) = engine.metadata().cache_stats();
        for _ in 0..3 {
            lv.get_logical_volume(pb::GetLogicalVolumeRequest {
                volume: vref("", "a"),
            })
            .await
            .unwrap();
        }
        let (hits1, misses1) = engine.metadata().cache_stats();
        assert!(hits1 >= hits0 + 3, "{hits0} -> {hits1}");
        // ... and a change by another writer is seen at the next read.
        outside
            .lv_create("vg-fast", "ext", Bytes(4 * MIB), Layout::Linear, &[])
            .unwrap();
        let list = lv
            .list_logical_volumes(pb::ListLogicalVolumesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .logical_volumes;
        let names: Vec<&str> = list.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["a", "s", "ext"]);
        assert!(engine.metadata().cache_stats().1 > misses1);

        let grown = lv
            .resize_logical_volume(pb::ResizeLogicalVolumeRequest {
                volume: vref("", "a"),
                size_bytes: 32 * MIB,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(grown.size_bytes, 32 * MIB);
        for name in ["a", "s", "ext"] {
            assert!(
                lv.remove_logical_volume(pb::RemoveLogicalVolumeRequest {
                    volume: vref("", name),
                })
                .await
                .unwrap()
                .into_inner()
                .existed
            );
        }
        let c = cap
            .get_capacity(pb::GetCapacityRequest {
                device_class: "fast".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(c.device_classes[0].free_bytes, 30 * 4 * MIB);
    });
    // What the daemon wrote is what the library reads.
    let vgs = outside.volume_groups().unwrap();
    assert_eq!(vgs.len(), 1);
    assert!(vgs[0].vg.lvs.is_empty());
    assert_eq!(engine.volume_groups().unwrap()[0].name, "vg-fast");
}
