//! A daemon serving in this process on a unix socket in a temp dir: the simulated engine
//! (or any engine) behind the real gRPC server, peer-credential check included. No root.
#![allow(dead_code)]

use lvmd::api::{serve, Api};
use lvmd::daemon::classes::{Class, DeviceClasses};
use lvmd::daemon::engine::Engine;
use lvmd::daemon::{SimActivation, SimEngine, SimNode};
use lvmd::rpc::client::connect;
use lvmd::rpc::pb;
use lvmd::socket::AccessPolicy;
use lvmd::units::Bytes;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;

pub type VgClient = pb::volume_group_service_client::VolumeGroupServiceClient<Channel>;
pub type LvClient = pb::logical_volume_service_client::LogicalVolumeServiceClient<Channel>;
pub type CapClient = pb::capacity_service_client::CapacityServiceClient<Channel>;
pub type NodeClient = pb::node_service_client::NodeServiceClient<Channel>;

pub const GIB: u64 = 1 << 30;
pub const MIB: u64 = 1 << 20;

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    /// The allowed mount root (exists).
    pub root: PathBuf,
    pub rt: tokio::runtime::Runtime,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

/// The simulated machine behind a [`Daemon`].
pub struct Sim {
    pub engine: Arc<SimEngine>,
    pub act: Arc<SimActivation>,
    pub node: Arc<SimNode>,
}

/// Classes: `fast` (default) on VG `vg-fast`, and `wide` with 2 stripes on `vg-wide`.
pub fn classes() -> DeviceClasses {
    DeviceClasses::new(vec![
        Class {
            name: "fast".into(),
            vg: "vg-fast".into(),
            stripes: 1,
            stripe_size: lvmd::lvm::DEFAULT_STRIPE_SIZE,
            is_default: true,
            encryption: None,
            integrity: false,
            thin: None,
        },
        Class {
            name: "wide".into(),
            vg: "vg-wide".into(),
            stripes: 2,
            stripe_size: lvmd::lvm::DEFAULT_STRIPE_SIZE,
            is_default: false,
            encryption: None,
            integrity: false,
            thin: None,
        },
    ])
}

pub fn sim_dev(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/sim/{name}"))
}

/// A daemon on the simulated engine: `vg-fast` on one 1 GiB device, `vg-wide` on two
/// of 1 GiB, and spare devices `spare0..3` of 1 GiB.
pub fn sim_daemon(policy: AccessPolicy) -> (Daemon, Sim) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("kubelet");
    std::fs::create_dir(&root).unwrap();
    let mut devices = vec![
        (sim_dev("fast0"), Bytes(GIB)),
        (sim_dev("wide0"), Bytes(GIB)),
        (sim_dev("wide1"), Bytes(GIB)),
    ];
    for i in 0..4 {
        devices.push((sim_dev(&format!("spare{i}")), Bytes(GIB)));
    }
    let (engine, act, node) = SimEngine::with_sims(&devices, vec![root.clone()]);
    engine
        .create_volume_group("vg-fast", &[sim_dev("fast0")])
        .unwrap();
    engine
        .create_volume_group("vg-wide", &[sim_dev("wide0"), sim_dev("wide1")])
        .unwrap();
    let engine = Arc::new(engine);
    let d = Daemon::start_in(dir, root, engine.clone(), classes(), policy);
    (d, Sim { engine, act, node })
}

/// A daemon on the simulated engine with one thin class, `thin` (default), on VG
/// `vg-thin` (one 1 GiB device) with pool `pool` of 512 MiB (its config's
/// overprovision ratio 2), made as the daemon's start makes it.
pub fn thin_sim_daemon() -> (Daemon, Sim) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("kubelet");
    std::fs::create_dir(&root).unwrap();
    let config = lvmd::daemon::config::Config::parse(
        "[device_classes.thin]\nvolume_group = \"vg-thin\"\n\
         thin_pool = { name = \"pool\", size = \"512MiB\", overprovision_ratio = 2.0 }\n",
    )
    .unwrap()
    .device_classes["thin"]
        .thin_pool
        .clone()
        .unwrap();
    let policy = lvmd::daemon::thin::ThinPolicy::of(&config);
    let (engine, act, node) =
        SimEngine::with_sims(&[(sim_dev("thin0"), Bytes(GIB))], vec![root.clone()]);
    let engine = engine.with_thin_pool("vg-thin", policy.clone());
    engine
        .create_volume_group("vg-thin", &[sim_dev("thin0")])
        .unwrap();
    engine.prepare_thin_pool("vg-thin", &config).unwrap();
    let engine = Arc::new(engine);
    let classes = DeviceClasses::new(vec![Class {
        name: "thin".into(),
        vg: "vg-thin".into(),
        stripes: 1,
        stripe_size: lvmd::lvm::DEFAULT_STRIPE_SIZE,
        is_default: true,
        encryption: None,
        thin: Some(policy),
        integrity: false,
    }]);
    let d = Daemon::start_in(dir, root, engine.clone(), classes, AccessPolicy::default());
    (d, Sim { engine, act, node })
}

impl Daemon {
    pub fn start_in(
        dir: tempfile::TempDir,
        root: PathBuf,
        engine: Arc<dyn Engine>,
        classes: DeviceClasses,
        policy: AccessPolicy,
    ) -> Daemon {
        let socket = dir.path().join("lvmd.sock");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let listener = {
            let _g = rt.enter();
            let std = lvmd::socket::listen::bind(&socket, None).unwrap();
            std.set_nonblocking(true).unwrap();
            tokio::net::UnixListener::from_std(std).unwrap()
        };
        let api = Api::new(engine, classes);
        let done = rt.spawn(async move {
            serve(listener, api, policy, Duration::from_secs(3600), async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Daemon {
            dir,
            socket,
            root,
            rt,
            shutdown: Some(tx),
            done: Some(done),
        }
    }

    pub fn channel(&self) -> Channel {
        self.rt.block_on(connect(&self.socket)).unwrap()
    }

    pub fn clients(&self) -> (VgClient, LvClient, CapClient, NodeClient) {
        let c = self.channel();
        (
            VgClient::new(c.clone()),
            LvClient::new(c.clone()),
            CapClient::new(c.clone()),
            NodeClient::new(c),
        )
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// A path below the allowed root.
    pub fn target(&self, rel: &str) -> String {
        self.root.join(rel).display().to_string()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), done).await });
        }
    }
}

pub fn vref(class: &str, name: &str) -> Option<pb::VolumeRef> {
    Some(pb::VolumeRef {
        device_class: class.into(),
        volume_group: String::new(),
        name: name.into(),
    })
}

pub fn create_req(class: &str, name: &str, size: u64) -> pb::CreateLogicalVolumeRequest {
    pb::CreateLogicalVolumeRequest {
        volume: vref(class, name),
        size_bytes: size,
        ..Default::default()
    }
}

/// The status code of a failed call (panics on success).
pub fn code<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> tonic::Status {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => s,
    }
}
