//! Prometheus metrics in the text exposition format on a plain TCP port: per-RPC latency
//! histograms and error counters kept here, and at each scrape the device classes'
//! capacity and the plugin's volume counts read from lvmd.

use super::Plugin;
use crate::rpc::pb as lvmd;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Code, Status};

const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Rpc {
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
    /// By gRPC code name; OK included.
    codes: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
pub struct Metrics {
    rpcs: Mutex<BTreeMap<&'static str, Rpc>>,
    refused: Mutex<Refused>,
}

/// StorageClass parameters the controller refused: counts by reason, and which
/// parameter sets were already logged.
#[derive(Default)]
struct Refused {
    by_reason: BTreeMap<&'static str, u64>,
    logged: HashSet<String>,
}

/// Parameter sets remembered as logged; past that every refusal is logged again rather
/// than the memory growing with whatever a client sends.
const REFUSED_REMEMBERED: usize = 1024;

/// The `reason` labels exported even at 0, so an alert on their increase sees the first.
const REFUSED_REASONS: &[&str] = &[
    super::controller::REFUSED_PARAMETER,
    super::controller::REFUSED_DEVICE_CLASS,
];

fn code_name(c: Code) -> &'static str {
    match c {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl Metrics {
    pub fn record(&self, rpc: &'static str, took: Duration, code: Code) {
        let mut rpcs = self.rpcs.lock().unwrap();
        let r = rpcs.entry(rpc).or_default();
        if r.buckets.is_empty() {
            r.buckets = vec![0; BUCKETS.len()];
        }
        let s = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                r.buckets[i] += 1;
            }
        }
        r.count += 1;
        r.sum += s;
        *r.codes.entry(code_name(code)).or_default() += 1;
    }

    /// Counts a refused StorageClass parameter set (`key`, see
    /// `controller::storage_class_key`); true when it should be logged: the first time.
    pub fn storage_class_refused(&self, reason: &'static str, key: &str) -> bool {
        let mut r = self.refused.lock().unwrap();
        *r.by_reason.entry(reason).or_default() += 1;
        if r.logged.contains(key) {
            return false;
        }
        if r.logged.len() < REFUSED_REMEMBERED {
            r.logged.insert(key.to_string());
        }
        true
    }

    /// The RPC metrics in text format.
    pub fn render_rpcs(&self, out: &mut String) {
        let rpcs = self.rpcs.lock().unwrap();
        out.push_str("# HELP lvmd_csi_rpc_duration_seconds CSI RPC latency.\n");
        out.push_str("# TYPE lvmd_csi_rpc_duration_seconds histogram\n");
        for (name, r) in rpcs.iter() {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "lvmd_csi_rpc_duration_seconds_bucket{{rpc=\"{name}\",le=\"{b}\"}} {}",
                    r.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "lvmd_csi_rpc_duration_seconds_bucket{{rpc=\"{name}\",le=\"+Inf\"}} {}",
                r.count
            );
            let _ = writeln!(
                out,
                "lvmd_csi_rpc_duration_seconds_sum{{rpc=\"{name}\"}} {}",
                r.sum
            );
            let _ = writeln!(
                out,
                "lvmd_csi_rpc_duration_seconds_count{{rpc=\"{name}\"}} {}",
                r.count
            );
        }
        out.push_str("# HELP lvmd_csi_rpc_total CSI RPCs answered, by gRPC code.\n");
        out.push_str("# TYPE lvmd_csi_rpc_total counter\n");
        for (name, r) in rpcs.iter() {
            for (code, n) in &r.codes {
                let _ = writeln!(
                    out,
                    "lvmd_csi_rpc_total{{rpc=\"{name}\",code=\"{code}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP lvmd_csi_rpc_errors_total CSI RPCs answered with an error.\n");
        out.push_str("# TYPE lvmd_csi_rpc_errors_total counter\n");
        for (name, r) in rpcs.iter() {
            let errors: u64 = r
                .codes
                .iter()
                .filter(|(c, _)| **c != "OK")
                .map(|(_, n)| n)
                .sum();
            let _ = writeln!(out, "lvmd_csi_rpc_errors_total{{rpc=\"{name}\"}} {errors}");
        }
        drop(rpcs);
        let refused = self.refused.lock().unwrap();
        out.push_str(
            "# HELP lvmd_csi_storage_class_refused_total StorageClass parameters refused by \
             GetCapacity or CreateVolume (their PVCs stay Pending), by reason.\n",
        );
        out.push_str("# TYPE lvmd_csi_storage_class_refused_total counter\n");
        for reason in REFUSED_REASONS {
            let n = refused.by_reason.get(reason).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "lvmd_csi_storage_class_refused_total{{reason=\"{reason}\"}} {n}"
            );
        }
    }
}

