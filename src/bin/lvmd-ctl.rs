//! lvmd-ctl: the admin's tool for lvmd. `inspect` reads devices directly, no daemon; every
//! other command talks to the daemon over its socket.
//!
//! Exit codes: 0 ok; 1 the daemon refused (its message on stderr); 3 no daemon to talk
//! to; 2 bad usage (clap's).

use clap::{Args, Parser, Subcommand};
use lvmd::crypt::Passphrase;
use lvmd::rpc::client::connect;
use lvmd::rpc::pb;
use lvmd::units::{human_bytes, parse_size, Bytes};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use tonic::transport::Channel;

#[derive(Parser)]
#[command(name = "lvmd-ctl", version, about = "Inspect and drive lvmd")]
struct Cli {
    /// The daemon's socket.
    #[arg(long, global = true, env = "LVMD_SOCKET", default_value = lvmd::daemon::config::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print JSON (snake_case keys, sizes in bytes) instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read PV labels, metadata areas and volume groups straight from devices (no daemon).
    Inspect {
        /// Block devices (or image files) to read.
        #[arg(required = true)]
        devices: Vec<PathBuf>,
    },
    /// Volume groups.
    #[command(subcommand)]
    Vg(VgCommand),
    /// Logical volumes.
    #[command(subcommand)]
    Lv(LvCommand),
    /// Thin snapshots of thin volumes (restore one with `lv create --from`).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Free and total space per device class.
    Capacity {
        #[arg(long)]
        class: Option<String>,
    },
    /// Thin pools.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Print capacity now and on every change.
    Watch {
        #[arg(long)]
        class: Option<String>,
        /// Stop after this many updates.
        #[arg(long)]
        count: Option<usize>,
    },
    /// The daemon's gRPC health (exit 1 unless serving).
    Health {
        /// A service name (e.g. lvmd.v1.LogicalVolumeService); empty: the whole server.
        #[arg(long, default_value = "")]
        service: String,
    },
}

#[derive(Subcommand)]
enum PoolCommand {
    /// Grow a device class's thin pool online from its VG's free space (never shrinks).
    Grow {
        /// The device class whose pool grows.
        class: String,
        /// The pool's new data size (e.g. 20GiB).
        #[arg(long, value_parser = size_arg, required_unless_present = "metadata")]
        data: Option<Bytes>,
        /// The pool's new metadata size (e.g. 1GiB).
        #[arg(long, value_parser = size_arg)]
        metadata: Option<Bytes>,
    },
}

#[derive(Subcommand)]
enum VgCommand {
    List,
    Create {
        name: String,
        #[arg(required = true)]
        devices: Vec<String>,
    },
    Extend {
        name: String,
        #[arg(required = true)]
        devices: Vec<String>,
    },
}

#[derive(Args, Clone)]
struct Where {
    /// Device class (default: the daemon's default class).
    #[arg(long)]
    class: Option<String>,
    /// Volume group, instead of a device class.
    #[arg(long)]
    vg: Option<String>,
}

impl Where {
    fn volume(&self, name: &str) -> pb::VolumeRef {
        pb::VolumeRef {
            device_class: self.class.clone().unwrap_or_default(),
            volume_group: self.vg.clone().unwrap_or_default(),
            name: name.into(),
        }
    }
}

fn size_arg(s: &str) -> Result<Bytes, String> {
    parse_size(s)
}

#[derive(Subcommand)]
enum SnapshotCommand {
    List {
        #[command(flatten)]
        at: Where,
    },
    /// A read-only snapshot NAME of volume --of: thin of a thin volume, copy-on-write
    /// of a linear or striped one.
    Create {
        name: String,
        #[arg(long = "of")]
        source: String,
        /// A copy-on-write snapshot's store: a size (`1GiB`) or a share of the volume
        /// (`20%`, the default); the snapshot is invalid once it fills.
        #[arg(long, value_parser = cow_size_arg)]
        cow_size: Option<CowSizeArg>,
        #[command(flatten)]
        at: Where,
    },
    Delete {
        name: String,
        #[command(flatten)]
        at: Where,
    },
    /// Snapshots of several thin volumes taken at one instant.
    #[command(subcommand)]
    Group(GroupCommand),
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Group NAME: a read-only snapshot of each --of volume, all at one instant.
    Create {
        name: String,
        /// A thin volume, as SOURCE (its snapshot named NAME-SOURCE) or SOURCE:SNAPSHOT.
        #[arg(long = "of", required = true)]
        sources: Vec<String>,
        #[command(flatten)]
        at: Where,
    },
    /// Deletes every snapshot of group NAME.
    Delete {
        name: String,
        #[command(flatten)]
        at: Where,
    },
    Get {
        name: String,
        #[command(flatten)]
        at: Where,
    },
}

