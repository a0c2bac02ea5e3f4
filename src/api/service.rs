//! The gRPC services: each call translates its request, runs one engine call on a
//! blocking thread, and translates the answer. No policy lives here.

// tonic's `Status` is the error every handler returns; boxing it in helpers would only
// be unboxed again at the handler.
#![allow(clippy::result_large_err)]

use crate::crypt::Passphrase;
use crate::daemon::classes::{DeviceClasses, Resolved};
use crate::daemon::engine::{
    CowSize, Engine, EngineError, GroupMember, Health, Layout, LvInfo, LvSpec, MountSpec,
    PathStats, SnapshotGroupInfo, SnapshotInfo, VgInfo, VolumeKey,
};
use crate::model::layout::{DEFAULT_REGION_SIZE, DEFAULT_STRIPE_SIZE};
use crate::rpc::pb;
use crate::units::Bytes;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

type Reply<T> = Result<Response<T>, Status>;

/// Runs an engine call off the async threads (it blocks on disks and file locks).
async fn blocking<T, F>(f: F) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, EngineError> + Send + 'static,
{
    // The request's span (who asked, which RPC: `super::audit`) goes along, so the
    // engine's log lines name the peer too.
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| Status::internal(format!("engine call failed: {e}")))?
        .map_err(Status::from)
}

fn path(field: &'static str, p: &str) -> Result<PathBuf, Status> {
    if p.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is empty")));
    }
    Ok(PathBuf::from(p))
}

/// Capacity per device class, recomputed after changes and now and then (changes by
/// lvm2 or another lvmd are only seen that way); watchers get each new value.
pub struct CapacityHub {
    tx: watch::Sender<Arc<Vec<pb::DeviceClassCapacity>>>,
    poke: Notify,
}

impl CapacityHub {
    fn new() -> CapacityHub {
        CapacityHub {
            tx: watch::channel(Arc::new(Vec::new())).0,
            poke: Notify::new(),
        }
    }

    /// Asks for a recomputation soon; many pokes in a burst make one.
    pub fn poke(&self) {
        self.poke.notify_one();
    }
}

fn capacity_of(engine: &dyn Engine, classes: &DeviceClasses) -> Vec<pb::DeviceClassCapacity> {
    classes
        .all()
        .map(|c| {
            let mut out = pb::DeviceClassCapacity {
                device_class: c.name.clone(),
                volume_group: c.vg.clone(),
                is_default: c.is_default,
                default_stripes: c.stripes,
                default_integrity: c.integrity,
                ..Default::default()
            };
            match engine.space(&c.vg, c.stripes) {
                Ok(s) => {
                    out.total_bytes = s.total.0;
                    out.free_bytes = s.free.0;
                    out.largest_bytes = s.largest_striped.0;
                    out.largest_linear_bytes = s.largest_linear.0;
                    out.extent_size_bytes = s.extent_size.0;
                    out.wiping_bytes = s.wiping.0;
                    out.largest_raid1_bytes = s.largest_raid1.iter().map(|b| b.0).collect();
                    out.largest_raid1_integrity_bytes =
                        s.largest_raid1_integrity.iter().map(|b| b.0).collect();
                    out.metadata_used_bytes = s.metadata_used.0;
                    out.metadata_capacity_bytes = s.metadata_capacity.0;
                }
                Err(e) => out.error = e.to_string(),
            }
            if c.thin.is_some() && out.error.is_empty() {
                match engine.thin_pool(&c.vg) {
                    Ok(Some(t)) => {
                        // A thin class's volumes come out of the pool, under its ratio.
                        out.largest_bytes = t.provisionable.0;
                        out.thin_pool = Some(thin_capacity(&t));
                    }
                    Ok(None) => out.error = "its thin pool is not made yet".into(),
                    Err(e) => out.error = e.to_string(),
                }
            }
            out
        })
        .collect()
}

