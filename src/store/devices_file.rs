//! lvm2's devices file (`/etc/lvm/devices/system.devices`, lvm2 2.03.12 and later).
//!
//! With `devices/use_devicesfile=1` (the default on RHEL 9 and Fedora) lvm2 uses only the
//! devices listed there, so a PV missing from it is invisible to `pvs`, `vgs` and `lvs`.
//! lvm2's pvcreate, vgcreate and vgextend add an entry for each PV they create or put in
//! a VG; lvmd does the same whenever the file exists. It never creates the file: lvmd
//! reads no lvm.conf, and an absent file means lvm2 either does not use one or would
//! create it itself with every PV it finds.
//!
//! The format, as lvm2 2.03.16 writes it (`lib/device/device_id.c`, checked against
//! what its `pvcreate` wrote for a loop device):
//!
//! ```text
//! # LVM uses devices listed in this file.
//! # Created by LVM command pvcreate pid 25778 at Wed Nov 25 13:28:56 2026
//! VERSION=1.1.1
//! IDTYPE=loop_file IDNAME=/tmp/a.img DEVNAME=/dev/loop1 PVID=aciALG2SfJz8fSvFmw56axvmijdZWMSD
//! ```
//!
//! Lines starting with `#` are comments. `VERSION=major.minor.counter`: every writer adds
//! one to the counter, which is how lvm2 notices that the file changed under it; lvm2
//! refuses to change a file whose version it cannot parse or whose major number is newer
//! than 1, and so does lvmd. An entry has `IDTYPE` (how lvm2 recognises the device:
//! `sys_wwid`, `sys_serial`, `mpath_uuid`, `crypt_uuid`, `lvmlv_uuid`, `md_uuid`,
//! `loop_file` or `devname`), `IDNAME` (that identity, whitespace turned into `_`),
//! `DEVNAME` (where it was last seen, a hint lvm2 corrects), `PVID` (the PV uuid without
//! dashes, `.` for none) and, for a partition, `PART=<number>`. Older versions wrote a
//! `SYSTEMID=` line; newer ones write `HOSTNAME=` or `PRODUCT_UUID=`, `REFRESH_UNTIL=`,
//! and a `# HASH=<crc>` comment: lvm2's metadata checksum over the lines that are not
//! comments (`SYSTEMID` lines left out), which lvmd recomputes when the file has one so
//! that newer lvm2 does not take lvmd's edit for a hand edit.
//!
//! Edits keep every other line as it was. The file is replaced atomically (`<name>_new`,
//! fsync, rename, fsync of the directory, as lvm2 does) under lvm2's lock for it (see
//! [`super::lock::Locker::lock_devices_file`]).

use super::lock::Locker;
use crate::format::crc::{calc_crc, INITIAL_CRC};
use crate::uuid::Uuid;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// lvm2's `<system_dir>/devices`.
pub const DEFAULT_DIR: &str = "/etc/lvm/devices";
/// lvm2's default `devices/devicesfile`.
pub const DEFAULT_NAME: &str = "system.devices";

/// The highest major version lvm2 (and so lvmd) writes and will change.
const MAJOR: u32 = 1;
const MINOR: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DevicesFileError {
    #[error("{path}: cannot {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("its VERSION line {0:?} is not major.minor.counter; not changing it")]
    BadVersion(String),
    #[error("its version {0}.x is newer than this lvmd understands; not changing it")]
    NewerMajor(u32),
}

/// One device entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub idtype: String,
    pub idname: String,
    /// `.` when unknown.
    pub devname: String,
    /// The PV uuid without dashes; `.` when the device is no PV (after lvm2's pvremove).
    pub pvid: String,
    /// Partition number, for a partition.
    pub part: Option<u32>,
}

impl Entry {
    /// lvm2's line for it.
    pub fn to_line(&self) -> String {
        let mut s = format!(
            "IDTYPE={} IDNAME={} DEVNAME={} PVID={}",
            field(&self.idtype),
            field(&self.idname),
            field(&self.devname),
            field(&self.pvid)
        );
        if let Some(p) = self.part.filter(|p| *p != 0) {
            s.push_str(&format!(" PART={p}"));
        }
        s
    }

