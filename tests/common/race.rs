//! The path race of issue 15, as a loop: a thread keeps exchanging a directory below the
//! mount root with a symlink to a directory outside it (renameat2 RENAME_EXCHANGE)
//! while lvmd is asked to mount on, bind from, bind onto, unmount and remove paths
//! through that name (as the final component and as a middle one). After every round
//! (the swapper paused) nothing may have been mounted, bound, unmounted or removed
//! outside the root. The same rounds run against `NodeWork` on the host
//! (tests/node_host.rs) and against the real daemon in the VM (tests/vm_daemon.rs),
//! through [`Ops`].

use lvmd::mountinfo;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What a round asks lvmd for (each a client request; errors as text).
pub trait Ops {
    /// MountVolume of a volume with a filesystem onto `target`.
    fn mount_fs(&self, target: &Path) -> Result<(), String>;
    /// BindMount of `source` onto `target`, read-write.
    fn bind(&self, source: &Path, target: &Path) -> Result<(), String>;
    /// Unmount of `target`, removing it.
    fn unmount_remove(&self, target: &Path) -> Result<(), String>;
}

/// Exchanges `dir/x` and `dir/link` again and again until stopped.
struct Swapper {
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    /// Held for each exchange, so a pause knows none is under way.
    lock: Arc<Mutex<()>>,
    swaps: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
    dir: PathBuf,
}

impl Swapper {
    fn start(dir: &Path) -> Swapper {
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(true));
        let lock = Arc::new(Mutex::new(()));
        let swaps = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, paused, lock, swaps) =
                (stop.clone(), paused.clone(), lock.clone(), swaps.clone());
            let d = std::fs::File::open(dir).unwrap();
            std::thread::spawn(move || {
                use nix::fcntl::{renameat2, RenameFlags};
                while !stop.load(Ordering::Relaxed) {
                    if paused.load(Ordering::Relaxed) {
                        std::thread::sleep(std::time::Duration::from_micros(200));
                        continue;
                    }
                    let g = lock.lock().unwrap();
                    if !paused.load(Ordering::Relaxed)
                        && renameat2(&d, "x", &d, "link", RenameFlags::RENAME_EXCHANGE).is_ok()
                    {
                        swaps.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(g);
                    std::thread::yield_now();
                }
            })
        };
        Swapper {
            stop,
            paused,
            lock,
            swaps,
            thread: Some(thread),
            dir: dir.to_owned(),
        }
    }

    fn resume(&self) {
        self.paused.store(false, Ordering::Relaxed);
    }

    /// Stops exchanging (and waits for an exchange under way).
    fn pause(&self) {
        self.paused.store(true, Ordering::Relaxed);
        drop(self.lock.lock().unwrap());
    }

    /// Makes `x` the directory again (paused, the round's mounts gone: a directory
    /// with a mount on it cannot be renamed).
    fn restore(&self) {
        let x = self.dir.join("x");
        if std::fs::symlink_metadata(&x)
            .unwrap()
            .file_type()
            .is_symlink()
        {
            let d = std::fs::File::open(&self.dir).unwrap();
            if let Err(e) = nix::fcntl::renameat2(
                &d,
                "x",
                &d,
                "link",
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            ) {
                let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
                panic!("cannot put {} back: {e}\n{mounts}", x.display());
            }
        }
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What one scenario came to.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub done: u32,
    pub refused: u32,
}

pub struct Report {
    pub scenarios: Vec<(&'static str, Tally)>,
    pub swaps: u64,
}

impl Report {
    /// (done, refused) over every scenario.
    pub fn totals(&self) -> (u32, u32) {
        self.scenarios
            .iter()
            .fold((0, 0), |(d, r), (_, t)| (d + t.done, r + t.refused))
    }
}

/// The layout below `root` (the daemon's mount root, which must exist) and next to it
/// (`outside`), and the checks.
struct Bed {
    root: PathBuf,
    root_real: PathBuf,
    outside: PathBuf,
    /// Mount ids there before the test: what the test may not see appear outside
    /// the root.
    before: BTreeSet<u64>,
}

fn mount_tmpfs(at: &Path) {
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "race-outside"])
        .arg(at)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount tmpfs on {}", at.display());
}

fn lazy_unmount(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
}

impl Bed {
    fn new(root: &Path) -> Bed {
        let root_real = root.canonicalize().unwrap();
        let outside = root_real.with_file_name(format!(
            "{}-race-outside",
            root_real.file_name().unwrap().to_string_lossy()
        ));
        for d in ["etc", "src", "tgt", "rm", "rmdir"] {
            std::fs::create_dir_all(outside.join(d)).unwrap();
        }
        std::fs::write(outside.join("etc/host-file"), b"host").unwrap();
        std::fs::write(outside.join("src/outside-marker"), b"host").unwrap();
        // A mount outside that an unmount through the symlink would take away.
        mount_tmpfs(&outside.join("rm"));
        let race = root.join("race");
        std::fs::create_dir_all(race.join("x/src")).unwrap();
        std::fs::write(race.join("x/src/inside-marker"), b"pod").unwrap();
        std::os::unix::fs::symlink(&outside, race.join("link")).unwrap();
        std::fs::create_dir_all(root.join("stable-src")).unwrap();
        std::fs::create_dir_all(root.join("binds")).unwrap();
        let before = mountinfo::read().unwrap().iter().map(|m| m.id).collect();
        Bed {
            root: root.to_owned(),
            root_real,
            outside,
            before,
        }
    }