/// `SOURCE` or `SOURCE:SNAPSHOT` (`:` is in no LV name), as a group's member.
fn group_member(group: &str, arg: &str) -> pb::SnapshotGroupMember {
    let (source, name) = match arg.split_once(':') {
        Some((source, name)) => (source.to_owned(), name.to_owned()),
        None => (arg.to_owned(), format!("{group}-{arg}")),
    };
    pb::SnapshotGroupMember {
        name,
        source_volume: source,
    }
}

fn snapshot_group_json(g: &pb::SnapshotGroup) -> Value {
    json!({
        "name": g.name,
        "volume_group": g.volume_group,
        "device_class": g.device_class,
        "snapshots": g.snapshots.iter().map(snapshot_json).collect::<Vec<_>>(),
    })
}

#[derive(Clone, Copy)]
enum CowSizeArg {
    Bytes(Bytes),
    Percent(u32),
}

fn cow_size_arg(s: &str) -> Result<CowSizeArg, String> {
    match s.trim().strip_suffix('%') {
        Some(p) => match p.trim().parse::<u32>() {
            Ok(p @ 1..=100) => Ok(CowSizeArg::Percent(p)),
            _ => Err(format!("{s:?}: a share is 1% to 100%")),
        },
        None => parse_size(s).map(CowSizeArg::Bytes),
    }
}

#[derive(Subcommand)]
enum LvCommand {
    List {
        #[command(flatten)]
        at: Where,
    },
    Create {
        name: String,
        /// 64MiB, 1G, or bytes.
        #[arg(value_parser = size_arg)]
        size: Bytes,
        #[command(flatten)]
        at: Where,
        /// Linear, whatever the class's default.
        #[arg(long, conflicts_with_all = ["stripes", "mirrors", "thin"])]
        linear: bool,
        /// Thin, in the class's thin pool (the default of a class with one).
        #[arg(long, conflicts_with_all = ["stripes", "mirrors"])]
        thin: bool,
        /// Stripe over this many PVs.
        #[arg(long, conflicts_with = "mirrors")]
        stripes: Option<u32>,
        /// raid1 with this many copies besides the first, each on a PV of its own.
        #[arg(long)]
        mirrors: Option<u32>,
        /// raid1 with dm-integrity under each copy (lvm2's --raidintegrity y): a block
        /// one copy returns damaged is detected and read from another. Without it: the
        /// device class's `integrity`.
        #[arg(long, requires = "mirrors", conflicts_with = "no_integrity")]
        integrity: bool,
        /// raid1 without dm-integrity, whatever the device class's `integrity`.
        #[arg(long, requires = "mirrors")]
        no_integrity: bool,
        #[arg(long, value_parser = size_arg)]
        stripe_size: Option<Bytes>,
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// LUKS2-encrypt it (the device class's settings); formatted at its first mount
        /// with the key given there (--key-file).
        #[arg(long)]
        encrypted: bool,
        /// Made from this snapshot or thin volume (restore, clone): its contents, at SIZE
        /// (0: the source's). Thin unless --linear or --stripes (a restore from a
        /// copy-on-write snapshot, by copying).
        #[arg(long, conflicts_with_all = ["mirrors"])]
        from: Option<String>,
    },
    Remove {
        name: String,
        #[command(flatten)]
        at: Where,
    },
    Resize {
        name: String,
        #[arg(value_parser = size_arg)]
        size: Bytes,
        #[command(flatten)]
        at: Where,
    },
    /// An active mirror: rebuild its legs on missing or failed PVs onto a PV no other
    /// leg uses (as lvconvert --repair; then vgreduce --removemissing is yours).
    Repair {
        name: String,
        #[command(flatten)]
        at: Where,
    },
    /// An active, in-sync mirror: give it N legs besides the first (as lvconvert -m N):
    /// new legs rebuilt on PVs no leg uses, removed legs' extents zeroed; 0: linear.
    Convert {
        name: String,
        #[arg(long)]
        mirrors: u32,
        /// A PV device where new legs may go, or whose leg goes (repeatable).
        #[arg(long = "pv")]
        pvs: Vec<String>,
        #[command(flatten)]
        at: Where,
    },
    /// Grow to SIZE (never shrinks) and, with --path, the filesystem mounted there.
    Expand {
        name: String,
        #[arg(value_parser = size_arg)]
        size: Bytes,
        #[command(flatten)]
        at: Where,
        /// Where the volume's filesystem is mounted (ext4: resize2fs, xfs: xfs_growfs).
        #[arg(long)]
        path: Option<PathBuf>,
        /// An encrypted volume's key: this file's bytes exactly (as cryptsetup's
        /// --key-file), needed to grow its open mapping.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    Activate {
        name: String,
        #[command(flatten)]
        at: Where,
    },
    Deactivate {
        name: String,
        #[command(flatten)]
        at: Where,
    },
    /// Replace an encrypted volume's key: the key in --new-key-file is added, then the
    /// one in --key-file removed (the data is not touched). Safe to run again after a
    /// crash between the two: the volume opens with either key until it is done.
    Rekey {
        name: String,
        #[command(flatten)]
        at: Where,
        /// The key in use now: this file's bytes exactly.
        #[arg(long)]
        key_file: PathBuf,
        /// The new key: this file's bytes exactly.
        #[arg(long)]
        new_key_file: PathBuf,
    },
    /// Activate, make a filesystem if there is none, and mount at TARGET (below one of
    /// the daemon's mount_roots).
    Mount {
        name: String,
        target: PathBuf,
        #[command(flatten)]
        at: Where,
        /// ext4 or xfs.
        #[arg(long, default_value = "ext4")]
        fs: String,
        /// Mount options (repeatable): noatime, nodev, ...
        #[arg(long = "option")]
        options: Vec<String>,
        #[arg(long)]
        read_only: bool,
        /// An encrypted volume's key: this file's bytes exactly (as cryptsetup's
        /// --key-file; no newline stripped).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Unmount TARGET (not mounted is fine).
    Unmount {
        target: PathBuf,
        /// Remove the (empty) target directory too.
        #[arg(long)]
        remove_target: bool,
    },
}

/// Left-aligned columns, two spaces apart.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn hb(n: u64) -> String {
    human_bytes(Bytes(n))
}

