//! Drives the host's lvm2 on loop devices and checks that our reading of its label and
//! metadata areas, and our prediction of where each next metadata text goes, match what
//! lvm2 actually wrote. Needs root, `lvm` and `losetup` (no device-mapper: activation is
//! off); skips with a printed reason otherwise.

use lvmd::format::label::{PvLabel, LABEL_SCAN_BYTES, PV_EXT_USED};
use lvmd::format::mda::{MdaError, MdaHeader, TextLocation, MDA_HEADER_SIZE};
use lvmd::units::Bytes;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    for tool in ["lvm", "losetup"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

macro_rules! skip_unless_able {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("skipping: {why}");
            return;
        }
    };
}

/// Loop devices over sparse files in a temporary directory; torn down on drop, whatever
/// lvm2 left on them.
struct Devices {
    _dir: tempfile::TempDir,
    loops: Vec<PathBuf>,
    vgs: Vec<String>,
}

impl Devices {
    fn new(sizes_mib: &[u64]) -> Option<Devices> {
        let dir = tempfile::tempdir().unwrap();
        let mut devs = Devices {
            _dir: dir,
            loops: vec![],
            vgs: vec![],
        };
        for (i, mib) in sizes_mib.iter().enumerate() {
            let img = devs._dir.path().join(format!("d{i}.img"));
            File::create(&img).unwrap().set_len(mib << 20).unwrap();
            let out = Command::new("losetup")
                .args(["-f", "--show"])
                .arg(&img)
                .output()
                .unwrap();
            if !out.status.success() {
                eprintln!(
                    "skipping: losetup failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                return None;
            }
            let dev = String::from_utf8(out.stdout).unwrap().trim().to_owned();
            devs.loops.push(PathBuf::from(dev));
        }
        Some(devs)
    }

    fn dev(&self, i: usize) -> &str {
        self.loops[i].to_str().unwrap()
    }

    /// Runs an lvm command that sees only our devices, activates nothing and writes no
    /// backups, so the host's own lvm2 state is untouched.
    fn lvm(&self, args: &[&str]) {
        let out = self.try_lvm(args);
        assert!(
            out.status.success(),
            "lvm {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn try_lvm(&self, args: &[&str]) -> std::process::Output {
        let accept: Vec<String> = self
            .loops
            .iter()
            .map(|l| format!("\"a|^{}$|\"", l.display()))
            .chain(["\"r|.*|\"".to_owned()])
            .collect();
        let filter = accept.join(",");
        let config = format!(
            "global/activation=0 backup/backup=0 backup/archive=0 devices/use_devicesfile=0 \
             devices/filter=[{filter}] devices/global_filter=[{filter}]"
        );
        Command::new("lvm")
            .arg(args[0])
            .arg("--config")
            .arg(config)
            .args(&args[1..])
            .stdin(Stdio::null())
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .output()
            .unwrap()
    }

    fn vgcreate(&mut self, name: &str, args: &[&str]) {
        let mut a = vec!["vgcreate", name];
        a.extend_from_slice(args);
        self.lvm(&a);
        self.vgs.push(name.to_owned());
    }
}

impl Drop for Devices {
    fn drop(&mut self) {
        for vg in std::mem::take(&mut self.vgs) {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.lvm(&["vgremove", "-f", &vg])
            }));
        }
        for l in &self.loops {
            let _ = Command::new("lvm")
                .args(["pvremove", "-ff", "-y", "--config"])
                .arg(format!(
                    "global/activation=0 devices/use_devicesfile=0 \
                     devices/filter=[\"a|^{0}$|\",\"r|.*|\"] \
                     devices/global_filter=[\"a|^{0}$|\",\"r|.*|\"]",
                    l.display()
                ))
                .arg(l)
                .stdin(Stdio::null())
                .output();
            let _ = Command::new("losetup").arg("-d").arg(l).status();
        }
    }
}

fn read_at(dev: &Path, at: u64, len: u64) -> Vec<u8> {
    let f = File::open(dev).unwrap();
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, at).unwrap();
    buf
}

fn label(dev: &Path) -> PvLabel {
    PvLabel::find(&read_at(dev, 0, LABEL_SCAN_BYTES as u64))
        .unwrap()
        .expect("a label")
}

fn header(dev: &Path, start: Bytes) -> (MdaHeader, Vec<u8>) {
    let raw = read_at(dev, start.0, MDA_HEADER_SIZE);
    (MdaHeader::parse(&raw, start).unwrap(), raw)
}

