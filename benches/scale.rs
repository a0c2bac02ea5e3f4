//! Cost per operation as the VG fills: the real `lvmd` daemon (gRPC on its unix socket)
//! against the lvm2 CLI on the same VG, same run, with 10, 100, 1000 and 5000 LVs
//! already in it. Metadata only (no device-mapper on the host: the daemon runs with its
//! `NoDeviceMapper` activation, lvm2 with `activation=0`).
//!
//! For each size:
//! - `scale_create_remove/{lvmd_grpc,lvm2_cli}/N`: one 64 MiB LV created and removed
//!   (gRPC `CreateLogicalVolume` + `RemoveLogicalVolume`, against `lvcreate -an -Zn` +
//!   `lvremove -f`, one process each, as peer drivers run them per PVC);
//! - `scale_list/lvmd_grpc/N`: one `ListLogicalVolumes` of the VG;
//! - `scale_burst100/{lvmd_grpc,lvm2_cli}/N` (at the first size only): 100 volumes
//!   created concurrently, then removed concurrently (100 concurrent calls on one
//!   channel, against 100 concurrent `lvcreate` processes, then 100 `lvremove`); one
//!   iteration is the whole burst, reported as volumes per second too;
//! - the daemon's resident memory after those, written to
//!   `target/criterion/scale_rss/N.json` (`VmRSS` and its peak `VmHWM`, KiB).
//!
//! The VG is on two sparse 16 GiB loop devices, so the daemon gives its PVs 16 MiB
//! metadata areas (devices of 4 GiB or more), room for the text of about 10,000 LVs;
//! it is filled with 4 MiB LVs by lvmd's library in one group commit per size, between
//! the sizes (never timed). `LVMD_SCALE_SIZES=10,1000` picks the sizes.
//!
//! At the end it prints the table of all sizes from Criterion's results: medians per
//! iteration with the fastest and slowest sample, lvm2's median over lvmd's, memory.
//!
//! ```sh
//! sudo cargo bench --bench scale
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

#[path = "bed/mod.rs"]
mod bed;

use bed::{grpc_burst, grpc_create, grpc_remove, Bed};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use lvmd::lvm::{Edit, Layout, LvSpec};
use lvmd::rpc::pb;
use lvmd::units::Bytes;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

const LV_SIZE: u64 = 64 << 20;
const FILL_SIZE: Bytes = Bytes(4 << 20);
const SIZES: &[usize] = &[10, 100, 1000, 5000];
const BURST: usize = 100;

fn sizes() -> Vec<usize> {
    match std::env::var("LVMD_SCALE_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("LVMD_SCALE_SIZES: {n:?}: {e}"))
            })
            .collect(),
        Err(_) => SIZES.to_vec(),
    }
}

/// Brings the VG to `n` LVs with one group commit of lvmd's library (under lvm2's
/// lock, as any other writer: the daemon sees the change at its next read).
fn fill_to(bed: &Bed, have: &mut usize, n: usize) {
    if *have >= n {
        return;
    }
    let edits: Vec<Edit> = (*have..n)
        .map(|i| {
            Edit::CreateLv(LvSpec {
                name: format!("fill-{i:05}"),
                size: FILL_SIZE,
                layout: Layout::Linear,
                tags: vec![],
            })
        })
        .collect();
    let (found, results) = bed.loops.lvmd().edit_group(&bed.vg, &edits, None).unwrap();
    for (e, r) in edits.iter().zip(results) {
        r.unwrap_or_else(|err| panic!("fill {e:?}: {err}"));
    }
    assert_eq!(found.vg.lvs.len(), n);
    *have = n;
}

/// `VmRSS` and `VmHWM` of a process, and what its `VmRSS` is made of (`RssAnon`,
/// its heaps; `RssFile`, the pages of its binary and libraries), in KiB.
fn memory_kib(pid: u32) -> (u64, u64, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (
        field("VmRSS:"),
        field("VmHWM:"),
        field("RssAnon:"),
        field("RssFile:"),
    )
}