fn layout_name(l: i32) -> &'static str {
    match pb::Layout::try_from(l) {
        Ok(pb::Layout::Linear) => "linear",
        Ok(pb::Layout::Striped) => "striped",
        Ok(pb::Layout::Raid1) => "raid1",
        Ok(pb::Layout::Thin) => "thin",
        _ => "unspecified",
    }
}

fn health_name(h: i32) -> &'static str {
    match pb::Health::try_from(h) {
        Ok(pb::Health::Degraded) => "degraded",
        Ok(pb::Health::Failed) => "failed",
        _ => "ok",
    }
}

fn vg_json(v: &pb::VolumeGroup) -> Value {
    json!({
        "name": v.name,
        "uuid": v.uuid,
        "seqno": v.seqno,
        "extent_size": v.extent_size_bytes,
        "total": v.total_bytes,
        "free": v.free_bytes,
        "logical_volume_count": v.logical_volume_count,
        "device_classes": v.device_classes,
        "tags": v.tags,
        "physical_volumes": v.physical_volumes.iter().map(|p| json!({
            "device": p.device,
            "uuid": p.uuid,
            "size": p.size_bytes,
            "free": p.free_bytes,
            "present": p.present,
        })).collect::<Vec<_>>(),
    })
}

fn lv_json(v: &pb::LogicalVolume) -> Value {
    json!({
        "name": v.name,
        "volume_group": v.volume_group,
        "device_class": v.device_class,
        "uuid": v.uuid,
        "size": v.size_bytes,
        "layout": layout_name(v.layout),
        "stripes": v.stripes,
        "stripe_size": v.stripe_size_bytes,
        "mirrors": v.mirrors,
        "health": health_name(v.health),
        "health_message": v.health_message,
        "tags": v.tags,
        "active": v.active,
        "device_path": v.device_path,
        "encrypted": v.encrypted,
        "integrity": v.integrity,
        "mirror_sync": v.mirror_sync.as_ref().map(|m| json!({
            "sync_percent": m.sync_percent,
            "sync_action": m.sync_action,
            "mismatch_count": m.mismatch_count,
            "leg_health": m.leg_health,
            "integrity_mismatches": m.integrity_mismatches,
        })),
    })
}

/// An active mirror's sync column: `100.00% idle AA`, with mismatches when counted.
fn sync_cell(v: &pb::LogicalVolume) -> String {
    match &v.mirror_sync {
        None => "-".into(),
        Some(m) => {
            let mut cell = format!("{:.2}% {} {}", m.sync_percent, m.sync_action, m.leg_health);
            if m.mismatch_count != 0 {
                cell.push_str(&format!(" {} mismatches", m.mismatch_count));
            }
            cell
        }
    }
}

