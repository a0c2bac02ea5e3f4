//! The test bed: `lvmd` and `lvmd-csi` as child processes over their real unix sockets,
//! either against `lvmd --simulate` (host, no root) or against the real daemon on loop
//! devices with the plugin in its own mount namespace (the VM).

use crate::common::{self, run_ok, Loops};
use lvmd::csi::pb::controller_client::ControllerClient;
use lvmd::csi::pb::node_client::NodeClient;
use lvmd::csi::pb::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub const NODE: &str = "node-a";
pub const KEY: &str = "topology.lvmd.csi.local/node";
pub const MIB: i64 = 1 << 20;
pub const GIB: i64 = 1 << 30;

/// The real daemon's disks, and the lock that keeps one VM case at a time.
struct Real {
    loops: Loops,
    /// unshare's word for the plugin's mount namespace: `slave` is HostToContainer.
    propagation: &'static str,
    _serial: std::sync::MutexGuard<'static, ()>,
}

pub struct Env {
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub kubelet: PathBuf,
    pub rt: tokio::runtime::Runtime,
    ch: Option<Channel>,
    pub metrics_port: u16,
    /// Volume group of each device class: `ssd` (default, linear) and `wide` (2 stripes).
    pub vgs: [String; 2],
    pub lvmd_sock: PathBuf,
    csi_sock: PathBuf,
    config: PathBuf,
    lvmd: Option<Child>,
    csi: Option<Child>,
    real: Option<Real>,
    /// Variables both processes start with beyond the test's ([`Env::restart_with`]).
    extra_env: Vec<(String, String)>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts on `sock` (a stale socket file refuses), failing with
/// the child's log if it exits first.
fn wait_listening(sock: &Path, what: &str, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(sock).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{what} exited with {status}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "{what} did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(child: Option<Child>) {
    if let Some(mut c) = child {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn kill_lvmd(child: Option<Child>) {
    if let Some(mut c) = child {
        common::daemon::kill9(&mut c);
    }
}

static VG_SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Env {
    /// Against `lvmd --simulate`: `ssd` 100 GiB, `wide` 2 x 2 GiB, all in memory.
    pub fn simulated() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let vgs = ["vg-ssd".to_owned(), "vg-wide".to_owned()];
        let classes = format!(
            "[device_classes.ssd]\nvolume_group = \"{}\"\ndefault = true\n\
             encryption = {{ pbkdf = {{ type = \"pbkdf2\", iterations = 1000 }} }}\n\
             [device_classes.wide]\nvolume_group = \"{}\"\nstripes = 2\n\
             loop_file = {{ path = \"/nonexistent/wide.img\", size = \"4GiB\" }}\n",
            vgs[0], vgs[1]
        );
        Env::start(dir, Some(tmp), vgs, &classes, None)
    }

    /// `lvmd --simulate` with these classes (`vgs`: their VGs), for cases of a
    /// configuration of their own.
    pub fn simulated_with(vgs: [String; 2], classes: &str) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        Env::start(dir, Some(tmp), vgs, classes, None)
    }

    /// Against the real daemon on loop devices (`ssd` 4 GiB, `wide` 2 x 1 GiB), the
    /// plugin in a mount namespace that is a slave of the host's, as in its pod with
    /// `mountPropagation: HostToContainer`. Needs device-mapper: the VM.
    pub fn real() -> Env {
        Env::real_with_propagation("slave")
    }

    /// [`Env::real`] with the plugin's namespace made with `propagation`: `private` is
    /// a pod whose kubelet directory lacks `mountPropagation`.
    pub fn real_with_propagation(propagation: &'static str) -> Env {
        let serial = common::vm_case("vm_csi");
        let loops = Loops::new(&[4096, 1024, 1024]);
        let dir = loops.dir.path().to_owned();
        let n = VG_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let vgs = [format!("csi{n}-ssd"), format!("csi{n}-wide")];
        let classes = format!(
            "backup_dir = \"{}\"\narchive_dir = \"{}\"\n\
             lvm2_devices_file = \"{}/system.devices\"\n\
             [device_classes.ssd]\nvolume_group = \"{}\"\ndefault = true\ndevices = [\"{}\"]\n\
             encryption = {{ pbkdf = {{ type = \"pbkdf2\", iterations = 1000 }} }}\n\
             [device_classes.wide]\nvolume_group = \"{}\"\nstripes = 2\ndevices = [\"{}\", \"{}\"]\n",
            loops.backup_dir().display(),
            loops.archive_dir().display(),
            dir.display(),
            vgs[0],
            loops.devs[0].display(),
            vgs[1],
            loops.devs[1].display(),
            loops.devs[2].display(),
        );
        Env::start(
            dir,
            None,
            vgs,
            &classes,
            Some(Real {
                loops,
                propagation,
                _serial: serial,
            }),
        )
    }

    /// Against the real daemon on loop devices: `thin` (default, 1 GiB, a 512 MiB thin
    /// pool with ratio 4) and `plain` (256 MiB, linear), for the snapshot cases.
    pub fn real_thin() -> Env {
        let serial = common::vm_case("vm_csi");
        let loops = Loops::new(&[1024, 256]);
        let dir = loops.dir.path().to_owned();
        let n = VG_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let vgs = [format!("csi{n}-thin"), format!("csi{n}-plain")];
        let classes = format!(
            "backup_dir = \"{}\"\narchive_dir = \"{}\"\n\
             lvm2_devices_file = \"{}/system.devices\"\n\
             [device_classes.thin]\nvolume_group = \"{}\"\ndefault = true\ndevices = [\"{}\"]\n\
             thin_pool = {{ name = \"pool\", size = \"512MiB\", overprovision_ratio = 4.0 }}\n\
             [device_classes.plain]\nvolume_group = \"{}\"\ndevices = [\"{}\"]\n",
            loops.backup_dir().display(),
            loops.archive_dir().display(),
            dir.display(),
            vgs[0],
            loops.devs[0].display(),
            vgs[1],
            loops.devs[1].display(),
        );
        Env::start(
            dir,
            None,
            vgs,
            &classes,
            Some(Real {
                loops,
                propagation: "slave",
                _serial: serial,
            }),
        )
    }

    fn start(
        dir: PathBuf,
        tmp: Option<tempfile::TempDir>,
        vgs: [String; 2],
        classes: &str,
        real: Option<Real>,
    ) -> Env {
        let kubelet = dir.join("kubelet");
        std::fs::create_dir_all(kubelet.join("pods")).unwrap();
        std::fs::create_dir_all(kubelet.join("plugins")).unwrap();
        if real.is_some() {
            // The kubelet directory is a shared mount on a node; the plugin's namespace
            // receives the daemon's mounts under it. Private first: a bind of an
            // already shared parent would join its peer group and show every mount
            // below twice.
            let k = kubelet.to_str().unwrap();
            run_ok("mount", &["--bind", k, k]);
            run_ok("mount", &["--make-private", k]);
            run_ok("mount", &["--make-shared", k]);
        }
        let config = dir.join("lvmd.toml");
        std::fs::write(
            &config,
            format!("mount_roots = [\"{}\"]\n{classes}", kubelet.display()),
        )
        .unwrap();
        let lvmd_sock = dir.join("run/lvmd.sock");
        let csi_sock = dir.join("csi/csi.sock");
        let metrics_port = free_port();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut env = Env {
            lvmd: None,
            csi: None,
            ch: None,
            dir,
            _tmp: tmp,
            kubelet,
            rt,
            metrics_port,
            vgs,
            lvmd_sock,
            csi_sock,
            config,
            real,
            extra_env: Vec::new(),
        };
        env.spawn_lvmd();
        env.spawn_plugin();
        env
    }

    pub fn is_real(&self) -> bool {
        self.real.is_some()
    }

    fn log(&self, who: &str) -> PathBuf {
        self.dir.join(format!("{who}.log"))
    }

    /// Both logs, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- lvmd-csi log:\n{}\n--- lvmd log:\n{}",
            std::fs::read_to_string(self.log("lvmd-csi")).unwrap_or_default(),
            std::fs::read_to_string(self.log("lvmd")).unwrap_or_default()
        )
    }

    fn log_file(&self, who: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(who))
            .unwrap()
    }

    fn spawn_lvmd(&mut self) {
        let mut cmd = common::daemon::lvmd_command();
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--socket")
            .arg(&self.lvmd_sock)
            .stdout(Stdio::null())
            .stderr(self.log_file("lvmd"));
        if !self.is_real() {
            cmd.arg("--simulate");
        }
        cmd.envs(self.extra_env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.spawn().expect("start lvmd");
        wait_listening(&self.lvmd_sock, "lvmd", &mut child, &self.log("lvmd"));
        self.lvmd = Some(child);
    }

    fn spawn_plugin(&mut self) {
        let mut cmd = if let Some(real) = &self.real {
            // unshare execs the plugin: the child's pid is the plugin's.
            let mut c = Command::new("unshare");
            c.args(["-m", "--propagation", real.propagation])
                .arg(env!("CARGO_BIN_EXE_lvmd-csi"));
            c
        } else {
            let mut c = Command::new(env!("CARGO_BIN_EXE_lvmd-csi"));
            // The simulated daemon's mounts live in its memory only.
            c.args(["--mount-check", "lvmd"]);
            c
        };
        cmd.arg(format!("--csi-endpoint=unix://{}", self.csi_sock.display()))
            .arg("--lvmd-socket")
            .arg(&self.lvmd_sock)
            .args(["--node-id", NODE, "--max-volumes", "100"])
            .arg(format!("--metrics-address=127.0.0.1:{}", self.metrics_port))
            .stdout(Stdio::null())
            .stderr(self.log_file("lvmd-csi"))
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.spawn().expect("start lvmd-csi");
        wait_listening(
            &self.csi_sock,
            "lvmd-csi",
            &mut child,
            &self.log("lvmd-csi"),
        );
        self.csi = Some(child);
        self.ch = Some(
            self.rt
                .block_on(lvmd::rpc::client::connect(&self.csi_sock))
                .unwrap(),
        );
    }

    /// kill -9 of the plugin (and of lvmd with `daemon_too`), then both started again
    /// with the same configuration, as after a crash or a node reboot.
    pub fn crash_and_restart(&mut self, daemon_too: bool) {
        kill(self.csi.take());
        if daemon_too {
            kill_lvmd(self.lvmd.take());
            self.spawn_lvmd();
        }
        self.spawn_plugin();
    }

    /// Both processes stopped and started again with `vars` set (for a case that needs,
    /// say, debug logs), before any volume exists.
    pub fn restart_with(&mut self, vars: &[(&str, &str)]) {
        self.extra_env = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        kill(self.csi.take());
        kill_lvmd(self.lvmd.take());
        self.spawn_lvmd();
        self.spawn_plugin();
    }

    /// lvmd's pid (under the unit's sandbox: the service's main process).
    pub fn lvmd_pid(&self) -> u32 {
        common::daemon::lvmd_pid(self.lvmd.as_ref().expect("lvmd is running"))
    }

    /// lvmd-csi's pid (unshare execs it: its child's).
    pub fn plugin_pid(&self) -> u32 {
        self.csi.as_ref().expect("lvmd-csi is running").id()
    }

    /// lvmd's and lvmd-csi's logs, as written.
    pub fn log_bytes(&self) -> Vec<(&'static str, Vec<u8>)> {
        ["lvmd", "lvmd-csi"]
            .into_iter()
            .map(|who| (who, std::fs::read(self.log(who)).unwrap_or_default()))
            .collect()
    }

    /// The channel to the plugin's CSI socket.
    pub fn ch(&self) -> Channel {
        self.ch.clone().expect("the plugin is running")
    }

    pub fn ctl(&self) -> ControllerClient<Channel> {
        ControllerClient::new(self.ch())
    }
    pub fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.ch())
    }

    /// A path under the kubelet directory (its parent made).
    pub fn path(&self, rel: &str) -> String {
        let p = self.kubelet.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        p.display().to_string()
    }

    pub fn create(&self, r: CreateVolumeRequest) -> Result<Volume, tonic::Status> {
        self.rt
            .block_on(self.ctl().create_volume(r))
            .map(|r| r.into_inner().volume.unwrap())
    }

    pub fn delete(&self, id: &str) {
        self.rt
            .block_on(self.ctl().delete_volume(DeleteVolumeRequest {
                volume_id: id.into(),
                secrets: Default::default(),
            }))
            .unwrap_or_else(|s| panic!("DeleteVolume {id}: {s:?}\n{}", self.logs()));
    }

    /// (available capacity, maximum volume size) on this node.
    pub fn capacity(&self, params: &[(&str, &str)]) -> (i64, i64) {
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

    /// One scrape of `/metrics` as Prometheus makes it (HTTP/1.1, then parsed as the
    /// text format): the answer must be 200 with the format's content type.
    pub fn metrics(&self) -> Scraped {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        s.write_all(
            b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        // Without chunked encoding: the body as it is (hyper sends a length for a full body).
        assert!(!head.to_ascii_lowercase().contains("chunked"), "{head}");
        let parsed =
            prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
        Scraped {
            text: body.to_string(),
            parsed,
        }
    }

    /// lvm2's `--config` confined to the real daemon's loop devices.
    pub fn lvm2_config(&self, activation: bool) -> String {
        let real = self.real.as_ref().expect("lvm2 sees only the real daemon");
        real.loops.lvm_config_with(activation)
    }

    /// lvm2's report rows of every LV of the VG of class `i`, hidden ones included
    /// (real daemon only).
    pub fn lvm2_rows(&self, i: usize, fields: &str) -> Vec<serde_json::Value> {
        let real = self.real.as_ref().expect("lvm2 sees only the real daemon");
        real.loops
            .report(&["lvs", "-a", &self.vgs[i], "-o", fields], "lv")
    }

    /// lvm2's view of the VG of class `i` (real daemon only): name -> (size, tags).
    pub fn lvm2_lvs(&self, i: usize) -> HashMap<String, (i64, Vec<String>)> {
        let real = self.real.as_ref().expect("lvm2 sees only the real daemon");
        let rows = real.loops.report(
            &["lvs", &self.vgs[i], "-o", "lv_name,lv_size,lv_tags"],
            "lv",
        );
        rows.iter()
            .map(|r| {
                let tags = common::text(r, "lv_tags");
                (
                    common::text(r, "lv_name"),
                    (
                        common::num(r, "lv_size") as i64,
                        tags.split(',')
                            .filter(|t| !t.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    ),
                )
            })
            .collect()
    }

    /// The filesystem type mounted at `path` in this (the host's) namespace.
    pub fn host_fs_type(&self, path: &str) -> Option<String> {
        lvmd::mountinfo::read()
            .unwrap()
            .into_iter()
            .find(|m| m.point == Path::new(path))
            .map(|m| m.fs)
    }

    /// Mount points under the kubelet directory in this (the host's) namespace.
    pub fn host_mounts(&self) -> Vec<PathBuf> {
        lvmd::csi::mounts::mount_points(&std::fs::read_to_string("/proc/self/mountinfo").unwrap())
            .into_iter()
            .filter(|m| m.starts_with(&self.kubelet) && *m != self.kubelet)
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        kill(self.csi.take());
        kill_lvmd(self.lvmd.take());
        if self.real.is_none() {
            return;
        }
        let _ = Command::new("umount")
            .args(["-R", "-l"])
            .arg(&self.kubelet)
            .output();
        // Whatever a failed case left active, so the loop devices can go.
        let prefixes: Vec<String> = self
            .vgs
            .iter()
            .map(|vg| format!("{}-", vg.replace('-', "--")))
            .collect();
        if let Ok(o) = Command::new("dmsetup").arg("ls").output() {
            for l in String::from_utf8_lossy(&o.stdout).lines() {
                if let Some(n) = l
                    .split_whitespace()
                    .next()
                    .filter(|n| prefixes.iter().any(|p| n.starts_with(p)))
                {
                    let _ = Command::new("dmsetup").args(["remove", n]).output();
                }
            }
        }
    }
}

pub fn map(kv: &[(&str, &str)]) -> HashMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn topo(node: &str) -> Topology {
    Topology {
        segments: map(&[(KEY, node)]),
    }
}

/// One scrape of `/metrics`: its text and the samples parsed from it.
pub struct Scraped {
    pub text: String,
    pub parsed: prometheus_parse::Scrape,
}

impl Scraped {
    /// The sample `name` whose labels are exactly `labels`, or None.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<&prometheus_parse::Value> {
        self.parsed
            .samples
            .iter()
            .find(|s| {
                s.metric == name
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .map(|s| &s.value)
    }

    /// A counter's or gauge's value; panics with the scrape when the sample is missing
    /// or of another type.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.get(name, labels) {
            Some(prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v)) => *v,
            other => panic!("{name} {labels:?}: {other:?} in\n{}", self.text),
        }
    }

    /// A histogram's `+Inf` bucket: how many observations it has.
    pub fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.get(name, labels) {
            Some(prometheus_parse::Value::Histogram(b)) => {
                b.iter()
                    .find(|b| b.less_than == f64::INFINITY)
                    .unwrap_or_else(|| panic!("{name}: no +Inf bucket in\n{}", self.text))
                    .count
            }
            other => panic!("{name} {labels:?}: {other:?} in\n{}", self.text),
        }
    }
}