    /// The checks after each round (swapper paused), then the round's mounts undone.
    fn check_and_clean(&self, what: &str, round: usize) {
        let now = mountinfo::read().unwrap();
        for m in now.iter().filter(|m| !self.before.contains(&m.id)) {
            assert!(
                m.point.starts_with(&self.root_real),
                "{what}, round {round}: {} ({}) was mounted OUTSIDE the root {}",
                m.point.display(),
                m.source,
                self.root_real.display()
            );
        }
        let o = &self.outside;
        for f in ["etc/host-file", "src/outside-marker", "tgt", "rmdir"] {
            assert!(
                o.join(f).exists(),
                "{what}, round {round}: {} was removed",
                o.join(f).display()
            );
        }
        assert!(
            now.iter().any(|m| m.point == o.join("rm")),
            "{what}, round {round}: the mount at {} was taken away",
            o.join("rm").display()
        );
        // What the round mounted below the root goes, deepest first.
        let mut mine: Vec<&mountinfo::Mount> = now
            .iter()
            .filter(|m| !self.before.contains(&m.id))
            .collect();
        mine.sort_by_key(|m| std::cmp::Reverse(m.point.components().count()));
        for m in mine {
            lazy_unmount(&m.point);
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        // After a failed check too: whatever appeared, wherever it is.
        if let Ok(now) = mountinfo::read() {
            let mut new: Vec<_> = now
                .into_iter()
                .filter(|m| !self.before.contains(&m.id))
                .collect();
            new.sort_by_key(|m| std::cmp::Reverse(m.point.components().count()));
            for m in new {
                lazy_unmount(&m.point);
            }
        }
        lazy_unmount(&self.outside.join("rm"));
        let _ = std::fs::remove_dir_all(&self.outside);
    }
}

/// The scenarios, by name.
pub const SCENARIOS: [&str; 5] = [
    MOUNT_LAST,
    MOUNT_MIDDLE,
    BIND_SOURCE,
    BIND_TARGET,
    UNMOUNT_REMOVE,
];
const MOUNT_LAST: &str = "MountVolume, swapped last component";
const MOUNT_MIDDLE: &str = "MountVolume, swapped middle component";
const BIND_SOURCE: &str = "BindMount, swapped source";
const BIND_TARGET: &str = "BindMount, swapped target";
const UNMOUNT_REMOVE: &str = "Unmount with remove_target, swapped middle component";

/// Runs every scenario `rounds` times against `ops`; panics on any escape.
pub fn race(ops: &dyn Ops, root: &Path, rounds: usize) -> Report {
    race_only(ops, root, rounds, &SCENARIOS)
}

/// Runs the scenarios named in `only`.
pub fn race_only(ops: &dyn Ops, root: &Path, rounds: usize, only: &[&str]) -> Report {
    let bed = Bed::new(root);
    let race = bed.root.join("race");
    let swapper = Swapper::start(&race);
    let mut scenarios = Vec::new();
    let x = race.join("x");
    let scenario = |name: &'static str,
                    prepare: &dyn Fn(usize),
                    op: &dyn Fn(usize) -> Result<(), String>,
                    check: &dyn Fn(usize)| {
        if !only.contains(&name) {
            return None;
        }
        let mut t = Tally::default();
        let mut first_refusal = None;
        for round in 0..rounds {
            prepare(round);
            swapper.resume();
            let r = op(round);
            swapper.pause();
            check(round);
            bed.check_and_clean(name, round);
            swapper.restore();
            match r {
                Ok(()) => t.done += 1,
                Err(e) => {
                    t.refused += 1;
                    first_refusal.get_or_insert(e);
                }
            }
        }
        eprintln!(
            "race {name}: {} done, {} refused of {rounds} (first refusal: {})",
            t.done,
            t.refused,
            first_refusal.as_deref().unwrap_or("none")
        );
        Some((name, t))
    };
    let nothing = |_: usize| {};

    scenarios.extend(scenario(
        MOUNT_LAST,
        &nothing,
        &|_| ops.mount_fs(&x),
        &nothing,
    ));
    scenarios.extend(scenario(
        MOUNT_MIDDLE,
        &nothing,
        &|_| ops.mount_fs(&x.join("etc")),
        &nothing,
    ));
    let bind_target = bed.root.join("binds/b");
    scenarios.extend(scenario(
        BIND_SOURCE,
        &nothing,
        &|_| ops.bind(&x.join("src"), &bind_target),
        &|round| {
            let bound: Vec<_> = std::fs::read_dir(&bind_target)
                .map(|d| d.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(
                !bound.iter().any(|n| n == "outside-marker"),
                "BindMount, round {round}: a directory outside the root was bound at {}",
                bind_target.display()
            );
        },
    ));
    let stable = bed.root.join("stable-src");
    scenarios.extend(scenario(
        BIND_TARGET,
        &nothing,
        &|_| ops.bind(&stable, &x.join("tgt")),
        &nothing,
    ));
    // Alternately a target whose outside twin is a mount point and one whose twin is
    // an empty directory.
    let name = |round: usize| if round % 2 == 0 { "rm" } else { "rmdir" };
    scenarios.extend(scenario(
        UNMOUNT_REMOVE,
        &|round| {
            let t = x.join(name(round));
            std::fs::create_dir_all(&t).unwrap();
            if round % 4 == 0 {
                mount_tmpfs(&t);
            }
        },
        &|round| ops.unmount_remove(&x.join(name(round))),
        &nothing,
    ));
    let swaps = swapper.swaps.load(Ordering::Relaxed);
    drop(swapper);
    Report { scenarios, swaps }
}