fn capacity_json(c: &pb::DeviceClassCapacity) -> Value {
    json!({
        "device_class": c.device_class,
        "volume_group": c.volume_group,
        "is_default": c.is_default,
        "total": c.total_bytes,
        "free": c.free_bytes,
        "largest": c.largest_bytes,
        "largest_linear": c.largest_linear_bytes,
        "default_stripes": c.default_stripes,
        "extent_size": c.extent_size_bytes,
        "wiping": c.wiping_bytes,
        "largest_raid1": c.largest_raid1_bytes,
        "metadata_used": c.metadata_used_bytes,
        "metadata_capacity": c.metadata_capacity_bytes,
        "thin_pool": c.thin_pool.as_ref().map(|t| json!({
            "name": t.name,
            "data": t.data_bytes,
            "metadata": t.metadata_bytes,
            "chunk_size": t.chunk_bytes,
            "provisioned": t.provisioned_bytes,
            "thin_volumes": t.thin_volumes,
            "provisionable": t.provisionable_bytes,
            "overprovision_ratio": t.overprovision_ratio,
            "usage_limit_percent": t.usage_limit_percent,
            "active": t.active,
            "data_used": t.data_used_bytes,
            "metadata_used": t.metadata_used_bytes,
            "trouble": t.trouble,
        })),
        "error": c.error,
    })
}

/// A thin pool's use: `12% data, 3% metadata` (`inactive` when the kernel cannot
/// count it now), and what it has provisioned against its ratio.
fn thin_use(c: &pb::DeviceClassCapacity) -> String {
    let Some(t) = &c.thin_pool else {
        return "-".into();
    };
    let pct = |u: u64, n: u64| u.saturating_mul(100).checked_div(n).unwrap_or(0);
    let used = if t.active {
        format!(
            "{}% data, {}% metadata",
            pct(t.data_used_bytes, t.data_bytes),
            pct(t.metadata_used_bytes, t.metadata_bytes)
        )
    } else {
        "inactive".into()
    };
    let trouble = if t.trouble.is_empty() {
        String::new()
    } else {
        format!(", {}", t.trouble)
    };
    format!(
        "{} {}: {used}, {} of {} provisioned (ratio {}){trouble}",
        t.name,
        hb(t.data_bytes),
        hb(t.provisioned_bytes),
        hb((t.data_bytes as f64 * t.overprovision_ratio) as u64),
        t.overprovision_ratio
    )
}

fn vg_table(vgs: &[pb::VolumeGroup]) -> String {
    let rows: Vec<Vec<String>> = vgs
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                v.device_classes.join(","),
                v.physical_volumes.len().to_string(),
                v.logical_volume_count.to_string(),
                hb(v.total_bytes),
                hb(v.free_bytes),
                hb(v.extent_size_bytes),
            ]
        })
        .collect();
    table(
        &["VG", "CLASS", "PVS", "LVS", "SIZE", "FREE", "EXTENT"],
        &rows,
    )
}

fn snapshot_json(s: &pb::Snapshot) -> Value {
    json!({
        "name": s.name,
        "volume_group": s.volume_group,
        "device_class": s.device_class,
        "uuid": s.uuid,
        "source_volume": s.source_volume,
        "size": s.size_bytes,
        "creation_time": s.creation_time,
        "read_only": s.read_only,
        "group": s.group,
        "cow_size": s.cow_size_bytes,
    })
}

fn snapshot_table(snaps: &[pb::Snapshot]) -> String {
    let rows: Vec<Vec<String>> = snaps
        .iter()
        .map(|s| {
            vec![
                s.volume_group.clone(),
                s.name.clone(),
                s.source_volume.clone(),
                hb(s.size_bytes),
                s.creation_time.to_string(),
                if s.read_only { "ro" } else { "rw" }.into(),
            ]
        })
        .collect();
    table(
        &["VG", "SNAPSHOT", "SOURCE", "SIZE", "CREATED", "MODE"],
        &rows,
    )
}