    /// Reads an entry line; `None` for comments and lines without IDTYPE and IDNAME
    /// (which lvm2 ignores too).
    pub fn parse(line: &str) -> Option<Entry> {
        if line.starts_with('#') {
            return None;
        }
        let get = |key: &str| {
            line.split_ascii_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
        };
        let idtype = get("IDTYPE")?;
        let idname = get("IDNAME")?;
        Some(Entry {
            idtype,
            idname,
            devname: get("DEVNAME").unwrap_or_else(|| ".".into()),
            pvid: get("PVID").unwrap_or_else(|| ".".into()),
            part: get("PART").and_then(|p| p.parse().ok()),
        })
    }

    fn same_device(&self, other: &Entry) -> bool {
        self.idtype == other.idtype
            && self.idname == other.idname
            && self.part.unwrap_or(0) == other.part.unwrap_or(0)
    }
}

/// A value as lvm2 writes it: one word, `.` for nothing.
fn field(v: &str) -> String {
    if v.is_empty() {
        return ".".into();
    }
    v.chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The file's lines, kept as read except those lvmd changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DevicesFile {
    lines: Vec<String>,
}

impl DevicesFile {
    pub fn parse(text: &str) -> DevicesFile {
        DevicesFile {
            lines: text.lines().map(str::to_owned).collect(),
        }
    }

    /// The text; every line ends with a newline.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for l in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.lines.iter().filter_map(|l| Entry::parse(l)).collect()
    }

    fn version_index(&self) -> Option<usize> {
        self.lines.iter().position(|l| l.starts_with("VERSION"))
    }

    /// `(major, minor, counter)`; `None` when there is no VERSION line.
    pub fn version(&self) -> Result<Option<(u32, u32, u32)>, DevicesFileError> {
        let Some(i) = self.version_index() else {
            return Ok(None);
        };
        let line = &self.lines[i];
        let bad = || DevicesFileError::BadVersion(line.clone());
        let value = line
            .split_once('=')
            .ok_or_else(bad)?
            .1
            .split_ascii_whitespace()
            .next()
            .ok_or_else(bad)?;
        let nums: Vec<u32> = value
            .split('.')
            .map(|n| n.parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        match nums[..] {
            [major, minor, counter] => Ok(Some((major, minor, counter))),
            _ => Err(bad()),
        }
    }

    /// Whether lvmd may change the file, as lvm2 decides before writing it.
    pub fn check_writable(&self) -> Result<(), DevicesFileError> {
        match self.version()? {
            Some((major, _, _)) if major > MAJOR => Err(DevicesFileError::NewerMajor(major)),
            _ => Ok(()),
        }
    }

    /// Records `entry`. An entry for the same device (same IDTYPE, IDNAME and PART) is
    /// replaced in place, whatever PV it named before. Returns whether anything changed.
    /// An entry with the same PVID on another device stays: lvm2 too keeps both for
    /// duplicate PVs.
    pub fn add(&mut self, entry: &Entry) -> bool {
        let line = entry.to_line();
        let found = self
            .lines
            .iter()
            .position(|l| Entry::parse(l).is_some_and(|e| e.same_device(entry)));
        match found {
            Some(i) if self.lines[i] == line => false,
            Some(i) => {
                self.lines[i] = line;
                // A second entry for the same device would only confuse lvm2.
                let later = self.lines.split_off(i + 1);
                self.lines.extend(
                    later
                        .into_iter()
                        .filter(|l| !Entry::parse(l).is_some_and(|e| e.same_device(entry))),
                );
                true
            }
            None => {
                self.lines.push(line);
                true
            }
        }
    }

    /// Drops the entries naming PV `pvid` (compact form). Returns whether any did.
    pub fn remove_pvid(&mut self, pvid: &str) -> bool {
        let before = self.lines.len();
        self.lines
            .retain(|l| Entry::parse(l).is_none_or(|e| e.pvid != pvid));
        self.lines.len() != before
    }

    /// Adds one to the VERSION counter (lvm2's major.minor), adding the line if missing,
    /// and brings a `# HASH=` comment up to date.
    pub fn bump_version(&mut self) -> Result<(), DevicesFileError> {
        self.check_writable()?;
        let counter = self.version()?.map_or(0, |(_, _, c)| c);
        let line = format!("VERSION={MAJOR}.{MINOR}.{}", counter.wrapping_add(1));
        match self.version_index() {
            Some(i) => self.lines[i] = line,
            None => {
                let at = self
                    .lines
                    .iter()
                    .position(|l| !l.starts_with('#'))
                    .unwrap_or(self.lines.len());
                self.lines.insert(at, line);
            }
        }
        self.update_hash();
        Ok(())
    }

    /// lvm2's hash of the file: its checksum over each line (with its newline) that is
    /// neither a comment nor a `SYSTEMID` line.
    pub fn hash(&self) -> u32 {
        self.lines
            .iter()
            .filter(|l| !l.starts_with('#') && !l.starts_with("SYSTEMID"))
            .fold(INITIAL_CRC, |h, l| {
                calc_crc(calc_crc(h, l.as_bytes()), b"\n")
            })
    }

    /// Rewrites an existing `# HASH=` comment; `# HASH=0` means "do not check" to lvm2
    /// and stays.
    fn update_hash(&mut self) {
        let hash = self.hash();
        for l in &mut self.lines {
            if l.starts_with("# HASH") && !l.starts_with("# HASH=0") {
                *l = format!("# HASH={hash}");
            }
        }
    }
}

