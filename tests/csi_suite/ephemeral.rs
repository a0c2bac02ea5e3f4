//! CSI inline ephemeral volumes: created at publish, removed at unpublish, also when
//! the plugin (and the daemon) crashed in between.

use super::*;
use lvmd::csi::pb::identity_client::IdentityClient;
use lvmd::csi::volume_id::ephemeral_lv_name;
use lvmd::rpc::pb as lvmd_pb;
use std::time::{Duration, Instant};

/// A kubelet-made volume id (`csi-` and 64 hex digits).
pub fn eph_id(n: u8) -> String {
    format!("csi-{}", format!("{n:02x}").repeat(32))
}

/// What kubelet sends for a pod's inline volume with `attrs` as its volumeAttributes
/// (podInfoOnMount: true).
pub fn eph_publish(e: &Env, vid: &str, attrs: &[(&str, &str)]) -> NodePublishVolumeRequest {
    let mut ctx = map(attrs);
    for (k, v) in [
        ("csi.storage.k8s.io/ephemeral", "true"),
        ("csi.storage.k8s.io/pod.name", "web-0"),
        ("csi.storage.k8s.io/pod.namespace", "team-a"),
        (
            "csi.storage.k8s.io/pod.uid",
            "4c1e7d2a-0000-4000-8000-000000000001",
        ),
        ("csi.storage.k8s.io/serviceAccount.name", "default"),
    ] {
        ctx.insert(k.into(), v.into());
    }
    NodePublishVolumeRequest {
        volume_id: vid.into(),
        target_path: e.path(&format!(
            "pods/pod-{}/volumes/kubernetes.io~csi/scratch/mount",
            &vid[vid.len() - 8..]
        )),
        volume_capability: Some(mount_cap("")),
        volume_context: ctx,
        ..Default::default()
    }
}

pub fn eph_stats(
    e: &Env,
    vid: &str,
    target: &str,
) -> Result<NodeGetVolumeStatsResponse, tonic::Status> {
    e.rt.block_on(e.node().node_get_volume_stats(NodeGetVolumeStatsRequest {
        volume_id: vid.into(),
        volume_path: target.into(),
        staging_target_path: String::new(),
    }))
    .map(|r| r.into_inner())
}

pub fn publish(e: &Env, r: &NodePublishVolumeRequest) -> Result<(), tonic::Status> {
    e.rt.block_on(e.node().node_publish_volume(r.clone()))
        .map(|_| ())
}