fn lv_table(lvs: &[pb::LogicalVolume]) -> String {
    let rows: Vec<Vec<String>> = lvs
        .iter()
        .map(|v| {
            let layout = match pb::Layout::try_from(v.layout) {
                Ok(pb::Layout::Striped) => {
                    format!("striped {}x{}", v.stripes, hb(v.stripe_size_bytes))
                }
                Ok(pb::Layout::Raid1) if v.integrity => {
                    format!("raid1 {} legs+integrity", v.mirrors + 1)
                }
                Ok(pb::Layout::Raid1) => format!("raid1 {} legs", v.mirrors + 1),
                Ok(pb::Layout::Thin) => "thin".into(),
                _ => "linear".into(),
            };
            vec![
                v.volume_group.clone(),
                v.name.clone(),
                hb(v.size_bytes),
                layout,
                if v.active {
                    v.device_path.clone()
                } else {
                    "-".into()
                },
                sync_cell(v),
                match pb::Health::try_from(v.health) {
                    Ok(pb::Health::Ok) | Err(_) => "ok".into(),
                    _ => format!("{}: {}", health_name(v.health), v.health_message),
                },
                v.tags.join(","),
            ]
        })
        .collect();
    table(
        &[
            "VG", "LV", "SIZE", "LAYOUT", "DEVICE", "SYNC", "HEALTH", "TAGS",
        ],
        &rows,
    )
}

/// The metadata areas' use, as a share of what they take: `3% of 8.0MiB`.
fn metadata_use(c: &pb::DeviceClassCapacity) -> String {
    if c.metadata_capacity_bytes == 0 {
        return "-".into();
    }
    let pct = c.metadata_used_bytes * 100 / c.metadata_capacity_bytes;
    format!("{pct}% of {}", hb(c.metadata_capacity_bytes))
}

