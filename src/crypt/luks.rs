//! LUKS2 on a block device through libcryptsetup (never a `cryptsetup` process):
//! format, header check, open and close as dm-crypt, resize, status, rekey.
//!
//! Every call makes its own libcryptsetup context and drops it before returning, so the
//! functions may be called from any thread (the crate's `mutex` feature serializes the
//! C library, which is not thread-safe; a PBKDF run holds that lock, so the daemon calls
//! these from a blocking pool). libcryptsetup opens device-mapper itself (libdevmapper)
//! for the mappings; that is its job here, not lvmd's dm code.

use super::config::{LuksConfig, Pbkdf};
use super::error::{CryptError, Result};
use super::key::Passphrase;
use super::log;
use super::name::CryptName;
use crate::probe;
use crate::units::{Bytes, Sectors};
use libcryptsetup_rs::consts::flags::{CryptActivate, CryptDeactivate, CryptPbkdf, CryptVolumeKey};
use libcryptsetup_rs::consts::vals::{CryptKdf, CryptStatusInfo, EncryptionFormat, KeyslotInfo};
use libcryptsetup_rs::{
    CryptDevice, CryptInit, CryptParamsLuks2, CryptParamsLuks2Ref, CryptPbkdfType, Either,
    LibcryptErr,
};
use std::fmt::Display;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// LUKS2's keyslot count (`LUKS2_KEYSLOTS_MAX`).
const LUKS2_KEYSLOTS: u32 = 32;
/// The size of the LUKS2 header libcryptsetup writes by default (two 16 KiB JSON areas
/// and the keyslots area), where the data starts: what an encrypted volume's
/// filesystem does not get. libcryptsetup itself formats a smaller device, leaving a
/// volume with no room for data.
pub const LUKS2_HEADER: Bytes = Bytes(16 << 20);
/// What lvmd writes in the header's `subsystem` field: `luksDump` shows who made it.
const SUBSYSTEM: &str = "lvmd";

/// A LUKS header as read from a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuksHeader {
    /// 1 or 2.
    pub version: u8,
    pub uuid: String,
    /// `aes-xts-plain64`.
    pub cipher: String,
    /// Where the encrypted data starts on the device.
    pub data_offset: Sectors,
    /// The keyslots holding a key. Empty: a header without any key (a format that
    /// crashed before its first keyslot): nothing can ever be opened from it.
    pub keyslots: Vec<u32>,
}

/// How to open: dm-crypt's optional flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    pub read_only: bool,
    /// Let discards through (thin LVs, SSDs); this shows which blocks are unused.
    pub allow_discards: bool,
    /// `--perf-no_read_workqueue`/`no_write_workqueue`: process I/O inline, not in
    /// dm-crypt's workqueues (faster on NVMe).
    pub no_read_workqueue: bool,
    pub no_write_workqueue: bool,
}

/// What [`open`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// The mapping was made; the key is in `keyslot`.
    Opened { keyslot: u32 },
    /// It was already open on this device (a retry, a restart); the key was checked.
    AlreadyOpen { keyslot: u32 },
}

/// An open crypt mapping, read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub name: String,
    /// The device under it (the LV), as libcryptsetup resolves the table's major:minor.
    pub backing: PathBuf,
    /// Size of the mapping (what mkfs and mount see).
    pub size: Sectors,
    /// Start of the data on the backing device (the LUKS header's size).
    pub offset: Sectors,
    /// Held open by someone (mounted, a process): closing would fail.
    pub in_use: bool,
    pub read_only: bool,
    pub allow_discards: bool,
    pub no_read_workqueue: bool,
    pub no_write_workqueue: bool,
    /// The volume key is kept in the kernel keyring (LUKS2's default), not in the table.
    pub key_in_keyring: bool,
}