/// Where Criterion keeps its results, found as Criterion finds it (`CRITERION_HOME`,
/// else `CARGO_TARGET_DIR/criterion`, else `target/criterion` under the working
/// directory, the package's under `cargo bench`), for the RSS figures beside them.
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("criterion")
}

fn scale(c: &mut Criterion) {
    let bed = Bed::start(
        &format!("bench_scale_{}", std::process::id()),
        &[16 << 10, 16 << 10],
    );
    let mut have = 0;
    let rss_dir = criterion_dir().join("scale_rss");
    std::fs::create_dir_all(&rss_dir).unwrap();
    for n in sizes() {
        fill_to(&bed, &mut have, n);

        let mut group = c.benchmark_group("scale_create_remove");
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4));
        group.bench_with_input(BenchmarkId::new("lvmd_grpc", n), &n, |b, _| {
            let lv = bed.lv();
            b.iter(|| {
                bed.rt.block_on(async {
                    grpc_create(lv.clone(), "vol".into(), LV_SIZE).await;
                    grpc_remove(lv.clone(), "vol".into()).await;
                })
            })
        });
        group.bench_with_input(BenchmarkId::new("lvm2_cli", n), &n, |b, _| {
            b.iter(|| {
                Bed::lvm2_wait(bed.lvm2_create(false, "vol"), "lvcreate");
                Bed::lvm2_wait(bed.lvm2_remove(false, "vol"), "lvremove");
            })
        });
        group.finish();

        let mut group = c.benchmark_group("scale_list");
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        group.bench_with_input(BenchmarkId::new("lvmd_grpc", n), &n, |b, &n| {
            let mut lv = bed.lv();
            b.iter(|| {
                let listed = bed
                    .rt
                    .block_on(lv.list_logical_volumes(pb::ListLogicalVolumesRequest {
                        device_class: String::new(),
                        volume_group: bed.vg.clone(),
                    }))
                    .unwrap()
                    .into_inner()
                    .logical_volumes;
                assert_eq!(listed.len(), n);
            })
        });
        group.finish();

        if n == sizes()[0] {
            burst(c, &bed, n);
        }

        let (rss, hwm, anon, file) = memory_kib(bed.pid());
        eprintln!(
            "lvmd memory with {n} LVs: VmRSS {rss} KiB (RssAnon {anon}, RssFile {file}), \
             VmHWM {hwm} KiB"
        );
        std::fs::write(
            rss_dir.join(format!("{n}.json")),
            format!("{{\"lvs\": {n}, \"vm_rss_kib\": {rss}, \"vm_hwm_kib\": {hwm}}}\n"),
        )
        .unwrap();
    }
}

/// 100 creates at once, then 100 removes at once, by each tool.
fn burst(c: &mut Criterion, bed: &Bed, n: usize) {
    let names: Vec<String> = (0..BURST).map(|i| format!("burst-{i:03}")).collect();
    let mut group = c.benchmark_group("scale_burst100");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_with_input(BenchmarkId::new("lvmd_grpc", n), &n, |b, _| {
        let lv = bed.lv();
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                bed.rt.block_on(grpc_burst(&lv, &names, LV_SIZE));
            }
            start.elapsed()
        })
    });
    group.bench_with_input(BenchmarkId::new("lvm2_cli", n), &n, |b, _| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let creates: Vec<_> = names.iter().map(|n| bed.lvm2_create(false, n)).collect();
                for c in creates {
                    Bed::lvm2_wait(c, "lvcreate");
                }
                let removes: Vec<_> = names.iter().map(|n| bed.lvm2_remove(false, n)).collect();
                for c in removes {
                    Bed::lvm2_wait(c, "lvremove");
                }
            }
            start.elapsed()
        })
    });
    group.finish();
}

