//! Provision latency as a Kubernetes driver sees it: the real `lvmd` daemon answering
//! gRPC on its unix socket, against the lvm2 CLI that peer drivers run for each PVC
//! (`lvcreate` + `lvremove -f`, one process each), same loop devices, same run.
//!
//! - `provision_one`: one 64 MiB LV created and removed.
//! - `provision_burst32`: 32 volumes created concurrently, then removed concurrently
//!   (a StatefulSet scaling up and down): 32 concurrent calls on one daemon channel,
//!   against 32 concurrent `lvcreate` processes then 32 `lvremove` processes. One
//!   iteration is the whole burst's wall time.
//!
//! On a host without device-mapper both sides are metadata only (`lvcreate -an -Zn`;
//! the daemon runs with its `NoDeviceMapper` activation). Where device-mapper answers
//! (the test VM, see tests/vm/README.md), `provision_one_activated` adds activation:
//! create + activate + deactivate + remove through the daemon against
//! `lvcreate -ay -Zn` + `lvremove -f` (lvm2 with udev when the guest has it):
//!
//! ```sh
//! cargo bench --bench provision
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/tests/vm/run-in-vm.sh" \
//!     cargo bench --bench provision -- activated
//! ```
//!
//! Needs root, loop devices, lvm2 and the `lvmd` binary (built by `cargo bench`; or
//! set `LVMD_BIN`).

#[path = "../tests/common/mod.rs"]
mod common;

#[path = "bed/mod.rs"]
mod bed;

use bed::{grpc_activate, grpc_burst, grpc_create, grpc_deactivate, grpc_remove, Bed};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use std::time::{Duration, Instant};

const LV_SIZE: u64 = 64 << 20;
const BURST: usize = 32;

fn burst_names() -> Vec<String> {
    (0..BURST).map(|i| format!("pvc-{i:02}")).collect()
}

fn provision(c: &mut Criterion) {
    // In the VM: lvm2's udev rules must not activate the VG behind both tools' backs
    // (common::vm_case turns event autoactivation off in the guest's lvm.conf).
    let _serial = (std::env::var_os("LVMD_VM").is_some_and(|v| v == "1"))
        .then(|| common::vm_case("provision"));
    // Both tools on the same VG on the same loop devices, one after the other.
    let bed = Bed::start(
        &format!("bench_prov_{}", std::process::id()),
        // Room for a burst of 32 volumes of 64 MiB.
        &[2048, 2048],
    );

    let mut group = c.benchmark_group("provision_one");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    group.bench_function("lvmd_grpc", |b| {
        let lv = bed.lv();
        b.iter(|| {
            bed.rt.block_on(async {
                grpc_create(lv.clone(), "vol".into(), LV_SIZE).await;
                grpc_remove(lv.clone(), "vol".into()).await;
            })
        })
    });
    group.bench_function("lvm2_cli", |b| {
        b.iter(|| {
            Bed::lvm2_wait(bed.lvm2_create(false, "vol"), "lvcreate");
            Bed::lvm2_wait(bed.lvm2_remove(false, "vol"), "lvremove");
        })
    });
    group.finish();

    let mut group = c.benchmark_group("provision_burst32");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    let names = burst_names();
    group.bench_function("lvmd_grpc", |b| {
        let lv = bed.lv();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                bed.rt.block_on(grpc_burst(&lv, &names, LV_SIZE));
                total += start.elapsed();
            }
            total
        })
    });
    group.bench_function("lvm2_cli", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let creates: Vec<_> = names.iter().map(|n| bed.lvm2_create(false, n)).collect();
                for c in creates {
                    Bed::lvm2_wait(c, "lvcreate");
                }
                let removes: Vec<_> = names.iter().map(|n| bed.lvm2_remove(false, n)).collect();
                for c in removes {
                    Bed::lvm2_wait(c, "lvremove");
                }
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();

    if lvmd_sys::dm::dm_available() {
        activated(c, &bed);
    } else {
        eprintln!(
            "provision_one_activated: skipped, no device-mapper here (run it in the VM: \
             tests/vm/README.md)"
        );
    }
}

/// Activation included (a kernel with device-mapper: the test VM).
fn activated(c: &mut Criterion, bed: &Bed) {
    let mut group = c.benchmark_group("provision_one_activated");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(20));
    group.bench_function("lvmd_grpc", |b| {
        let lv = bed.lv();
        b.iter(|| {
            bed.rt.block_on(async {
                grpc_create(lv.clone(), "vol".into(), LV_SIZE).await;
                grpc_activate(lv.clone(), "vol".into()).await;
                grpc_deactivate(lv.clone(), "vol".into()).await;
                grpc_remove(lv.clone(), "vol".into()).await;
            })
        })
    });
    group.bench_function("lvm2_cli", |b| {
        b.iter(|| {
            Bed::lvm2_wait(bed.lvm2_create(true, "vol"), "lvcreate -ay");
            Bed::lvm2_wait(bed.lvm2_remove(true, "vol"), "lvremove -f");
        })
    });
    group.finish();
}

criterion_group!(benches, provision);
criterion_main!(benches);