fn thin_capacity(t: &crate::daemon::thin::ThinPoolInfo) -> pb::ThinPoolCapacity {
    let usage = t.usage.as_ref();
    pb::ThinPoolCapacity {
        name: t.name.clone(),
        data_bytes: t.data_size.0,
        metadata_bytes: t.metadata_size.0,
        chunk_bytes: t.chunk_size.0,
        provisioned_bytes: t.provisioned.0,
        thin_volumes: t.thin_volumes,
        provisionable_bytes: t.provisionable.0,
        overprovision_ratio: t
            .policy
            .as_ref()
            .map_or(0.0, |p| p.overprovision_percent as f64 / 100.0),
        usage_limit_percent: t.policy.as_ref().map_or(0, |p| p.usage_limit_percent),
        active: usage.is_some(),
        data_used_bytes: usage.map_or(0, |u| u.data_used.0),
        metadata_used_bytes: usage.map_or(0, |u| u.metadata_used.0),
        trouble: usage.and_then(|u| u.trouble.clone()).unwrap_or_default(),
    }
}

/// The shared state of all services.
#[derive(Clone)]
pub struct Api {
    engine: Arc<dyn Engine>,
    classes: Arc<DeviceClasses>,
    capacity: Arc<CapacityHub>,
}

impl Api {
    pub fn new(engine: Arc<dyn Engine>, classes: DeviceClasses) -> Api {
        Api {
            engine,
            classes: Arc::new(classes),
            capacity: Arc::new(CapacityHub::new()),
        }
    }

    /// Computes capacity now and publishes it if it changed.
    pub async fn refresh_capacity(&self) {
        let (engine, classes) = (self.engine.clone(), self.classes.clone());
        let Ok(now) = tokio::task::spawn_blocking(move || capacity_of(&*engine, &classes)).await
        else {
            return;
        };
        self.capacity.tx.send_if_modified(|old| {
            if **old == now {
                false
            } else {
                *old = Arc::new(now);
                true
            }
        });
    }

    /// Recomputes capacity when poked and every `poll`, until the process ends.
    pub fn spawn_capacity_task(&self, poll: Duration) -> tokio::task::JoinHandle<()> {
        let api = self.clone();
        tokio::spawn(async move {
            loop {
                api.refresh_capacity().await;
                tokio::select! {
                    _ = api.capacity.poke.notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                }
            }
        })
    }

    fn changed(&self) {
        self.capacity.poke();
    }

    /// A request's key (moved out of it into zeroized memory; empty: none), with the
    /// LUKS2 settings of the volume's device class. The error names the field only.
    fn volume_key(
        &self,
        resolved: &Resolved,
        bytes: &mut Vec<u8>,
    ) -> Result<Option<VolumeKey>, Status> {
        if bytes.is_empty() {
            return Ok(None);
        }
        let key = Passphrase::new(std::mem::take(bytes))
            .map_err(|e| Status::invalid_argument(format!("passphrase: {e}")))?;
        let luks = resolved
            .class
            .as_ref()
            .or_else(|| self.classes.by_vg(&resolved.vg))
            .and_then(|c| c.encryption.clone())
            .unwrap_or_default();
        Ok(Some(VolumeKey { key, luks }))
    }

    fn resolve(&self, r: Option<&pb::VolumeRef>) -> Result<(Resolved, String), Status> {
        let r = r.ok_or_else(|| Status::invalid_argument("volume is missing"))?;
        let resolved = self
            .classes
            .resolve(&r.device_class, &r.volume_group)
            .map_err(Status::from)?;
        if r.name.is_empty() {
            return Err(Status::invalid_argument("volume name is empty"));
        }
        Ok((resolved, r.name.clone()))
    }

    /// [`Self::resolve`] for a request that changes the volume: only in a device
    /// class's VG, unless configured otherwise.
    async fn resolve_for_change(
        &self,
        r: Option<&pb::VolumeRef>,
    ) -> Result<(Resolved, String), Status> {
        let (resolved, name) = self.resolve(r)?;
        if let Err(refused) = self.classes.check_changeable(&resolved) {
            // A VG that does not exist at all is NOT_FOUND, as it always was.
            let e = self.engine.clone();
            let vg = resolved.vg.clone();
            blocking(move || e.volume_group(&vg)).await?;
            return Err(refused.into());
        }
        Ok((resolved, name))
    }

    fn vg_out(&self, v: VgInfo) -> pb::VolumeGroup {
        pb::VolumeGroup {
            device_classes: self
                .classes
                .all()
                .filter(|c| c.vg == v.name)
                .map(|c| c.name.clone())
                .collect(),
            name: v.name,
            uuid: v.uuid,
            seqno: v.seqno,
            extent_size_bytes: v.extent_size.0,
            total_bytes: v.total.0,
            free_bytes: v.free.0,
            physical_volumes: v
                .pvs
                .into_iter()
                .map(|p| pb::PhysicalVolume {
                    device: p.device.display().to_string(),
                    uuid: p.uuid,
                    size_bytes: p.size.0,
                    free_bytes: p.free.0,
                    present: p.present,
                })
                .collect(),
            logical_volume_count: v.lv_count,
            tags: v.tags,
        }
    }