/// Where the file is: lvm2's `devices/devicesfile` in its `<system_dir>/devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicesFileLocation {
    pub dir: PathBuf,
    pub name: String,
}

impl Default for DevicesFileLocation {
    fn default() -> Self {
        DevicesFileLocation {
            dir: DEFAULT_DIR.into(),
            name: DEFAULT_NAME.into(),
        }
    }
}

impl DevicesFileLocation {
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }
}

/// Adds an entry for each device, a PV with the given uuid, to the devices file if it
/// exists, under lvm2's lock for it; the VERSION goes up when anything changed. Returns
/// whether the file was changed.
pub fn record_pvs(
    location: &DevicesFileLocation,
    locker: &Locker,
    pvs: &[(PathBuf, Uuid)],
) -> Result<bool, DevicesFileError> {
    let path = location.path();
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| DevicesFileError::Io { path, what, source }
    };
    // Cheap test first: no file, no lock file left behind either.
    if !path.exists() {
        return Ok(false);
    }
    let lock_path = locker.dir().join(format!("D_{}", location.name));
    let _guard = locker
        .lock_devices_file(&location.name)
        .map_err(io("lock", &lock_path))?;
    let Some(mut file) = read(&path).map_err(io("read", &path))? else {
        return Ok(false);
    };
    file.check_writable()?;
    let mut changed = false;
    for (dev, uuid) in pvs {
        let mut entry = identify(Path::new("/sys"), dev).map_err(io("identify", dev))?;
        entry.pvid = uuid.compact().to_owned();
        changed |= file.add(&entry);
    }
    if changed {
        file.bump_version()?;
        write(&path, &file).map_err(io("write", &path))?;
    }
    Ok(changed)
}

