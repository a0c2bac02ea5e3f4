//! lvm2's backup and archive files written after a commit instead of inside it, so the
//! caller is answered without waiting for them (rendering the backup layout of a large
//! VG and flushing the file cost more than the metadata commit itself).
//!
//! Nothing the metadata's crash safety needs is here: the files are for `vgcfgrestore`.
//! What a crash between a commit and its backup loses, start-up restores before the
//! daemon serves: [`BackupDirs::refresh`] rewrites a backup older than its VG (lvm2
//! does the same when it next reads the VG). Versions the writer had not written yet
//! are missing from the archive, at most [`MAX_PENDING`] of them; the VG itself is not
//! affected.
//!
//! Each job archives the version its commit replaced (a hard link to the backup file,
//! which holds that version when the writer wrote the one before), then writes the new
//! version as the backup. Jobs run in commit order, on one thread.

use super::backup::BackupDirs;
use crate::model::render::Rendered;
use crate::model::{TextHeader, VolumeGroup};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

/// Commits whose files may wait at once; one more waits for room (it holds the models
/// of the versions it keeps alive, so memory stays bounded in a long burst).
pub const MAX_PENDING: usize = 16;

/// One version of a VG, as committed.
#[derive(Clone)]
pub struct Version {
    pub vg: Arc<VolumeGroup>,
    pub header: TextHeader,
}

struct Job {
    /// The version the commit replaced, to archive; `None` for a new VG.
    old: Option<Version>,
    new: Version,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// The thread is writing a job taken off `jobs`.
    busy: bool,
    started: bool,
}

/// Called by the writer's thread: before each job (tests hold the writer with it), and
/// when it has written everything queued.
pub type Hook = Box<dyn Fn() + Send + Sync>;

pub struct BackupWriter {
    dirs: BackupDirs,
    queue: Mutex<Queue>,
    /// Per VG, the last backup written as rendered and the version it holds: the next
    /// backup copies the text of the LVs unchanged since (`model::render`).
    last: Mutex<HashMap<String, (Arc<VolumeGroup>, Rendered)>>,
    changed: Condvar,
    before_write: Option<Hook>,
    when_idle: Option<Hook>,
}

impl std::fmt::Debug for BackupWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupWriter")
            .field("dirs", &self.dirs)
            .finish_non_exhaustive()
    }
}

impl BackupWriter {
    pub fn new(
        dirs: BackupDirs,
        before_write: Option<Hook>,
        when_idle: Option<Hook>,
    ) -> Arc<BackupWriter> {
        Arc::new(BackupWriter {
            dirs,
            queue: Mutex::default(),
            last: Mutex::default(),
            changed: Condvar::new(),
            before_write,
            when_idle,
        })
    }

    pub fn dirs(&self) -> &BackupDirs {
        &self.dirs
    }

    /// Queues the files of one commit: `old` archived, `new` backed up. Waits while
    /// [`MAX_PENDING`] commits are queued.
    pub fn submit(self: &Arc<Self>, old: Option<Version>, new: Version) {
        let mut q = self.queue.lock().unwrap();
        while q.jobs.len() >= MAX_PENDING {
            q = self.changed.wait(q).unwrap();
        }
        q.jobs.push_back(Job { old, new });
        if !q.started {
            q.started = true;
            let me = Arc::clone(self);
            std::thread::Builder::new()
                .name("lvmd-backup".into())
                .spawn(move || me.run())
                .expect("spawn the backup writer");
        }
        self.changed.notify_all();
    }

    /// Waits until every job queued so far is written (before a VG's backup is
    /// removed, at shutdown).
    pub fn flush(&self) {
        let mut q = self.queue.lock().unwrap();
        while !q.jobs.is_empty() || q.busy {
            q = self.changed.wait(q).unwrap();
        }
    }

    /// Drops what is kept of `vg_name`'s last backup (the VG is gone).
    pub fn forget(&self, vg_name: &str) {
        self.last.lock().unwrap().remove(vg_name);
    }

    fn run(&self) {
        loop {
            let job = {
                let mut q = self.queue.lock().unwrap();
                loop {
                    if let Some(job) = q.jobs.pop_front() {
                        q.busy = true;
                        break job;
                    }
                    q = self.changed.wait(q).unwrap();
                }
            };
            if let Some(hook) = &self.before_write {
                hook();
            }
            self.write(&job);
            drop(job);
            let idle = {
                let mut q = self.queue.lock().unwrap();
                q.busy = false;
                q.jobs.is_empty()
            };
            self.changed.notify_all();
            if let Some(hook) = self.when_idle.as_ref().filter(|_| idle) {
                hook();
            }
        }
    }