fn capacity_table(cs: &[pb::DeviceClassCapacity]) -> String {
    let rows: Vec<Vec<String>> = cs
        .iter()
        .map(|c| {
            let name = if c.is_default {
                format!("{} (default)", c.device_class)
            } else {
                c.device_class.clone()
            };
            if !c.error.is_empty() {
                return vec![
                    name,
                    c.volume_group.clone(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    c.error.clone(),
                ];
            }
            vec![
                name,
                c.volume_group.clone(),
                hb(c.total_bytes),
                hb(c.free_bytes),
                hb(c.largest_bytes),
                hb(c.wiping_bytes),
                metadata_use(c),
                thin_use(c),
                String::new(),
            ]
        })
        .collect();
    table(
        &[
            "CLASS",
            "VG",
            "SIZE",
            "FREE",
            "LARGEST",
            "WIPING",
            "METADATA",
            "THIN POOL",
            "ERROR",
        ],
        &rows,
    )
}

enum Failure {
    Connect(String),
    Refused(tonic::Status),
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Failure {
        Failure::Refused(s)
    }
}

/// A key file's bytes exactly (the key never goes through argv or the environment),
/// read into zeroized memory and moved into the request's field, which is zeroed when
/// the request is dropped (src/rpc/mod.rs). The error names the file, never its
/// contents. No file: no key (empty).
// The error is `run`'s own, returned from there as it is.
#[allow(clippy::result_large_err)]
fn key_file(path: Option<&PathBuf>) -> Result<Vec<u8>, Failure> {
    let Some(p) = path else {
        return Ok(Vec::new());
    };
    let key = Passphrase::from_file(p)
        .map_err(|e| Failure::Refused(tonic::Status::invalid_argument(e.to_string())))?;
    Ok(key.into_wire())
}

fn print(json: bool, value: Value, text: String) {
    if json {
        println!("{}", serde_json::to_string_pretty(&value).expect("JSON"));
    } else {
        print!("{text}");
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let json = cli.json;
    let channel: Channel = connect(&cli.socket).await.map_err(|e| {
        Failure::Connect(format!("cannot connect to {}: {e}", cli.socket.display()))
    })?;
    let mut vgc = pb::volume_group_service_client::VolumeGroupServiceClient::new(channel.clone());
    let mut lvc =
        pb::logical_volume_service_client::LogicalVolumeServiceClient::new(channel.clone());
    let mut capc = pb::capacity_service_client::CapacityServiceClient::new(channel.clone());
    match cli.command {
        Command::Inspect { .. } => unreachable!("handled without the daemon"),
        Command::Vg(VgCommand::List) => {
            let vgs = vgc
                .list_volume_groups(pb::ListVolumeGroupsRequest {})
                .await?
                .into_inner()
                .volume_groups;
            print(
                json,
                Value::Array(vgs.iter().map(vg_json).collect()),
                vg_table(&vgs),
            );
        }
        Command::Vg(VgCommand::Create { name, devices }) => {
            let v = vgc
                .create_volume_group(pb::CreateVolumeGroupRequest { name, devices })
                .await?
                .into_inner();
            print(json, vg_json(&v), vg_table(std::slice::from_ref(&v)));
        }
        Command::Vg(VgCommand::Extend { name, devices }) => {
            let v = vgc
                .extend_volume_group(pb::ExtendVolumeGroupRequest { name, devices })
                .await?
                .into_inner();
            print(json, vg_json(&v), vg_table(std::slice::from_ref(&v)));
        }
        Command::Lv(LvCommand::List { at }) => {
            let lvs = lvc
                .list_logical_volumes(pb::ListLogicalVolumesRequest {
                    device_class: at.class.unwrap_or_default(),
                    volume_group: at.vg.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .logical_volumes;
            print(
                json,
                Value::Array(lvs.iter().map(lv_json).collect()),
                lv_table(&lvs),
            );
        }
        Command::Lv(LvCommand::Create {
            name,
            size,
            at,
            linear,
            stripes,
            stripe_size,
            mirrors,
            integrity,
            no_integrity,
            tags,
            encrypted,
            thin,
            from,
        }) => {
            let layout = if linear {
                pb::Layout::Linear
            } else if thin || (from.is_some() && stripes.is_none()) {
                pb::Layout::Thin
            } else if mirrors.is_some() {
                pb::Layout::Raid1
            } else if stripes.is_some_and(|s| s > 1) {
                pb::Layout::Striped
            } else if stripes == Some(1) {
                pb::Layout::Linear
            } else {
                pb::Layout::Unspecified
            };
            let v = lvc
                .create_logical_volume(pb::CreateLogicalVolumeRequest {
                    volume: Some(at.volume(&name)),
                    size_bytes: size.0,
                    layout: layout as i32,
                    stripes: stripes.unwrap_or(0),
                    stripe_size_bytes: stripe_size.map_or(0, |s| s.0),
                    mirrors: mirrors.unwrap_or(0),
                    tags,
                    encrypted,
                    integrity: (integrity || no_integrity).then_some(integrity),
                    source: from.unwrap_or_default(),
                })
                .await?
                .into_inner();
            print(json, lv_json(&v), lv_table(std::slice::from_ref(&v)));
        }
        Command::Snapshot(SnapshotCommand::List { at }) => {
            let r = lvc
                .list_snapshots(pb::ListSnapshotsRequest {
                    device_class: at.class.unwrap_or_default(),
                    volume_group: at.vg.unwrap_or_default(),
                })
                .await?
                .into_inner();
            print(
                json,
                Value::Array(r.snapshots.iter().map(snapshot_json).collect()),
                snapshot_table(&r.snapshots),
            );
        }
        Command::Snapshot(SnapshotCommand::Create {
            name,
            source,
            cow_size,
            at,
        }) => {
            let (cow_size_bytes, cow_size_percent) = match cow_size {
                None => (None, None),
                Some(CowSizeArg::Bytes(b)) => (Some(b.0), None),
                Some(CowSizeArg::Percent(p)) => (None, Some(p)),
            };
            let s = lvc
                .create_snapshot(pb::CreateSnapshotRequest {
                    snapshot: Some(at.volume(&name)),
                    source_volume: source,
                    cow_size_bytes,
                    cow_size_percent,
                })
                .await?
                .into_inner();
            print(
                json,
                snapshot_json(&s),
                snapshot_table(std::slice::from_ref(&s)),
            );
        }
        Command::Snapshot(SnapshotCommand::Delete { name, at }) => {
            let r = lvc
                .delete_snapshot(pb::DeleteSnapshotRequest {
                    snapshot: Some(at.volume(&name)),
                })
                .await?
                .into_inner();
            let text = if r.existed {
                format!("deleted {name}\n")
            } else {
                format!("{name} did not exist\n")
            };
            print(json, json!({"name": name, "existed": r.existed}), text);
        }
        Command::Snapshot(SnapshotCommand::Group(GroupCommand::Create { name, sources, at })) => {
            let g = lvc
                .create_snapshot_group(pb::CreateSnapshotGroupRequest {
                    group: Some(at.volume(&name)),
                    snapshots: sources.iter().map(|s| group_member(&name, s)).collect(),
                })
                .await?
                .into_inner();
            print(json, snapshot_group_json(&g), snapshot_table(&g.snapshots));
        }
        Command::Snapshot(SnapshotCommand::Group(GroupCommand::Get { name, at })) => {
            let g = lvc
                .get_snapshot_group(pb::GetSnapshotGroupRequest {
                    group: Some(at.volume(&name)),
                })
                .await?
                .into_inner();
            print(json, snapshot_group_json(&g), snapshot_table(&g.snapshots));
        }
        Command::Snapshot(SnapshotCommand::Group(GroupCommand::Delete { name, at })) => {
            let r = lvc
                .delete_snapshot_group(pb::DeleteSnapshotGroupRequest {
                    group: Some(at.volume(&name)),
                })
                .await?
                .into_inner();
            let text = if r.existed {
                format!("deleted group {name}\n")
            } else {
                format!("group {name} did not exist\n")
            };
            print(json, json!({"name": name, "existed": r.existed}), text);
        }
        Command::Lv(LvCommand::Remove { name, at }) => {
            let r = lvc
                .remove_logical_volume(pb::RemoveLogicalVolumeRequest {
                    volume: Some(at.volume(&name)),
                })
                .await?
                .into_inner();
            let text = if r.existed {
                format!("removed {name}\n")
            } else {
                format!("{name} did not exist\n")
            };
            print(json, json!({"name": name, "existed": r.existed}), text);
        }
        Command::Lv(LvCommand::Resize { name, size, at }) => {
            let v = lvc
                .resize_logical_volume(pb::ResizeLogicalVolumeRequest {
                    volume: Some(at.volume(&name)),
                    size_bytes: size.0,
                })
                .await?
                .into_inner();
            print(json, lv_json(&v), lv_table(std::slice::from_ref(&v)));
        }
        Command::Lv(LvCommand::Repair { name, at }) => {
            let v = lvc
                .repair_logical_volume(pb::RepairLogicalVolumeRequest {
                    volume: Some(at.volume(&name)),
                })
                .await?
                .into_inner();
            print(json, lv_json(&v), lv_table(std::slice::from_ref(&v)));
        }
        Command::Lv(LvCommand::Convert {
            name,
            mirrors,
            pvs,
            at,
        }) => {
            let v = lvc
                .convert_logical_volume(pb::ConvertLogicalVolumeRequest {
                    volume: Some(at.volume(&name)),
                    mirrors,
                    physical_volumes: pvs,
                })
                .await?
                .into_inner();
            print(json, lv_json(&v), lv_table(std::slice::from_ref(&v)));
        }
        Command::Lv(LvCommand::Expand {
            name,
            size,
            at,
            path,
            key_file: key,
        }) => {
            let passphrase = key_file(key.as_ref())?;
            let mut node = pb::node_service_client::NodeServiceClient::new(channel.clone());
            let r = node
                .expand_volume(pb::ExpandVolumeRequest {
                    volume: Some(at.volume(&name)),
                    size_bytes: size.0,
                    target_path: path
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    passphrase,
                })
                .await?
                .into_inner();
            let v = r.volume.unwrap_or_default();
            let mut text = lv_table(std::slice::from_ref(&v));
            if let Some(p) = &path {
                text.push_str(&format!(
                    "filesystem at {}: {} bytes\n",
                    p.display(),
                    r.filesystem_size_bytes
                ));
            }
            let mut j = lv_json(&v);
            j["filesystem_size_bytes"] = json!(r.filesystem_size_bytes);
            print(json, j, text);
        }
        Command::Lv(LvCommand::Activate { name, at }) => {
            let v = lvc
                .activate_logical_volume(pb::ActivateLogicalVolumeRequest {
                    volume: Some(at.volume(&name)),
                })
                .await?
                .into_inner();
            print(json, lv_json(&v), lv_table(std::slice::from_ref(&v)));
        }
        Command::Lv(LvCommand::Deactivate { name, at }) => {
            let v = lvc
                .deactivate_logical_volume(pb::DeactivateLogicalVolumeRequest {
                    volume: Some(at.volume(&name)),
                })
                .await?
                .into_inner();
            print(json, lv_json(&v), lv_table(std::slice::from_ref(&v)));
        }
        Command::Lv(LvCommand::Rekey {
            name,
            at,
            key_file: old,
            new_key_file: new,
        }) => {
            let r = lvc
                .rekey_volume(pb::RekeyVolumeRequest {
                    volume: Some(at.volume(&name)),
                    passphrase: key_file(Some(&old))?,
                    new_passphrase: key_file(Some(&new))?,
                })
                .await?
                .into_inner();
            let v = r.volume.unwrap_or_default();
            let mut j = lv_json(&v);
            j["keyslot"] = json!(r.keyslot);
            j["removed_keyslots"] = json!(r.removed_keyslots);
            let text = if r.removed_keyslots.is_empty() {
                format!(
                    "{}/{}: the new key is in keyslot {}, no old keyslot was left to remove\n",
                    v.volume_group, v.name, r.keyslot
                )
            } else {
                format!(
                    "{}/{}: the new key is in keyslot {}; removed the old key's keyslot(s) {:?}\n",
                    v.volume_group, v.name, r.keyslot, r.removed_keyslots
                )
            };
            print(json, j, text);
        }
        Command::Lv(LvCommand::Mount {
            name,
            target,
            at,
            fs,
            options,
            read_only,
            key_file: key,
        }) => {
            let passphrase = key_file(key.as_ref())?;
            let mut node = pb::node_service_client::NodeServiceClient::new(channel.clone());
            let r = node
                .mount_volume(pb::MountVolumeRequest {
                    volume: Some(at.volume(&name)),
                    target_path: target.display().to_string(),
                    fs_type: fs,
                    mount_options: options,
                    read_only,
                    passphrase,
                })
                .await?
                .into_inner();
            print(
                json,
                json!({"device": r.device_path, "fs_type": r.fs_type, "formatted": r.formatted, "target": target}),
                format!(
                    "mounted {} ({}{}) at {}\n",
                    r.device_path,
                    r.fs_type,
                    if r.formatted { ", new filesystem" } else { "" },
                    target.display()
                ),
            );
        }
        Command::Lv(LvCommand::Unmount {
            target,
            remove_target,
        }) => {
            let mut node = pb::node_service_client::NodeServiceClient::new(channel.clone());
            let r = node
                .unmount(pb::UnmountRequest {
                    target_path: target.display().to_string(),
                    remove_target,
                })
                .await?
                .into_inner();
            print(
                json,
                json!({"was_mounted": r.was_mounted, "target": target}),
                format!(
                    "{} {}\n",
                    if r.was_mounted {
                        "unmounted"
                    } else {
                        "nothing mounted at"
                    },
                    target.display()
                ),
            );
        }
        Command::Capacity { class } => {
            let c = capc
                .get_capacity(pb::GetCapacityRequest {
                    device_class: class.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .device_classes;
            print(
                json,
                Value::Array(c.iter().map(capacity_json).collect()),
                capacity_table(&c),
            );
        }
        Command::Pool(PoolCommand::Grow {
            class,
            data,
            metadata,
        }) => {
            let c = capc
                .grow_thin_pool(pb::GrowThinPoolRequest {
                    device_class: class,
                    data_bytes: data.map_or(0, |b| b.0),
                    metadata_bytes: metadata.map_or(0, |b| b.0),
                })
                .await?
                .into_inner();
            print(json, capacity_json(&c), capacity_table(&[c]));
        }
        Command::Watch { class, count } => {
            let mut stream = capc
                .watch_capacity(pb::GetCapacityRequest {
                    device_class: class.unwrap_or_default(),
                })
                .await?
                .into_inner();
            let mut seen = 0;
            while let Some(update) = stream.message().await? {
                let c = update.device_classes;
                if json {
                    // One line per update, for `jq` and line-reading scripts.
                    println!("{}", Value::Array(c.iter().map(capacity_json).collect()));
                } else {
                    println!("{}", capacity_table(&c));
                }
                use std::io::Write;
                let _ = std::io::stdout().flush();
                seen += 1;
                if count.is_some_and(|n| seen >= n) {
                    break;
                }
            }
        }
        Command::Health { service } => {
            use tonic_health::pb::health_check_response::ServingStatus;
            let mut h = tonic_health::pb::health_client::HealthClient::new(channel);
            let r = h
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.clone(),
                })
                .await?
                .into_inner();
            let status = ServingStatus::try_from(r.status).unwrap_or(ServingStatus::Unknown);
            print(
                json,
                json!({"service": service, "status": status.as_str_name()}),
                format!("{}\n", status.as_str_name()),
            );
            if status != ServingStatus::Serving {
                return Err(Failure::Refused(tonic::Status::unavailable(format!(
                    "not serving: {}",
                    status.as_str_name()
                ))));
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Inspect { devices } = &cli.command {
        let report = lvmd::inspect::inspect(devices);
        if cli.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("report serialises")
            );
        } else {
            print!("{}", report.to_text());
        }
        // Something unreadable is worth a non-zero exit for scripts.
        return if report.errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Connect(msg)) => {
            eprintln!("lvmd-ctl: {msg}");
            ExitCode::from(3)
        }
        Err(Failure::Refused(s)) => {
            eprintln!("lvmd-ctl: {:?}: {}", s.code(), s.message());
            ExitCode::from(1)
        }
    }
}
