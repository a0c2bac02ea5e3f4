//! Provision latency, metadata only: create + remove of one linear LV on a VG over two
//! loop devices, by lvmd's library and by Debian's lvm2 (`lvcreate -an -Zn` +
//! `lvremove`, activation off), same layout, same run. Needs root, loop devices and lvm2.

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use lvmd::lvm::Layout;
use lvmd::units::{Bytes, ExtentSize};
use std::time::Duration;

fn provision(c: &mut Criterion) {
    let mut group = c.benchmark_group("lv_create_remove_metadata_only");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(20));

    // Both tools keep backups and archives, in the fixture's directory.
    let loops = common::Loops::new(&[256, 256]);
    let lvm = loops.lvmd();
    lvm.vg_create("bench_lvmd", &loops.devs, ExtentSize::DEFAULT)
        .unwrap();
    group.bench_function("lvmd", |b| {
        b.iter(|| {
            lvm.lv_create("bench_lvmd", "vol", Bytes(64 << 20), Layout::Linear, &[])
                .unwrap();
            lvm.lv_remove("bench_lvmd", "vol").unwrap();
        })
    });
    lvm.vg_remove("bench_lvmd").unwrap();

    let devs: Vec<&str> = loops.devs.iter().map(|d| d.to_str().unwrap()).collect();
    loops.lvm_ok(&["vgcreate", "bench_lvm2", devs[0], devs[1]]);
    group.bench_function("lvm2", |b| {
        b.iter(|| {
            loops.lvm_ok(&[
                "lvcreate",
                "-an",
                "-Zn",
                "-L",
                "64M",
                "-n",
                "vol",
                "bench_lvm2",
            ]);
            loops.lvm_ok(&["lvremove", "-y", "bench_lvm2/vol"]);
        })
    });
    loops.lvm_ok(&["vgremove", "-f", "bench_lvm2"]);
    group.finish();
}

criterion_group!(benches, provision);
criterion_main!(benches);