    fn snapshot_out(&self, s: SnapshotInfo) -> pb::Snapshot {
        pb::Snapshot {
            device_class: self
                .classes
                .by_vg(&s.vg)
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            name: s.name,
            volume_group: s.vg,
            uuid: s.uuid,
            source_volume: s.source,
            size_bytes: s.size.0,
            creation_time: s.creation_time,
            read_only: s.read_only,
            group: s.group.unwrap_or_default(),
            cow_size_bytes: s.cow_size.map(|b| b.0),
        }
    }

    fn snapshot_group_out(&self, g: SnapshotGroupInfo) -> pb::SnapshotGroup {
        pb::SnapshotGroup {
            device_class: self
                .classes
                .by_vg(&g.vg)
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            name: g.name,
            volume_group: g.vg,
            snapshots: g
                .snapshots
                .into_iter()
                .map(|s| self.snapshot_out(s))
                .collect(),
        }
    }

    /// The VGs a list request names: every class's (`every`), or one.
    fn listed_vgs(
        &self,
        device_class: &str,
        volume_group: &str,
    ) -> Result<(Vec<String>, bool), Status> {
        let every = device_class.is_empty() && volume_group.is_empty();
        Ok(if every {
            (self.classes.all().map(|c| c.vg.clone()).collect(), true)
        } else {
            (
                vec![self.classes.resolve(device_class, volume_group)?.vg],
                false,
            )
        })
    }

    fn lv_out(&self, v: LvInfo) -> pb::LogicalVolume {
        let (layout, stripes, stripe_size) = match v.layout {
            Layout::Linear => (pb::Layout::Linear, 1, 0),
            Layout::Striped {
                stripes,
                stripe_size,
            } => (pb::Layout::Striped, stripes, stripe_size.to_bytes().0),
            Layout::Raid1 { .. } => (pb::Layout::Raid1, 1, 0),
            Layout::Thin => (pb::Layout::Thin, 1, 0),
        };
        let mirrors = v.layout.copies() - 1;
        let (health, health_message) = match v.health {
            Health::Ok => (pb::Health::Ok, String::new()),
            Health::Degraded(m) => (pb::Health::Degraded, m),
            Health::Failed(m) => (pb::Health::Failed, m),
        };
        pb::LogicalVolume {
            device_class: self
                .classes
                .by_vg(&v.vg)
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            name: v.name,
            volume_group: v.vg,
            uuid: v.uuid,
            size_bytes: v.size.0,
            layout: layout as i32,
            stripes,
            stripe_size_bytes: stripe_size,
            mirrors,
            health: health as i32,
            health_message,
            mirror_sync: v.sync.map(|m| pb::MirrorSync {
                sync_percent: f64::from(m.sync_basis_points) / 100.0,
                sync_action: m.action,
                mismatch_count: m.mismatches,
                leg_health: m.legs,
                integrity_mismatches: m.integrity_mismatches,
            }),
            encrypted: crate::daemon::marks::is_encrypted(&v.tags),
            integrity: v.layout.integrity(),
            tags: v.tags,
            active: v.device.is_some(),
            device_path: v
                .device
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
        }
    }