/// Keyslots before and after a rekey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rekeyed {
    /// The keyslot that holds the new key.
    pub new_keyslot: u32,
    /// The keyslots that held the old key, now destroyed.
    pub removed: Vec<u32>,
}

/// Empties the calling thread's keyring when dropped. libcryptsetup 2.6 puts the volume
/// key in the thread keyring for the dm table load of an open or resize and, on success,
/// leaves it there (it unlinks it only on failure): harmless for `cryptsetup`, whose
/// thread ends at once, but lvmd's threads live on, and with them the key, usable to
/// load dm-crypt tables. lvmd keeps nothing else in a thread keyring.
struct ThreadKeyringCleared;

impl Drop for ThreadKeyringCleared {
    fn drop(&mut self) {
        // <linux/keyctl.h>
        const KEYCTL_CLEAR: libc::c_long = 7;
        const KEY_SPEC_THREAD_KEYRING: libc::c_long = -1;
        // SAFETY: keyctl(KEYCTL_CLEAR, keyring) takes two integers and touches no memory.
        let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_CLEAR, KEY_SPEC_THREAD_KEYRING) };
        if r < 0 {
            tracing::warn!(
                error = %io::Error::last_os_error(),
                "cannot clear the thread keyring after a dm-crypt table load"
            );
        }
    }
}

fn lib_err(op: &'static str, target: impl Display) -> impl FnOnce(LibcryptErr) -> CryptError {
    let target = target.to_string();
    move |e| CryptError::Libcryptsetup {
        op,
        target,
        source: match e {
            LibcryptErr::IOError(e) => e,
            other => io::Error::other(other.to_string()),
        },
        detail: log::last_error(),
    }
}

fn errno_of(e: &LibcryptErr) -> Option<i32> {
    match e {
        LibcryptErr::IOError(e) => e.raw_os_error(),
        _ => None,
    }
}

/// Starts an operation: messages routed, the thread's last message forgotten.
fn begin() {
    log::install();
    log::clear();
}

fn init(device: &Path) -> Result<CryptDevice> {
    CryptInit::init(device).map_err(lib_err("crypt_init", device.display()))
}

/// A context with the device's LUKS header loaded; `None` when it has none.
fn load(device: &Path) -> Result<Option<CryptDevice>> {
    let mut cd = init(device)?;
    match cd.context_handle().load::<()>(None, None) {
        Ok(()) => Ok(Some(cd)),
        // crypt_load's answer for "no LUKS signature here".
        Err(e) if errno_of(&e) == Some(libc::EINVAL) => Ok(None),
        Err(e) => Err(lib_err("crypt_load", device.display())(e)),
    }
}

fn load_luks(device: &Path) -> Result<CryptDevice> {
    load(device)?.ok_or_else(|| CryptError::NotLuks {
        device: device.to_owned(),
    })
}

fn header_of(cd: &mut CryptDevice, device: &Path) -> Result<LuksHeader> {
    let version = match cd.format_handle().get_type() {
        Ok(EncryptionFormat::Luks2) => 2,
        Ok(EncryptionFormat::Luks1) => 1,
        _ => {
            return Err(CryptError::NotLuks {
                device: device.to_owned(),
            })
        }
    };
    let mut status = cd.status_handle();
    let cipher = format!(
        "{}-{}",
        status
            .get_cipher()
            .map_err(lib_err("crypt_get_cipher", device.display()))?,
        status
            .get_cipher_mode()
            .map_err(lib_err("crypt_get_cipher_mode", device.display()))?
    );
    let uuid = status
        .get_uuid()
        .map_err(lib_err("crypt_get_uuid", device.display()))?
        .to_string();
    let data_offset = Sectors(status.get_data_offset());
    Ok(LuksHeader {
        version,
        uuid,
        cipher,
        data_offset,
        keyslots: active_keyslots(cd),
    })
}

