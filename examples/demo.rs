//! The demo the README's first command runs: lvmd makes a volume group on two
//! file-backed loop devices, adds, grows and removes volumes, and shows what is on disk,
//! first as lvmd-ctl inspect reads it, then as Debian's lvm2 reads it.

use lvmd::lvm::{Layout, Lvm};
use lvmd::store::backup::BackupDirs;
use lvmd::units::{Bytes, ExtentSize, Sectors};
use std::path::{Path, PathBuf};
use std::process::Command;

fn attach(file: &Path) -> Result<PathBuf, String> {
    lvmd_sys::loopdev::attach(file, &lvmd_sys::loopdev::LoopOptions::default())
        .map(|d| d.into_path())
        .map_err(|e| format!("attach {} to a loop device: {e}", file.display()))
}

fn step(what: &str) {
    println!("\n==> {what}");
}

fn run(dir: &Path, devs: &[PathBuf]) -> Result<(), Box<dyn std::error::Error>> {
    let mut lvm = Lvm::new(devs.to_vec());
    lvm.backup = Some(BackupDirs {
        backup: dir.join("backup"),
        archive: Some(dir.join("archive")),
    });
    let vg = "lvmd_demo";
    step(&format!("vgcreate {vg} on {devs:?}"));
    lvm.vg_create(vg, devs, ExtentSize::DEFAULT)?;
    step("lvcreate data (40MiB linear) and fast (32MiB striped over 2 PVs, 64KiB stripes)");
    lvm.lv_create(
        vg,
        "data",
        Bytes(40 << 20),
        Layout::Linear,
        &["app=demo".into()],
    )?;
    let striped = Layout::Striped {
        stripes: 2,
        stripe_size: Sectors(128),
    };
    lvm.lv_create(vg, "fast", Bytes(32 << 20), striped, &[])?;
    step("lvresize data to 80MiB (it now spans both PVs)");
    lvm.lv_resize(vg, "data", Bytes(80 << 20))?;
    step("lvmd-ctl inspect");
    print!("{}", lvmd::inspect::inspect(devs).to_text());
    step("lvm2 reads the same (lvs, activation off)");
    let filter: Vec<String> = devs
        .iter()
        .map(|d| format!("\"a|^{}$|\"", d.display()))
        .collect();
    let config = format!(
        "global{{activation=0}} devices{{filter=[{}, \"r|.*|\"] use_devicesfile=0}}",
        filter.join(",")
    );
    match Command::new("lvm")
        .args([
            "lvs",
            "-o",
            "lv_name,lv_size,segtype,stripes,seg_pe_ranges",
            "--config",
            &config,
            vg,
        ])
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .status()
    {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(format!("lvm2's lvs failed: {s}").into()),
        Err(e) => println!("(lvm2 not installed: {e})"),
    }
    step("lvremove fast, data; vgremove");
    lvm.lv_remove(vg, "fast")?;
    lvm.lv_remove(vg, "data")?;
    lvm.vg_remove(vg)?;
    println!("\ndemo finished: every step above was written by lvmd itself");
    Ok(())
}

fn main() -> std::process::ExitCode {
    let dir = std::env::temp_dir().join(format!("lvmd-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut devs = Vec::new();
    let mut result: Result<(), Box<dyn std::error::Error>> = Ok(());
    for i in 0..2 {
        let file = dir.join(format!("disk{i}.img"));
        let f = std::fs::File::create(&file).expect("create image");
        f.set_len(64 << 20).expect("size image");
        match attach(&file) {
            Ok(d) => devs.push(d),
            Err(e) => {
                result = Err(e.into());
                break;
            }
        }
    }
    if result.is_ok() {
        result = run(&dir, &devs);
    }
    for d in &devs {
        let _ = lvmd_sys::loopdev::detach(d);
    }
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