    /// The wire's layout fields as the one [`Layout`], translated here and nowhere
    /// else: unset fields take the device class's defaults (lvm2's without a class).
    fn layout_in(
        &self,
        resolved: &Resolved,
        r: &pb::CreateLogicalVolumeRequest,
    ) -> Result<Layout, Status> {
        let (layout, stripes, stripe_size) = (r.layout, r.stripes, r.stripe_size_bytes);
        let class = resolved.class.as_ref();
        let default_stripe_size = class.map_or(DEFAULT_STRIPE_SIZE, |c| c.stripe_size);
        let striped = |stripes: u32| -> Result<Layout, Status> {
            if stripe_size == 0 {
                return Ok(Layout::Striped {
                    stripes,
                    stripe_size: default_stripe_size,
                });
            }
            Layout::striped(stripes, Bytes(stripe_size))
                .map_err(|e| Status::invalid_argument(e.to_string()))
        };
        let out = match pb::Layout::try_from(layout) {
            Ok(pb::Layout::Linear) => Ok(Layout::Linear),
            Ok(pb::Layout::Thin) => Ok(Layout::Thin),
            Ok(pb::Layout::Raid1) => Ok(Layout::Raid1 {
                mirrors: r.mirrors.max(1),
                region_size: DEFAULT_REGION_SIZE,
                integrity: r
                    .integrity
                    .unwrap_or_else(|| class.is_some_and(|c| c.integrity)),
            }),
            Ok(pb::Layout::Striped) => {
                let n = if stripes == 0 {
                    class.map_or(0, |c| c.stripes)
                } else {
                    stripes
                };
                striped(n)
            }
            Ok(pb::Layout::Unspecified) => {
                if stripes > 1 {
                    return striped(stripes);
                }
                match class.map(|c| c.default_layout()) {
                    Some(Layout::Striped { stripes, .. }) => striped(stripes),
                    Some(Layout::Thin) => Ok(Layout::Thin),
                    _ => Ok(Layout::Linear),
                }
            }
            Err(_) => Err(Status::invalid_argument(format!("unknown layout {layout}"))),
        }?;
        // dm-integrity here sits under a mirror's copies: a volume without copies
        // could detect damage but never read the block from elsewhere.
        if r.integrity == Some(true) && !out.integrity() {
            return Err(Status::invalid_argument(format!(
                "integrity: true needs layout RAID1 (dm-integrity under each copy, a damaged \
                 block read from another); this volume's layout is {out}"
            )));
        }
        Ok(out)
    }
}

#[tonic::async_trait]
impl pb::volume_group_service_server::VolumeGroupService for Api {
    async fn list_volume_groups(
        &self,
        _: Request<pb::ListVolumeGroupsRequest>,
    ) -> Reply<pb::ListVolumeGroupsResponse> {
        let e = self.engine.clone();
        let vgs = blocking(move || e.volume_groups()).await?;
        Ok(Response::new(pb::ListVolumeGroupsResponse {
            volume_groups: vgs.into_iter().map(|v| self.vg_out(v)).collect(),
        }))
    }

    async fn get_volume_group(
        &self,
        r: Request<pb::GetVolumeGroupRequest>,
    ) -> Reply<pb::VolumeGroup> {
        let name = r.into_inner().name;
        let e = self.engine.clone();
        let v = blocking(move || e.volume_group(&name)).await?;
        Ok(Response::new(self.vg_out(v)))
    }

    async fn create_volume_group(
        &self,
        r: Request<pb::CreateVolumeGroupRequest>,
    ) -> Reply<pb::VolumeGroup> {
        let r = r.into_inner();
        let devices: Vec<PathBuf> = r.devices.iter().map(PathBuf::from).collect();
        let e = self.engine.clone();
        let v = blocking(move || e.create_volume_group(&r.name, &devices)).await?;
        self.changed();
        Ok(Response::new(self.vg_out(v)))
    }

    async fn extend_volume_group(
        &self,
        r: Request<pb::ExtendVolumeGroupRequest>,
    ) -> Reply<pb::VolumeGroup> {
        let r = r.into_inner();
        let devices: Vec<PathBuf> = r.devices.iter().map(PathBuf::from).collect();
        let e = self.engine.clone();
        let v = blocking(move || e.extend_volume_group(&r.name, &devices)).await?;
        self.changed();
        Ok(Response::new(self.vg_out(v)))
    }
}

#[tonic::async_trait]
impl pb::logical_volume_service_server::LogicalVolumeService for Api {
    async fn create_logical_volume(
        &self,
        r: Request<pb::CreateLogicalVolumeRequest>,
    ) -> Reply<pb::LogicalVolume> {
        let r = r.into_inner();
        let (resolved, name) = self.resolve_for_change(r.volume.as_ref()).await?;
        let spec = LvSpec {
            name,
            size: Bytes(r.size_bytes),
            layout: self.layout_in(&resolved, &r)?,
            tags: r.tags,
        };
        let e = self.engine.clone();
        let vg = resolved.vg;
        let encrypted = r.encrypted;
        let source = r.source;
        let created = blocking(move || {
            if source.is_empty() {
                e.create_volume(&vg, &spec, encrypted)
            } else {
                e.create_volume_from(&vg, &spec, &source, encrypted)
            }
        })
        .await?;
        if created.created {
            self.changed();
        }
        Ok(Response::new(self.lv_out(created.value)))
    }

