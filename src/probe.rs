//! What a device holds, as libblkid sees it: every superblock (filesystems, RAID and
//! crypto headers, swap, LVM) and every partition table it knows, at whatever offset
//! it keeps them — the end of the device included (GPT backups, md 0.90/1.0, ...).
//! The one prober lvmd has: both "may this device become a PV?" and "what is on this
//! volume before it is mounted?" ask it.
//!
//! It is `wipefs`'s way of probing (all hits, not the one `blkid` would name):
//! superblocks with a bad checksum count, and a GPT is looked for even when its
//! protective MBR is gone (`BLKID_PARTS_FORCE_GPT`), so a table surviving only in its
//! backup at the end is found. The high-level `libblkid-rs` crate cannot set partition
//! flags, hence its `-sys` crate's bindings here, behind a small safe wrapper.

use crate::units::Bytes;
use libblkid_rs_sys as sys;
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{path}: cannot probe for signatures: {why}")]
    Probe { path: PathBuf, why: String },
}

/// What kind of thing a signature belongs to (libblkid's `USAGE`, and partition tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Filesystem,
    Raid,
    Crypto,
    PartitionTable,
    /// Swap, and anything else libblkid names.
    Other,
}

/// One signature found on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// libblkid's name: `ext4`, `xfs`, `btrfs`, `crypto_LUKS`, `linux_raid_member`,
    /// `LVM2_member`, `gpt`, `dos`, ...
    pub name: String,
    pub usage: Usage,
    /// Where its magic is, when libblkid says.
    pub offset: Option<Bytes>,
    /// A filesystem's own idea of its size (ext2/3/4 and xfs: read from the superblock).
    pub size: Option<Bytes>,
    /// libblkid accepted it despite a bad checksum.
    pub bad_checksum: bool,
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.usage {
            Usage::Filesystem => "filesystem",
            Usage::Raid => "RAID member signature",
            Usage::Crypto => "encryption header",
            Usage::PartitionTable => "partition table",
            Usage::Other => "signature",
        };
        let article = if self.name.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        write!(f, "{article} {} {what}", self.name)?;
        if let Some(o) = self.offset {
            write!(f, " at byte {}", o.0)?;
        }
        if self.bad_checksum {
            f.write_str(" (bad checksum)")?;
        }
        Ok(())
    }
}

/// Everything found on one device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    /// `None` only where the device has no known size (the simulated node's devices
    /// before a test gives them one).
    pub device_size: Option<Bytes>,
    pub signatures: Vec<Signature>,
}

impl Contents {
    pub fn is_empty(&self) -> bool {
        self.signatures.is_empty()
    }
    /// The filesystem called `name`, if found.
    pub fn filesystem(&self, name: &str) -> Option<&Signature> {
        self.signatures
            .iter()
            .find(|s| s.usage == Usage::Filesystem && s.name == name)
    }
    /// What was found, in words: "nothing", or the signatures joined.
    pub fn describe(&self) -> String {
        describe(&self.signatures)
    }
}