fn active_keyslots(cd: &mut CryptDevice) -> Vec<u32> {
    let mut ks = cd.keyslot_handle();
    (0..LUKS2_KEYSLOTS)
        .filter(|&slot| {
            matches!(
                ks.status(slot),
                Ok(KeyslotInfo::Active | KeyslotInfo::ActiveLast)
            )
        })
        .collect()
}

/// The device's LUKS header, read (never repaired or written); `None` if it has none.
pub fn read_header(device: &Path) -> Result<Option<LuksHeader>> {
    begin();
    match load(device)? {
        Some(mut cd) => header_of(&mut cd, device).map(Some),
        None => Ok(None),
    }
}

/// Whether the device carries a LUKS header, by libcryptsetup's reading of it or by
/// libblkid's signature scan (which also finds a header whose first copy is damaged).
pub fn is_luks(device: &Path) -> Result<bool> {
    if read_header(device)?.is_some() {
        return Ok(true);
    }
    let contents = probe::probe(device)?;
    Ok(contents.signatures.iter().any(|s| s.name == "crypto_LUKS"))
}

fn pbkdf_type(pbkdf: &Pbkdf) -> CryptPbkdfType {
    match pbkdf {
        Pbkdf::Pbkdf2 { hash, iterations } => CryptPbkdfType {
            type_: CryptKdf::Pbkdf2,
            hash: hash.clone(),
            time_ms: 0,
            iterations: *iterations,
            max_memory_kb: 0,
            parallel_threads: 0,
            flags: CryptPbkdf::NO_BENCHMARK,
        },
        Pbkdf::Argon2id {
            memory,
            parallel,
            time_ms,
            iterations,
        } => CryptPbkdfType {
            type_: CryptKdf::Argon2Id,
            // LUKS2 uses it for the anti-forensic splitter and the digest.
            hash: "sha256".into(),
            time_ms: time_ms.unwrap_or(0),
            iterations: iterations.unwrap_or(0),
            max_memory_kb: (memory.0 / 1024) as u32,
            parallel_threads: *parallel,
            flags: if iterations.is_some() {
                CryptPbkdf::NO_BENCHMARK
            } else {
                CryptPbkdf::empty()
            },
        },
    }
}

fn set_pbkdf(cd: &mut CryptDevice, pbkdf: &Pbkdf, device: &Path) -> Result<()> {
    cd.settings_handle()
        .set_pbkdf_type(&pbkdf_type(pbkdf))
        .map_err(lib_err("crypt_set_pbkdf_type", device.display()))
}

/// Formats `device` as LUKS2 with `key` in its first keyslot. Refused, touching
/// nothing, when the device holds anything: a LUKS header (an encrypted volume is
/// never formatted again, whatever its state) or any other signature libblkid knows.
///
/// Crash-safety: the header is written before the keyslot; a crash in between leaves a
/// header with no keyslot ([`LuksHeader::keyslots`] empty), which no key opens and
/// which this function refuses too: whoever clears it decides that it held no data.
pub fn format(device: &Path, config: &LuksConfig, key: &Passphrase) -> Result<LuksHeader> {
    config.validate()?;
    let (cipher, mode) = config.cipher_and_mode()?;
    if is_luks(device)? {
        return Err(CryptError::AlreadyLuks {
            device: device.to_owned(),
        });
    }
    let contents = probe::probe(device)?;
    if !contents.is_empty() {
        return Err(CryptError::NotBlank {
            device: device.to_owned(),
            found: contents.describe(),
        });
    }
    let size = match contents.device_size {
        Some(size) => size,
        None => std::fs::metadata(device)
            .map(|m| Bytes(m.len()))
            .map_err(|e| CryptError::Libcryptsetup {
                op: "stat",
                target: device.display().to_string(),
                source: e,
                detail: String::new(),
            })?,
    };
    if size <= LUKS2_HEADER {
        return Err(CryptError::TooSmall {
            device: device.to_owned(),
            size,
            header: LUKS2_HEADER,
        });
    }
    begin();
    let mut cd = init(device)?;
    set_pbkdf(&mut cd, &config.pbkdf, device)?;
    let params = CryptParamsLuks2 {
        pbkdf: None,
        integrity: None,
        integrity_params: None,
        data_alignment: 0,
        data_device: None,
        sector_size: config.sector_size.unwrap_or(512),
        label: None,
        subsystem: Some(SUBSYSTEM.into()),
    };
    let mut params_ref: CryptParamsLuks2Ref<'_> = (&params)
        .try_into()
        .map_err(lib_err("crypt_format", device.display()))?;
    cd.context_handle()
        .format(
            EncryptionFormat::Luks2,
            (cipher, mode),
            None,
            Either::Right(config.key_bytes()),
            Some(&mut params_ref),
        )
        .map_err(lib_err("crypt_format", device.display()))?;
    // The volume key format generated is still in the context: bind it to the key.
    cd.keyslot_handle()
        .add_by_key(None, None, key.expose(), CryptVolumeKey::empty())
        .map_err(lib_err("crypt_keyslot_add_by_volume_key", device.display()))?;
    header_of(&mut cd, device)
}