    async fn get_logical_volume(
        &self,
        r: Request<pb::GetLogicalVolumeRequest>,
    ) -> Reply<pb::LogicalVolume> {
        let (resolved, name) = self.resolve(r.into_inner().volume.as_ref())?;
        let e = self.engine.clone();
        let v = blocking(move || e.logical_volume(&resolved.vg, &name)).await?;
        Ok(Response::new(self.lv_out(v)))
    }

    async fn list_logical_volumes(
        &self,
        r: Request<pb::ListLogicalVolumesRequest>,
    ) -> Reply<pb::ListLogicalVolumesResponse> {
        let r = r.into_inner();
        // Every class's VG, skipping classes whose VG does not exist (yet); or one VG.
        let (vgs, every) = self.listed_vgs(&r.device_class, &r.volume_group)?;
        let e = self.engine.clone();
        let lvs = blocking(move || {
            let mut all = Vec::new();
            for vg in &vgs {
                match e.logical_volumes(vg) {
                    // The first VG's list as it is: no copy of thousands of entries.
                    Ok(lvs) if all.is_empty() => all = lvs,
                    Ok(lvs) => all.extend(lvs),
                    Err(EngineError::Lvm(crate::lvm::LvmError::VgNotFound(_))) if every => {}
                    Err(err) => return Err(err),
                }
            }
            Ok(all)
        })
        .await?;
        Ok(Response::new(pb::ListLogicalVolumesResponse {
            logical_volumes: lvs.into_iter().map(|v| self.lv_out(v)).collect(),
        }))
    }

    async fn remove_logical_volume(
        &self,
        r: Request<pb::RemoveLogicalVolumeRequest>,
    ) -> Reply<pb::RemoveLogicalVolumeResponse> {
        let (resolved, name) = self
            .resolve_for_change(r.into_inner().volume.as_ref())
            .await?;
        let e = self.engine.clone();
        let existed = blocking(move || e.remove_logical_volume(&resolved.vg, &name)).await?;
        if existed {
            self.changed();
        }
        Ok(Response::new(pb::RemoveLogicalVolumeResponse { existed }))
    }

    async fn create_snapshot(&self, r: Request<pb::CreateSnapshotRequest>) -> Reply<pb::Snapshot> {
        let r = r.into_inner();
        let (resolved, name) = self.resolve_for_change(r.snapshot.as_ref()).await?;
        if r.source_volume.is_empty() {
            return Err(Status::invalid_argument("source_volume is empty"));
        }
        let cow_size = match (r.cow_size_bytes, r.cow_size_percent) {
            (Some(_), Some(_)) => {
                return Err(Status::invalid_argument(
                    "cow_size_bytes and cow_size_percent: give at most one",
                ))
            }
            (Some(b), None) => Some(CowSize::Bytes(Bytes(b))),
            (None, Some(p)) => Some(CowSize::Percent(p)),
            (None, None) => None,
        };
        let e = self.engine.clone();
        let created =
            blocking(move || e.create_snapshot(&resolved.vg, &name, &r.source_volume, cow_size))
                .await?;
        if created.created {
            self.changed();
        }
        Ok(Response::new(self.snapshot_out(created.value)))
    }

    async fn delete_snapshot(
        &self,
        r: Request<pb::DeleteSnapshotRequest>,
    ) -> Reply<pb::DeleteSnapshotResponse> {
        let (resolved, name) = self
            .resolve_for_change(r.into_inner().snapshot.as_ref())
            .await?;
        let e = self.engine.clone();
        let existed = blocking(move || e.delete_snapshot(&resolved.vg, &name)).await?;
        if existed {
            self.changed();
        }
        Ok(Response::new(pb::DeleteSnapshotResponse { existed }))
    }

    async fn list_snapshots(
        &self,
        r: Request<pb::ListSnapshotsRequest>,
    ) -> Reply<pb::ListSnapshotsResponse> {
        let r = r.into_inner();
        let (vgs, every) = self.listed_vgs(&r.device_class, &r.volume_group)?;
        let e = self.engine.clone();
        let all = blocking(move || {
            let mut all = Vec::new();
            for vg in &vgs {
                match e.snapshots(vg) {
                    Ok(s) => all.extend(s),
                    Err(EngineError::Lvm(crate::lvm::LvmError::VgNotFound(_))) if every => {}
                    Err(err) => return Err(err),
                }
            }
            Ok(all)
        })
        .await?;
        Ok(Response::new(pb::ListSnapshotsResponse {
            snapshots: all.into_iter().map(|s| self.snapshot_out(s)).collect(),
        }))
    }