    /// The commit is done whatever happens here: a failure is a warning, as lvm2 gives
    /// one when its backup after a commit fails, and the next commit or start-up
    /// writes the backup again.
    fn write(&self, job: &Job) {
        let vg = &job.new.vg.name;
        if let Some(old) = &job.old {
            if let Err(e) = self.dirs.archive(&old.vg, &old.header) {
                tracing::warn!(vg, seqno = old.vg.seqno, "could not archive metadata: {e}");
            }
        }
        let mut last = self.last.lock().unwrap();
        let previous = last
            .get(vg)
            .map(|(version, rendered)| rendered.previous(version));
        match self
            .dirs
            .write_backup_unless_newer(&job.new.vg, &job.new.header, previous)
        {
            Ok(Some(rendered)) => {
                last.insert(vg.clone(), (Arc::clone(&job.new.vg), rendered));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                vg,
                seqno = job.new.vg.seqno,
                "could not back up metadata: {e}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::text::parse;
    use std::path::Path;

    fn fixture() -> Version {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/lvm2/simple/vgcfgbackup.txt");
        let text = std::fs::read_to_string(p).unwrap();
        let (vg, header) = VolumeGroup::from_document(&parse(&text).unwrap()).unwrap();
        Version {
            vg: Arc::new(vg),
            header,
        }
    }

    fn bump(v: &Version, tag: &str) -> Version {
        let mut vg = VolumeGroup::clone(&v.vg);
        vg.seqno += 1;
        vg.tags.push(tag.into());
        Version {
            vg: Arc::new(vg),
            header: v.header.clone(),
        }
    }

    #[test]
    fn queued_commits_are_archived_and_backed_up_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = BackupDirs {
            backup: dir.path().join("backup"),
            archive: Some(dir.path().join("archive")),
        };
        // Held until released, so every job is queued before the first is written.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Mutex::new(rx);
        let hold: Hook = Box::new(move || {
            let _ = rx.lock().unwrap().recv();
        });
        let w = BackupWriter::new(dirs.clone(), Some(hold), None);
        let v1 = fixture();
        let v2 = bump(&v1, "two");
        let v3 = bump(&v2, "three");
        w.submit(None, v1.clone());
        w.submit(Some(v1.clone()), v2.clone());
        w.submit(Some(v2.clone()), v3.clone());
        assert_eq!(dirs.backup_version(&v1.vg.name), None);
        for _ in 0..3 {
            tx.send(()).unwrap();
        }
        w.flush();
        assert_eq!(
            dirs.backup_version(&v3.vg.name),
            Some((v3.vg.id.to_string(), v3.vg.seqno))
        );
        let mut archived: Vec<_> = std::fs::read_dir(dir.path().join("archive"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        archived.sort();
        let seqnos: Vec<u64> = archived
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).unwrap();
                let (vg, _) = VolumeGroup::from_document(&parse(&text).unwrap()).unwrap();
                vg.seqno
            })
            .collect();
        assert_eq!(seqnos, [v1.vg.seqno, v2.vg.seqno]);
    }

    #[test]
    fn a_stale_backup_is_archived_and_rewritten_a_newer_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = BackupDirs {
            backup: dir.path().join("backup"),
            archive: Some(dir.path().join("archive")),
        };
        let v1 = fixture();
        let v2 = bump(&v1, "two");
        dirs.write_backup(&v1.vg, &v1.header).unwrap();
        // As after a crash between the commit of v2 and its backup.
        assert!(dirs.refresh(&v2.vg, &v2.header).unwrap());
        assert_eq!(
            dirs.backup_version(&v2.vg.name),
            Some((v2.vg.id.to_string(), v2.vg.seqno))
        );
        let archived: Vec<_> = std::fs::read_dir(dir.path().join("archive"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        assert_eq!(archived.len(), 1);
        assert!(!archived[0].contains("\"two\""), "{}", archived[0]);
        // Current: nothing to do. Newer than the version given: left alone.
        assert!(!dirs.refresh(&v2.vg, &v2.header).unwrap());
        assert!(!dirs.refresh(&v1.vg, &v1.header).unwrap());
        assert!(dirs
            .write_backup_unless_newer(&v1.vg, &v1.header, None)
            .unwrap()
            .is_none());
        assert_eq!(
            dirs.backup_version(&v2.vg.name),
            Some((v2.vg.id.to_string(), v2.vg.seqno))
        );
    }
}
