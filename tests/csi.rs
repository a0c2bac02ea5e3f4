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
    let lvmd = spawn_lvmd(dir.path());
    let metrics_port = free_port();
    let csi = spawn_csi(dir.path(), &format!("127.0.0.1:{metrics_port}"));
    wait_for(&lvmd_socket(dir.path()), "lvmd");
    wait_for(&csi_socket(dir.path()), "lvmd-csi");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ch = rt
        .block_on(lvmd::api::client::connect(&csi_socket(dir.path())))
        .unwrap();
    Env {
        dir,
        rt,
        lvmd,
        csi,
        metrics_port,
        ch,
    }
}

fn lvmd_socket(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("run/lvmd.sock")
}

fn csi_socket(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("csi/csi.sock")
}

/// `lvmd --simulate` with `dir`'s lvmd.toml (its volumes live in its memory only).
fn spawn_lvmd(dir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lvmd"))
        .arg("--config")
        .arg(dir.join("lvmd.toml"))
        .arg("--socket")
        .arg(lvmd_socket(dir))
        .arg("--simulate")
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// lvmd-csi on `dir`'s sockets; an empty `metrics` address serves no metrics.
fn spawn_csi(dir: &std::path::Path, metrics: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lvmd-csi"))
        .arg(format!(
            "--csi-endpoint=unix://{}",
            csi_socket(dir).display()
        ))
        .arg("--lvmd-socket")
        .arg(lvmd_socket(dir))
        .args([
            "--node-id",
            NODE,
            "--max-volumes",
            "100",
            "--mount-check",
            "lvmd",
        ])
        .arg(format!("--metrics-address={metrics}"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
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

// ---------------------------------------------------------------- inline ephemeral volumes

use lvmd::api::pb as lvmd_pb;
use lvmd::csi::volume_id::ephemeral_lv_name;

/// A kubelet-made volume id (`csi-` and 64 hex digits).
fn eph_id(n: u8) -> String {
    format!("csi-{}", format!("{n:02x}").repeat(32))
}

/// What kubelet sends for a pod's inline volume with `attrs` as its volumeAttributes
/// (podInfoOnMount: true).
fn eph_publish(e: &Env, vid: &str, attrs: &[(&str, &str)]) -> NodePublishVolumeRequest {
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

fn eph_unpublish(e: &Env, vid: &str, target: &str) -> Result<(), tonic::Status> {
    e.rt.block_on(e.node().node_unpublish_volume(NodeUnpublishVolumeRequest {
        volume_id: vid.into(),
        target_path: target.into(),
    }))
    .map(|_| ())
}

fn eph_stats(
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

fn publish(e: &Env, r: &NodePublishVolumeRequest) -> Result<(), tonic::Status> {
    e.rt.block_on(e.node().node_publish_volume(r.clone()))
        .map(|_| ())
}

/// lvmd's own view (every device class), asked on its socket, not through the plugin.
fn lvmd_lv(e: &Env, name: &str) -> Option<lvmd_pb::LogicalVolume> {
    e.rt.block_on(async {
        let ch = lvmd::api::client::connect(&lvmd_socket(e.dir.path()))
            .await
            .unwrap();
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
fn lvmd_create(e: &Env, name: &str, tags: Vec<String>) -> lvmd_pb::LogicalVolume {
    e.rt.block_on(async {
        let ch = lvmd::api::client::connect(&lvmd_socket(e.dir.path()))
            .await
            .unwrap();
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
fn plugin_tags(vid: &str) -> Vec<String> {
    let ctx = map(&[
        ("csi.storage.k8s.io/pod.name", "web-0"),
        ("csi.storage.k8s.io/pod.namespace", "team-a"),
    ]);
    let p = lvmd::csi::params::ephemeral(&ctx).unwrap();
    lvmd::csi::ephemeral::ephemeral_tags("lvmd.csi.local", vid, &p)
}

fn listed_ids(e: &Env) -> Vec<String> {
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
fn ephemeral_lifecycle(e: &Env) {
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
        eph_unpublish(e, &vid, &r.target_path).unwrap();
    }
    assert!(lvmd_lv(e, &name).is_none(), "unpublish removed the LV");
    assert_eq!(e.capacity(&[]).0, free, "space back");
    assert_eq!(
        code(eph_stats(e, &vid, &r.target_path)).code(),
        Code::NotFound
    );
    // Never published, or long gone: nothing to do.
    eph_unpublish(e, &eph_id(99), &r.target_path).unwrap();
    assert_eq!(listed_ids(e), [pvc.volume_id]);
}

/// No size: CreateVolume's default; a striped class rounds to whole extents per stripe.
fn ephemeral_sizes_and_classes(e: &Env) {
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
    eph_unpublish(e, &plain, &rp.target_path).unwrap();
    eph_unpublish(e, &wide, &rw.target_path).unwrap();
    assert!(lvmd_lv(e, &ephemeral_lv_name(&plain)).is_none());
    assert!(lvmd_lv(e, &ephemeral_lv_name(&wide)).is_none());
}

/// Bad attributes and block access are refused naming what is wrong, and leave no LV.
fn ephemeral_refusals(e: &Env) {
    let vid = eph_id(4);
    let (free, _) = e.capacity(&[]);
    for (k, v) in [
        ("colour", "red"),
        ("size", "lots"),
        ("size", "0"),
        ("fsType", "btrfs"),
        ("layout", "mirror"),
        ("stripes", "999"),
        ("deviceClass", "nope"),
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
fn ephemeral_failed_publish_leaves_nothing(e: &Env) {
    let vid = eph_id(5);
    let name = ephemeral_lv_name(&vid);
    let mut r = eph_publish(e, &vid, &[("size", "8Mi")]);
    let good = r.target_path.clone();
    r.target_path = e.dir.path().join("outside/mount").display().to_string();
    let s = code(publish(e, &r));
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(
        lvmd_lv(e, &name).is_none(),
        "the LV this publish made went again"
    );
    r.target_path = good;
    publish(e, &r).unwrap();
    assert!(lvmd_lv(e, &name).is_some());
    eph_unpublish(e, &vid, &r.target_path).unwrap();
    assert!(lvmd_lv(e, &name).is_none());
}

/// An LV with the ephemeral name that is not this driver's ephemeral volume is never
/// used nor removed.
fn ephemeral_leaves_foreign_lv_alone(e: &Env) {
    let vid = eph_id(6);
    let name = ephemeral_lv_name(&vid);
    let foreign = lvmd_create(e, &name, vec!["owner=someone".into()]);
    let r = eph_publish(e, &vid, &[]);
    let s = code(publish(e, &r));
    assert_eq!(s.code(), Code::AlreadyExists, "{s:?}");
    assert!(s.message().contains(&name), "{s:?}");
    eph_unpublish(e, &vid, &r.target_path).unwrap();
    assert_eq!(lvmd_lv(e, &name), Some(foreign.clone()), "left alone");
    // Another volume's marker is not this one's either.
    let other = eph_id(7);
    let name7 = ephemeral_lv_name(&other);
    lvmd_create(e, &name7, plugin_tags(&eph_id(8)));
    eph_unpublish(e, &other, &r.target_path).unwrap();
    assert!(lvmd_lv(e, &name7).is_some(), "left alone");
}

/// Clean-up after a crash. `restart` kills and restarts lvmd-csi (and, against a daemon
/// that keeps its volumes, lvmd) between the calls, returning whatever keeps the new
/// processes running; kubelet then reconstructs and calls again with nothing in the
/// plugin's memory:
/// - a published volume is unpublished: unmounted and removed;
/// - a publish died after creating the LV, before mounting: kubelet's retry succeeds
///   with that LV, and its unpublish removes it;
/// - the same, but kubelet gives up and only unpublishes: the LV is removed.
fn ephemeral_crash_cleanup<G>(e: &Env, restart: impl FnOnce(&Env) -> G) {
    let (free, _) = e.capacity(&[]);
    let (mounted, retried, abandoned) = (eph_id(10), eph_id(11), eph_id(12));
    let rm = eph_publish(e, &mounted, &[("size", "16Mi")]);
    publish(e, &rm).unwrap();
    let rr = eph_publish(e, &retried, &[]);
    let ra = eph_publish(e, &abandoned, &[]);
    let half = lvmd_create(e, &ephemeral_lv_name(&retried), plugin_tags(&retried));
    lvmd_create(e, &ephemeral_lv_name(&abandoned), plugin_tags(&abandoned));

    let _alive = restart(e);
    wait_ready(e);

    assert!(
        !eph_stats(e, &mounted, &rm.target_path)
            .unwrap()
            .volume_condition
            .unwrap()
            .abnormal
    );
    for _ in 0..2 {
        eph_unpublish(e, &mounted, &rm.target_path).unwrap();
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
    eph_unpublish(e, &retried, &rr.target_path).unwrap();
    assert!(lvmd_lv(e, &ephemeral_lv_name(&retried)).is_none());

    eph_unpublish(e, &abandoned, &ra.target_path).unwrap();
    assert!(lvmd_lv(e, &ephemeral_lv_name(&abandoned)).is_none());
    assert_eq!(e.capacity(&[]).0, free, "nothing left behind");
}

/// Until the (restarted) plugin answers Probe with lvmd ready.
fn wait_ready(e: &Env) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r =
            e.rt.block_on(IdentityClient::new(e.ch.clone()).probe(ProbeRequest {}));
        if matches!(r, Ok(ref p) if p.get_ref().ready == Some(true)) {
            return;
        }
        assert!(Instant::now() < deadline, "lvmd-csi not ready: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process started in place of one of Env's, killed with the test.
struct Respawned(Child);

impl Drop for Respawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SIGKILL, no clean shutdown: the socket file stays behind, as after a crash.
fn crash(c: &Child) {
    // SAFETY: a plain kill(2) of our own child; it stays a zombie (so its pid is not
    // reused) until Env's drop waits for it.
    unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
    let stat = format!("/proc/{}/stat", c.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    // Dead (a zombie, `Z`): the restart that follows really starts from nothing.
    while !std::fs::read_to_string(&stat).is_ok_and(|s| s.contains(") Z ")) {
        assert!(Instant::now() < deadline, "pid {} did not die", c.id());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Host: restarts lvmd-csi only; the simulated lvmd keeps the volumes in its memory.
fn restart_plugin(e: &Env) -> Respawned {
    crash(&e.csi);
    Respawned(spawn_csi(e.dir.path(), ""))
}

#[test]
fn ephemeral_volume_lifecycle() {
    ephemeral_lifecycle(&start())
}

#[test]
fn ephemeral_volume_sizes_and_classes() {
    ephemeral_sizes_and_classes(&start())
}

#[test]
fn ephemeral_volume_refusals() {
    ephemeral_refusals(&start())
}

#[test]
fn ephemeral_volume_failed_publish_leaves_nothing() {
    ephemeral_failed_publish_leaves_nothing(&start())
}

#[test]
fn ephemeral_volume_foreign_lv_left_alone() {
    ephemeral_leaves_foreign_lv_alone(&start())
}

#[test]
fn ephemeral_volume_crash_cleanup_plugin_restarted() {
    ephemeral_crash_cleanup(&start(), restart_plugin)
}

/// Host: both killed; the simulated lvmd comes back empty (a real one keeps its volumes:
/// `ephemeral_crash_cleanup` with both restarted is for the VM). kubelet's unpublish of
/// a volume that is gone with it is still fine, and publishing again works.
#[test]
fn ephemeral_volume_unpublish_after_both_restarted() {
    let e = start();
    let vid = eph_id(20);
    let r = eph_publish(&e, &vid, &[("size", "8Mi")]);
    publish(&e, &r).unwrap();
    crash(&e.csi);
    crash(&e.lvmd);
    let _lvmd = Respawned(spawn_lvmd(e.dir.path()));
    let _csi = Respawned(spawn_csi(e.dir.path(), ""));
    wait_ready(&e);
    for _ in 0..2 {
        eph_unpublish(&e, &vid, &r.target_path).unwrap();
    }
    publish(&e, &r).unwrap();
    assert!(lvmd_lv(&e, &ephemeral_lv_name(&vid)).is_some());
    eph_unpublish(&e, &vid, &r.target_path).unwrap();
    assert!(lvmd_lv(&e, &ephemeral_lv_name(&vid)).is_none());
}