/// lvmd's own view (every device class), asked on its socket, not through the plugin.
pub fn lvmd_lv(e: &Env, name: &str) -> Option<lvmd_pb::LogicalVolume> {
    e.rt.block_on(async {
        let ch = lvmd::rpc::client::connect(&e.lvmd_sock).await.unwrap();
        lvmd_pb::logical_volume_service_client::LogicalVolumeServiceClient::new(ch)
            .list_logical_volumes(lvmd_pb::ListLogicalVolumesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .logical_volumes
            .into_iter()
            .find(|l| l.name == name)
    })
}

/// Makes an LV straight through lvmd: what a publish that died after creating it leaves
/// (`tags` = the plugin's), or someone else's LV that happens to have the name.
pub fn lvmd_create(e: &Env, name: &str, tags: Vec<String>) -> lvmd_pb::LogicalVolume {
    e.rt.block_on(async {
        let ch = lvmd::rpc::client::connect(&e.lvmd_sock).await.unwrap();
        lvmd_pb::logical_volume_service_client::LogicalVolumeServiceClient::new(ch)
            .create_logical_volume(lvmd_pb::CreateLogicalVolumeRequest {
                volume: Some(lvmd_pb::VolumeRef {
                    device_class: "ssd".into(),
                    volume_group: String::new(),
                    name: name.into(),
                }),
                size_bytes: (32 * MIB) as u64,
                tags,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    })
}

/// The tags lvmd-csi puts on `vid`'s LV, as a publish of `eph_publish`'s request would.
pub fn plugin_tags(vid: &str) -> Vec<String> {
    let ctx = map(&[
        ("csi.storage.k8s.io/pod.name", "web-0"),
        ("csi.storage.k8s.io/pod.namespace", "team-a"),
    ]);
    let p = lvmd::csi::params::ephemeral(&ctx).unwrap();
    lvmd::csi::ephemeral::ephemeral_tags("lvmd.csi.local", vid, &p)
}

pub fn listed_ids(e: &Env) -> Vec<String> {
    e.rt.block_on(e.ctl().list_volumes(ListVolumesRequest::default()))
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .map(|en| en.volume.unwrap().volume_id)
        .collect()
}

/// Publish makes, tags and mounts the LV (twice is fine); stats find it by kubelet's id;
/// ListVolumes, DeleteVolume and expansion leave it alone; unpublish removes it and gives
/// the space back (twice is fine).
pub fn ephemeral_lifecycle(e: &Env) {
    let pvc = e.create(req("pvc-beside", 8 * MIB, &[])).unwrap();
    let (free, _) = e.capacity(&[]);
    let vid = eph_id(1);
    let name = ephemeral_lv_name(&vid);
    let r = eph_publish(e, &vid, &[("size", "100Mi")]);
    for _ in 0..2 {
        publish(e, &r).unwrap();
    }
    let lv = lvmd_lv(e, &name).expect("publish made the LV");
    assert_eq!(name, format!("eph-{}", &vid[4..]));
    assert_eq!(
        (lv.size_bytes, lv.device_class.as_str()),
        (100 << 20, "ssd")
    );
    for t in [
        "csi.driver=lvmd.csi.local".to_string(),
        format!("csi.ephemeral={vid}"),
        "csi.ns=team-a".into(),
        "csi.pod=web-0".into(),
    ] {
        assert!(lv.tags.contains(&t), "{t} not in {:?}", lv.tags);
    }
    assert_eq!(e.capacity(&[]).0, free - 100 * MIB, "used space");
    if e.is_real() {
        assert_eq!(e.host_mounts(), [PathBuf::from(&r.target_path)]);
        assert_eq!(e.host_fs_type(&r.target_path).as_deref(), Some("ext4"));
        std::fs::write(Path::new(&r.target_path).join("scratch"), b"tmp").unwrap();
        let (size, tags) = e.lvm2_lvs(0)[&name].clone();
        assert_eq!(size, 100 * MIB);
        assert!(tags.contains(&format!("csi.ephemeral={vid}")), "{tags:?}");
    }
    assert_eq!(
        listed_ids(e),
        vec![pvc.volume_id.clone()],
        "not a PV: not listed"
    );

    let stats = eph_stats(e, &vid, &r.target_path).unwrap();
    assert!(!stats.usage.is_empty(), "{stats:?}");
    assert!(!stats.volume_condition.unwrap().abnormal);
    let s = code(
        e.rt.block_on(e.node().node_expand_volume(NodeExpandVolumeRequest {
            volume_id: vid.clone(),
            volume_path: r.target_path.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: 200 * MIB,
                limit_bytes: 0,
            }),
            ..Default::default()
        })),
    );
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert!(s.message().contains("ephemeral"), "{s:?}");
    let s = code(e.rt.block_on(e.ctl().delete_volume(DeleteVolumeRequest {
        volume_id: format!("{NODE}#ssd#{name}"),
        secrets: Default::default(),
    })));
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert!(lvmd_lv(e, &name).is_some(), "DeleteVolume left it");

    for _ in 0..2 {
        unpublish(e, &vid, &r.target_path).unwrap();
    }
    assert!(lvmd_lv(e, &name).is_none(), "unpublish removed the LV");
    if e.is_real() {
        assert_eq!(e.host_mounts(), Vec::<PathBuf>::new());
        assert!(!e.lvm2_lvs(0).contains_key(&name));
    }
    assert_eq!(e.capacity(&[]).0, free, "space back");
    assert_eq!(
        code(eph_stats(e, &vid, &r.target_path)).code(),
        Code::NotFound
    );
    // Never published, or long gone: nothing to do.
    unpublish(e, &eph_id(99), &r.target_path).unwrap();
    assert_eq!(listed_ids(e), [pvc.volume_id]);
}

/// No size: CreateVolume's default; a striped class rounds to whole extents per stripe.
pub fn ephemeral_sizes_and_classes(e: &Env) {
    let (plain, wide) = (eph_id(2), eph_id(3));
    let rp = eph_publish(e, &plain, &[("fsType", "xfs")]);
    let rw = eph_publish(e, &wide, &[("size", "10Mi"), ("deviceClass", "wide")]);
    publish(e, &rp).unwrap();
    publish(e, &rw).unwrap();
    let p = lvmd_lv(e, &ephemeral_lv_name(&plain)).unwrap();
    assert_eq!((p.size_bytes, p.device_class.as_str()), (GIB as u64, "ssd"));
    let w = lvmd_lv(e, &ephemeral_lv_name(&wide)).unwrap();
    assert_eq!((w.device_class.as_str(), w.stripes), ("wide", 2));
    assert_eq!(w.size_bytes, 16 << 20, "2 stripes of 4 MiB extents");
    eph_stats(e, &wide, &rw.target_path).unwrap();
    if e.is_real() {
        assert_eq!(e.host_fs_type(&rp.target_path).as_deref(), Some("xfs"));
        assert_eq!(e.host_fs_type(&rw.target_path).as_deref(), Some("ext4"));
    }
    unpublish(e, &plain, &rp.target_path).unwrap();
    unpublish(e, &wide, &rw.target_path).unwrap();
    assert!(lvmd_lv(e, &ephemeral_lv_name(&plain)).is_none());
    assert!(lvmd_lv(e, &ephemeral_lv_name(&wide)).is_none());
}

/// Bad attributes and block access are refused naming what is wrong, and leave no LV.
pub fn ephemeral_refusals(e: &Env) {
    let vid = eph_id(4);
    let (free, _) = e.capacity(&[]);
    for (k, v) in [
        ("colour", "red"),
        ("size", "lots"),
        ("size", "0"),
        ("fsType", "btrfs"),
        ("layout", "thick"),
        ("stripes", "999"),
        ("deviceClass", "nope"),
        ("encryption", "yes"),
    ] {
        let s = code(publish(e, &eph_publish(e, &vid, &[(k, v)])));
        assert_eq!(s.code(), Code::InvalidArgument, "{k}={v}: {s:?}");
        assert!(
            s.message().contains(k) && s.message().contains(v),
            "{k}={v}: {s:?}"
        );
    }
    let mut block = eph_publish(e, &vid, &[]);
    block.volume_capability = Some(block_cap());
    let s = code(publish(e, &block));
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("block"), "{s:?}");
    // An id shaped like a persistent volume's: unpublish could never tell it is inline
    // (and would leave its LV behind), so publish refuses it before creating anything.
    let shaped = eph_publish(e, &format!("{NODE}#ssd#eph-shaped"), &[]);
    let s = code(publish(e, &shaped));
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("<node>#<class>#<lv>"), "{s:?}");
    let mut ro = eph_publish(e, &vid, &[]);
    ro.readonly = true;
    let s = code(publish(e, &ro));
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("read-only"), "{s:?}");
    // Larger than the volume group: lvmd refuses, nothing stays.
    let s = code(publish(e, &eph_publish(e, &vid, &[("size", "1Pi")])));
    assert_eq!(s.code(), Code::OutOfRange, "{s:?}");
    assert!(lvmd_lv(e, &ephemeral_lv_name(&vid)).is_none());
    assert_eq!(e.capacity(&[]).0, free);
}