/// Which keyslot `key` opens (all are tried unless `slot` is given).
fn verify(cd: &mut CryptDevice, device: &Path, slot: Option<u32>, key: &Passphrase) -> Result<u32> {
    log::clear();
    match cd.activate_handle().activate_by_passphrase(
        None,
        slot,
        key.expose(),
        CryptActivate::empty(),
    ) {
        Ok(slot) => Ok(slot),
        // EPERM: no keyslot matched the passphrase; ENOENT: the asked slot is empty.
        Err(e) if matches!(errno_of(&e), Some(libc::EPERM | libc::ENOENT)) => {
            Err(CryptError::WrongKey {
                device: device.to_owned(),
            })
        }
        Err(e) => Err(lib_err("crypt_activate_by_passphrase", device.display())(e)),
    }
}

/// Checks `key` against the device's keyslots without opening anything.
pub fn check_key(device: &Path, key: &Passphrase) -> Result<u32> {
    begin();
    let mut cd = load_luks(device)?;
    verify(&mut cd, device, None, key)
}

fn flags_of(options: &OpenOptions) -> CryptActivate {
    let mut flags = CryptActivate::empty();
    flags.set(CryptActivate::READONLY, options.read_only);
    flags.set(CryptActivate::ALLOW_DISCARDS, options.allow_discards);
    flags.set(CryptActivate::NO_READ_WORKQUEUE, options.no_read_workqueue);
    flags.set(
        CryptActivate::NO_WRITE_WORKQUEUE,
        options.no_write_workqueue,
    );
    flags
}

fn same_device(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(ma), Ok(mb)) if ma.rdev() != 0 => ma.rdev() == mb.rdev(),
        _ => a == b,
    }
}

/// Opens `device` as the dm-crypt mapping `name` (`/dev/mapper/<name>`). Idempotent:
/// a mapping of that name already open on this device is kept (the key still checked).
/// A wrong key is [`CryptError::WrongKey`] and changes nothing.
pub fn open(
    device: &Path,
    name: &CryptName,
    key: &Passphrase,
    options: &OpenOptions,
) -> Result<Opened> {
    if let Some(mapping) = status(name)? {
        if !same_device(&mapping.backing, device) {
            return Err(CryptError::NameInUse {
                name: name.to_string(),
                open_on: mapping.backing,
                wanted: device.to_owned(),
            });
        }
        let keyslot = check_key(device, key)?;
        return Ok(Opened::AlreadyOpen { keyslot });
    }
    begin();
    let _keyring = ThreadKeyringCleared;
    let mut cd = load_luks(device)?;
    match cd.activate_handle().activate_by_passphrase(
        Some(name.as_str()),
        None,
        key.expose(),
        flags_of(options),
    ) {
        Ok(keyslot) => Ok(Opened::Opened { keyslot }),
        Err(e) if matches!(errno_of(&e), Some(libc::EPERM | libc::ENOENT)) => {
            Err(CryptError::WrongKey {
                device: device.to_owned(),
            })
        }
        Err(e) => Err(lib_err("crypt_activate_by_passphrase", name)(e)),
    }
}

