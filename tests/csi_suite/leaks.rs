//! Where an encrypted volume's key must never show up (issue 13): lvmd's and lvmd-csi's
//! logs (at debug, libcryptsetup's own messages included), every error either returns,
//! and both processes' `/proc/<pid>/cmdline` and `environ`; and which processes lvmd
//! starts while it serves that volume (never `cryptsetup`, `lvm` or `dmsetup`).

use super::*;
use std::collections::BTreeMap;

/// The forms a key could take in text: its bytes, hex, base64, and Rust's `Debug` of a
/// byte slice (`[107, 51, ...]`), the slip a `{:?}` of a request would make.
fn forms(key: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    use base64::Engine;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let debug: Vec<String> = key.iter().map(u8::to_string).collect();
    vec![
        ("bytes", key.to_vec()),
        ("hex", hex.into_bytes()),
        (
            "base64",
            base64::engine::general_purpose::STANDARD
                .encode(key)
                .into_bytes(),
        ),
        ("Debug of the bytes", debug.join(", ").into_bytes()),
    ]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Panics naming where and in which form one of `keys` is in `hay`.
fn assert_no_key(keys: &[&[u8]], hay: &[u8], where_: &str) {
    for key in keys {
        for (form, needle) in forms(key) {
            assert!(
                !contains(hay, &needle),
                "the key ({form}) is in {where_}:\n{}",
                String::from_utf8_lossy(hay)
            );
        }
    }
}

/// What a status carries to the client: code, message, details, metadata.
fn status_text(s: &tonic::Status) -> Vec<u8> {
    let mut out = format!("{:?} {} {:?}", s.code(), s.message(), s.metadata()).into_bytes();
    out.extend_from_slice(s.details());
    out
}

/// One process that exited while the kernel's BSD process accounting was on.
#[derive(Debug, Clone)]
pub struct Exited {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
}

/// The kernel's BSD process accounting (acct(2), format v3) into a file while this
/// lives: every process that exits meanwhile leaves a record of its pid, its parent's
/// pid and its command name, however briefly it ran; no polling can miss one. Root
/// only (the VM).
pub struct ProcessAccounting {
    file: PathBuf,
    on: bool,
}

impl ProcessAccounting {
    pub fn start(dir: &Path) -> ProcessAccounting {
        let file = dir.join("acct");
        std::fs::write(&file, b"").unwrap();
        let c = std::ffi::CString::new(file.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path that outlives the call.
        let r = unsafe { libc::acct(c.as_ptr()) };
        assert_eq!(r, 0, "acct: {}", std::io::Error::last_os_error());
        ProcessAccounting { file, on: true }
    }

    fn off(&mut self) {
        if std::mem::take(&mut self.on) {
            // SAFETY: NULL turns accounting off.
            unsafe { libc::acct(std::ptr::null()) };
        }
    }

    /// Accounting off; every record written, in exit order.
    pub fn stop(mut self) -> Vec<Exited> {
        self.off();
        // struct acct_v3 (<linux/acct.h>): 64 bytes, version 3 in the second byte.
        let data = std::fs::read(&self.file).unwrap();
        assert_eq!(data.len() % 64, 0, "not acct v3 records");
        data.chunks(64)
            .map(|r| {
                assert_eq!(r[1] & 0x7f, 3, "acct record version {}", r[1]);
                let u32_at = |i: usize| u32::from_le_bytes(r[i..i + 4].try_into().unwrap());
                let comm = &r[48..64];
                let end = comm.iter().position(|&b| b == 0).unwrap_or(16);
                Exited {
                    pid: u32_at(16),
                    ppid: u32_at(20),
                    comm: String::from_utf8_lossy(&comm[..end]).into_owned(),
                }
            })
            .collect()
    }
}

impl Drop for ProcessAccounting {
    fn drop(&mut self) {
        self.off();
    }
}

/// The processes in `exited` (and those still running, from `/proc`) that descend
/// from `ancestor`: pid -> command name.
fn descendants(exited: &[Exited], ancestor: u32) -> BTreeMap<u32, String> {
    let mut parent: BTreeMap<u32, (u32, String)> = exited
        .iter()
        .map(|e| (e.pid, (e.ppid, e.comm.clone())))
        .collect();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let ppid = stat[close + 2..]
            .split(' ')
            .nth(1)
            .and_then(|p| p.parse().ok());
        if let Some(ppid) = ppid {
            parent.entry(pid).or_insert((ppid, comm));
        }
    }
    let mut out = BTreeMap::new();
    for (&pid, (_, comm)) in &parent {
        let mut at = pid;
        for _ in 0..64 {
            match parent.get(&at) {
                Some((p, _)) if *p == ancestor => {
                    out.insert(pid, comm.clone());
                    break;
                }
                Some((p, _)) if *p > 1 && *p != at => at = *p,
                _ => break,
            }
        }
    }
    out
}

/// What lvmd may run as programs (docs: mkfs and the growers; everything of LVM,
/// device-mapper and LUKS is done in-process).
const LVMD_MAY_RUN: &[&str] = &["mkfs.ext4", "mkfs.xfs", "resize2fs", "xfs_growfs"];

/// An encrypted volume's whole life through the plugin, lvmd and lvmd-csi at debug:
/// create; stage (formats), unstage, stage with a wrong key, stage; publish; expand
/// without the key, with a wrong one, with it; rekey through lvmd's API (a wrong old
/// key first); unpublish, unstage; stage with the old key, then the new one (the file
/// kept); unstage; delete. No log line, no returned error, no `/proc/<pid>/cmdline` or
/// `environ` of lvmd or lvmd-csi (read while the volume is open) holds a key in any of
/// [`forms`]. In the VM, process accounting runs through it all: lvmd starts only
/// [`LVMD_MAY_RUN`] (its mkfs.ext4 must be seen, so the check is shown to see lvmd's
/// children), lvmd-csi nothing.
pub fn encrypted_keys_leak_nowhere(e: &mut Env) {
    // Not words a log would hold otherwise.
    const KEY: &str = "Qz7-leak-probe-key-5d1e93";
    const NEW: &str = "Nw4-leak-probe-key-a4c0f2";
    const WRONG: &str = "Wr9-leak-probe-key-0b7e61";
    let keys: [&[u8]; 3] = [KEY.as_bytes(), NEW.as_bytes(), WRONG.as_bytes()];
    e.restart_with(&[("RUST_LOG", "debug")]);
    let acct = e.is_real().then(|| ProcessAccounting::start(&e.dir));
    // The accounting sees a short-lived child of this process.
    let probe = std::process::Command::new("true").status().unwrap();
    assert!(probe.success());
    let mut errors: Vec<tonic::Status> = Vec::new();
    let mut refused = |r: Result<(), tonic::Status>, want: Code| {
        let s = code(r);
        assert_eq!(s.code(), want, "{s:?}");
        errors.push(s);
    };

    let v = e
        .create(req("pvc-leak", 48 * MIB, &[("encryption", "true")]))
        .unwrap();
    let id = v.volume_id.clone();
    let mut node = e.node();
    let stage = |key: &str| NodeStageVolumeRequest {
        volume_context: v.volume_context.clone(),
        secrets: secrets(key),
        ..stage_req(e, &id, mount_cap("ext4"))
    };
    let publish = NodePublishVolumeRequest {
        volume_context: v.volume_context.clone(),
        ..publish_req(e, &id, mount_cap("ext4"))
    };
    let (staging, target) = (stage(KEY).staging_target_path, publish.target_path.clone());
    let unstage_req = NodeUnstageVolumeRequest {
        volume_id: id.clone(),
        staging_target_path: staging.clone(),
    };
    // A wrong key is only wrong once there is a header: stage (formats) first.
    e.rt.block_on(node.node_stage_volume(stage(KEY))).unwrap();
    e.rt.block_on(node.node_unstage_volume(unstage_req.clone()))
        .unwrap();
    refused(
        e.rt.block_on(node.node_stage_volume(stage(WRONG)))
            .map(drop),
        Code::PermissionDenied,
    );
    e.rt.block_on(node.node_stage_volume(stage(KEY))).unwrap();
    e.rt.block_on(node.node_publish_volume(publish.clone()))
        .unwrap();
    if e.is_real() {
        std::fs::write(Path::new(&target).join("f"), b"kept\n").unwrap();
    }
    // Both processes while the volume is open.
    let mut procs = Vec::new();
    for (who, pid) in [("lvmd", e.lvmd_pid()), ("lvmd-csi", e.plugin_pid())] {
        for file in ["cmdline", "environ"] {
            let bytes = std::fs::read(format!("/proc/{pid}/{file}"))
                .unwrap_or_else(|err| panic!("/proc/{pid}/{file} of {who}: {err}"));
            assert!(!bytes.is_empty(), "{who}'s {file} is empty");
            procs.push((format!("/proc/<{who}>/{file}"), bytes));
        }
    }

    // Expand: without the key, with a wrong one (both refused), then with it.
    refused(
        e.rt.block_on(node.node_expand_volume(expand_req(&id, &target, &staging, 64)))
            .map(drop),
        Code::InvalidArgument,
    );
    let expand = |key: &str| NodeExpandVolumeRequest {
        secrets: secrets(key),
        ..expand_req(&id, &target, &staging, 64)
    };
    refused(
        e.rt.block_on(node.node_expand_volume(expand(WRONG)))
            .map(drop),
        Code::PermissionDenied,
    );
    e.rt.block_on(node.node_expand_volume(expand(KEY))).unwrap();

    // Rekey through lvmd's API (what `lvmd-ctl lv rekey` calls), the volume mounted: a
    // wrong old key refused, then KEY -> NEW.
    let ch =
        e.rt.block_on(lvmd::rpc::client::connect(&e.lvmd_sock))
            .unwrap();
    let mut lvs = lvmd::rpc::pb::logical_volume_service_client::LogicalVolumeServiceClient::new(ch);
    let rekey = |old: &str| lvmd::rpc::pb::RekeyVolumeRequest {
        volume: Some(lvmd::rpc::pb::VolumeRef {
            device_class: "ssd".into(),
            volume_group: String::new(),
            name: "pvc-leak".into(),
        }),
        passphrase: old.as_bytes().to_vec(),
        new_passphrase: NEW.as_bytes().to_vec(),
    };
    refused(
        e.rt.block_on(lvs.rekey_volume(rekey(WRONG))).map(drop),
        Code::PermissionDenied,
    );
    e.rt.block_on(lvs.rekey_volume(rekey(KEY))).unwrap();

    // Unpublish, unstage; the old key refused, the new one stages the same filesystem.
    e.rt.block_on(node.node_unpublish_volume(NodeUnpublishVolumeRequest {
        volume_id: id.clone(),
        target_path: target.clone(),
    }))
    .unwrap();
    e.rt.block_on(node.node_unstage_volume(unstage_req.clone()))
        .unwrap();
    refused(
        e.rt.block_on(node.node_stage_volume(stage(KEY))).map(drop),
        Code::PermissionDenied,
    );
    e.rt.block_on(node.node_stage_volume(stage(NEW))).unwrap();
    if e.is_real() {
        assert_eq!(
            std::fs::read(Path::new(&staging).join("f")).unwrap(),
            b"kept\n"
        );
    }
    e.rt.block_on(node.node_unstage_volume(unstage_req))
        .unwrap();
    e.delete(&id);

    for s in &errors {
        assert_no_key(&keys, &status_text(s), &format!("the error {s:?}"));
    }
    for (where_, bytes) in &procs {
        assert_no_key(&keys, bytes, where_);
    }
    for (who, log) in e.log_bytes() {
        // At debug, lvmd's log has libcryptsetup's own lines (real node only).
        if e.is_real() && who == "lvmd" {
            assert!(
                contains(&log, b"libcryptsetup"),
                "lvmd's log is not at debug: no libcryptsetup line"
            );
        }
        assert_no_key(&keys, &log, &format!("{who}'s log"));
    }

    if let Some(acct) = acct {
        let exited = acct.stop();
        let me = std::process::id();
        assert!(
            exited.iter().any(|x| x.ppid == me && x.comm == "true"),
            "process accounting missed this test's own child: {exited:?}"
        );
        let of_lvmd = descendants(&exited, e.lvmd_pid());
        let names: std::collections::BTreeSet<&str> =
            of_lvmd.values().map(String::as_str).collect();
        assert!(
            names.contains("mkfs.ext4") && names.contains("resize2fs"),
            "lvmd's mkfs.ext4 and resize2fs not both seen: the check does not see lvmd's \
             children ({exited:?})"
        );
        for n in &names {
            assert!(
                LVMD_MAY_RUN.contains(n),
                "lvmd started {n:?} (its processes: {of_lvmd:?})"
            );
        }
        let of_plugin = descendants(&exited, e.plugin_pid());
        assert!(of_plugin.is_empty(), "lvmd-csi started {of_plugin:?}");
    }
}
