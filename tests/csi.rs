//! The CSI plugin end to end: the `lvmd-csi` binary against `lvmd --simulate`, both over
//! their real unix sockets in a temp dir. Every RPC's happy path, each call twice
//! (idempotency), the error codes the CSI spec requires, the volume lifecycle for
//! filesystem and block volumes, expansion, capacity, and the metrics port. No root.
//!
//! The simulated daemon's mounts exist only in its memory, so the plugin runs with
//! `--mount-check lvmd`; the mountinfo check is covered by `tests/vm_csi.rs` in the VM.
#![allow(clippy::result_large_err)]

use lvmd::csi::pb::controller_client::ControllerClient;
use lvmd::csi::pb::identity_client::IdentityClient;
use lvmd::csi::pb::node_client::NodeClient;
use lvmd::csi::pb::volume_capability::access_mode::Mode;
use lvmd::csi::pb::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use lvmd::csi::pb::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::Code;

const NODE: &str = "node-a";
const KEY: &str = "topology.lvmd.csi.local/node";
const MIB: i64 = 1 << 20;
const GIB: i64 = 1 << 30;

struct Env {
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    lvmd: Child,
    csi: Child,
    metrics_port: u16,
    ch: Channel,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.csi.kill();
        let _ = self.lvmd.kill();
        let _ = self.csi.wait();
        let _ = self.lvmd.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(path: &std::path::Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{what} did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ssd` (default, linear, 100 GiB simulated) and `wide` (2 stripes, 2 x 2 GiB).
fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = dir.path().join("kubelet");
    std::fs::create_dir_all(kubelet.join("pods")).unwrap();
    std::fs::create_dir_all(kubelet.join("plugins")).unwrap();
    let cfg = dir.path().join("lvmd.toml");
    std::fs::write(
        &cfg,
        format!(
            "mount_roots = [\"{}\"]\n\
             [device_classes.ssd]\nvolume_group = \"vg-ssd\"\ndefault = true\n\
             [device_classes.wide]\nvolume_group = \"vg-wide\"\nstripes = 2\n\
             loop_file = {{ path = \"/nonexistent/wide.img\", size = \"4GiB\" }}\n",
            kubelet.display()
        ),
    )
    .unwrap();
    let lvmd_sock = dir.path().join("run/lvmd.sock");
    let lvmd = Command::new(env!("CARGO_BIN_EXE_lvmd"))
        .arg("--config")
        .arg(&cfg)
        .arg("--socket")
        .arg(&lvmd_sock)
        .arg("--simulate")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let csi_sock = dir.path().join("csi/csi.sock");
    let metrics_port = free_port();
    let csi = Command::new(env!("CARGO_BIN_EXE_lvmd-csi"))
        .arg(format!("--csi-endpoint=unix://{}", csi_sock.display()))
        .arg("--lvmd-socket")
        .arg(&lvmd_sock)
        .args([
            "--node-id",
            NODE,
            "--max-volumes",
            "100",
            "--mount-check",
            "lvmd",
        ])
        .arg(format!("--metrics-address=127.0.0.1:{metrics_port}"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&lvmd_sock, "lvmd");
    wait_for(&csi_sock, "lvmd-csi");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ch = rt.block_on(lvmd::api::client::connect(&csi_sock)).unwrap();
    Env {
        dir,
        rt,
        lvmd,
        csi,
        metrics_port,
        ch,
    }
}

impl Env {
    fn ctl(&self) -> ControllerClient<Channel> {
        ControllerClient::new(self.ch.clone())
    }
    fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.ch.clone())
    }
    fn path(&self, rel: &str) -> String {
        let p = self.dir.path().join("kubelet").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        p.display().to_string()
    }
    fn create(&self, r: CreateVolumeRequest) -> Result<Volume, tonic::Status> {
        self.rt
            .block_on(self.ctl().create_volume(r))
            .map(|r| r.into_inner().volume.unwrap())
    }
    fn capacity(&self, params: &[(&str, &str)]) -> (i64, i64) {
        let r = self
            .rt
            .block_on(self.ctl().get_capacity(GetCapacityRequest {
                volume_capabilities: vec![],
                parameters: map(params),
                accessible_topology: Some(topo(NODE)),
            }))
            .unwrap()
            .into_inner();
        (r.available_capacity, r.maximum_volume_size.unwrap())
    }
    fn metrics(&self) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
}

fn map(kv: &[(&str, &str)]) -> HashMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn topo(node: &str) -> Topology {
    Topology {
        segments: map(&[(KEY, node)]),
    }
}

fn mount_cap(fs: &str) -> VolumeCapability {
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

fn block_cap() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    }
}

fn req(name: &str, required: i64, params: &[(&str, &str)]) -> CreateVolumeRequest {
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

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> tonic::Status {
    r.expect_err("expected an error")
}

#[test]
fn identity() {
    let e = start();
    let mut id = IdentityClient::new(e.ch.clone());
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
            assert_eq!(caps.len(), 3, "{caps:?}");
            let p = id.probe(ProbeRequest {}).await.unwrap().into_inner();
            assert_eq!(p.ready, Some(true));
        }
        let info = NodeClient::new(e.ch.clone())
            .node_get_info(NodeGetInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.node_id, NODE);
        assert_eq!(info.max_volumes_per_node, 100);
        assert_eq!(info.accessible_topology, Some(topo(NODE)));
        let n = NodeClient::new(e.ch.clone())
            .node_get_capabilities(NodeGetCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(n.capabilities.len(), 4);
        let c = ControllerClient::new(e.ch.clone())
            .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(c.capabilities.len(), 4);
    });
}

#[test]
fn create_volume_rules() {
    let e = start();
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

#[test]
fn capacity_goes_down_and_up() {
    let e = start();
    let (avail, max) = e.capacity(&[]);
    assert!(avail > 90 * GIB && max > 90 * GIB, "{avail} {max}");
    assert_eq!(e.capacity(&[]), (avail, max), "stable");
    let v = e.create(req("pvc-cap", 10 * GIB, &[])).unwrap();
    let (a2, m2) = e.capacity(&[]);
    assert_eq!(a2, avail - 10 * GIB);
    assert!(m2 <= a2);
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
    assert!(wa > 3 * GIB && wm > 3 * GIB, "{wa} {wm}");
    let bad = e.rt.block_on(e.ctl().get_capacity(GetCapacityRequest {
        parameters: map(&[("bogus", "1")]),
        ..Default::default()
    }));
    assert_eq!(code(bad).code(), Code::InvalidArgument);
    e.rt.block_on(e.ctl().delete_volume(DeleteVolumeRequest {
        volume_id: v.volume_id,
        secrets: Default::default(),
    }))
    .unwrap();
    assert_eq!(e.capacity(&[]), (avail, max), "back up");
}

/// The volume's size as ListVolumes reports it (lvmd's LV).
fn size_of(e: &Env, id: &str) -> i64 {
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

#[test]
fn controller_expansion_changes_nothing() {
    let e = start();
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
        size_of(&e, &v.volume_id),
        8 * MIB,
        "the controller grew nothing"
    );
}

fn stage_req(e: &Env, id: &str, cap: VolumeCapability) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: e.path("plugins/kubernetes.io/csi/lvmd.csi.local/x/globalmount"),
        volume_capability: Some(cap),
        ..Default::default()
    }
}

fn publish_req(e: &Env, id: &str, cap: VolumeCapability) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: id.into(),
        staging_target_path: e.path("plugins/kubernetes.io/csi/lvmd.csi.local/x/globalmount"),
        target_path: e.path("pods/uid/volumes/kubernetes.io~csi/pv/mount"),
        volume_capability: Some(cap),
        ..Default::default()
    }
}

#[test]
fn filesystem_lifecycle() {
    let e = start();
    let v = e
        .create(req("pvc-fs", 64 * MIB, &[("fsType", "xfs")]))
        .unwrap();
    let id = v.volume_id.clone();
    let mut node = e.node();
    let stage = stage_req(&e, &id, mount_cap(""));
    let publish = publish_req(&e, &id, mount_cap(""));
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
        let stats = node
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: id.clone(),
                volume_path: publish.target_path.clone(),
                staging_target_path: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        // The simulated node reports a bind of a directory as its own made-up sizes;
        // bytes and inodes of real filesystems are checked in the VM.
        assert!(!stats.usage.is_empty(), "{stats:?}");
        assert_eq!(stats.usage[0].unit, volume_usage::Unit::Bytes as i32);
        assert!(!stats.volume_condition.unwrap().abnormal);
        // Online expansion: lvmd grows the LV and the filesystem, at the staging path
        // or (kubelet naming none) through the pod's bind of it; again is a no-op.
        for (mib, staging) in [
            (100, stage.staging_target_path.clone()),
            (100, String::new()),
            (130, String::new()),
        ] {
            let grown = node
                .node_expand_volume(NodeExpandVolumeRequest {
                    volume_id: id.clone(),
                    volume_path: publish.target_path.clone(),
                    staging_target_path: staging,
                    capacity_range: Some(CapacityRange {
                        required_bytes: mib * MIB,
                        limit_bytes: 0,
                    }),
                    volume_capability: Some(mount_cap("")),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(grown.capacity_bytes, (mib + 3) / 4 * 4 * MIB);
        }
        // Shrinking is refused; another node's volume is not here.
        let s = node
            .node_expand_volume(NodeExpandVolumeRequest {
                volume_id: id.clone(),
                volume_path: publish.target_path.clone(),
                capacity_range: Some(CapacityRange {
                    required_bytes: 64 * MIB,
                    limit_bytes: 0,
                }),
                volume_capability: Some(mount_cap("")),
                ..Default::default()
            })
            .await;
        assert_eq!(code(s).code(), Code::InvalidArgument);
        let s = node
            .node_expand_volume(NodeExpandVolumeRequest {
                volume_id: id.replacen(NODE, "node-b", 1),
                volume_path: publish.target_path.clone(),
                capacity_range: Some(CapacityRange {
                    required_bytes: 200 * MIB,
                    limit_bytes: 0,
                }),
                volume_capability: Some(mount_cap("")),
                ..Default::default()
            })
            .await;
        assert_eq!(code(s).code(), Code::NotFound);
        for _ in 0..2 {
            node.node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: id.clone(),
                target_path: publish.target_path.clone(),
            })
            .await
            .unwrap();
        }
        let stats = node
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: id.clone(),
                volume_path: publish.target_path.clone(),
                staging_target_path: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            stats.volume_condition.unwrap().abnormal,
            "not mounted any more"
        );
        for _ in 0..2 {
            node.node_unstage_volume(NodeUnstageVolumeRequest {
                volume_id: id.clone(),
                staging_target_path: stage.staging_target_path.clone(),
            })
            .await
            .unwrap();
        }
        for _ in 0..2 {
            e.ctl()
                .delete_volume(DeleteVolumeRequest {
                    volume_id: id.clone(),
                    secrets: Default::default(),
                })
                .await
                .unwrap();
        }
    });
}

#[test]
fn block_lifecycle() {
    let e = start();
    let mut r = req("pvc-blk", 16 * MIB, &[]);
    r.volume_capabilities = vec![block_cap()];
    let id = e.create(r).unwrap().volume_id;
    let mut node = e.node();
    let stage = stage_req(&e, &id, block_cap());
    let mut publish = publish_req(&e, &id, block_cap());
    publish.target_path = e.path("plugins/kubernetes.io/csi/volumeDevices/publish/pv/uid");
    publish.readonly = true;
    e.rt.block_on(async {
        for _ in 0..2 {
            node.node_stage_volume(stage.clone()).await.unwrap();
            node.node_publish_volume(publish.clone()).await.unwrap();
        }
        let stats = node
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: id.clone(),
                volume_path: publish.target_path.clone(),
                staging_target_path: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stats.usage.len(), 1, "{stats:?}");
        assert!(stats.usage[0].total > 0, "{stats:?}");
        let grown = node
            .node_expand_volume(NodeExpandVolumeRequest {
                volume_id: id.clone(),
                volume_path: publish.target_path.clone(),
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
                volume_path: publish.target_path.clone(),
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
        for _ in 0..2 {
            node.node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: id.clone(),
                target_path: publish.target_path.clone(),
            })
            .await
            .unwrap();
            node.node_unstage_volume(NodeUnstageVolumeRequest {
                volume_id: id.clone(),
                staging_target_path: stage.staging_target_path.clone(),
            })
            .await
            .unwrap();
        }
    });
}

#[test]
fn node_errors() {
    let e = start();
    let id = e.create(req("pvc-n", 8 * MIB, &[])).unwrap().volume_id;
    let mut node = e.node();
    e.rt.block_on(async {
        let p = publish_req(&e, &id, mount_cap(""));
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
        let s = stage_req(&e, &id, mount_cap(""));
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

#[test]
fn metrics_port() {
    let e = start();
    e.create(req("pvc-m", 8 * MIB, &[])).unwrap();
    let _ = e.create(req("", 8 * MIB, &[]));
    let text = e.metrics();
    assert!(text.starts_with("HTTP/1.0 200 OK"), "{text}");
    for want in [
        "lvmd_csi_rpc_total{rpc=\"CreateVolume\",code=\"OK\"} 1",
        "lvmd_csi_rpc_total{rpc=\"CreateVolume\",code=\"INVALID_ARGUMENT\"} 1",
        "lvmd_csi_rpc_errors_total{rpc=\"CreateVolume\"} 1",
        "lvmd_csi_rpc_duration_seconds_count{rpc=\"CreateVolume\"} 2",
        "lvmd_csi_lvmd_up 1",
        "lvmd_csi_device_class_free_bytes{device_class=\"ssd\",volume_group=\"vg-ssd\"}",
        "lvmd_csi_volumes{device_class=\"ssd\"} 1",
        "lvmd_csi_volumes{device_class=\"wide\"} 0",
    ] {
        assert!(text.contains(want), "missing {want}:\n{text}");
    }
}

/// The resizer's pod runs the plugin with no lvmd beside it: with `--controller-only`
/// Probe says ready (csi-resizer waits for that) and ControllerExpandVolume answers;
/// without it, a missing lvmd means not ready.
#[test]
fn controller_only_plugin_is_ready_without_lvmd() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for controller_only in [true, false] {
        let sock = dir.path().join(format!("csi-{controller_only}.sock"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lvmd-csi"));
        cmd.arg(format!("--csi-endpoint=unix://{}", sock.display()))
            .arg("--lvmd-socket")
            .arg(dir.path().join("no-lvmd.sock"))
            .args(["--node-id", NODE, "--metrics-address="])
            .stderr(Stdio::null());
        if controller_only {
            cmd.arg("--controller-only");
        }
        let mut child = cmd.spawn().unwrap();
        wait_for(&sock, "lvmd-csi");
        let ch = rt.block_on(lvmd::api::client::connect(&sock)).unwrap();
        let ready = rt
            .block_on(IdentityClient::new(ch.clone()).probe(ProbeRequest {}))
            .unwrap()
            .into_inner()
            .ready;
        assert_eq!(ready, Some(controller_only));
        if controller_only {
            let r = rt
                .block_on(ControllerClient::new(ch).controller_expand_volume(
                    ControllerExpandVolumeRequest {
                        volume_id: format!("{NODE}#ssd#pvc-1"),
                        capacity_range: Some(CapacityRange {
                            required_bytes: 10 << 20,
                            limit_bytes: 0,
                        }),
                        ..Default::default()
                    },
                ))
                .unwrap()
                .into_inner();
            assert!(r.node_expansion_required);
            assert_eq!(r.capacity_bytes, 12 << 20);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The CSI socket lets in only the peers its allow list names (SO_PEERCRED, as lvmd's
/// own socket): root by default (kubelet and the sidecars), others by `--allow-uid` or
/// `--allow-gid`. Self-contained: its own helpers, below.
mod csi_socket_peers {
    use lvmd::csi::pb::identity_client::IdentityClient;
    use lvmd::csi::pb::ProbeRequest;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    const REFUSED: &str = "refused a client not in the allow list";

    /// `lvmd-csi --controller-only` (ready without an lvmd), JSON logs in a file.
    struct Plugin {
        child: Child,
        sock: PathBuf,
        log: PathBuf,
    }

    impl Drop for Plugin {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Plugin {
        fn start(dir: &Path, name: &str, extra: &[String]) -> Plugin {
            let sock = dir.join(format!("{name}.sock"));
            let log = dir.join(format!("{name}.log"));
            let child = Command::new(env!("CARGO_BIN_EXE_lvmd-csi"))
                .arg(format!("--csi-endpoint=unix://{}", sock.display()))
                .arg("--lvmd-socket")
                .arg(dir.join("no-lvmd.sock"))
                .args(["--node-id=node-a", "--metrics-address="])
                .args(["--controller-only", "--log-format=json"])
                .args(extra)
                .env_remove("CSI_ALLOW_UIDS")
                .env_remove("CSI_ALLOW_GIDS")
                .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
                .spawn()
                .unwrap();
            let p = Plugin { child, sock, log };
            // Bound with mode 0600 first (umask), then chmod: wait for the final mode,
            // else a peer outside the owner could see EACCES instead of the allow list.
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(m) = std::fs::metadata(&p.sock) {
                    if m.permissions().mode() & 0o777 == 0o660 {
                        break;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "lvmd-csi did not come up (socket mode 0660): {}",
                    std::fs::read_to_string(&p.log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            p
        }

        /// The refusals logged so far, as (uid, gid, pid).
        fn refusals(&self) -> Vec<(u64, u64, u64)> {
            let text = std::fs::read_to_string(&self.log).unwrap();
            text.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["message"] == REFUSED)
                .map(|v| {
                    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
                    (n("uid"), n("gid"), n("pid"))
                })
                .collect()
        }

        fn wait_for_refusal(&self) -> (u64, u64, u64) {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(r) = self.refusals().pop() {
                    return r;
                }
                assert!(
                    Instant::now() < deadline,
                    "no refusal logged: {}",
                    std::fs::read_to_string(&self.log).unwrap()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// CSI Probe on a thread of its own. With `creds` that thread first becomes
    /// (uid, gid), keeping the caller's primary gid as its one supplementary group (so
    /// it passes the socket's 0660 as a sidecar sharing the plugin's group would). Raw
    /// syscalls change only the calling thread's credentials, which is what
    /// SO_PEERCRED reports for a connect() (glibc's setuid() would change every thread
    /// of this test process; a fork of a threaded process may only exec).
    fn probe_as(sock: &Path, creds: Option<(u32, u32)>) -> Result<bool, String> {
        let sock = sock.to_owned();
        std::thread::spawn(move || {
            if let Some((uid, gid)) = creds {
                // SAFETY: getegid has no preconditions; the raw set*id syscalls take
                // plain integers and a pointer to one live gid.
                unsafe {
                    let groups = [libc::getegid()];
                    for (what, rc) in [
                        (
                            "setgroups",
                            libc::syscall(libc::SYS_setgroups, 1 as libc::c_long, groups.as_ptr()),
                        ),
                        (
                            "setresgid",
                            libc::syscall(
                                libc::SYS_setresgid,
                                gid as libc::c_long,
                                gid as libc::c_long,
                                gid as libc::c_long,
                            ),
                        ),
                        (
                            "setresuid",
                            libc::syscall(
                                libc::SYS_setresuid,
                                uid as libc::c_long,
                                uid as libc::c_long,
                                uid as libc::c_long,
                            ),
                        ),
                    ] {
                        assert_eq!(rc, 0, "{what}: {}", std::io::Error::last_os_error());
                    }
                    assert_eq!((libc::geteuid(), libc::getegid()), (uid, gid));
                }
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let probe = async {
                    let ch = lvmd::api::client::connect(&sock)
                        .await
                        .map_err(|e| format!("connect: {e:?}"))?;
                    IdentityClient::new(ch)
                        .probe(ProbeRequest {})
                        .await
                        .map(|r| r.into_inner().ready == Some(true))
                        .map_err(|s| format!("probe: {s:?}"))
                };
                tokio::time::timeout(Duration::from_secs(10), probe)
                    .await
                    .map_err(|_| "timed out".to_string())?
            })
        })
        .join()
        .unwrap()
    }

    #[test]
    fn csi_socket_refuses_peers_outside_the_allow_list() {
        // SAFETY: geteuid/getegid have no preconditions.
        let (me, my_gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        // As root: root is let in, and a thread become nobody (65534) is the outsider.
        // Otherwise this process is the outsider (the default lets in root only).
        let (outsider, as_outsider) = if me == 0 {
            ((65534, 65534), Some((65534, 65534)))
        } else {
            eprintln!("not root: checking this uid ({me}) only, not root's access");
            ((me, my_gid), None)
        };
        // In /tmp (not $TMPDIR, which nobody may not be able to enter), and enterable.
        let dir = tempfile::Builder::new()
            .prefix("lvmd-csi-peers")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

        // Default: root only.
        let p = Plugin::start(dir.path(), "default", &[]);
        if me == 0 {
            assert_eq!(probe_as(&p.sock, None), Ok(true), "root refused");
        }
        let e = probe_as(&p.sock, as_outsider).expect_err("outsider let in");
        eprintln!("refused as expected: {e}");
        let (uid, gid, pid) = p.wait_for_refusal();
        assert_eq!(
            (uid, gid, pid),
            (
                outsider.0.into(),
                outsider.1.into(),
                std::process::id().into()
            )
        );
        drop(p);

        // Let in by uid, then by gid; root still is.
        for (name, flag) in [
            ("uid", format!("--allow-uid={}", outsider.0)),
            ("gid", format!("--allow-gid=1,{}", outsider.1)),
        ] {
            let p = Plugin::start(dir.path(), name, std::slice::from_ref(&flag));
            assert_eq!(probe_as(&p.sock, as_outsider), Ok(true), "{flag}");
            if me == 0 {
                assert_eq!(probe_as(&p.sock, None), Ok(true), "{flag}: root refused");
            }
            assert_eq!(p.refusals(), [], "{flag}");
        }
    }
}
