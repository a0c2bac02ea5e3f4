//! Crash points for tests: `LVMD_TEST_CRASH_AFTER=<point>` makes the daemon kill itself
//! with SIGKILL there, the first time it gets there, as a power cut or `kill -9` would;
//! `<point>@<n>`, the n-th time (a later commit, one of a group of edits).
//! Unset (always, outside tests) nothing happens.
//!
//! Points inside a metadata commit (through the `Lvm` library's fault injector):
//! `text` (the new text is in the first metadata area, no header points at it),
//! `synced` (every new text written and flushed, headers still old), `header` (the
//! first header points at the new text, the others not yet). Points of the engine
//! (`src/daemon/volumes.rs`): `committed` (a create, resize or remove is committed,
//! before the table reload of a resize and before answering), `deactivated` (a remove
//! took the device away, the metadata still has the LV), `zeroing` (the first chunk of
//! an inline removal's zeroing written), `zeroed` (an inline removal zeroed, not yet
//! committed), `cleared` (a new LV's edges cleared, before answering), `activated` (a
//! mirror activated, before the commit that drops its first-load flags: `REBUILD`, an
//! integrity layer's `recalculate`), `converted` (a mirror's legs added or removed in
//! the metadata, removed legs kept as wipe LVs, before the table reload;
//! `src/daemon/raid_legs.rs`), `convert-reloaded` (the raid table reloaded with the new
//! legs or without the removed ones, before an addition's commit dropping `REBUILD`),
//! `wipe-chunk`
//! (the first chunk of a background wipe written), `wiped` (a background wipe zeroed,
//! its LV not yet removed); and of staging: `mkfs-marked` (`lvmd.mkfs=` committed,
//! mkfs not run), `formatted` (mkfs done, not yet marked), `fs-marked` (`lvmd.fs=`
//! committed, not yet mounted); and of encryption: `luks-marked` (`lvmd.mkluks=`
//! committed, no LUKS header yet), `luks-formatted` (LUKS2-formatted, still marked
//! `lvmd.mkluks=`, never opened), `rekey-added` (a rekey's new key is in its keyslot,
//! the old key's not yet destroyed); and of thin volumes (`src/daemon/thin.rs`):
//! `thin-committed` (a thin create or remove committed with its pool message recorded,
//! the message not sent), `thin-sent` (the message reached the pool, its record not yet
//! committed away), `thin-recorded` (the record dropped, before answering),
//! `pool-committed` (a class's new pool committed marked fresh, its `_tmeta` not yet
//! zeroed), `pool-cleared` (zeroed, the mark not yet dropped); and of snapshots
//! (`src/daemon/snapshots.rs`), the same three steps of a thin create: `snap-committed`,
//! `snap-sent`, `snap-recorded` (a snapshot), `clone-committed`, `clone-sent`,
//! `clone-recorded` (a volume made from a snapshot or volume); a snapshot's deletion
//! is a thin removal (`thin-*`); and of group snapshots (`src/daemon/snapshot_groups.rs`):
//! `group-committed` (every snapshot of the group committed with its `create` recorded
//! in one pool transaction, nothing sent), `group-sent` (the sources suspended, every
//! `create_snap` and the transaction id sent, the sources resumed; the record not yet
//! committed away), `group-recorded` (the record dropped, before answering); a group's
//! deletion is one thin removal per snapshot (`thin-*`); and of copy-on-write
//! snapshots of thick volumes (`src/daemon/snapshots.rs`): `cow-committed` (committed marked `lvmd.cow-pending`,
//! its store's header zeroed, not yet active with its active origin), `cow-activated`
//! (active with its origin, still marked), `cow-recorded` (the mark dropped, before
//! answering), `cow-removed` (a deletion committed, its devices not yet released, the
//! origin still layered); and of restores from them: `restore-committed` (the new
//! volume committed marked `lvmd.copying`, nothing copied), `restore-copied` (every
//! byte copied and flushed, still marked), `restore-recorded` (the mark dropped, before
//! answering).
//!
//! `LVMD_TEST_HOLD_WIPES=<file>`: background wipes wait while that file exists, so a
//! test can look at a wipe in progress on devices that zero too fast to catch.
//! `LVMD_TEST_HOLD_BACKUPS=<file>`: lvm2's backup and archive files of answered commits
//! wait while that file exists, so a test can kill the daemon between an answer and
//! its backup (`store::backup_writer`).

use crate::lvm::FaultInjector;
use crate::store::CommitStep;
use std::sync::{Arc, OnceLock};

pub const ENV: &str = "LVMD_TEST_CRASH_AFTER";

/// The point asked for, and at which arrival there to die (`<point>@<n>`: the n-th;
/// else the first).
fn wanted() -> Option<(&'static str, u64)> {
    static WANTED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    WANTED
        .get_or_init(|| {
            let v = std::env::var(ENV).ok().filter(|s| !s.is_empty())?;
            Some(match v.split_once('@') {
                Some((p, n)) => (p.to_owned(), n.parse().ok().filter(|n| *n > 0)?),
                None => (v, 1),
            })
        })
        .as_ref()
        .map(|(p, n)| (p.as_str(), *n))
}

/// Dies here if the crash point asked for is `name` (and this is the arrival asked for).
pub fn point(name: &str) {
    static ARRIVALS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Some((_, nth)) = wanted().filter(|(p, _)| *p == name) else {
        return;
    };
    if ARRIVALS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == nth {
        tracing::error!(point = name, "{ENV}: killing myself with SIGKILL");
        // SAFETY: kill(2) on our own pid.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        // SIGKILL cannot be caught; should it not be delivered at once, stop anyway.
        std::process::abort();
    }
}

pub const HOLD_ENV: &str = "LVMD_TEST_HOLD_WIPES";
pub const HOLD_BACKUPS_ENV: &str = "LVMD_TEST_HOLD_BACKUPS";

/// Waits while the file [`HOLD_ENV`] names exists (tests only; unset: returns at once).
pub fn hold_wipes() {
    static HOLD: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    hold(&HOLD, HOLD_ENV, "background wipes");
}

/// Waits while the file [`HOLD_BACKUPS_ENV`] names exists: lvm2's backup files of the
/// commits answered meanwhile are not written (tests only; unset: returns at once).
pub fn hold_backups() {
    static HOLD: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    hold(&HOLD, HOLD_BACKUPS_ENV, "backup writes");
}

fn hold(cell: &OnceLock<Option<std::path::PathBuf>>, env: &str, what: &str) {
    let Some(path) = cell.get_or_init(|| {
        std::env::var_os(env)
            .filter(|s| !s.is_empty())
            .map(Into::into)
    }) else {
        return;
    };
    if path.exists() {
        tracing::warn!(file = %path.display(), "{env}: {what} wait for the file to go");
        while path.exists() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// The commit hook for the library, when a commit step is asked for.
pub fn injector() -> Option<FaultInjector> {
    let (w, _) = wanted()?;
    if !matches!(w, "text" | "synced" | "header") {
        return None;
    }
    Some(FaultInjector(Arc::new(|step| {
        point(match step {
            CommitStep::TextWritten { .. } => "text",
            CommitStep::TextsSynced => "synced",
            CommitStep::HeaderWritten { .. } => "header",
        });
        true
    })))
}