/// The open mapping `name`, or `None` when it is not open.
pub fn status(name: &CryptName) -> Result<Option<Mapping>> {
    begin();
    match libcryptsetup_rs::status(None, name.as_str()) {
        Ok(CryptStatusInfo::Inactive) => return Ok(None),
        Ok(CryptStatusInfo::Active | CryptStatusInfo::Busy) => {}
        Ok(CryptStatusInfo::Invalid) => {
            return Err(CryptError::Libcryptsetup {
                op: "crypt_status",
                target: name.to_string(),
                source: io::Error::from_raw_os_error(libc::EINVAL),
                detail: "not a crypt mapping, or device-mapper unavailable".into(),
            })
        }
        Err(e) => return Err(lib_err("crypt_status", name)(e)),
    }
    let mut cd = CryptInit::init_by_name_and_header(name.as_str(), None)
        .map_err(lib_err("crypt_init_by_name", name))?;
    // Busy from crypt_status means "open count > 0".
    let in_use = matches!(
        libcryptsetup_rs::status(Some(&mut cd), name.as_str()),
        Ok(CryptStatusInfo::Busy)
    );
    let backing = cd
        .status_handle()
        .get_device_path()
        .map_err(lib_err("crypt_get_device_name", name))?
        .to_owned();
    let active = cd
        .runtime_handle(name.as_str())
        .get_active_device()
        .map_err(lib_err("crypt_get_active_device", name))?;
    Ok(Some(Mapping {
        name: name.to_string(),
        backing,
        size: Sectors(active.size),
        offset: Sectors(active.offset),
        in_use,
        read_only: active.flags.contains(CryptActivate::READONLY),
        allow_discards: active.flags.contains(CryptActivate::ALLOW_DISCARDS),
        no_read_workqueue: active.flags.contains(CryptActivate::NO_READ_WORKQUEUE),
        no_write_workqueue: active.flags.contains(CryptActivate::NO_WRITE_WORKQUEUE),
        key_in_keyring: active.flags.contains(CryptActivate::KEYRING_KEY),
    }))
}

/// Every lvmd crypt mapping the kernel has open (names [`CryptName::parse`] accepts),
/// for start-up reconciliation: one whose LV is gone, or that nobody should have open,
/// is lvmd's to close. Mappings of other names (an admin's `cryptsetup open`) are left
/// out.
pub fn open_mappings() -> Result<Vec<CryptName>> {
    let dm_err = |op: &'static str| {
        move |e: devicemapper::DmError| CryptError::Libcryptsetup {
            op,
            target: "device-mapper".into(),
            source: io::Error::other(e.to_string()),
            detail: String::new(),
        }
    };
    let dm = devicemapper::DM::new().map_err(dm_err("DM_VERSION"))?;
    let mut names: Vec<CryptName> = dm
        .list_devices()
        .map_err(dm_err("DM_LIST_DEVICES"))?
        .into_iter()
        .filter_map(|(name, _, _)| CryptName::parse(&name.to_string()))
        .collect();
    names.sort();
    Ok(names)
}

/// Closes the mapping `name`; `false` when it was not open. A mapping in use (mounted)
/// is [`CryptError::Busy`] and stays open.
pub fn close(name: &CryptName) -> Result<bool> {
    if status(name)?.is_none() {
        return Ok(false);
    }
    begin();
    let mut cd = CryptInit::init_by_name_and_header(name.as_str(), None)
        .map_err(lib_err("crypt_init_by_name", name))?;
    match cd
        .activate_handle()
        .deactivate(name.as_str(), CryptDeactivate::empty())
    {
        Ok(()) => Ok(true),
        Err(e) if errno_of(&e) == Some(libc::EBUSY) => Err(CryptError::Busy {
            name: name.to_string(),
        }),
        // Closed by someone else since we looked.
        Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(lib_err("crypt_deactivate", name)(e)),
    }
}

