//! The LUKS2 layer (`lvmd::crypt`) on a real kernel: loop devices formatted, opened as
//! dm-crypt, written, closed, reopened, rekeyed and grown, and checked against Debian's
//! `cryptsetup` both ways (it reads lvmd's volumes, lvmd opens its).
//!
//! VM only (dm-crypt), like vm_smoke: `test = false` in Cargo.toml, run with
//!
//! ```sh
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/tests/vm/run-in-vm.sh" \
//!     cargo test --test vm_crypt
//! ```
//!
//! Fast on purpose: pbkdf2 with libcryptsetup's minimum iterations (argon2id's default
//! takes seconds per keyslot under emulation; one case uses a tiny fixed argon2id),
//! 40-64 MiB loop devices (LUKS2's header takes the first 16 MiB).

mod tools;

use lvmd::crypt::{
    luks, CryptError, CryptName, LuksConfig, OpenOptions, Opened, Passphrase, Pbkdf,
};
use lvmd::units::{Bytes, Sectors};
use lvmd_sys::{dm, loopdev};
use std::fs::{File, OpenOptions as FileOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const MIB: u64 = 1 << 20;

/// Panics unless we are in the test VM (or allowed on a host with device-mapper).
fn require_vm() {
    let in_vm = std::env::var_os("LVMD_VM").is_some_and(|v| v == "1");
    let host_ok = std::env::var_os("LVMD_ALLOW_HOST_DM").is_some_and(|v| v == "1");
    if !in_vm && !host_ok {
        panic!(
            "\n\nvm_crypt needs a kernel with device-mapper and dm-crypt: run it in the test VM:\n\n    \
             CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER=\"$PWD/tests/vm/run-in-vm.sh\" \
             cargo test --test vm_crypt\n"
        );
    }
    assert!(
        dm::dm_available(),
        "device-mapper does not answer DM_VERSION"
    );
}

fn key(text: &str) -> Passphrase {
    Passphrase::new(text.as_bytes().to_vec()).unwrap()
}

fn fast() -> LuksConfig {
    LuksConfig::fast_for_tests()
}

/// A loop device over a sparse file of its own; detached when dropped (autoclear), after
/// closing the test's mapping if it is still open.
struct Disk {
    dev: Option<loopdev::LoopDevice>,
    file: PathBuf,
    name: CryptName,
}

impl Disk {
    fn new(test: &str, size: u64) -> Disk {
        require_vm();
        let file = PathBuf::from(format!("/tmp/vm-crypt-{test}.img"));
        let f = File::create(&file).unwrap();
        f.set_len(size).unwrap();
        drop(f);
        let dev = loopdev::attach(
            &file,
            &loopdev::LoopOptions {
                autoclear: true,
                ..Default::default()
            },
        )
        .unwrap();
        let name = CryptName::for_volume("vgcrypt", &format!("lv-{test}")).unwrap();
        Disk {
            dev: Some(dev),
            file,
            name,
        }
    }

    fn path(&self) -> &Path {
        self.dev.as_ref().unwrap().path()
    }

    fn mapper(&self) -> PathBuf {
        self.name.device_path()
    }

    fn format(&self, k: &Passphrase) -> luks::LuksHeader {
        luks::format(self.path(), &fast(), k).unwrap()
    }

    fn open(&self, k: &Passphrase) -> Result<Opened, CryptError> {
        luks::open(self.path(), &self.name, k, &OpenOptions::default())
    }

    fn close(&self) {
        assert!(
            luks::close(&self.name).unwrap(),
            "{} was not open",
            self.name
        );
    }

    /// The header area (LUKS2's two JSON headers and the keyslots), byte for byte.
    fn header_bytes(&self) -> Vec<u8> {
        let mut buf = vec![0; 16 * MIB as usize];
        File::open(self.path())
            .unwrap()
            .read_exact_at(&mut buf, 0)
            .unwrap();
        buf
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = luks::close(&self.name);
        drop(self.dev.take());
        let _ = std::fs::remove_file(&self.file);
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2654435761)
                .rotate_left(seed as u32 % 32) as u8
                ^ seed
        })
        .collect()
}