/// A publish that fails after making the LV (here lvmd refuses the mount) removes it;
/// the retry works.
pub fn ephemeral_failed_publish_leaves_nothing(e: &Env) {
    let vid = eph_id(5);
    let name = ephemeral_lv_name(&vid);
    let mut r = eph_publish(e, &vid, &[("size", "8Mi")]);
    let good = r.target_path.clone();
    r.target_path = e.dir.join("outside/mount").display().to_string();
    let s = code(publish(e, &r));
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(
        lvmd_lv(e, &name).is_none(),
        "the LV this publish made went again"
    );
    r.target_path = good;
    publish(e, &r).unwrap();
    assert!(lvmd_lv(e, &name).is_some());
    unpublish(e, &vid, &r.target_path).unwrap();
    assert!(lvmd_lv(e, &name).is_none());
}

/// An LV with the ephemeral name that is not this driver's ephemeral volume is never
/// used nor removed.
pub fn ephemeral_leaves_foreign_lv_alone(e: &Env) {
    let vid = eph_id(6);
    let name = ephemeral_lv_name(&vid);
    let foreign = lvmd_create(e, &name, vec!["owner=someone".into()]);
    let r = eph_publish(e, &vid, &[]);
    let s = code(publish(e, &r));
    assert_eq!(s.code(), Code::AlreadyExists, "{s:?}");
    assert!(s.message().contains(&name), "{s:?}");
    unpublish(e, &vid, &r.target_path).unwrap();
    assert_eq!(lvmd_lv(e, &name), Some(foreign.clone()), "left alone");
    // Another volume's marker is not this one's either.
    let other = eph_id(7);
    let name7 = ephemeral_lv_name(&other);
    lvmd_create(e, &name7, plugin_tags(&eph_id(8)));
    unpublish(e, &other, &r.target_path).unwrap();
    assert!(lvmd_lv(e, &name7).is_some(), "left alone");
}