/// Grows (or shrinks) the open mapping `name` to the whole of its backing device, after
/// the LV was resized. The key is needed: with the volume key in the kernel keyring
/// (LUKS2's default), reloading the table needs it there again, as `cryptsetup resize`
/// asks for it. Returns the mapping's new size.
pub fn resize(name: &CryptName, key: &Passphrase) -> Result<Sectors> {
    let Some(mapping) = status(name)? else {
        return Err(CryptError::NotOpen {
            name: name.to_string(),
        });
    };
    begin();
    let _keyring = ThreadKeyringCleared;
    let mut cd = CryptInit::init_by_name_and_header(name.as_str(), None)
        .map_err(lib_err("crypt_init_by_name", name))?;
    // Checks the key in any case; puts the volume key in the keyring when the table
    // refers to it there.
    let flags = if mapping.key_in_keyring {
        CryptActivate::KEYRING_KEY
    } else {
        CryptActivate::empty()
    };
    log::clear();
    match cd
        .activate_handle()
        .activate_by_passphrase(None, None, key.expose(), flags)
    {
        Ok(_) => {}
        Err(e) if matches!(errno_of(&e), Some(libc::EPERM | libc::ENOENT)) => {
            return Err(CryptError::WrongKey {
                device: mapping.backing,
            })
        }
        Err(e) => return Err(lib_err("crypt_activate_by_passphrase", name)(e)),
    }
    // 0: all of the backing device past the header.
    cd.context_handle()
        .resize(name.as_str(), 0)
        .map_err(lib_err("crypt_resize", name))?;
    drop(cd);
    status(name)?
        .map(|m| m.size)
        .ok_or_else(|| CryptError::NotOpen {
            name: name.to_string(),
        })
}

/// The first half of a rekey: `new` added in a free keyslot (with `pbkdf`), `old` kept.
/// After it the volume opens with either key. Returns the new key's keyslot; when `new`
/// already opens a keyslot (a rekey that crashed after this half), that one, and
/// nothing is written. A wrong `old` is [`CryptError::WrongKey`] and changes nothing.
pub fn add_key(device: &Path, pbkdf: &Pbkdf, old: &Passphrase, new: &Passphrase) -> Result<u32> {
    pbkdf.validate()?;
    begin();
    let mut cd = load_luks(device)?;
    verify(&mut cd, device, None, old)?;
    match verify(&mut cd, device, None, new) {
        Ok(slot) => return Ok(slot),
        Err(CryptError::WrongKey { .. }) => {}
        Err(e) => return Err(e),
    }
    if active_keyslots(&mut cd).len() as u32 >= LUKS2_KEYSLOTS {
        return Err(CryptError::KeyslotsFull {
            device: device.to_owned(),
        });
    }
    set_pbkdf(&mut cd, pbkdf, device)?;
    log::clear();
    let slot = match cd
        .keyslot_handle()
        .add_by_passphrase(None, old.expose(), new.expose())
    {
        Ok(slot) => slot,
        Err(e) if errno_of(&e) == Some(libc::EPERM) => {
            return Err(CryptError::WrongKey {
                device: device.to_owned(),
            })
        }
        Err(e) => return Err(lib_err("crypt_keyslot_add_by_passphrase", device.display())(e)),
    };
    // Read back: the new keyslot opens with the new key before anything else happens.
    verify(&mut cd, device, Some(slot), new)
}