/// One benchmark's result of this run (written since `since`): (median, fastest
/// sample, slowest sample) per iteration, in ms; `None` when it did not run (filtered
/// out).
fn result(
    dir: &std::path::Path,
    since: SystemTime,
    group: &str,
    function: &str,
    n: usize,
) -> Option<(f64, f64, f64)> {
    let base = dir
        .join(group)
        .join(function)
        .join(n.to_string())
        .join("new");
    let read = |file: &str| -> Option<serde_json::Value> {
        let path = base.join(file);
        if std::fs::metadata(&path).ok()?.modified().ok()? < since {
            return None;
        }
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    };
    let median = read("estimates.json")?["median"]["point_estimate"].as_f64()? / 1e6;
    let sample = read("sample.json")?;
    let per_iter: Vec<f64> = sample["iters"]
        .as_array()?
        .iter()
        .zip(sample["times"].as_array()?)
        .filter_map(|(i, t)| Some(t.as_f64()? / i.as_f64()? / 1e6))
        .collect();
    let min = per_iter.iter().copied().fold(f64::INFINITY, f64::min);
    let max = per_iter.iter().copied().fold(0.0, f64::max);
    Some((median, min, max))
}

fn ms((median, min, max): (f64, f64, f64)) -> String {
    format!("{median:.2} ms [{min:.2}-{max:.2}]")
}

fn print_table(since: SystemTime) {
    let dir = criterion_dir();
    println!();
    println!("median per iteration [fastest-slowest sample]; ratio: lvm2 median / lvmd median");
    println!(
        "| LVs in the VG | lvmd create+remove | lvm2 create+remove | lvm2 / lvmd | \
         ListLogicalVolumes | lvmd VmRSS (peak) |"
    );
    println!("|---|---|---|---|---|---|");
    for n in sizes() {
        let lvmd = result(&dir, since, "scale_create_remove", "lvmd_grpc", n);
        let lvm2 = result(&dir, since, "scale_create_remove", "lvm2_cli", n);
        let list = result(&dir, since, "scale_list", "lvmd_grpc", n);
        let ratio = match (lvmd, lvm2) {
            (Some(a), Some(b)) => format!("{:.1}x", b.0 / a.0),
            _ => "-".into(),
        };
        let rss_file = dir.join("scale_rss").join(format!("{n}.json"));
        let fresh = std::fs::metadata(&rss_file)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since);
        let rss = std::fs::read_to_string(&rss_file)
            .ok()
            .filter(|_| fresh)
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .map_or("-".into(), |v| {
                format!(
                    "{:.1} MiB ({:.1})",
                    v["vm_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
                    v["vm_hwm_kib"].as_f64().unwrap_or(0.0) / 1024.0
                )
            });
        let show = |r: Option<(f64, f64, f64)>| r.map_or("-".into(), ms);
        println!(
            "| {n} | {} | {} | {ratio} | {} | {rss} |",
            show(lvmd),
            show(lvm2),
            show(list)
        );
    }
    let n = sizes()[0];
    let lvmd = result(&dir, since, "scale_burst100", "lvmd_grpc", n);
    let lvm2 = result(&dir, since, "scale_burst100", "lvm2_cli", n);
    if let (Some(a), Some(b)) = (lvmd, lvm2) {
        let per_s = |r: (f64, f64, f64)| BURST as f64 / (r.0 / 1000.0);
        println!();
        println!("| burst of {BURST} creates, then {BURST} removes ({n} LVs in the VG) | lvmd | lvm2 | lvm2 / lvmd |");
        println!("|---|---|---|---|");
        println!(
            "| whole burst | {} | {} | {:.1}x |",
            ms(a),
            ms(b),
            b.0 / a.0
        );
        println!(
            "| volumes per second (created and removed) | {:.0} | {:.0} | |",
            per_s(a),
            per_s(b)
        );
    }
}

fn scale_and_table(c: &mut Criterion) {
    let since = SystemTime::now();
    scale(c);
    print_table(since);
}

criterion_group!(benches, scale_and_table);
criterion_main!(benches);