/// Clean-up after a crash: lvmd-csi (and, against the real daemon, lvmd too) killed with
/// SIGKILL and started again between the calls; kubelet then reconstructs and calls
/// again with nothing in the plugin's memory:
/// - a published volume is unpublished: unmounted and removed;
/// - a publish died after creating the LV, before mounting: kubelet's retry succeeds
///   with that LV, and its unpublish removes it;
/// - the same, but kubelet gives up and only unpublishes: the LV is removed.
pub fn ephemeral_crash_cleanup(e: &mut Env) {
    let (free, _) = e.capacity(&[]);
    let (mounted, retried, abandoned) = (eph_id(10), eph_id(11), eph_id(12));
    let rm = eph_publish(e, &mounted, &[("size", "16Mi")]);
    publish(e, &rm).unwrap();
    let rr = eph_publish(e, &retried, &[]);
    let ra = eph_publish(e, &abandoned, &[]);
    let half = lvmd_create(e, &ephemeral_lv_name(&retried), plugin_tags(&retried));
    lvmd_create(e, &ephemeral_lv_name(&abandoned), plugin_tags(&abandoned));

    // A real lvmd keeps its volumes across a restart; the simulated one would not.
    let daemon_too = e.is_real();
    e.crash_and_restart(daemon_too);
    wait_ready(e);

    assert!(
        !eph_stats(e, &mounted, &rm.target_path)
            .unwrap()
            .volume_condition
            .unwrap()
            .abnormal
    );
    for _ in 0..2 {
        unpublish(e, &mounted, &rm.target_path).unwrap();
    }
    assert!(lvmd_lv(e, &ephemeral_lv_name(&mounted)).is_none());
    assert_eq!(
        code(eph_stats(e, &mounted, &rm.target_path)).code(),
        Code::NotFound
    );

    publish(e, &rr).unwrap();
    let lv = lvmd_lv(e, &ephemeral_lv_name(&retried)).unwrap();
    assert_eq!(lv.uuid, half.uuid, "the retry took over the LV");
    assert!(
        !eph_stats(e, &retried, &rr.target_path)
            .unwrap()
            .volume_condition
            .unwrap()
            .abnormal
    );
    unpublish(e, &retried, &rr.target_path).unwrap();
    assert!(lvmd_lv(e, &ephemeral_lv_name(&retried)).is_none());

    unpublish(e, &abandoned, &ra.target_path).unwrap();
    assert!(lvmd_lv(e, &ephemeral_lv_name(&abandoned)).is_none());
    assert_eq!(e.capacity(&[]).0, free, "nothing left behind");
    if e.is_real() {
        assert_eq!(e.host_mounts(), Vec::<PathBuf>::new());
        assert!(e.lvm2_lvs(0).is_empty(), "{:?}", e.lvm2_lvs(0));
    }
}

