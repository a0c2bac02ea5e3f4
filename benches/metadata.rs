//! Provision latency, metadata only: create + remove of one linear LV on a VG over two
//! loop devices, by lvmd's library and by Debian's lvm2 (`lvcreate -an -Zn` +
//! `lvremove`, activation off), same layout, same run. Needs root, loop devices and lvm2.

use criterion::{criterion_group, criterion_main, Criterion};
use lvmd::lvm::{Layout, Lvm};
use lvmd::units::{Bytes, ExtentSize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

struct Fixture {
    dir: tempfile::TempDir,
    devs: Vec<PathBuf>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let devs = (0..2)
            .map(|i| {
                let file = dir.path().join(format!("d{i}.img"));
                std::fs::File::create(&file)
                    .unwrap()
                    .set_len(256 << 20)
                    .unwrap();
                attach(&file)
            })
            .collect();
        Fixture { dir, devs }
    }

    fn lvm2(&self, args: &[&str]) {
        let filter: Vec<String> = self
            .devs
            .iter()
            .map(|d| format!("\"a|^{}$|\"", d.display()))
            .collect();
        let config = format!(
            "global{{activation=0}} devices{{filter=[{f}, \"r|.*|\"] global_filter=[{f}, \"r|.*|\"] use_devicesfile=0 obtain_device_list_from_udev=0}} backup{{backup_dir=\"{b}\" archive_dir=\"{a}\"}}",
            f = filter.join(","),
            b = self.dir.path().join("lvm2-backup").display(),
            a = self.dir.path().join("lvm2-archive").display(),
        );
        let (cmd, rest) = args.split_first().unwrap();
        let out = Command::new("lvm")
            .arg(cmd)
            .arg("--config")
            .arg(&config)
            .args(rest)
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .output()
            .expect("run lvm");
        assert!(
            out.status.success(),
            "lvm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn attach(file: &Path) -> PathBuf {
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "losetup failed (bench needs root)");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for d in &self.devs {
            let _ = Command::new("losetup").arg("-d").arg(d).status();
        }
    }
}

fn provision(c: &mut Criterion) {
    let mut group = c.benchmark_group("lv_create_remove_metadata_only");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(20));

    let fx = Fixture::new();
    let mut lvm = Lvm::new(fx.devs.clone());
    lvm.backup = Some(lvmd::store::backup::BackupDirs {
        backup: fx.dir.path().join("backup"),
        archive: Some(fx.dir.path().join("archive")),
    });
    lvm.vg_create("bench_lvmd", &fx.devs, ExtentSize::DEFAULT)
        .unwrap();
    group.bench_function("lvmd", |b| {
        b.iter(|| {
            lvm.lv_create("bench_lvmd", "vol", Bytes(64 << 20), Layout::Linear, &[])
                .unwrap();
            lvm.lv_remove("bench_lvmd", "vol").unwrap();
        })
    });
    lvm.vg_remove("bench_lvmd").unwrap();

    let devs: Vec<&str> = fx.devs.iter().map(|d| d.to_str().unwrap()).collect();
    fx.lvm2(&["vgcreate", "bench_lvm2", devs[0], devs[1]]);
    group.bench_function("lvm2", |b| {
        b.iter(|| {
            fx.lvm2(&[
                "lvcreate",
                "-an",
                "-Zn",
                "-L",
                "64M",
                "-n",
                "vol",
                "bench_lvm2",
            ]);
            fx.lvm2(&["lvremove", "-y", "bench_lvm2/vol"]);
        })
    });
    fx.lvm2(&["vgremove", "-f", "bench_lvm2"]);
    group.finish();
}

criterion_group!(benches, provision);
criterion_main!(benches);