fn read_text(dev: &Path, loc: &TextLocation) -> Vec<u8> {
    loc.ranges()
        .flat_map(|r| read_at(dev, r.start.0, r.len.0))
        .collect()
}

/// Checks one metadata area after an lvm2 commit against what we predicted from the
/// header before it; returns the new header and where its text is.
fn check_commit(dev: &Path, before: &MdaHeader, what: &str) -> (MdaHeader, TextLocation) {
    let (after, raw) = header(dev, before.start);
    // An area being set to ignored still gets this commit's text.
    let live = after.committed_text().expect("a text");
    assert_eq!(after.live_text().is_none(), after.is_ignored());
    let text = read_text(dev, &live);
    live.verify(&text).unwrap();
    assert_eq!(text.last(), Some(&0), "{what}: the text ends with a NUL");
    assert!(!text[..text.len() - 1].contains(&0));
    let predicted = before
        .next_text_location(live.size.0)
        .unwrap_or_else(|e| panic!("{what}: we refused a text lvm2 stored: {e}"))
        .with_checksum(live.checksum);
    assert_eq!(predicted, live, "{what}: lvm2 put the text elsewhere");
    // Our header after the commit is lvm2's, byte for byte (precommit slot cleared); the
    // ignored flag is the PV's new state, which lvm2 writes along with the commit.
    let ours = before
        .with_live_text(&predicted)
        .with_ignored(after.is_ignored());
    assert_eq!(&ours.to_bytes()[..], &raw[..], "{what}: header differs");
    (after, live)
}