fn write_at(dev: &Path, offset: u64, data: &[u8]) {
    let f = FileOptions::new().write(true).open(dev).unwrap();
    f.write_all_at(data, offset).unwrap();
    f.sync_all().unwrap();
}

fn read_at(dev: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    File::open(dev)
        .unwrap()
        .read_exact_at(&mut buf, offset)
        .unwrap();
    buf
}

fn device_size(dev: &Path) -> u64 {
    let f = File::open(dev).unwrap();
    lvmd_sys::blkdev::device_size_bytes(&f).unwrap()
}

/// Lines of /proc/keys naming the volume (libcryptsetup's `cryptsetup:<uuid>-d0` logon
/// key, put in the thread keyring for a table load): none must stay behind. An unlinked
/// key is listed until the kernel's key garbage collector runs, so this waits a little.
fn keys_of(uuid: &str) -> Vec<String> {
    let list = || -> Vec<String> {
        std::fs::read_to_string("/proc/keys")
            .unwrap()
            .lines()
            .filter(|l| l.contains(uuid))
            .map(str::to_owned)
            .collect()
    };
    for _ in 0..30 {
        if list().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    list()
}

fn wrong_key(r: Result<impl std::fmt::Debug, CryptError>) {
    match r {
        Err(CryptError::WrongKey { .. }) => {}
        other => panic!("expected WrongKey, got {other:?}"),
    }
}

/// `cmd args` must succeed; its stdout.
fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn have_cryptsetup(test: &str) -> bool {
    tools::require(
        test,
        "cryptsetup",
        "cryptsetup-bin",
        tools::runs("cryptsetup", &["--version"]),
    )
}

/// A key file for `cryptsetup` (the test's own key; lvmd itself never writes one).
fn key_file(test: &str, text: &str) -> PathBuf {
    let p = PathBuf::from(format!("/tmp/vm-crypt-{test}.key"));
    let mut f = File::create(&p).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    p
}

#[test]
fn format_open_write_close_open_read_back() {
    let disk = Disk::new("roundtrip", 48 * MIB);
    let k = key("roundtrip key");
    assert!(!luks::is_luks(disk.path()).unwrap());
    let header = disk.format(&k);
    assert_eq!(header.version, 2);
    assert_eq!(header.cipher, "aes-xts-plain64");
    assert_eq!(header.keyslots, vec![0]);
    assert_eq!(header.data_offset, Sectors(16 * MIB / 512));
    assert!(luks::is_luks(disk.path()).unwrap());
    assert_eq!(
        luks::read_header(disk.path()).unwrap(),
        Some(header.clone())
    );

    assert_eq!(disk.open(&k).unwrap(), Opened::Opened { keyslot: 0 });
    let m = luks::status(&disk.name).unwrap().expect("open");
    assert_eq!(std::fs::canonicalize(&m.backing).unwrap(), disk.path());
    assert_eq!(m.size, Sectors((48 - 16) * MIB / 512));
    assert_eq!(m.offset, header.data_offset);
    assert!(!m.in_use && !m.read_only && !m.no_read_workqueue);
    assert_eq!(device_size(&disk.mapper()), 32 * MIB);

    let data = pattern(1, 2 * MIB as usize);
    let tail = pattern(2, 4096);
    write_at(&disk.mapper(), MIB, &data);
    write_at(&disk.mapper(), 32 * MIB - 4096, &tail);
    // What reached the disk is ciphertext: the plaintext is nowhere under the mapping.
    let raw = read_at(disk.path(), 16 * MIB + MIB, data.len());
    assert_ne!(raw, data);
    assert!(!raw.windows(64).any(|w| w == &data[..64]));

    // Opening again is a no-op that still checks the key.
    assert_eq!(disk.open(&k).unwrap(), Opened::AlreadyOpen { keyslot: 0 });
    wrong_key(disk.open(&key("not it")));
    disk.close();
    assert_eq!(luks::status(&disk.name).unwrap(), None);
    assert!(!disk.mapper().exists());
    assert!(
        !luks::close(&disk.name).unwrap(),
        "a second close is a no-op"
    );

    assert!(matches!(disk.open(&k).unwrap(), Opened::Opened { .. }));
    assert_eq!(read_at(&disk.mapper(), MIB, data.len()), data);
    assert_eq!(read_at(&disk.mapper(), 32 * MIB - 4096, 4096), tail);
    disk.close();

    // A LUKS volume is never formatted again, and the refusal writes nothing.
    let before = disk.header_bytes();
    let e = luks::format(disk.path(), &fast(), &key("other")).unwrap_err();
    assert!(matches!(e, CryptError::AlreadyLuks { .. }), "{e}");
    assert_eq!(disk.header_bytes(), before);
}

#[test]
fn a_wrong_key_is_refused_everywhere_and_changes_nothing() {
    let disk = Disk::new("wrongkey", 40 * MIB);
    let k = key("the right key");
    let bad = key("the wrong key");
    disk.format(&k);
    let before = disk.header_bytes();

    wrong_key(disk.open(&bad));
    assert_eq!(luks::status(&disk.name).unwrap(), None);
    assert!(!disk.mapper().exists());
    wrong_key(luks::check_key(disk.path(), &bad));
    wrong_key(luks::rekey(disk.path(), &fast().pbkdf, &bad, &key("new")));
    wrong_key(luks::add_key(disk.path(), &fast().pbkdf, &bad, &key("new")));
    // remove_key needs the key that stays to open first.
    wrong_key(luks::remove_key(disk.path(), &k, &bad));
    assert_eq!(
        disk.header_bytes(),
        before,
        "a refused key changed the header"
    );
    assert_eq!(
        luks::read_header(disk.path()).unwrap().unwrap().keyslots,
        vec![0]
    );

    // The message names the device, never a key.
    let e = disk.open(&bad).unwrap_err().to_string();
    assert!(e.contains(disk.path().to_str().unwrap()), "{e}");
    assert!(!e.contains("wrong key") && !e.contains("right key"), "{e}");

    assert_eq!(luks::check_key(disk.path(), &k).unwrap(), 0);
    disk.open(&k).unwrap();
    disk.close();
}

#[test]
fn rekey_replaces_the_key_and_keeps_the_data() {
    let disk = Disk::new("rekey", 40 * MIB);
    let (old, new) = (key("old key"), key("new key"));
    disk.format(&old);
    disk.open(&old).unwrap();
    let data = pattern(3, MIB as usize);
    write_at(&disk.mapper(), 0, &data);
    disk.close();
    let data_area = read_at(disk.path(), 16 * MIB, MIB as usize);

    let r = luks::rekey(disk.path(), &fast().pbkdf, &old, &new).unwrap();
    assert_eq!(r.removed, vec![0]);
    assert_ne!(r.new_keyslot, 0);
    let header = luks::read_header(disk.path()).unwrap().unwrap();
    assert_eq!(header.keyslots, vec![r.new_keyslot]);
    // Only keyslots changed: the ciphertext is untouched.
    assert_eq!(read_at(disk.path(), 16 * MIB, MIB as usize), data_area);

    wrong_key(disk.open(&old));
    assert_eq!(
        disk.open(&new).unwrap(),
        Opened::Opened {
            keyslot: r.new_keyslot
        }
    );
    assert_eq!(read_at(&disk.mapper(), 0, data.len()), data);
    disk.close();

    // To the same key: nothing to do, nothing written.
    let before = disk.header_bytes();
    let r2 = luks::rekey(disk.path(), &fast().pbkdf, &new, &new).unwrap();
    assert_eq!((r2.new_keyslot, r2.removed), (r.new_keyslot, vec![]));
    assert_eq!(disk.header_bytes(), before);
}

#[test]
fn a_crash_between_the_halves_of_a_rekey_leaves_both_keys_working() {
    let disk = Disk::new("halfrekey", 40 * MIB);
    let (old, new) = (key("before"), key("after"));
    disk.format(&old);
    disk.open(&old).unwrap();
    let data = pattern(4, 512 * 1024);
    write_at(&disk.mapper(), 4096, &data);
    disk.close();

    // The first half only, as if lvmd died right after it.
    let slot = luks::add_key(disk.path(), &fast().pbkdf, &old, &new).unwrap();
    assert_eq!(
        luks::read_header(disk.path()).unwrap().unwrap().keyslots,
        vec![0, slot]
    );
    for k in [&old, &new] {
        assert!(matches!(disk.open(k).unwrap(), Opened::Opened { .. }));
        assert_eq!(read_at(&disk.mapper(), 4096, data.len()), data);
        disk.close();
    }
    // Repeating the first half adds nothing: the new key already has its keyslot.
    assert_eq!(
        luks::add_key(disk.path(), &fast().pbkdf, &old, &new).unwrap(),
        slot
    );
    assert_eq!(
        luks::read_header(disk.path())
            .unwrap()
            .unwrap()
            .keyslots
            .len(),
        2
    );

    // Running the rekey again finishes it.
    let r = luks::rekey(disk.path(), &fast().pbkdf, &old, &new).unwrap();
    assert_eq!((r.new_keyslot, r.removed), (slot, vec![0]));
    wrong_key(disk.open(&old));
    disk.open(&new).unwrap();
    assert_eq!(read_at(&disk.mapper(), 4096, data.len()), data);
    disk.close();
}

#[test]
fn resize_follows_the_grown_backing_device() {
    let disk = Disk::new("resize", 40 * MIB);
    let k = key("grow me");
    let uuid = disk.format(&k).uuid;
    disk.open(&k).unwrap();
    assert_eq!(
        keys_of(&uuid),
        Vec::<String>::new(),
        "volume key left in a keyring by open"
    );
    let data = pattern(5, MIB as usize);
    write_at(&disk.mapper(), 23 * MIB, &data);

    // The LV grew: here its loop device, by 24 MiB.
    File::options()
        .write(true)
        .open(&disk.file)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    loopdev::set_capacity(disk.path()).unwrap();
    assert_eq!(device_size(disk.path()), 64 * MIB);
    assert_eq!(device_size(&disk.mapper()), 24 * MIB, "not grown yet");

    wrong_key(luks::resize(&disk.name, &key("nope")));
    assert_eq!(device_size(&disk.mapper()), 24 * MIB);

    let size = luks::resize(&disk.name, &k).unwrap();
    assert_eq!(size, Sectors(48 * MIB / 512));
    assert_eq!(device_size(&disk.mapper()), 48 * MIB);
    assert_eq!(
        keys_of(&uuid),
        Vec::<String>::new(),
        "volume key left in a keyring by resize"
    );
    assert_eq!(read_at(&disk.mapper(), 23 * MIB, data.len()), data);
    let more = pattern(6, MIB as usize);
    write_at(&disk.mapper(), 47 * MIB, &more);
    disk.close();
    disk.open(&k).unwrap();
    assert_eq!(read_at(&disk.mapper(), 23 * MIB, data.len()), data);
    assert_eq!(read_at(&disk.mapper(), 47 * MIB, more.len()), more);
    disk.close();
    let missing = CryptName::for_volume("vgcrypt", "not-open").unwrap();
    assert!(matches!(
        luks::resize(&missing, &k),
        Err(CryptError::NotOpen { .. })
    ));
}

#[test]
fn open_options_busy_close_and_name_clashes() {
    let disk = Disk::new("options", 40 * MIB);
    let other = Disk::new("options2", 40 * MIB);
    let k = key("opts");
    disk.format(&k);
    other.format(&k);
    let opts = OpenOptions {
        no_read_workqueue: true,
        no_write_workqueue: true,
        ..Default::default()
    };
    luks::open(disk.path(), &disk.name, &k, &opts).unwrap();
    let m = luks::status(&disk.name).unwrap().unwrap();
    assert!(m.no_read_workqueue && m.no_write_workqueue, "{m:?}");
    let table = run("dmsetup", &["table", disk.name.as_str()]);
    assert!(
        table.contains("no_read_workqueue") && table.contains("no_write_workqueue"),
        "{table}"
    );
    // The key is in the kernel keyring, not in the table (LUKS2's default).
    assert!(m.key_in_keyring, "{m:?}");

    // Listed for reconciliation; an open mapping of another name is not lvmd's.
    assert!(luks::open_mappings().unwrap().contains(&disk.name));
    let kf = key_file("options", "opts");
    run(
        "cryptsetup",
        &[
            "open",
            "--key-file",
            kf.to_str().unwrap(),
            other.path().to_str().unwrap(),
            "vmcrypt-admins-own",
        ],
    );
    let listed = luks::open_mappings().unwrap();
    run("cryptsetup", &["close", "vmcrypt-admins-own"]);
    std::fs::remove_file(&kf).unwrap();
    assert!(
        listed.iter().all(|n| n.as_str() != "vmcrypt-admins-own"),
        "{listed:?}"
    );

    // The same name on another device is refused, the open mapping kept.
    let e = luks::open(other.path(), &disk.name, &k, &OpenOptions::default()).unwrap_err();
    assert!(matches!(e, CryptError::NameInUse { .. }), "{e}");
    assert!(luks::status(&disk.name).unwrap().is_some());

    // Held open (as a mount would): close refuses and leaves it open.
    let holder = File::open(disk.mapper()).unwrap();
    assert!(luks::status(&disk.name).unwrap().unwrap().in_use);
    let e = luks::close(&disk.name).unwrap_err();
    assert!(matches!(e, CryptError::Busy { .. }), "{e}");
    assert!(luks::status(&disk.name).unwrap().is_some());
    drop(holder);
    disk.close();
    assert!(!luks::open_mappings().unwrap().contains(&disk.name));

    // Read-only.
    luks::open(
        disk.path(),
        &disk.name,
        &k,
        &OpenOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(luks::status(&disk.name).unwrap().unwrap().read_only);
    // The kernel refuses the write (the open itself may succeed for root).
    let written = FileOptions::new()
        .write(true)
        .open(disk.mapper())
        .and_then(|f| f.write_all_at(&[1; 4096], 0).and_then(|()| f.sync_all()));
    assert!(written.is_err(), "a read-only mapping took a write");
    let info = run("dmsetup", &["info", disk.name.as_str()]);
    assert!(info.contains("(READ-ONLY)"), "{info}");
    disk.close();
}

#[test]
fn only_blank_devices_are_formatted() {
    let disk = Disk::new("notblank", 40 * MIB);
    if !tools::require(
        "only_blank_devices_are_formatted",
        "mkfs.ext4",
        "e2fsprogs",
        tools::runs("mkfs.ext4", &["-V"]),
    ) {
        return;
    }
    run("mkfs.ext4", &["-q", "-F", disk.path().to_str().unwrap()]);
    let before = disk.header_bytes();
    let e = luks::format(disk.path(), &fast(), &key("k")).unwrap_err();
    assert!(matches!(e, CryptError::NotBlank { .. }), "{e}");
    assert!(e.to_string().contains("ext4"), "{e}");
    assert_eq!(disk.header_bytes(), before);
    assert!(matches!(
        disk.open(&key("k")),
        Err(CryptError::NotLuks { .. })
    ));
}

#[test]
fn cryptsetup_reads_what_lvmd_wrote() {
    if !have_cryptsetup("cryptsetup_reads_what_lvmd_wrote") {
        return;
    }
    let disk = Disk::new("tocryptsetup", 40 * MIB);
    let secret = "shared with cryptsetup";
    let k = key(secret);
    let header = disk.format(&k);
    disk.open(&k).unwrap();
    let data = pattern(7, MIB as usize);
    write_at(&disk.mapper(), 2 * MIB, &data);
    disk.close();

    let dump = run("cryptsetup", &["luksDump", disk.path().to_str().unwrap()]);
    for want in [
        "Version:       \t2".to_string(),
        format!("UUID:          \t{}", header.uuid),
        "Subsystem:     \tlvmd".into(),
        "cipher: aes-xts-plain64".into(),
        "Cipher key: 512 bits".into(),
        "PBKDF:      pbkdf2".into(),
        "Hash:       sha256".into(),
        "Iterations: 1000".into(),
    ] {
        assert!(dump.contains(&want), "luksDump lacks {want:?}:\n{dump}");
    }

    let kf = key_file("tocryptsetup", secret);
    let dm_name = "vmcrypt-by-cryptsetup";
    run(
        "cryptsetup",
        &[
            "open",
            "--type",
            "luks2",
            "--key-file",
            kf.to_str().unwrap(),
            disk.path().to_str().unwrap(),
            dm_name,
        ],
    );
    let mapper = Path::new("/dev/mapper").join(dm_name);
    let got = read_at(&mapper, 2 * MIB, data.len());
    run("cryptsetup", &["close", dm_name]);
    std::fs::remove_file(&kf).unwrap();
    assert_eq!(got, data);
}

#[test]
fn lvmd_opens_what_cryptsetup_formatted() {
    if !have_cryptsetup("lvmd_opens_what_cryptsetup_formatted") {
        return;
    }
    let disk = Disk::new("fromcryptsetup", 40 * MIB);
    let secret = "made by cryptsetup";
    let kf = key_file("fromcryptsetup", secret);
    let (dev, kf_s) = (disk.path().to_str().unwrap(), kf.to_str().unwrap());
    run(
        "cryptsetup",
        &[
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks2",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--key-file",
            kf_s,
            dev,
        ],
    );
    let dm_name = "vmcrypt-made-by-cryptsetup";
    run("cryptsetup", &["open", "--key-file", kf_s, dev, dm_name]);
    let data = pattern(8, MIB as usize);
    write_at(&Path::new("/dev/mapper").join(dm_name), 3 * MIB, &data);
    run("cryptsetup", &["close", dm_name]);
    // The same key in a second keyslot (an admin's luksAddKey).
    run(
        "cryptsetup",
        &[
            "luksAddKey",
            "--batch-mode",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--key-file",
            kf_s,
            "--new-keyfile",
            kf_s,
            dev,
        ],
    );
    std::fs::remove_file(&kf).unwrap();

    let header = luks::read_header(disk.path()).unwrap().unwrap();
    assert_eq!((header.version, header.keyslots.clone()), (2, vec![0, 1]));
    // Never formatted again, even though lvmd did not make it.
    assert!(matches!(
        luks::format(disk.path(), &fast(), &key(secret)),
        Err(CryptError::AlreadyLuks { .. })
    ));
    wrong_key(disk.open(&key("made by cryptsetup\n")));
    disk.open(&key(secret)).unwrap();
    assert_eq!(read_at(&disk.mapper(), 3 * MIB, data.len()), data);
    disk.close();

    // A rekey removes the old key from every keyslot that holds it.
    let new = key("lvmd's now");
    let r = luks::rekey(disk.path(), &fast().pbkdf, &key(secret), &new).unwrap();
    assert_eq!(r.removed, vec![0, 1]);
    wrong_key(disk.open(&key(secret)));
    let kf = key_file("fromcryptsetup", secret);
    let out = Command::new("cryptsetup")
        .args([
            "open",
            "--test-passphrase",
            "--key-file",
            kf.to_str().unwrap(),
            dev,
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "cryptsetup still opens with the old key"
    );
    std::fs::remove_file(&kf).unwrap();
    disk.open(&new).unwrap();
    assert_eq!(read_at(&disk.mapper(), 3 * MIB, data.len()), data);
    disk.close();

    // With its last keyslot gone (a format that died before its keyslot looks the same):
    // still LUKS, never formatted, opened by no key.
    run(
        "cryptsetup",
        &[
            "luksKillSlot",
            "--batch-mode",
            dev,
            &r.new_keyslot.to_string(),
        ],
    );
    let header = luks::read_header(disk.path()).unwrap().unwrap();
    assert_eq!(header.keyslots, Vec::<u32>::new());
    assert!(matches!(
        luks::format(disk.path(), &fast(), &new),
        Err(CryptError::AlreadyLuks { .. })
    ));
    wrong_key(disk.open(&new));
}

#[test]
fn argon2id_settings_reach_the_header() {
    if !have_cryptsetup("argon2id_settings_reach_the_header") {
        return;
    }
    let disk = Disk::new("argon", 40 * MIB);
    // Fixed and tiny, so no benchmark runs and the test stays fast under emulation.
    let config = LuksConfig {
        pbkdf: Pbkdf::Argon2id {
            memory: Bytes(1024 * 1024),
            parallel: 1,
            time_ms: None,
            iterations: Some(4),
        },
        sector_size: Some(4096),
        ..LuksConfig::default()
    };
    let k = key("argon");
    luks::format(disk.path(), &config, &k).unwrap();
    let dump = run("cryptsetup", &["luksDump", disk.path().to_str().unwrap()]);
    for want in [
        "PBKDF:      argon2id",
        "Time cost:  4",
        "Memory:     1024",
        "Threads:    1",
        "sector: 4096 [bytes]",
    ] {
        assert!(dump.contains(want), "luksDump lacks {want:?}:\n{dump}");
    }
    disk.open(&k).unwrap();
    disk.close();
}

#[test]
fn too_small_devices_and_libcryptsetup_s_refusals_are_explained() {
    // Not larger than LUKS2's 16 MiB header: no room for data (libcryptsetup would
    // format it anyway).
    let small = Disk::new("toosmall", 16 * MIB);
    let e = luks::format(small.path(), &fast(), &key("small")).unwrap_err();
    assert!(matches!(e, CryptError::TooSmall { .. }), "{e}");
    assert!(!luks::is_luks(small.path()).unwrap());

    // A cipher the kernel lacks: libcryptsetup refuses, and its reason is in the error.
    let disk = Disk::new("badcipher", 40 * MIB);
    let config = LuksConfig {
        cipher: "nosuchcipher-xts-plain64".into(),
        ..fast()
    };
    let e = luks::format(disk.path(), &config, &key("k")).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, CryptError::Libcryptsetup { .. }), "{e}");
    assert!(text.contains(disk.path().to_str().unwrap()), "{text}");
    assert!(
        text.contains("(libcryptsetup: "),
        "no message from libcryptsetup in {text:?}"
    );
}

/// Run in a child of this test binary by `libcryptsetup_prints_nothing_itself`: a
/// wrong key and a refused format, each of which makes libcryptsetup log an error.
#[test]
fn quiet_child() {
    if std::env::var_os("VM_CRYPT_QUIET_CHILD").is_none() {
        return;
    }
    let disk = Disk::new("quiet", 40 * MIB);
    disk.format(&key("right"));
    wrong_key(disk.open(&key("wrong")));
    let config = LuksConfig {
        cipher: "nosuchcipher-xts-plain64".into(),
        ..fast()
    };
    let other = Disk::new("quiet2", 40 * MIB);
    assert!(luks::format(other.path(), &config, &key("k")).is_err());
    println!("QUIET-CHILD-DONE");
}

/// libcryptsetup prints its messages on stdout and stderr unless given a callback, and
/// lvmd's stdout is its JSON log: every message must go through `tracing` instead.
#[test]
fn libcryptsetup_prints_nothing_itself() {
    require_vm();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "quiet_child", "--nocapture", "--test-threads=1"])
        .env("VM_CRYPT_QUIET_CHILD", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("QUIET-CHILD-DONE"),
        "the child did not run: {stdout}"
    );
    for text in [&stdout, &stderr] {
        for line in text.lines() {
            let harness = line.starts_with("running ")
                || line.starts_with("test ")
                || line.is_empty()
                || line == "ok";
            assert!(
                harness,
                "a message reached the output: {line:?}\n{stdout}\n{stderr}"
            );
        }
    }
}