    async fn create_snapshot_group(
        &self,
        r: Request<pb::CreateSnapshotGroupRequest>,
    ) -> Reply<pb::SnapshotGroup> {
        let r = r.into_inner();
        let (resolved, name) = self.resolve_for_change(r.group.as_ref()).await?;
        let members: Vec<GroupMember> = r
            .snapshots
            .into_iter()
            .map(|m| GroupMember {
                name: m.name,
                source: m.source_volume,
            })
            .collect();
        let e = self.engine.clone();
        let created =
            blocking(move || e.create_snapshot_group(&resolved.vg, &name, &members)).await?;
        if created.created {
            self.changed();
        }
        Ok(Response::new(self.snapshot_group_out(created.value)))
    }

    async fn delete_snapshot_group(
        &self,
        r: Request<pb::DeleteSnapshotGroupRequest>,
    ) -> Reply<pb::DeleteSnapshotGroupResponse> {
        let (resolved, name) = self
            .resolve_for_change(r.into_inner().group.as_ref())
            .await?;
        let e = self.engine.clone();
        let existed = blocking(move || e.delete_snapshot_group(&resolved.vg, &name)).await?;
        if existed {
            self.changed();
        }
        Ok(Response::new(pb::DeleteSnapshotGroupResponse { existed }))
    }

    async fn get_snapshot_group(
        &self,
        r: Request<pb::GetSnapshotGroupRequest>,
    ) -> Reply<pb::SnapshotGroup> {
        let (resolved, name) = self.resolve(r.into_inner().group.as_ref())?;
        let e = self.engine.clone();
        let g = blocking(move || e.snapshot_group(&resolved.vg, &name)).await?;
        Ok(Response::new(self.snapshot_group_out(g)))
    }

    async fn resize_logical_volume(
        &self,
        r: Request<pb::ResizeLogicalVolumeRequest>,
    ) -> Reply<pb::LogicalVolume> {
        let r = r.into_inner();
        let (resolved, name) = self.resolve_for_change(r.volume.as_ref()).await?;
        let e = self.engine.clone();
        let size = Bytes(r.size_bytes);
        let v = blocking(move || e.resize_logical_volume(&resolved.vg, &name, size)).await?;
        self.changed();
        Ok(Response::new(self.lv_out(v)))
    }

    async fn activate_logical_volume(
        &self,
        r: Request<pb::ActivateLogicalVolumeRequest>,
    ) -> Reply<pb::LogicalVolume> {
        let (resolved, name) = self
            .resolve_for_change(r.into_inner().volume.as_ref())
            .await?;
        let e = self.engine.clone();
        let v = blocking(move || e.activate(&resolved.vg, &name)).await?;
        Ok(Response::new(self.lv_out(v)))
    }

    async fn repair_logical_volume(
        &self,
        r: Request<pb::RepairLogicalVolumeRequest>,
    ) -> Reply<pb::LogicalVolume> {
        let (resolved, name) = self
            .resolve_for_change(r.into_inner().volume.as_ref())
            .await?;
        let e = self.engine.clone();
        let v = blocking(move || e.repair_logical_volume(&resolved.vg, &name)).await?;
        self.changed();
        Ok(Response::new(self.lv_out(v)))
    }

    async fn convert_logical_volume(
        &self,
        r: Request<pb::ConvertLogicalVolumeRequest>,
    ) -> Reply<pb::LogicalVolume> {
        let r = r.into_inner();
        let (resolved, name) = self.resolve_for_change(r.volume.as_ref()).await?;
        let pvs: Vec<std::path::PathBuf> = r.physical_volumes.iter().map(Into::into).collect();
        let e = self.engine.clone();
        let mirrors = r.mirrors;
        let v =
            blocking(move || e.convert_logical_volume(&resolved.vg, &name, mirrors, &pvs)).await?;
        self.changed();
        Ok(Response::new(self.lv_out(v)))
    }