/// The second half of a rekey: every keyslot `old` opens is destroyed, once `new` is
/// shown to open another one (never leaves the volume without a working key). Returns
/// the destroyed keyslots; none when `old` and `new` open the same keyslot.
pub fn remove_key(device: &Path, old: &Passphrase, new: &Passphrase) -> Result<Vec<u32>> {
    begin();
    let mut cd = load_luks(device)?;
    let keep = verify(&mut cd, device, None, new)?;
    let mut removed = Vec::new();
    // A key may sit in more than one keyslot; each pass costs one PBKDF run per slot.
    for _ in 0..LUKS2_KEYSLOTS {
        let slot = match verify(&mut cd, device, None, old) {
            Ok(slot) if slot != keep => slot,
            Ok(_) | Err(CryptError::WrongKey { .. }) => break,
            Err(e) => return Err(e),
        };
        cd.keyslot_handle()
            .destroy(slot)
            .map_err(lib_err("crypt_keyslot_destroy", device.display()))?;
        removed.push(slot);
    }
    Ok(removed)
}

/// Replaces `old` by `new` without touching the data: [`add_key`], then
/// [`remove_key`]. A crash between the two leaves a volume that opens with either key,
/// and calling `rekey` again finishes the job. A wrong `old` changes nothing.
pub fn rekey(device: &Path, pbkdf: &Pbkdf, old: &Passphrase, new: &Passphrase) -> Result<Rekeyed> {
    let new_keyslot = add_key(device, pbkdf, old, new)?;
    let removed = remove_key(device, old, new)?;
    Ok(Rekeyed {
        new_keyslot,
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn pbkdf_settings_map_to_libcryptsetup_s() {
        let p = pbkdf_type(&Pbkdf::Pbkdf2 {
            hash: "sha512".into(),
            iterations: 1000,
        });
        assert!(matches!(p.type_, CryptKdf::Pbkdf2));
        assert_eq!((p.hash.as_str(), p.iterations), ("sha512", 1000));
        assert_eq!(p.flags.bits(), CryptPbkdf::NO_BENCHMARK.bits());

        let p = pbkdf_type(&Pbkdf::default());
        assert!(matches!(p.type_, CryptKdf::Argon2Id));
        assert_eq!((p.time_ms, p.iterations), (2000, 0));
        assert_eq!((p.max_memory_kb, p.parallel_threads), (256 * 1024, 4));
        // Benchmarked: libcryptsetup picks the iterations for the time.
        assert!(p.flags.is_empty());

        let p = pbkdf_type(&Pbkdf::Argon2id {
            memory: Bytes(64 << 20),
            parallel: 1,
            time_ms: None,
            iterations: Some(4),
        });
        assert_eq!((p.time_ms, p.iterations, p.max_memory_kb), (0, 4, 65536));
        assert_eq!(p.flags.bits(), CryptPbkdf::NO_BENCHMARK.bits());
    }

    #[test]
    fn open_flags_follow_the_options() {
        assert!(flags_of(&OpenOptions::default()).is_empty());
        let f = flags_of(&OpenOptions {
            no_read_workqueue: true,
            no_write_workqueue: true,
            ..OpenOptions::default()
        });
        assert_eq!(
            f.bits(),
            (CryptActivate::NO_READ_WORKQUEUE | CryptActivate::NO_WRITE_WORKQUEUE).bits()
        );
        let f = flags_of(&OpenOptions {
            read_only: true,
            allow_discards: true,
            ..OpenOptions::default()
        });
        assert_eq!(
            f.bits(),
            (CryptActivate::READONLY | CryptActivate::ALLOW_DISCARDS).bits()
        );
    }

    #[test]
    fn a_plain_file_is_not_luks_and_a_missing_one_is_an_error() {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(1 << 20).unwrap();
        // libcryptsetup reads regular files as well as block devices.
        assert_eq!(read_header(f.path()).unwrap(), None);
        let e = read_header(Path::new("/nonexistent/dev")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/dev"), "{e}");
    }
}
