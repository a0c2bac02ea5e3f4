//! Prometheus metrics over HTTP (`prometheus-client` families in the Prometheus text
//! format 0.0.4, served by hyper): per-RPC latency histograms and counters kept here, and
//! at each scrape the device classes' capacity and the plugin's volume counts read from
//! lvmd.

use super::Plugin;
use crate::rpc::pb as lvmd;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::{Code, Status};

const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    rpc: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcCodeLabels {
    rpc: &'static str,
    /// The gRPC code's name; OK included.
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassVgLabels {
    device_class: String,
    volume_group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    device_class: String,
    volume_group: String,
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    device_class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VolumeLabels {
    device_class: String,
    volume_group: String,
    volume: String,
}

type HistogramFamily = Family<RpcLabels, Histogram, fn() -> Histogram>;
/// Sizes in bytes: u64, as lvmd reports them (an i64 gauge would need a cast per value).
type BytesGauge = Gauge<u64, AtomicU64>;

fn rpc_histogram() -> Histogram {
    Histogram::new(BUCKETS.iter().copied())
}

/// The metrics kept across scrapes: the plugin's own RPCs and refusals. What lvmd reports
/// is read at each scrape into a registry of its own (see [`render`]), so a deleted
/// volume's series goes away with it.
pub struct Metrics {
    registry: Registry,
    duration: HistogramFamily,
    rpcs: Family<RpcCodeLabels, Counter>,
    errors: Family<RpcLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
    /// StorageClass parameter sets already logged as refused.
    logged: Mutex<HashSet<String>>,
}

/// Parameter sets remembered as logged; past that every refusal is logged again rather
/// than the memory growing with whatever a client sends.
const REFUSED_REMEMBERED: usize = 1024;

/// The `reason` labels exported even at 0, so an alert on their increase sees the first.
const REFUSED_REASONS: &[&str] = &[
    super::controller::REFUSED_PARAMETER,
    super::controller::REFUSED_DEVICE_CLASS,
];

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::default();
        // The registry adds the final full stop to each help text.
        let duration = HistogramFamily::new_with_constructor(rpc_histogram as fn() -> Histogram);
        registry.register(
            "lvmd_csi_rpc_duration_seconds",
            "CSI RPC latency",
            duration.clone(),
        );
        // Counters are registered without `_total`: the encoder adds it.
        let rpcs = Family::<RpcCodeLabels, Counter>::default();
        registry.register(
            "lvmd_csi_rpc",
            "CSI RPCs answered, by gRPC code",
            rpcs.clone(),
        );
        let errors = Family::<RpcLabels, Counter>::default();
        registry.register(
            "lvmd_csi_rpc_errors",
            "CSI RPCs answered with an error",
            errors.clone(),
        );
        let refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "lvmd_csi_storage_class_refused",
            "StorageClass parameters refused by GetCapacity or CreateVolume (their PVCs stay \
             Pending), by reason",
            refused.clone(),
        );
        for reason in REFUSED_REASONS {
            drop(refused.get_or_create(&ReasonLabels { reason }));
        }
        Metrics {
            registry,
            duration,
            rpcs,
            errors,
            refused,
            logged: Mutex::default(),
        }
    }
}

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
        self.duration
            .get_or_create(&RpcLabels { rpc })
            .observe(took.as_secs_f64());
        let code = code_name(code);
        self.rpcs.get_or_create(&RpcCodeLabels { rpc, code }).inc();
        // Created at 0 with the RPC's first answer, so a rate of errors has a start.
        let errors = self.errors.get_or_create(&RpcLabels { rpc });
        if code != "OK" {
            errors.inc();
        }
    }

    /// Counts a refused StorageClass parameter set (`key`, see
    /// `controller::storage_class_key`); true when it should be logged: the first time.
    pub fn storage_class_refused(&self, reason: &'static str, key: &str) -> bool {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
        let mut logged = self.logged.lock().unwrap();
        if logged.contains(key) {
            return false;
        }
        if logged.len() < REFUSED_REMEMBERED {
            logged.insert(key.to_string());
        }
        true
    }

    /// The plugin's own metrics in the text format.
    pub fn render_rpcs(&self, out: &mut String) {
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(out, &self.registry);
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

/// What lvmd reports at one scrape, as metric families of a registry made for it.
fn lvmd_registry(
    plugin: &Plugin,
    got: Option<(lvmd::GetCapacityResponse, lvmd::ListLogicalVolumesResponse)>,
) -> Registry {
    let mut reg = Registry::default();
    let up = Gauge::<i64>::default();
    reg.register(
        "lvmd_csi_lvmd_up",
        "Whether lvmd answered this scrape within 5 seconds",
        up.clone(),
    );
    let Some((c, l)) = got else {
        return reg;
    };
    up.set(1);
    type Get = fn(&lvmd::DeviceClassCapacity) -> u64;
    let gauges: [(&str, &str, Get); 5] = [
        (
            "total_bytes",
            "Size of the device class's volume group",
            |d| d.total_bytes,
        ),
        (
            "free_bytes",
            "Free space in the device class's volume group",
            |d| d.free_bytes,
        ),
        (
            "largest_volume_bytes",
            "Largest volume creatable now with the class's default layout",
            |d| d.largest_bytes,
        ),
        (
            "metadata_used_bytes",
            "The volume group's metadata text: when it reaches the capacity, no volume more can be described",
            |d| d.metadata_used_bytes,
        ),
        (
            "metadata_capacity_bytes",
            "The longest metadata text the volume group's metadata areas take",
            |d| d.metadata_capacity_bytes,
        ),
    ];
    for (name, help, get) in gauges {
        let family = Family::<ClassVgLabels, BytesGauge>::default();
        for d in &c.device_classes {
            family
                .get_or_create(&ClassVgLabels {
                    device_class: d.device_class.clone(),
                    volume_group: d.volume_group.clone(),
                })
                .set(get(d));
        }
        reg.register(format!("lvmd_csi_device_class_{name}"), help, family);
    }
    thin_pool_families(&mut reg, &c);
    let marker = super::controller::driver_tag(&plugin.config.driver_name);
    let ours: Vec<&lvmd::LogicalVolume> = l
        .logical_volumes
        .iter()
        .filter(|v| v.tags.contains(&marker))
        .collect();
    // Every class gets a count, 0 included, so "no volume here" is a value and not a gap.
    let mut counts: BTreeMap<&str, (u64, u64)> = c
        .device_classes
        .iter()
        .map(|d| (d.device_class.as_str(), (0, 0)))
        .collect();
    for v in &ours {
        let e = counts.entry(v.device_class.as_str()).or_default();
        e.0 += 1;
        e.1 += v.size_bytes;
    }
    let volumes = Family::<ClassLabels, BytesGauge>::default();
    let volume_bytes = Family::<ClassLabels, BytesGauge>::default();
    for (class, (n, bytes)) in counts {
        let labels = ClassLabels {
            device_class: class.to_string(),
        };
        volumes.get_or_create(&labels).set(n);
        volume_bytes.get_or_create(&labels).set(bytes);
    }
    reg.register(
        "lvmd_csi_volumes",
        "Volumes made by this driver, by device class",
        volumes,
    );
    reg.register(
        "lvmd_csi_volume_bytes",
        "Space given to this driver's volumes, by device class",
        volume_bytes,
    );
    // Per volume: the health lvmd computes (missing PVs, legs the kernel failed) and
    // how far an active mirror is in sync, so an alert can name the volume.
    let labels = |v: &lvmd::LogicalVolume| VolumeLabels {
        device_class: v.device_class.clone(),
        volume_group: v.volume_group.clone(),
        volume: v.name.clone(),
    };
    let health = Family::<VolumeLabels, Gauge>::default();
    let sync = Family::<VolumeLabels, Gauge<f64, AtomicU64>>::default();
    for v in &ours {
        health.get_or_create(&labels(v)).set(i64::from(v.health));
        if let Some(m) = &v.mirror_sync {
            sync.get_or_create(&labels(v)).set(m.sync_percent / 100.0);
        }
    }
    reg.register(
        "lvmd_csi_volume_health",
        "Volume health: 0 ok, 1 degraded (a mirror serving from fewer copies), 2 failed (data on missing PVs)",
        health,
    );
    reg.register(
        "lvmd_csi_mirror_sync_ratio",
        "How much of an active mirror is in sync (dm-raid), 0 to 1",
        sync,
    );
    reg
}

/// The device classes' thin pools: sizes and guards always, the kernel's use and trouble
/// while the pool is active (a pool that is not has no use to report, rather than 0).
fn thin_pool_families(reg: &mut Registry, c: &lvmd::GetCapacityResponse) {
    type Get = fn(&lvmd::ThinPoolCapacity) -> u64;
    let always: [(&str, &str, Get); 5] = [
        (
            "active",
            "Whether the thin pool is active in the kernel (1) or not (0)",
            |p| u64::from(p.active),
        ),
        ("data_bytes", "Size of the thin pool's data", |p| {
            p.data_bytes
        }),
        ("metadata_bytes", "Size of the thin pool's metadata", |p| {
            p.metadata_bytes
        }),
        (
            "provisioned_bytes",
            "Sum of the sizes of the thin pool's volumes",
            |p| p.provisioned_bytes,
        ),
        (
            "provisionable_bytes",
            "What new or grown thin volumes may still add under the overprovision ratio",
            |p| p.provisionable_bytes,
        ),
    ];
    let active: [(&str, &str, Get); 3] = [
        (
            "data_used_bytes",
            "Thin pool data in use, as dm-thin counts it (active pools only)",
            |p| p.data_used_bytes,
        ),
        (
            "metadata_used_bytes",
            "Thin pool metadata in use, as dm-thin counts it (active pools only)",
            |p| p.metadata_used_bytes,
        ),
        (
            "trouble",
            "Whether the active thin pool is in trouble (1: out of data space, read-only or needing a check; its volumes then report failed)",
            |p| u64::from(!p.trouble.is_empty()),
        ),
    ];
    let pools: Vec<(PoolLabels, &lvmd::ThinPoolCapacity)> = c
        .device_classes
        .iter()
        .filter_map(|d| {
            let p = d.thin_pool.as_ref()?;
            let labels = PoolLabels {
                device_class: d.device_class.clone(),
                volume_group: d.volume_group.clone(),
                pool: p.name.clone(),
            };
            Some((labels, p))
        })
        .collect();
    let families = always.iter().map(|g| (g, false));
    for ((name, help, get), when_active) in families.chain(active.iter().map(|g| (g, true))) {
        let family = Family::<PoolLabels, BytesGauge>::default();
        for (labels, p) in &pools {
            if !when_active || p.active {
                family.get_or_create(labels).set(get(p));
            }
        }
        reg.register(format!("lvmd_csi_thin_pool_{name}"), *help, family);
    }
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
    let got = match got {
        Ok(Ok(x)) => Some(x),
        Ok(Err(s)) => {
            tracing::warn!(code = code_name(s.code()), "metrics: lvmd: {}", s.message());
            None
        }
        Err(_) => {
            tracing::warn!("metrics: lvmd did not answer within 5 seconds");
            None
        }
    };
    let _ = prometheus_text::encode(&mut out, &lvmd_registry(plugin, got));
    out
}

fn answer(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

async fn route(plugin: &Plugin, req: Request<Incoming>) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return answer(StatusCode::METHOD_NOT_ALLOWED, TEXT, "GET only\n".into());
    }
    match req.uri().path() {
        "/metrics" => answer(
            StatusCode::OK,
            prometheus_text::CONTENT_TYPE,
            render(plugin).await,
        ),
        "/healthz" => answer(StatusCode::OK, TEXT, "ok\n".into()),
        _ => answer(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found; try /metrics\n".into(),
        ),
    }
}