/// Until the (restarted) plugin answers Probe with lvmd ready.
pub fn wait_ready(e: &Env) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r =
            e.rt.block_on(IdentityClient::new(e.ch()).probe(ProbeRequest {}));
        if matches!(r, Ok(ref p) if p.get_ref().ready == Some(true)) {
            return;
        }
        assert!(Instant::now() < deadline, "lvmd-csi not ready: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An encrypted inline volume (`encryption: "true"`, as csi-driver-lvm's attribute): the
/// key is the `passphrase` of the pod's nodePublishSecretRef, which kubelet passes in
/// NodePublishVolume. Without it: INVALID_ARGUMENT naming the key and where it comes
/// from, and no LV made. With it: an encrypted LV, LUKS2-formatted, its filesystem on
/// the mapping (the LV itself holds the LUKS header), written; a retry with a wrong key
/// (the Secret changed) is PERMISSION_DENIED and leaves the volume to its pod; the
/// unpublish closes the mapping and removes the LV, as the pod goes.
pub fn ephemeral_encrypted_lifecycle(e: &Env) {
    const KEY: &str = "inline volume key";
    let vid = eph_id(13);
    let name = ephemeral_lv_name(&vid);
    let (free, _) = e.capacity(&[]);
    let mut r = eph_publish(e, &vid, &[("size", "40Mi"), ("encryption", "true")]);
    let s = code(publish(e, &r));
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(
        s.message().contains("\"passphrase\"") && s.message().contains("nodePublishSecretRef"),
        "{s:?}"
    );
    assert!(
        lvmd_lv(e, &name).is_none(),
        "an LV made before the key was checked"
    );
    r.secrets = secrets(KEY);
    for _ in 0..2 {
        publish(e, &r).unwrap();
    }
    let lv = lvmd_lv(e, &name).expect("publish made the LV");
    assert!(lv.encrypted, "{lv:?}");
    assert_eq!(lv.size_bytes, 40 * MIB as u64);
    let crypt = crypt_node(&lv.volume_group, &name);
    if e.is_real() {
        assert!(crypt.exists(), "{} not open", crypt.display());
        assert_eq!(e.host_fs_type(&r.target_path).as_deref(), Some("ext4"));
        std::fs::write(Path::new(&r.target_path).join("scratch"), b"secret tmp\n").unwrap();
        let lv_dev = dm_node(&lv.volume_group, &name);
        assert_eq!(&read_at(&lv_dev, 0, 6), b"LUKS\xba\xbe");
        // The filesystem is the mapping's: the LV less its 16 MiB header.
        assert_eq!(device_size(crypt.to_str().unwrap()), 24 * MIB);
    }
    let wrong = NodePublishVolumeRequest {
        secrets: secrets("the secret was changed"),
        ..r.clone()
    };
    let s = code(publish(e, &wrong));
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(!s.message().contains("the secret was changed"), "{s:?}");
    assert!(
        lvmd_lv(e, &name).is_some(),
        "the pod's volume went with a failed retry"
    );
    if e.is_real() {
        assert_eq!(
            std::fs::read(Path::new(&r.target_path).join("scratch")).unwrap(),
            b"secret tmp\n"
        );
    }
    for _ in 0..2 {
        unpublish(e, &vid, &r.target_path).unwrap();
    }
    assert!(lvmd_lv(e, &name).is_none(), "unpublish removed the LV");
    assert_eq!(e.capacity(&[]).0, free, "space back");
    if e.is_real() {
        assert!(!crypt.exists(), "mapping left open");
        assert_eq!(e.host_mounts(), Vec::<PathBuf>::new());
        assert!(!e.lvm2_lvs(0).contains_key(&name));
    }
}