/// Reads the file; `None` when it does not exist.
pub fn read(path: &Path) -> std::io::Result<Option<DevicesFile>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(DevicesFile::parse(&String::from_utf8_lossy(&bytes)))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces the file with `file` the way lvm2 does: `<path>_new` written and synced,
/// renamed over it, the directory synced. The old file's mode is kept (lvm2: 0600).
pub fn write(path: &Path, file: &DevicesFile) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mode = std::fs::metadata(path).map_or(0o600, |m| m.mode() & 0o7777);
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push("_new");
    let tmp = PathBuf::from(tmp_name);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let result = (|| {
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(file.to_text().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    std::fs::File::open(dir)?.sync_all()
}

/// How lvm2 2.03.16 names a device in the devices file (`device_id_add`): the uuid
/// device-mapper or md gives it, a loop device's backing file, else the disk's wwid or
/// serial from sysfs, else its name. `sysfs` is normally `/sys`.
pub fn identify(sysfs: &Path, dev: &Path) -> std::io::Result<Entry> {
    let meta = std::fs::metadata(dev)?;
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let canon = std::fs::canonicalize(dev)?;
    identify_numbers(sysfs, major, minor, &canon)
}

/// lvm2's fixed major numbers for loop and md devices.
const LOOP_MAJOR: u32 = 7;
const MD_MAJOR: u32 = 9;

/// [`identify`] for the device `major:minor`, known as `devname`.
pub fn identify_numbers(
    sysfs: &Path,
    major: u32,
    minor: u32,
    devname: &Path,
) -> std::io::Result<Entry> {
    let node = sysfs.join(format!("dev/block/{major}:{minor}"));
    let part = read_attr(&node, "partition").and_then(|p| p.parse().ok());
    // Like lvm2, an attribute a partition lacks is read from its disk.
    let attr = |name: &str| {
        read_attr(&node, name).or_else(|| {
            part?;
            let disk = std::fs::canonicalize(&node).ok()?.parent()?.to_path_buf();
            read_attr(&disk, name)
        })
    };
    let mut devname = devname.display().to_string();
    let dm_uuid = read_attr(&node, "dm/uuid");
    if let Some(name) = read_attr(&node, "dm/name") {
        devname = format!("/dev/mapper/{name}");
    }
    let entry = |idtype: &str, idname: String| Entry {
        idtype: idtype.into(),
        idname: field(&idname),
        devname: field(&devname),
        pvid: ".".into(),
        part,
    };
    if let Some(uuid) = dm_uuid {
        for (prefix, idtype) in [
            ("mpath-", "mpath_uuid"),
            ("CRYPT-", "crypt_uuid"),
            ("LVM-", "lvmlv_uuid"),
        ] {
            if dm_uuid_has_prefix(&uuid, prefix) {
                return Ok(entry(idtype, uuid));
            }
        }
    }
    let special = match major {
        LOOP_MAJOR => Some((
            "loop_file",
            attr("loop/backing_file").filter(|f| !f.contains("(deleted)")),
        )),
        MD_MAJOR => Some(("md_uuid", attr("md/uuid"))),
        _ => None,
    };
    let found = match special {
        Some((idtype, Some(name))) => Some((idtype, name)),
        Some((_, None)) => None,
        None => attr("device/wwid")
            .or_else(|| attr("wwid"))
            // lvm2 2.03.16 ignores QEMU's made-up wwids.
            .filter(|w| !w.contains("QEMU HARDDISK"))
            .map(|w| ("sys_wwid", w))
            .or_else(|| attr("device/serial").map(|s| ("sys_serial", s))),
    };
    Ok(match found {
        Some((idtype, name)) => entry(idtype, name),
        None => entry("devname", devname.clone()),
    })
}

/// A dm uuid starts with `prefix`, or is a kpartx partition (`part<N>-<prefix>...`) of such.
fn dm_uuid_has_prefix(uuid: &str, prefix: &str) -> bool {
    uuid.starts_with(prefix)
        || (uuid.starts_with("part")
            && uuid
                .split_once('-')
                .is_some_and(|(_, rest)| rest.starts_with(prefix)))
}

/// A sysfs attribute's first line without its newline; `None` when absent or empty.
fn read_attr(node: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(node.join(name)).ok()?;
    let line = text.lines().next().unwrap_or("").to_owned();
    (!line.is_empty()).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LVM2_WROTE: &str = "\
# LVM uses devices listed in this file.
# Created by LVM command pvcreate pid 25778 at Wed Nov 25 13:28:56 2026
VERSION=1.1.1
IDTYPE=loop_file IDNAME=/tmp/dfexp/a.img DEVNAME=/dev/loop1 PVID=aciALG2SfJz8fSvFmw56axvmijdZWMSD
";

    fn loop_entry(file: &str, dev: &str, pvid: &str) -> Entry {
        Entry {
            idtype: "loop_file".into(),
            idname: file.into(),
            devname: dev.into(),
            pvid: pvid.into(),
            part: None,
        }
    }

    #[test]
    fn reads_what_lvm2_wrote_and_adds_like_lvm2() {
        let mut f = DevicesFile::parse(LVM2_WROTE);
        assert_eq!(f.to_text(), LVM2_WROTE);
        assert_eq!(f.version().unwrap(), Some((1, 1, 1)));
        assert_eq!(
            f.entries(),
            vec![loop_entry(
                "/tmp/dfexp/a.img",
                "/dev/loop1",
                "aciALG2SfJz8fSvFmw56axvmijdZWMSD"
            )]
        );
        let b = loop_entry(
            "/tmp/dfexp/b.img",
            "/dev/loop3",
            "MXP6wI0lf0yaC3go1yushWdZrBWSjCNR",
        );
        assert!(f.add(&b));
        assert!(!f.add(&b), "adding the same entry twice changes nothing");
        f.bump_version().unwrap();
        // What lvm2's own `pvs` wrote after it had fixed up such a file.
        assert!(f.to_text().ends_with(
            "VERSION=1.1.2
IDTYPE=loop_file IDNAME=/tmp/dfexp/a.img DEVNAME=/dev/loop1 PVID=aciALG2SfJz8fSvFmw56axvmijdZWMSD
IDTYPE=loop_file IDNAME=/tmp/dfexp/b.img DEVNAME=/dev/loop3 PVID=MXP6wI0lf0yaC3go1yushWdZrBWSjCNR
"
        ));
        assert!(f.remove_pvid("aciALG2SfJz8fSvFmw56axvmijdZWMSD"));
        assert!(!f.remove_pvid("aciALG2SfJz8fSvFmw56axvmijdZWMSD"));
        assert_eq!(f.entries(), vec![b]);
    }

    #[test]
    fn same_device_is_replaced_in_place() {
        let mut f = DevicesFile::parse(
            "VERSION=1.1.7\n\
             IDTYPE=sys_wwid IDNAME=naa.1 DEVNAME=/dev/sda PVID=old PART=1\n\
             IDTYPE=sys_wwid IDNAME=naa.1 DEVNAME=/dev/sda PVID=other\n\
             IDTYPE=sys_wwid IDNAME=naa.1 DEVNAME=/dev/sdb PVID=dup PART=1\n",
        );
        let e = Entry {
            idtype: "sys_wwid".into(),
            idname: "naa.1".into(),
            devname: "/dev/sdc".into(),
            pvid: "new".into(),
            part: Some(1),
        };
        assert!(f.add(&e));
        assert_eq!(
            f.to_text(),
            "VERSION=1.1.7\n\
             IDTYPE=sys_wwid IDNAME=naa.1 DEVNAME=/dev/sdc PVID=new PART=1\n\
             IDTYPE=sys_wwid IDNAME=naa.1 DEVNAME=/dev/sda PVID=other\n"
        );
    }

    #[test]
    fn version_rules() {
        let mut f = DevicesFile::parse("# only a comment\n");
        f.bump_version().unwrap();
        assert_eq!(f.to_text(), "# only a comment\nVERSION=1.1.1\n");
        let mut f = DevicesFile::parse("VERSION=2.0.5\n");
        assert!(matches!(
            f.bump_version(),
            Err(DevicesFileError::NewerMajor(2))
        ));
        let mut f = DevicesFile::parse("VERSION=1.x\n");
        assert!(matches!(
            f.bump_version(),
            Err(DevicesFileError::BadVersion(_))
        ));
        // lvm2 writes its own major.minor whatever the file had.
        let mut f = DevicesFile::parse("VERSION=1.0.41\n");
        f.bump_version().unwrap();
        assert_eq!(f.to_text(), "VERSION=1.1.42\n");
    }

    #[test]
    fn hash_comment_follows_the_content() {
        // Text as newer lvm2 writes it; its HASH is lvm2's checksum of the last two lines.
        let body = "VERSION=1.1.3\nIDTYPE=devname IDNAME=/dev/vdb DEVNAME=/dev/vdb PVID=x\n";
        let expect = crate::format::crc::lvm_crc(body.as_bytes());
        let text = format!("# LVM uses devices listed in this file.\n# HASH=1\nSYSTEMID=a\n{body}");
        let mut f = DevicesFile::parse(&text);
        assert_eq!(f.hash(), expect, "SYSTEMID and comments are not hashed");
        f.add(&Entry {
            idtype: "devname".into(),
            idname: "/dev/vdc".into(),
            devname: "/dev/vdc".into(),
            pvid: "y".into(),
            part: None,
        });
        f.bump_version().unwrap();
        let body = "VERSION=1.1.4\nIDTYPE=devname IDNAME=/dev/vdb DEVNAME=/dev/vdb PVID=x\n\
                    IDTYPE=devname IDNAME=/dev/vdc DEVNAME=/dev/vdc PVID=y\n";
        let hash = crate::format::crc::lvm_crc(body.as_bytes());
        assert_eq!(
            f.to_text(),
            format!("# LVM uses devices listed in this file.\n# HASH={hash}\nSYSTEMID=a\n{body}")
        );
        // "# HASH=0" tells lvm2 not to check; it stays.
        let mut f = DevicesFile::parse("# HASH=0\nVERSION=1.1.1\n");
        f.bump_version().unwrap();
        assert_eq!(f.to_text(), "# HASH=0\nVERSION=1.1.2\n");
    }

    #[test]
    fn fields_are_one_word() {
        let e = Entry {
            idtype: "sys_wwid".into(),
            idname: "t10.ATA  Disk\t1".into(),
            devname: "".into(),
            pvid: ".".into(),
            part: Some(0),
        };
        assert_eq!(
            e.to_line(),
            "IDTYPE=sys_wwid IDNAME=t10.ATA__Disk_1 DEVNAME=. PVID=."
        );
        assert_eq!(Entry::parse("# IDTYPE=a IDNAME=b"), None);
        assert_eq!(Entry::parse("IDTYPE=a DEVNAME=b"), None);
        let p = Entry::parse("IDNAME=n  IDTYPE=t PART=3 FUTURE=1").unwrap();
        assert_eq!(
            (p.devname.as_str(), p.pvid.as_str(), p.part),
            (".", ".", Some(3))
        );
    }

    fn fake_sysfs(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    #[test]
    fn identifies_devices_like_lvm2() {
        let id = |files: &[(&str, &str)], major, minor, name: &str| {
            let sys = fake_sysfs(files);
            let e = identify_numbers(sys.path(), major, minor, Path::new(name)).unwrap();
            (e.idtype, e.idname, e.devname, e.part)
        };
        let s = |v: &str| v.to_string();
        assert_eq!(
            id(
                &[("dev/block/7:1/loop/backing_file", "/tmp/a b.img\n")],
                7,
                1,
                "/dev/loop1"
            ),
            (s("loop_file"), s("/tmp/a_b.img"), s("/dev/loop1"), None)
        );
        // A loop device whose file was deleted, or with none: its name.
        assert_eq!(
            id(
                &[("dev/block/7:2/loop/backing_file", "/tmp/x (deleted)\n")],
                7,
                2,
                "/dev/loop2"
            )
            .0,
            "devname"
        );
        assert_eq!(
            id(
                &[
                    ("dev/block/8:0/device/wwid", "naa.5000c500a1b2c3d4\n"),
                    ("dev/block/8:0/device/serial", "S1\n")
                ],
                8,
                0,
                "/dev/sda"
            ),
            (
                s("sys_wwid"),
                s("naa.5000c500a1b2c3d4"),
                s("/dev/sda"),
                None
            )
        );
        assert_eq!(
            id(
                &[("dev/block/259:0/wwid", "eui.0025\n")],
                259,
                0,
                "/dev/nvme0n1"
            )
            .0,
            "sys_wwid"
        );
        assert_eq!(
            id(
                &[
                    (
                        "dev/block/8:16/device/wwid",
                        "t10.ATA     QEMU HARDDISK   QM1\n"
                    ),
                    ("dev/block/8:16/device/serial", "QM1\n")
                ],
                8,
                16,
                "/dev/sdb"
            ),
            (s("sys_serial"), s("QM1"), s("/dev/sdb"), None)
        );
        assert_eq!(
            id(&[("dev/block/252:0/size", "1\n")], 252, 0, "/dev/vda"),
            (s("devname"), s("/dev/vda"), s("/dev/vda"), None)
        );
        assert_eq!(
            id(
                &[
                    ("dev/block/253:3/dm/uuid", "mpath-3600a\n"),
                    ("dev/block/253:3/dm/name", "mpatha\n")
                ],
                253,
                3,
                "/dev/dm-3"
            ),
            (
                s("mpath_uuid"),
                s("mpath-3600a"),
                s("/dev/mapper/mpatha"),
                None
            )
        );
        assert_eq!(
            id(
                &[("dev/block/253:4/dm/uuid", "part1-CRYPT-LUKS2-ab\n")],
                253,
                4,
                "/dev/dm-4"
            )
            .0,
            "crypt_uuid"
        );
        assert_eq!(
            id(&[("dev/block/9:0/md/uuid", "a1:b2\n")], 9, 0, "/dev/md0"),
            (s("md_uuid"), s("a1:b2"), s("/dev/md0"), None)
        );
    }

    #[test]
    fn a_partition_uses_its_disks_wwid() {
        let sys = fake_sysfs(&[
            ("devices/sda/device/wwid", "naa.1\n"),
            ("devices/sda/sda2/partition", "2\n"),
        ]);
        let link = sys.path().join("dev/block");
        std::fs::create_dir_all(&link).unwrap();
        std::os::unix::fs::symlink(sys.path().join("devices/sda/sda2"), link.join("8:2")).unwrap();
        let e = identify_numbers(sys.path(), 8, 2, Path::new("/dev/sda2")).unwrap();
        assert_eq!(
            e.to_line(),
            "IDTYPE=sys_wwid IDNAME=naa.1 DEVNAME=/dev/sda2 PVID=. PART=2"
        );
    }

    #[test]
    fn write_replaces_atomically_and_keeps_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("system.devices");
        assert_eq!(read(&path).unwrap(), None);
        std::fs::write(&path, LVM2_WROTE).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::write(dir.path().join("system.devices_new"), "left over").unwrap();
        let mut f = read(&path).unwrap().unwrap();
        f.bump_version().unwrap();
        write(&path, &f).unwrap();
        assert_eq!(read(&path).unwrap().unwrap(), f);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
        assert!(!dir.path().join("system.devices_new").exists());
    }

    proptest! {
        /// Whatever lines the file has, lvmd's edits keep all but the ones they are
        /// about, in order.
        #[test]
        fn unknown_lines_survive_edits(
            lines in proptest::collection::vec("[ -~]{0,40}", 0..12),
            pvid in "[a-zA-Z0-9]{32}",
        ) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let mut f = DevicesFile::parse(&text);
            prop_assert_eq!(f.to_text(), text.clone());
            let e = loop_entry("/img/lvmd-prop-test", "/dev/loop99", &pvid);
            prop_assert!(f.add(&e));
            prop_assert!(f.remove_pvid(&pvid));
            prop_assert_eq!(f.to_text(), text);
        }

        #[test]
        fn bump_keeps_other_lines(
            lines in proptest::collection::vec("[A-UW-Z#][ -~]{0,40}", 0..12),
            counter in 0u32..1_000_000,
        ) {
            let mut all = lines.clone();
            all.insert(lines.len() / 2, format!("VERSION=1.1.{counter}"));
            let text: String = all.iter().map(|l| format!("{l}\n")).collect();
            let mut f = DevicesFile::parse(&text);
            f.bump_version().unwrap();
            prop_assert_eq!(f.version().unwrap(), Some((1, 1, counter + 1)));
            let kept: Vec<String> = f
                .to_text()
                .lines()
                .filter(|l| !l.starts_with("VERSION") && !l.starts_with("# HASH"))
                .map(str::to_owned)
                .collect();
            let before: Vec<String> = lines
                .into_iter()
                .filter(|l| !l.starts_with("# HASH"))
                .collect();
            prop_assert_eq!(kept, before);
        }
    }
}