/// Serves `GET /metrics` (and `/healthz`) over HTTP/1 until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, plugin: Arc<Plugin>) {
    loop {
        let conn = match listener.accept().await {
            Ok((conn, _)) => conn,
            Err(e) => {
                // Out of file descriptors, mostly: wait rather than spin.
                tracing::warn!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let plugin = plugin.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let plugin = plugin.clone();
                async move { Ok::<_, Infallible>(route(&plugin, req).await) }
            });
            // A client that never finishes its request must not hold a task forever.
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(conn), service)
                .await;
            if let Err(e) = served {
                tracing::debug!("metrics: connection: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The series names and label sets dashboards were written against (before the
    /// crate encoded them) stay as they were.
    #[test]
    fn rpc_series_keep_their_names_and_labels() {
        let m = Metrics::default();
        m.record("CreateVolume", Duration::from_millis(700), Code::Ok);
        m.record(
            "CreateVolume",
            Duration::from_millis(3),
            Code::InvalidArgument,
        );
        let mut out = String::new();
        m.render_rpcs(&mut out);
        for want in [
            "# TYPE lvmd_csi_rpc_duration_seconds histogram\n",
            "lvmd_csi_rpc_duration_seconds_bucket{rpc=\"CreateVolume\",le=\"0.005\"} 1\n",
            "lvmd_csi_rpc_duration_seconds_bucket{rpc=\"CreateVolume\",le=\"0.5\"} 1\n",
            "lvmd_csi_rpc_duration_seconds_bucket{rpc=\"CreateVolume\",le=\"1\"} 2\n",
            "lvmd_csi_rpc_duration_seconds_bucket{rpc=\"CreateVolume\",le=\"+Inf\"} 2\n",
            "lvmd_csi_rpc_duration_seconds_count{rpc=\"CreateVolume\"} 2\n",
            "# TYPE lvmd_csi_rpc_total counter\n",
            "lvmd_csi_rpc_total{rpc=\"CreateVolume\",code=\"OK\"} 1\n",
            "lvmd_csi_rpc_total{rpc=\"CreateVolume\",code=\"INVALID_ARGUMENT\"} 1\n",
            "# HELP lvmd_csi_rpc_errors_total CSI RPCs answered with an error.\n",
            "lvmd_csi_rpc_errors_total{rpc=\"CreateVolume\"} 1\n",
            "lvmd_csi_storage_class_refused_total{reason=\"invalid_parameter\"} 0\n",
            "lvmd_csi_storage_class_refused_total{reason=\"unknown_device_class\"} 0\n",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
        let sum = out
            .lines()
            .find_map(|l| {
                l.strip_prefix("lvmd_csi_rpc_duration_seconds_sum{rpc=\"CreateVolume\"} ")
            })
            .unwrap();
        assert!((sum.parse::<f64>().unwrap() - 0.703).abs() < 1e-9, "{sum}");
    }
}