    async fn deactivate_logical_volume(
        &self,
        r: Request<pb::DeactivateLogicalVolumeRequest>,
    ) -> Reply<pb::LogicalVolume> {
        let (resolved, name) = self
            .resolve_for_change(r.into_inner().volume.as_ref())
            .await?;
        let e = self.engine.clone();
        let v = blocking(move || e.deactivate(&resolved.vg, &name)).await?;
        Ok(Response::new(self.lv_out(v)))
    }

    async fn rekey_volume(
        &self,
        r: Request<pb::RekeyVolumeRequest>,
    ) -> Reply<pb::RekeyVolumeResponse> {
        let mut r = r.into_inner();
        let (resolved, name) = self.resolve_for_change(r.volume.as_ref()).await?;
        let old = self
            .volume_key(&resolved, &mut r.passphrase)?
            .ok_or_else(|| Status::invalid_argument("passphrase (the key in use) is missing"))?;
        if r.new_passphrase.is_empty() {
            return Err(Status::invalid_argument(
                "new_passphrase (the key that replaces it) is missing",
            ));
        }
        let new = Passphrase::new(std::mem::take(&mut r.new_passphrase))
            .map_err(|e| Status::invalid_argument(format!("new_passphrase: {e}")))?;
        let e = self.engine.clone();
        let x = blocking(move || e.rekey_volume(&resolved.vg, &name, &old, &new)).await?;
        Ok(Response::new(pb::RekeyVolumeResponse {
            volume: Some(self.lv_out(x.lv)),
            keyslot: x.keyslot,
            removed_keyslots: x.removed,
        }))
    }
}

type CapacityStream = Pin<Box<dyn Stream<Item = Result<pb::GetCapacityResponse, Status>> + Send>>;

fn filter_classes(all: &[pb::DeviceClassCapacity], class: &str) -> pb::GetCapacityResponse {
    pb::GetCapacityResponse {
        device_classes: all
            .iter()
            .filter(|c| class.is_empty() || c.device_class == class)
            .cloned()
            .collect(),
    }
}

#[tonic::async_trait]
impl pb::capacity_service_server::CapacityService for Api {
    async fn get_capacity(
        &self,
        r: Request<pb::GetCapacityRequest>,
    ) -> Reply<pb::GetCapacityResponse> {
        let class = r.into_inner().device_class;
        if !class.is_empty() {
            self.classes.get(&class)?;
        }
        let (engine, classes) = (self.engine.clone(), self.classes.clone());
        let all = blocking(move || Ok(capacity_of(&*engine, &classes))).await?;
        Ok(Response::new(filter_classes(&all, &class)))
    }

    async fn grow_thin_pool(
        &self,
        r: Request<pb::GrowThinPoolRequest>,
    ) -> Reply<pb::DeviceClassCapacity> {
        let r = r.into_inner();
        if r.device_class.is_empty() {
            return Err(Status::invalid_argument("device_class is required"));
        }
        if r.data_bytes == 0 && r.metadata_bytes == 0 {
            return Err(Status::invalid_argument(
                "data_bytes or metadata_bytes: at least one new size is required",
            ));
        }
        let class = self.classes.get(&r.device_class)?;
        if class.thin.is_none() {
            return Err(Status::failed_precondition(format!(
                "device class {}: no thin pool configured (thin_pool in lvmd.toml)",
                class.name
            )));
        }
        let size = |b: u64| (b > 0).then_some(Bytes(b));
        let (data, metadata) = (size(r.data_bytes), size(r.metadata_bytes));
        let (e, vg) = (self.engine.clone(), class.vg.clone());
        blocking(move || e.grow_thin_pool(&vg, data, metadata)).await?;
        self.changed();
        let (engine, classes) = (self.engine.clone(), self.classes.clone());
        let all = blocking(move || Ok(capacity_of(&*engine, &classes))).await?;
        filter_classes(&all, &r.device_class)
            .device_classes
            .into_iter()
            .next()
            .map(Response::new)
            .ok_or_else(|| Status::internal("the class's capacity is gone"))
    }

    type WatchCapacityStream = CapacityStream;