/// Signatures in words, for errors and logs.
pub fn describe(signatures: &[Signature]) -> String {
    if signatures.is_empty() {
        return "no signature".into();
    }
    signatures
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The size a filesystem says it has, from the first 4 KiB of its device: ext2/3/4's
/// blocks count (low and, with the 64bit feature, high half) times its block size;
/// xfs's data blocks times its block size. `None` for other types or values that make
/// no sense.
pub fn filesystem_size(fs_type: &str, head: &[u8]) -> Option<Bytes> {
    let le32 = |at: usize| -> Option<u64> {
        Some(u32::from_le_bytes(head.get(at..at + 4)?.try_into().ok()?) as u64)
    };
    match fs_type {
        "ext2" | "ext3" | "ext4" => {
            // The superblock is at byte 1024.
            let sb = 1024;
            let lo = le32(sb + 0x04)?;
            let log = le32(sb + 0x18)?;
            let incompat = le32(sb + 0x60)?;
            // INCOMPAT_64BIT: s_blocks_count_hi is meaningful.
            let hi = if incompat & 0x80 != 0 {
                le32(sb + 0x150)?
            } else {
                0
            };
            // Block sizes are 1 KiB to 64 KiB.
            if log > 6 {
                return None;
            }
            let blocks = (hi << 32) | lo;
            blocks.checked_mul(1024 << log).map(Bytes)
        }
        "xfs" => {
            let bs = u32::from_be_bytes(head.get(4..8)?.try_into().ok()?) as u64;
            let blocks = u64::from_be_bytes(head.get(8..16)?.try_into().ok()?);
            if !(512..=65536).contains(&bs) || !bs.is_power_of_two() {
                return None;
            }
            blocks.checked_mul(bs).map(Bytes)
        }
        _ => None,
    }
}

/// A libblkid probe, freed on drop.
struct Probe {
    pr: sys::blkid_probe,
    path: PathBuf,
}

impl Drop for Probe {
    fn drop(&mut self) {
        // SAFETY: `pr` came from blkid_new_probe_from_filename and is freed once.
        unsafe { sys::blkid_free_probe(self.pr) }
    }
}

impl Probe {
    fn open(path: &Path) -> Result<Probe, ProbeError> {
        let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| ProbeError::Probe {
            path: path.to_owned(),
            why: "the path holds a NUL byte".into(),
        })?;
        // SAFETY: `c` is a valid C string for the call; a null return is handled.
        let pr = unsafe { sys::blkid_new_probe_from_filename(c.as_ptr()) };
        if pr.is_null() {
            return Err(ProbeError::Probe {
                path: path.to_owned(),
                why: std::io::Error::last_os_error().to_string(),
            });
        }
        Ok(Probe {
            pr,
            path: path.to_owned(),
        })
    }

    fn check(&self, rc: libc::c_int, what: &str) -> Result<(), ProbeError> {
        if rc < 0 {
            return Err(ProbeError::Probe {
                path: self.path.clone(),
                why: format!("{what} failed ({rc})"),
            });
        }
        Ok(())
    }

    fn value(&self, name: &CStr) -> Option<String> {
        let mut data: *const libc::c_char = std::ptr::null();
        let mut len: usize = 0;
        // SAFETY: `pr` is live; libblkid points `data` at a NUL-terminated string it
        // owns until the next probe step, copied out at once.
        let rc =
            unsafe { sys::blkid_probe_lookup_value(self.pr, name.as_ptr(), &mut data, &mut len) };
        if rc != 0 || data.is_null() {
            return None;
        }
        // SAFETY: as above.
        Some(
            unsafe { CStr::from_ptr(data) }
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// Every signature libblkid finds on `path`, in its probing order; the device's size.
pub fn probe(path: &Path) -> Result<Contents, ProbeError> {
    let p = Probe::open(path)?;
    let sublks = sys::BLKID_SUBLKS_TYPE
        | sys::BLKID_SUBLKS_USAGE
        | sys::BLKID_SUBLKS_MAGIC
        | sys::BLKID_SUBLKS_BADCSUM;
    let parts = sys::BLKID_PARTS_MAGIC | sys::BLKID_PARTS_FORCE_GPT;
    // SAFETY (each call): `p.pr` is a live probe.
    unsafe {
        p.check(
            sys::blkid_probe_enable_superblocks(p.pr, 1),
            "enabling superblocks",
        )?;
        p.check(
            sys::blkid_probe_set_superblocks_flags(p.pr, sublks as libc::c_int),
            "setting superblock flags",
        )?;
        p.check(
            sys::blkid_probe_enable_partitions(p.pr, 1),
            "enabling partitions",
        )?;
        p.check(
            sys::blkid_probe_set_partitions_flags(p.pr, parts as libc::c_int),
            "setting partition flags",
        )?;
    }
    // SAFETY: `p.pr` is live.
    let size = unsafe { sys::blkid_probe_get_size(p.pr) };
    let device_size = (size >= 0).then_some(Bytes(size as u64));
    let mut signatures = Vec::new();
    loop {
        // SAFETY: `p.pr` is live. 0: a hit, 1: done, <0: error.
        let rc = unsafe { sys::blkid_do_probe(p.pr) };
        if rc == 1 {
            break;
        }
        p.check(rc, "probing")?;
        let offset = |key: &CStr| p.value(key).and_then(|v| v.parse::<u64>().ok()).map(Bytes);
        let sig = if let Some(name) = p.value(c"TYPE") {
            let usage = match p.value(c"USAGE").as_deref() {
                Some("filesystem") => Usage::Filesystem,
                Some("raid") => Usage::Raid,
                Some("crypto") => Usage::Crypto,
                _ => Usage::Other,
            };
            Signature {
                name,
                usage,
                offset: offset(c"SBMAGIC_OFFSET"),
                size: None,
                bad_checksum: p.value(c"SBBADCSUM").is_some(),
            }
        } else if let Some(name) = p.value(c"PTTYPE") {
            Signature {
                name,
                usage: Usage::PartitionTable,
                offset: offset(c"PTMAGIC_OFFSET"),
                size: None,
                bad_checksum: false,
            }
        } else {
            continue;
        };
        signatures.push(sig);
    }
    drop(p);
    // Filesystems whose size lvmd checks against the device's before mounting.
    if signatures
        .iter()
        .any(|s| matches!(s.name.as_str(), "ext2" | "ext3" | "ext4" | "xfs"))
    {
        let mut head = vec![0u8; 4096];
        let f = std::fs::File::open(path).map_err(|e| ProbeError::Probe {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
        let n = f.read_at(&mut head, 0).map_err(|e| ProbeError::Probe {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
        head.truncate(n);
        for s in &mut signatures {
            s.size = filesystem_size(&s.name, &head);
        }
    }
    Ok(Contents {
        device_size,
        signatures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(blocks: u64, log: u32, bit64: bool) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        let sb = 1024;
        b[sb + 4..sb + 8].copy_from_slice(&(blocks as u32).to_le_bytes());
        b[sb + 0x18..sb + 0x1c].copy_from_slice(&log.to_le_bytes());
        if bit64 {
            b[sb + 0x60..sb + 0x64].copy_from_slice(&0x80u32.to_le_bytes());
            b[sb + 0x150..sb + 0x154].copy_from_slice(&((blocks >> 32) as u32).to_le_bytes());
        }
        b
    }

    #[test]
    fn ext_size_is_blocks_times_block_size() {
        // The csi-sanity case: 131072 blocks of 1 KiB on a 64 MiB device.
        assert_eq!(
            filesystem_size("ext4", &ext(131072, 0, false)),
            Some(Bytes(128 << 20))
        );
        assert_eq!(
            filesystem_size("ext4", &ext(16384, 2, false)),
            Some(Bytes(64 << 20))
        );
        // 64bit: the high half counts; without the feature it is ignored.
        let big = (1u64 << 32) + 5;
        assert_eq!(
            filesystem_size("ext4", &ext(big, 2, true)),
            Some(Bytes(big * 4096))
        );
        let mut no64 = ext(big, 2, true);
        no64[1024 + 0x60..1024 + 0x64].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(filesystem_size("ext4", &no64), Some(Bytes(5 * 4096)));
        // Nonsense block size, short buffer, unknown type.
        assert_eq!(filesystem_size("ext4", &ext(1, 30, false)), None);
        assert_eq!(filesystem_size("ext4", &[0u8; 1100]), None);
        assert_eq!(filesystem_size("btrfs", &ext(1, 0, false)), None);
    }

    #[test]
    fn xfs_size_is_dblocks_times_block_size() {
        let mut b = vec![0u8; 512];
        b[0..4].copy_from_slice(b"XFSB");
        b[4..8].copy_from_slice(&4096u32.to_be_bytes());
        b[8..16].copy_from_slice(&32768u64.to_be_bytes());
        assert_eq!(filesystem_size("xfs", &b), Some(Bytes(128 << 20)));
        b[4..8].copy_from_slice(&3000u32.to_be_bytes());
        assert_eq!(filesystem_size("xfs", &b), None);
    }

    #[test]
    fn signatures_read_as_words() {
        let s = Signature {
            name: "gpt".into(),
            usage: Usage::PartitionTable,
            offset: Some(Bytes(512)),
            size: None,
            bad_checksum: false,
        };
        assert_eq!(s.to_string(), "a gpt partition table at byte 512");
        assert_eq!(describe(&[]), "no signature");
    }
}