/// Times an RPC and counts its outcome.
pub async fn timed<T>(
    m: &Metrics,
    rpc: &'static str,
    f: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<tonic::Response<T>, Status> {
    let start = Instant::now();
    let r = f.await;
    let code = r.as_ref().map_or_else(|s| s.code(), |_| Code::Ok);
    m.record(rpc, start.elapsed(), code);
    if let Err(s) = &r {
        tracing::warn!(rpc, code = code_name(s.code()), "{}", s.message());
    }
    r.map(tonic::Response::new)
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Everything, lvmd's part included (left out with `lvmd_csi_lvmd_up 0` when lvmd does
/// not answer within 5 seconds).
pub async fn render(plugin: &Plugin) -> String {
    let mut out = String::new();
    plugin.metrics.render_rpcs(&mut out);
    let mut cap = plugin.cap();
    let mut lv = plugin.lv();
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        let c = cap
            .get_capacity(lvmd::GetCapacityRequest::default())
            .await?
            .into_inner();
        let l = lv
            .list_logical_volumes(lvmd::ListLogicalVolumesRequest::default())
            .await?
            .into_inner();
        Ok::<_, Status>((c, l))
    })
    .await;
    let (c, l) = match got {
        Ok(Ok(x)) => x,
        _ => {
            out.push_str("# TYPE lvmd_csi_lvmd_up gauge\nlvmd_csi_lvmd_up 0\n");
            return out;
        }
    };
    out.push_str("# TYPE lvmd_csi_lvmd_up gauge\nlvmd_csi_lvmd_up 1\n");
    type Gauge = (
        &'static str,
        &'static str,
        fn(&lvmd::DeviceClassCapacity) -> u64,
    );
    let gauges: [Gauge; 5] = [
        (
            "total_bytes",
            "Size of the device class's volume group.",
            |d| d.total_bytes,
        ),
        (
            "free_bytes",
            "Free space in the device class's volume group.",
            |d| d.free_bytes,
        ),
        (
            "largest_volume_bytes",
            "Largest volume creatable now with the class's default layout.",
            |d| d.largest_bytes,
        ),
        (
            "metadata_used_bytes",
            "The volume group's metadata text: when it reaches the capacity, no volume more can be described.",
            |d| d.metadata_used_bytes,
        ),
        (
            "metadata_capacity_bytes",
            "The longest metadata text the volume group's metadata areas take.",
            |d| d.metadata_capacity_bytes,
        ),
    ];
    for (name, help, get) in gauges {
        let _ = writeln!(out, "# HELP lvmd_csi_device_class_{name} {help}");
        let _ = writeln!(out, "# TYPE lvmd_csi_device_class_{name} gauge");
        for d in &c.device_classes {
            let _ = writeln!(
                out,
                "lvmd_csi_device_class_{name}{{device_class=\"{}\",volume_group=\"{}\"}} {}",
                escape(&d.device_class),
                escape(&d.volume_group),
                get(d)
            );
        }
    }
    let marker = super::controller::driver_tag(&plugin.config.driver_name);
    let mut counts: BTreeMap<String, (u64, u64)> = c
        .device_classes
        .iter()
        .map(|d| (d.device_class.clone(), (0, 0)))
        .collect();
    for v in l
        .logical_volumes
        .iter()
        .filter(|v| v.tags.contains(&marker))
    {
        let e = counts.entry(v.device_class.clone()).or_default();
        e.0 += 1;
        e.1 += v.size_bytes;
    }
    out.push_str("# HELP lvmd_csi_volumes Volumes made by this driver, by device class.\n");
    out.push_str("# TYPE lvmd_csi_volumes gauge\n");
    for (class, (n, _)) in &counts {
        let _ = writeln!(
            out,
            "lvmd_csi_volumes{{device_class=\"{}\"}} {n}",
            escape(class)
        );
    }
    out.push_str(
        "# HELP lvmd_csi_volume_bytes Space given to this driver's volumes, by device class.\n",
    );
    out.push_str("# TYPE lvmd_csi_volume_bytes gauge\n");
    for (class, (_, b)) in &counts {
        let _ = writeln!(
            out,
            "lvmd_csi_volume_bytes{{device_class=\"{}\"}} {b}",
            escape(class)
        );
    }
    // Per volume: the health lvmd computes (missing PVs, legs the kernel failed) and
    // how far an active mirror is in sync, so an alert can name the volume.
    let ours: Vec<&lvmd::LogicalVolume> = l
        .logical_volumes
        .iter()
        .filter(|v| v.tags.contains(&marker))
        .collect();
    let labels = |v: &lvmd::LogicalVolume| {
        format!(
            "device_class=\"{}\",volume_group=\"{}\",volume=\"{}\"",
            escape(&v.device_class),
            escape(&v.volume_group),
            escape(&v.name)
        )
    };
    out.push_str(
        "# HELP lvmd_csi_volume_health Volume health: 0 ok, 1 degraded (a mirror serving from fewer copies), 2 failed (data on missing PVs).\n",
    );
    out.push_str("# TYPE lvmd_csi_volume_health gauge\n");
    for v in &ours {
        let _ = writeln!(out, "lvmd_csi_volume_health{{{}}} {}", labels(v), v.health);
    }
    out.push_str(
        "# HELP lvmd_csi_mirror_sync_ratio How much of an active mirror is in sync (dm-raid), 0 to 1.\n",
    );
    out.push_str("# TYPE lvmd_csi_mirror_sync_ratio gauge\n");
    for v in &ours {
        if let Some(m) = &v.mirror_sync {
            let _ = writeln!(
                out,
                "lvmd_csi_mirror_sync_ratio{{{}}} {}",
                labels(v),
                m.sync_percent / 100.0
            );
        }
    }
    out
}

/// Serves `GET /metrics` (and `/healthz`) until the task is dropped. A minimal HTTP/1.0
/// answer per connection is all Prometheus needs.
pub async fn serve(listener: tokio::net::TcpListener, plugin: Arc<Plugin>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let plugin = plugin.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            let read = tokio::time::timeout(Duration::from_secs(10), async {
                while n < buf.len() {
                    let k = conn.read(&mut buf[n..]).await?;
                    if k == 0 {
                        break;
                    }
                    n += k;
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = match path {
                "/metrics" => ("200 OK", render(&plugin).await),
                "/healthz" => ("200 OK", "ok\n".to_string()),
                _ => ("404 Not Found", "not found; try /metrics\n".to_string()),
            };
            let resp = format!(
                "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}