    async fn watch_capacity(&self, r: Request<pb::GetCapacityRequest>) -> Reply<CapacityStream> {
        let class = r.into_inner().device_class;
        if !class.is_empty() {
            self.classes.get(&class)?;
        }
        let rx = self.capacity.tx.subscribe();
        // The current value first, then each change; unchanged classes are not resent
        // to a watcher of one class.
        let mut last: Option<pb::GetCapacityResponse> = None;
        let stream = tokio_stream::wrappers::WatchStream::new(rx).filter_map(move |all| {
            let now = filter_classes(&all, &class);
            if last.as_ref() == Some(&now) {
                None
            } else {
                last = Some(now.clone());
                Some(Ok(now))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

fn stats_out(s: PathStats) -> pb::PathStats {
    pb::PathStats {
        block: s.block,
        total_bytes: s.total.0,
        available_bytes: s.available.0,
        used_bytes: s.used.0,
        total_inodes: s.total_inodes,
        free_inodes: s.free_inodes,
        used_inodes: s.used_inodes,
    }
}

#[tonic::async_trait]
impl pb::node_service_server::NodeService for Api {
    async fn mount_volume(
        &self,
        r: Request<pb::MountVolumeRequest>,
    ) -> Reply<pb::MountVolumeResponse> {
        let mut r = r.into_inner();
        let (resolved, name) = self.resolve_for_change(r.volume.as_ref()).await?;
        let key = self.volume_key(&resolved, &mut r.passphrase)?;
        let spec = MountSpec {
            target: path("target_path", &r.target_path)?,
            fs_type: std::mem::take(&mut r.fs_type),
            options: std::mem::take(&mut r.mount_options),
            read_only: r.read_only,
        };
        let e = self.engine.clone();
        let m = blocking(move || e.mount_volume_keyed(&resolved.vg, &name, &spec, key.as_ref()))
            .await?;
        Ok(Response::new(pb::MountVolumeResponse {
            device_path: m.device.display().to_string(),
            fs_type: m.fs_type,
            formatted: m.formatted,
        }))
    }

    async fn bind_mount(&self, r: Request<pb::BindMountRequest>) -> Reply<pb::BindMountResponse> {
        let r = r.into_inner();
        let source = path("source_path", &r.source_path)?;
        let target = path("target_path", &r.target_path)?;
        let e = self.engine.clone();
        blocking(move || e.bind_mount(&source, &target, r.read_only)).await?;
        Ok(Response::new(pb::BindMountResponse {}))
    }

    async fn publish_block(
        &self,
        r: Request<pb::PublishBlockRequest>,
    ) -> Reply<pb::PublishBlockResponse> {
        let mut r = r.into_inner();
        let (resolved, name) = self.resolve_for_change(r.volume.as_ref()).await?;
        let key = self.volume_key(&resolved, &mut r.passphrase)?;
        let target = path("target_path", &r.target_path)?;
        let e = self.engine.clone();
        let ro = r.read_only;
        let dev =
            blocking(move || e.publish_block_keyed(&resolved.vg, &name, &target, ro, key.as_ref()))
                .await?;
        Ok(Response::new(pb::PublishBlockResponse {
            device_path: dev.display().to_string(),
        }))
    }

    async fn unmount(&self, r: Request<pb::UnmountRequest>) -> Reply<pb::UnmountResponse> {
        let r = r.into_inner();
        let target = path("target_path", &r.target_path)?;
        let e = self.engine.clone();
        let was = blocking(move || e.unmount(&target, r.remove_target)).await?;
        Ok(Response::new(pb::UnmountResponse { was_mounted: was }))
    }

    async fn get_path_stats(&self, r: Request<pb::GetPathStatsRequest>) -> Reply<pb::PathStats> {
        let p = path("path", &r.into_inner().path)?;
        let e = self.engine.clone();
        let s = blocking(move || e.path_stats(&p)).await?;
        Ok(Response::new(stats_out(s)))
    }

    async fn expand_volume(
        &self,
        r: Request<pb::ExpandVolumeRequest>,
    ) -> Reply<pb::ExpandVolumeResponse> {
        let mut r = r.into_inner();
        let (resolved, name) = self.resolve_for_change(r.volume.as_ref()).await?;
        let key = self.volume_key(&resolved, &mut r.passphrase)?;
        let target = (!r.target_path.is_empty()).then(|| PathBuf::from(&r.target_path));
        let size = Bytes(r.size_bytes);
        let e = self.engine.clone();
        let x = blocking(move || {
            e.expand_volume_keyed(&resolved.vg, &name, size, target.as_deref(), key.as_ref())
        })
        .await?;
        self.changed();
        Ok(Response::new(pb::ExpandVolumeResponse {
            volume: Some(self.lv_out(x.lv)),
            filesystem_size_bytes: x.filesystem_size.0,
        }))
    }
}