#[test]
fn text_placement_matches_lvm2_through_wraps() {
    skip_unless_able!();
    let Some(mut devs) = Devices::new(&[64]) else {
        return;
    };
    let dev = devs.loops[0].clone();
    let d = devs.dev(0).to_owned();
    devs.lvm(&[
        "pvcreate",
        "--metadatasize",
        "32k",
        "--dataalignment",
        "4k",
        &d,
    ]);
    let l = label(&dev);
    assert_eq!(l.ext_flags & PV_EXT_USED, 0, "an orphan PV is not used");
    assert_eq!(l.metadata_areas.len(), 1);
    let mda = l.metadata_areas[0];
    assert_eq!(mda.size, Bytes(32 << 10));
    let (mut h, _) = header(&dev, mda.offset);
    assert_eq!(h, MdaHeader::new_empty(mda.offset, mda.size));

    let vg = "lvmd_fmt_wrap";
    devs.vgcreate(vg, &["-s", "512k", &d]);
    assert!(label(&dev).is_used());
    (h, _) = check_commit(&dev, &h, "vgcreate");

    let (mut wraps, mut restarts, mut commits) = (0, 0, 1);
    let mut lvs: Vec<String> = vec![];
    // Texts grow and shrink as LVs come and go; tags vary their size further.
    for round in 0..70 {
        let what = match round % 7 {
            0..=3 => {
                let name = format!("lv{round}");
                devs.lvm(&["lvcreate", "-an", "-Zn", "-l", "1", "-n", &name, vg]);
                lvs.push(name);
                "lvcreate"
            }
            4 | 5 if !lvs.is_empty() => {
                let lv = format!("{vg}/{}", lvs[round % lvs.len()]);
                let tag = "t".repeat(1 + (round * 37) % 200);
                devs.lvm(&["lvchange", "--addtag", &tag, &lv]);
                "lvchange --addtag"
            }
            _ if !lvs.is_empty() => {
                let lv = lvs.remove(round % lvs.len());
                devs.lvm(&["lvremove", "-f", &format!("{vg}/{lv}")]);
                "lvremove"
            }
            _ => continue,
        };
        let old = h.live_text().unwrap();
        let (after, live) = check_commit(&dev, &h, &format!("round {round}: {what}"));
        if live.second.is_some() {
            wraps += 1;
        } else if live.offset.0 == MDA_HEADER_SIZE && old.offset.0 != MDA_HEADER_SIZE {
            restarts += 1;
        }
        h = after;
        commits += 1;
    }
    eprintln!("{commits} commits, {wraps} wrapped texts, {restarts} restarts at the header");
    assert!(wraps >= 2, "the buffer should have wrapped");

    // Grow the text with tags until lvm2 calls the area full; it must be exactly where
    // our size rule says so.
    let lv = format!("{vg}/{}", lvs[0]);
    for i in 0.. {
        let tag = format!("{i:04}{}", "x".repeat(1000));
        let out = devs.try_lvm(&["lvchange", "--addtag", &tag, &lv]);
        if out.status.success() {
            h = check_commit(&dev, &h, "growing tags").0;
            continue;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        // "... metadata on DEV (N bytes) exceeds maximum metadata size (M bytes)"
        let nums: Vec<u64> = err
            .split('(')
            .filter_map(|p| p.split(" bytes)").next()?.parse().ok())
            .collect();
        assert_eq!(nums.len(), 2, "unexpected lvm2 error: {err}");
        assert_eq!(nums[1], h.max_text_size());
        assert_eq!(
            h.next_text_location(nums[0]),
            Err(MdaError::MetadataAreaFull {
                needed: nums[0],
                available: nums[1]
            })
        );
        let live = h.live_text().unwrap();
        assert!(h.next_text_location(live.size.0).is_ok());
        eprintln!(
            "full at {} bytes, the last text that fit had {}",
            nums[0], live.size.0
        );
        break;
    }
    // The refused command left the header alone.
    assert_eq!(header(&dev, h.start).0, h);
}

#[test]
fn two_metadata_areas_and_ignored_ones() {
    skip_unless_able!();
    let Some(mut devs) = Devices::new(&[64, 32]) else {
        return;
    };
    let (a, b) = (devs.dev(0).to_owned(), devs.dev(1).to_owned());
    let (da, db) = (devs.loops[0].clone(), devs.loops[1].clone());
    devs.lvm(&["pvcreate", "--pvmetadatacopies", "2", &a]);
    devs.lvm(&["pvcreate", &b]);
    let la = label(&da);
    assert_eq!(la.device_size, Bytes(64 << 20));
    assert_eq!(la.metadata_areas.len(), 2);
    let (m1, m2) = (la.metadata_areas[0], la.metadata_areas[1]);
    assert_eq!(m1.offset, Bytes(4096));
    assert_eq!(m2.offset + m2.size, la.device_size, "mda2 ends the device");
    assert!(m2.offset >= la.data_areas[0].offset);
    let mb = label(&db).metadata_areas[0];

    let vg = "lvmd_fmt_two";
    let mut hs: Vec<(PathBuf, MdaHeader)> = [(&da, m1), (&da, m2), (&db, mb)]
        .into_iter()
        .map(|(dev, m)| (dev.clone(), header(dev, m.offset).0))
        .collect();
    devs.vgcreate(vg, &[&a, &b]);
    for (dev, h) in &mut hs {
        *h = check_commit(dev, h, "vgcreate").0;
    }
    devs.lvm(&["lvcreate", "-an", "-Zn", "-L", "4M", "-n", "x", vg]);
    for (dev, h) in &mut hs {
        *h = check_commit(dev, h, "lvcreate").0;
    }

    // Ignore b's area: that commit still writes b's text, and flags slot 0.
    devs.lvm(&["pvchange", "--metadataignore", "y", &b]);
    for (dev, h) in &mut hs {
        *h = check_commit(dev, h, "pvchange --metadataignore y").0;
    }
    let hb = hs[2].1.clone();
    assert!(hb.is_ignored());
    assert_eq!(hb.live_text(), None, "lvm2 does not read an ignored area");

    // Later commits leave the ignored area alone.
    devs.lvm(&["lvcreate", "-an", "-Zn", "-L", "4M", "-n", "y", vg]);
    for (dev, h) in &mut hs[..2] {
        *h = check_commit(dev, h, "lvcreate with b ignored").0;
    }
    assert_eq!(header(&db, mb.offset).0, hb);

    // Back in use: lvm2 starts b's buffer over, as if it were empty.
    devs.lvm(&["pvchange", "--metadataignore", "n", &b]);
    for (dev, h) in &mut hs {
        let (after, live) = check_commit(dev, h, "pvchange --metadataignore n");
        assert!(!after.is_ignored());
        if *dev == db {
            assert_eq!(live.offset, Bytes(MDA_HEADER_SIZE));
        }
        *h = after;
    }

    // vgremove empties the slots.
    devs.lvm(&["vgremove", "-f", vg]);
    devs.vgs.clear();
    for (dev, h) in &hs {
        let (after, _) = header(dev, h.start);
        assert_eq!(after, h.without_text());
        assert_eq!(after.live_text(), None);
    }
    assert!(!label(&da).is_used());
}
