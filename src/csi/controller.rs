//! CSI Controller, run on every node beside its lvmd (external-provisioner
//! `--node-deployment`): volumes are created on this node's device classes only.

use super::metrics::timed;
use super::params::{self, Access, Layout, VolumeParams};
use super::pb::controller_server::Controller;
use super::pb::controller_service_capability::{rpc, Rpc, Type as CapType};
use super::pb::*;
use super::status::{from_lvmd, invalid};
use super::volume_id::{lv_name, tag_value, VolumeId};
use super::Plugin;
use crate::model::layout::{self, size_step};
use crate::rpc::pb as lvmd;
use crate::units::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Code, Request, Response, Status};

/// Volumes are created at 1 GiB when the CO names no size.
pub const DEFAULT_SIZE: u64 = 1 << 30;

/// What ControllerExpandVolume rounds to, knowing no VG: lvm2's default extent size.
pub const EXPAND_UNIT: u64 = 4 << 20;

#[derive(Clone)]
pub struct ControllerService(pub Arc<Plugin>);

/// The tag that marks an LV as this driver's (and ListVolumes' filter).
pub fn driver_tag(driver: &str) -> String {
    format!("csi.driver={}", tag_value(driver))
}

/// The tag that marks an inline ephemeral volume, naming kubelet's volume id: what
/// unpublish checks before removing an LV, and what keeps it out of ListVolumes.
pub fn ephemeral_tag(volume_id: &str) -> String {
    format!("{EPHEMERAL_TAG_PREFIX}{}", tag_value(volume_id))
}

pub const EPHEMERAL_TAG_PREFIX: &str = "csi.ephemeral=";

pub fn is_ephemeral_lv(lv: &lvmd::LogicalVolume) -> bool {
    lv.tags.iter().any(|t| t.starts_with(EPHEMERAL_TAG_PREFIX))
}

/// Stripes and the size unit (whole extents on every stripe) for a volume of `p` in
/// `class`.
pub fn stripes_and_unit(p: &VolumeParams, class: &lvmd::DeviceClassCapacity) -> (u32, u64) {
    let stripes = match p.layout {
        // raid1 copies are not side by side: sizes step by one extent.
        // A thin volume's size steps by one extent too (lvm2 rounds it so).
        Layout::Linear | Layout::Raid1 | Layout::Thin => 1,
        Layout::Striped if p.stripes > 0 => p.stripes,
        _ => class.default_stripes.max(1),
    };
    let step = size_step(stripes, Bytes(class.extent_size_bytes.max(1)));
    (stripes, step.0)
}

/// The daemon's create request for a volume of these parameters.
pub fn create_request(
    p: &VolumeParams,
    volume: lvmd::VolumeRef,
    size: u64,
    tags: Vec<String>,
) -> lvmd::CreateLogicalVolumeRequest {
    lvmd::CreateLogicalVolumeRequest {
        volume: Some(volume),
        size_bytes: size,
        layout: p.layout as i32,
        stripes: if p.layout == Layout::Striped {
            p.stripes
        } else {
            0
        },
        stripe_size_bytes: p.stripe_size,
        mirrors: p.mirrors,
        tags,
        encrypted: p.encrypted,
        integrity: p.integrity,
        source: String::new(),
    }
}

/// `n` bytes rounded up to whole `unit`s: the daemon's own rounding rule.
pub fn round_up(n: u64, unit: u64) -> u64 {
    layout::round_up(Bytes(n), Bytes(unit)).0
}

/// The bytes a request asks for: `(size, limit)` with limit 0 meaning none.
fn sized(range: Option<&CapacityRange>, unit: u64) -> Result<(u64, u64), Status> {
    let (req, lim) = range.map_or((0, 0), |r| (r.required_bytes, r.limit_bytes));
    if req < 0 || lim < 0 {
        return Err(Status::out_of_range(format!(
            "capacity_range with negative bytes (required {req}, limit {lim})"
        )));
    }
    let (req, lim) = (req as u64, lim as u64);
    if lim > 0 && req > lim {
        return Err(Status::out_of_range(format!(
            "capacity_range: required_bytes {req} exceeds limit_bytes {lim}"
        )));
    }
    let size = if req > 0 {
        round_up(req, unit)
    } else if lim > 0 {
        // No minimum: the default, or the largest whole unit under the limit.
        let d = round_up(DEFAULT_SIZE.min(lim), unit);
        if d > lim {
            lim / unit.max(1) * unit.max(1)
        } else {
            d
        }
    } else {
        round_up(DEFAULT_SIZE, unit)
    };
    if size == 0 || (lim > 0 && size > lim) {
        return Err(Status::out_of_range(format!(
            "capacity_range [{req}, {lim}]: volumes come in whole extents of {unit} bytes; \
             {size} is outside the range"
        )));
    }
    Ok((size, lim))
}

/// `size` raised to the minimum of the filesystem the volume will get, within `limit`:
/// a volume too small for mkfs would be created fine and then fail every staging, the
/// pod stuck in ContainerCreating. An encrypted volume's filesystem gets the LV less
/// its LUKS2 header.
pub(super) fn at_least_filesystem_minimum(
    size: u64,
    limit: u64,
    unit: u64,
    fs: Option<&str>,
    encrypted: bool,
) -> Result<u64, Status> {
    let Some(fs) = fs else { return Ok(size) };
    let header = if encrypted {
        crate::crypt::luks::LUKS2_HEADER.0
    } else {
        0
    };
    let min = params::min_filesystem_bytes(fs) + header;
    if size >= min {
        return Ok(size);
    }
    let raised = round_up(min, unit);
    if limit > 0 && raised > limit {
        return Err(Status::out_of_range(format!(
            "capacity_range limit_bytes {limit} is below the smallest {fs} filesystem \
             ({min} bytes with the LUKS2 header, if any; mkfs.{fs} refuses less)"
        )));
    }
    Ok(raised)
}

/// Why a StorageClass's parameters are refused: the `reason` label of
/// `lvmd_csi_storage_class_refused_total`.
pub const REFUSED_PARAMETER: &str = "invalid_parameter";
pub const REFUSED_DEVICE_CLASS: &str = "unknown_device_class";

/// A StorageClass's parameters as one stable string (sorted `key=value`), without the
/// per-PVC keys `--extra-create-metadata` adds: GetCapacity and CreateVolume for PVCs
/// of one StorageClass give the same key.
pub fn storage_class_key(params: &HashMap<String, String>) -> String {
    let mut kv: Vec<String> = params
        .iter()
        .filter(|(k, _)| {
            ![params::PV_NAME, params::PVC_NAME, params::PVC_NAMESPACE].contains(&k.as_str())
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    kv.sort();
    kv.join(",")
}

impl ControllerService {
    /// The capacity entry of a device class (empty: the default class).
    pub async fn class(&self, class: &str) -> Result<lvmd::DeviceClassCapacity, Status> {
        let all = self
            .0
            .cap()
            .get_capacity(lvmd::GetCapacityRequest {
                device_class: class.into(),
            })
            .await
            .map_err(|s| match s.code() {
                Code::NotFound => invalid(format!(
                    "device class {class:?} is not configured in lvmd on node {}: {}",
                    self.0.config.node_id,
                    s.message()
                )),
                _ => from_lvmd(s, &format!("GetCapacity {class:?}")),
            })?
            .into_inner()
            .device_classes;
        all.into_iter()
            .find(|d| {
                if class.is_empty() {
                    d.is_default
                } else {
                    d.device_class == class
                }
            })
            .ok_or_else(|| {
                invalid(format!(
                    "no device class {class:?} (and no default class) in lvmd on node {}",
                    self.0.config.node_id
                ))
            })
    }

    /// A StorageClass's parameters refused (`e`, INVALID_ARGUMENT naming the value):
    /// counted by reason, and logged at ERROR the first time these parameters are seen,
    /// since the user's only symptom is a PVC that stays Pending (the provisioner polls
    /// GetCapacity per StorageClass; with no capacity the scheduler keeps the pod off
    /// this node) and the provisioner's log repeats the error every poll.
    fn refused(
        &self,
        rpc: &'static str,
        reason: &'static str,
        params: &HashMap<String, String>,
        e: Status,
    ) -> Status {
        let key = storage_class_key(params);
        if self.0.metrics.storage_class_refused(reason, &key) {
            tracing::error!(
                rpc,
                reason,
                parameters = %key,
                node = %self.0.config.node_id,
                "refused StorageClass parameters: {}; PVCs of a StorageClass with these \
                 parameters stay Pending until it is fixed (logged once per parameter set)",
                e.message()
            );
        }
        e
    }

    /// The device class a StorageClass names, an unknown one counted as refused, and so
    /// is a raid1 class with more copies than the class's VG has PVs: no volume of it
    /// could ever be made there.
    async fn storage_class_device_class(
        &self,
        rpc: &'static str,
        p: &VolumeParams,
        params: &HashMap<String, String>,
    ) -> Result<lvmd::DeviceClassCapacity, Status> {
        let c = self.class(&p.device_class).await.map_err(|e| {
            if e.code() == Code::InvalidArgument {
                self.refused(rpc, REFUSED_DEVICE_CLASS, params, e)
            } else {
                e
            }
        })?;
        // One entry per PV beyond the first; none when the VG could not be read.
        let pvs = c.largest_raid1_bytes.len() + 1;
        if p.layout == Layout::Raid1 && c.error.is_empty() && p.mirrors as usize >= pvs {
            let e = invalid(format!(
                "parameter {}={}: {} copies need as many PVs, and device class {} has {pvs}",
                params::P_MIRRORS,
                p.mirrors,
                p.mirrors + 1,
                c.device_class
            ));
            return Err(self.refused(rpc, REFUSED_PARAMETER, params, e));
        }
        Ok(c)
    }

    async fn get_lv(&self, id: &VolumeId) -> Result<Option<lvmd::LogicalVolume>, Status> {
        let r = self
            .0
            .lv()
            .get_logical_volume(lvmd::GetLogicalVolumeRequest {
                volume: Some(vref(id)),
            })
            .await;
        match r {
            Ok(v) => Ok(Some(v.into_inner())),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(from_lvmd(s, &format!("GetLogicalVolume {id}"))),
        }
    }

    fn volume(
        &self,
        id: &VolumeId,
        lv: &lvmd::LogicalVolume,
        ctx: HashMap<String, String>,
    ) -> Volume {
        Volume {
            capacity_bytes: lv.size_bytes as i64,
            volume_id: id.to_string(),
            volume_context: ctx,
            content_source: None,
            accessible_topology: vec![self.0.topology()],
        }
    }

    /// Whether the CO lets the volume live on this node.
    fn topology_allows(&self, req: Option<&TopologyRequirement>) -> bool {
        let Some(req) = req else { return true };
        let all: Vec<&Topology> = req.requisite.iter().chain(&req.preferred).collect();
        all.is_empty()
            || all.iter().any(|t| {
                t.segments.get(&self.0.config.topology_key) == Some(&self.0.config.node_id)
            })
    }

    fn mine(&self, id: &VolumeId) -> Result<(), Status> {
        if id.node != self.0.config.node_id {
            return Err(Status::failed_precondition(format!(
                "volume {id} lives on node {}, this is {}",
                id.node, self.0.config.node_id
            )));
        }
        Ok(())
    }

    async fn create(&self, r: CreateVolumeRequest) -> Result<CreateVolumeResponse, Status> {
        if r.name.is_empty() {
            return Err(invalid("name missing"));
        }
        let caps = params::capabilities(&r.volume_capabilities)?;
        let p: VolumeParams = params::parse(&r.parameters)
            .map_err(|e| self.refused("CreateVolume", REFUSED_PARAMETER, &r.parameters, e))?;
        if !r.mutable_parameters.is_empty() {
            return Err(invalid("mutable_parameters are not supported"));
        }
        for c in &caps {
            if let (Access::Mount { fs_type, .. }, Some(f)) = (&c.access, &p.fs_type) {
                if fs_type != f && fs_type != params::DEFAULT_FS {
                    return Err(invalid(format!(
                        "parameter fsType={f} contradicts the capability's fs_type {fs_type}"
                    )));
                }
            }
        }
        if !self.topology_allows(r.accessibility_requirements.as_ref()) {
            return Err(Status::resource_exhausted(format!(
                "accessibility_requirements do not include this node ({}={}); lvmd-csi only \
                 creates volumes on the node it runs on",
                self.0.config.topology_key, self.0.config.node_id
            )));
        }
        let class = self
            .storage_class_device_class("CreateVolume", &p, &r.parameters)
            .await?;
        if !class.error.is_empty() {
            return Err(Status::unavailable(format!(
                "device class {} cannot be used now: {}",
                class.device_class, class.error
            )));
        }
        // A volume from a snapshot or another volume: a thin volume of the same pool, or
        // from a copy-on-write snapshot a thick volume its bytes are copied into.
        let source = match &r.volume_content_source {
            None => None,
            Some(src) => {
                let thick = class.thin_pool.is_none()
                    || !matches!(p.layout, Layout::Unspecified | Layout::Thin);
                let source = self.content_source(src, &class.device_class).await?;
                if thick != source.cow {
                    return Err(invalid(format!(
                        "volume_content_source: device class {} {}; lvmd-csi makes thin \
                         volumes from the snapshots and volumes of a thin pool, and thick \
                         volumes from the copy-on-write snapshots of thick volumes",
                        class.device_class,
                        if class.thin_pool.is_none() {
                            "has no thin pool"
                        } else if thick {
                            "is asked for a thick layout"
                        } else {
                            "is asked for a thin volume from a copy-on-write snapshot"
                        }
                    )));
                }
                Some(source)
            }
        };
        let (stripes, unit) = stripes_and_unit(&p, &class);
        let (size, limit) = sized(r.capacity_range.as_ref(), unit)?;
        let fs = p.fs_type.as_deref().or_else(|| {
            caps.iter().find_map(|c| match &c.access {
                Access::Mount { fs_type, .. } => Some(fs_type.as_str()),
                Access::Block => None,
            })
        });
        let size = at_least_filesystem_minimum(size, limit, unit, fs, p.encrypted)?;
        let required = r
            .capacity_range
            .as_ref()
            .map_or(0, |c| c.required_bytes as u64);
        // No size asked: the source's. Never smaller than it (the spec's OUT_OF_RANGE).
        let size = match &source {
            Some(src) => {
                if limit != 0 && src.size > limit {
                    return Err(Status::out_of_range(format!(
                        "capacity_range limit_bytes {limit} is smaller than the source {} ({} \
                         bytes)",
                        src.id, src.size
                    )));
                }
                if required == 0 {
                    src.size
                } else if size < src.size {
                    return Err(Status::out_of_range(format!(
                        "capacity_range required_bytes {required} is smaller than the source {} \
                         ({} bytes)",
                        src.id, src.size
                    )));
                } else {
                    size
                }
            }
            None => size,
        };
        let id = VolumeId {
            node: self.0.config.node_id.clone(),
            class: class.device_class.clone(),
            lv: lv_name(&r.name),
        };
        let mut ctx: HashMap<String, String> = HashMap::new();
        ctx.insert("deviceClass".into(), class.device_class.clone());
        if p.encrypted {
            // The node reads it: a stage without the passphrase secret is refused there.
            ctx.insert(super::params::P_ENCRYPTION.into(), "true".into());
        }
        if let Some(f) = &p.fs_type {
            ctx.insert("fsType".into(), f.clone());
        }
        let marker = driver_tag(&self.0.config.driver_name);
        if let Some(lv) = self.get_lv(&id).await? {
            let fits = lv.size_bytes >= required && (limit == 0 || lv.size_bytes <= limit);
            let layout_ok = match p.layout {
                Layout::Unspecified => true,
                Layout::Linear => lv.layout == Layout::Linear as i32,
                Layout::Striped => lv.layout == Layout::Striped as i32 && lv.stripes == stripes,
                Layout::Raid1 => {
                    lv.layout == Layout::Raid1 as i32
                        && lv.mirrors == p.mirrors
                        && lv.integrity == p.integrity.unwrap_or(class.default_integrity)
                }
                Layout::Thin => lv.layout == Layout::Thin as i32,
            };
            if is_ephemeral_lv(&lv) {
                return Err(Status::already_exists(format!(
                    "volume {id}: the name is taken by an inline ephemeral volume"
                )));
            }
            let from = lv
                .tags
                .iter()
                .find_map(|t| t.strip_prefix(crate::daemon::marks::FROM_PREFIX));
            let source_ok = from == source.as_ref().map(|s| s.id.lv.as_str());
            if lv.tags.contains(&marker) && fits && layout_ok && source_ok {
                let mut v = self.volume(&id, &lv, ctx);
                v.content_source = r.volume_content_source.clone();
                return Ok(CreateVolumeResponse { volume: Some(v) });
            }
            if !source_ok {
                return Err(Status::already_exists(format!(
                    "volume {id} exists made from {}: incompatible with this request's \
                     volume_content_source",
                    from.unwrap_or("no source")
                )));
            }
            return Err(Status::already_exists(format!(
                "volume {id} exists with {} bytes, {} stripe(s){}: incompatible with this request",
                lv.size_bytes,
                lv.stripes,
                if lv.tags.contains(&marker) {
                    ""
                } else {
                    ", not made by this driver"
                }
            )));
        }
        let mut tags = vec![marker];
        for (k, v) in [
            ("pv", &p.pv_name),
            ("pvc", &p.pvc_name),
            ("ns", &p.pvc_namespace),
        ] {
            if let Some(v) = v {
                tags.push(format!("csi.{k}={}", tag_value(v)));
            }
        }
        let mut create = create_request(&p, vref(&id), size, tags);
        if let Some(src) = &source {
            create.source = src.id.lv.clone();
            // A COW snapshot's restore keeps the layout asked for (linear when none is);
            // the others are thin volumes of the pool.
            if !src.cow {
                create.layout = Layout::Thin as i32;
            } else if p.layout == Layout::Unspecified {
                create.layout = Layout::Linear as i32;
            }
        }
        let lv = self
            .0
            .lv()
            .create_logical_volume(create)
            .await
            .map_err(|s| from_lvmd(s, &format!("CreateLogicalVolume {id} ({size} bytes)")))?
            .into_inner();
        tracing::info!(volume = %id, size = lv.size_bytes, name = %r.name, source = ?source.as_ref().map(|s| s.id.to_string()), "created");
        let mut v = self.volume(&id, &lv, ctx);
        v.content_source = r.volume_content_source.clone();
        Ok(CreateVolumeResponse { volume: Some(v) })
    }

    async fn delete(&self, r: DeleteVolumeRequest) -> Result<DeleteVolumeResponse, Status> {
        if r.volume_id.is_empty() {
            return Err(invalid("volume_id missing"));
        }
        // An id we never made names no volume of ours: already gone.
        let Some(id) = VolumeId::parse(&r.volume_id) else {
            return Ok(DeleteVolumeResponse {});
        };
        self.mine(&id)?;
        let lv = match self.get_lv(&id).await {
            Ok(Some(lv)) => lv,
            Ok(None) => return Ok(DeleteVolumeResponse {}),
            // The device class is gone from lvmd's configuration: so is the volume for us.
            Err(s) if s.code() == Code::InvalidArgument => return Ok(DeleteVolumeResponse {}),
            Err(s) => return Err(s),
        };
        if !lv.tags.contains(&driver_tag(&self.0.config.driver_name)) {
            return Err(Status::failed_precondition(format!(
                "{id}: the logical volume was not made by this driver; refusing to remove it"
            )));
        }
        // Its pod's NodeUnpublishVolume removes it, after unmounting it.
        if is_ephemeral_lv(&lv) {
            return Err(Status::failed_precondition(format!(
                "{id} is an inline ephemeral volume; it goes with its pod, not DeleteVolume"
            )));
        }
        self.0
            .lv()
            .remove_logical_volume(lvmd::RemoveLogicalVolumeRequest {
                volume: Some(vref(&id)),
            })
            .await
            .map_err(|s| from_lvmd(s, &format!("RemoveLogicalVolume {id}")))?;
        tracing::info!(volume = %id, "deleted");
        Ok(DeleteVolumeResponse {})
    }

    async fn validate(
        &self,
        mut r: ValidateVolumeCapabilitiesRequest,
    ) -> Result<ValidateVolumeCapabilitiesResponse, Status> {
        if r.volume_id.is_empty() {
            return Err(invalid("volume_id missing"));
        }
        if r.volume_capabilities.is_empty() {
            return Err(invalid("volume_capabilities missing"));
        }
        let id = VolumeId::parse(&r.volume_id)
            .ok_or_else(|| Status::not_found(format!("no volume {:?}", r.volume_id)))?;
        if self.get_lv(&id).await?.is_none() {
            return Err(Status::not_found(format!("no volume {id}")));
        }
        if let Err(e) = params::parse(&r.parameters) {
            return Ok(ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: e.message().into(),
            });
        }
        Ok(match params::capabilities(&r.volume_capabilities) {
            Ok(_) => ValidateVolumeCapabilitiesResponse {
                confirmed: Some(validate_volume_capabilities_response::Confirmed {
                    volume_context: std::mem::take(&mut r.volume_context),
                    volume_capabilities: std::mem::take(&mut r.volume_capabilities),
                    parameters: std::mem::take(&mut r.parameters),
                    mutable_parameters: Default::default(),
                }),
                message: String::new(),
            },
            Err(e) => ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: e.message().into(),
            },
        })
    }

    async fn list(&self, r: ListVolumesRequest) -> Result<ListVolumesResponse, Status> {
        let page = super::paging::Page::of(&r.starting_token, r.max_entries)?;
        let marker = driver_tag(&self.0.config.driver_name);
        let lvs = self.0.all_lvs().await?;
        let mut vols: Vec<Volume> = lvs
            .iter()
            // Inline ephemeral volumes are the pods' (kubelet's ids, no PV): not listed,
            // so the provisioner and health monitor only see volumes they made.
            .filter(|l| {
                l.tags.contains(&marker) && !l.device_class.is_empty() && !is_ephemeral_lv(l)
            })
            .map(|l| {
                let id = VolumeId {
                    node: self.0.config.node_id.clone(),
                    class: l.device_class.clone(),
                    lv: l.name.clone(),
                };
                self.volume(&id, l, Default::default())
            })
            .collect();
        vols.sort_by(|a, b| a.volume_id.cmp(&b.volume_id));
        let (entries, next_token) = page.take(vols, "volumes")?;
        Ok(ListVolumesResponse {
            entries: entries
                .into_iter()
                .map(|v| list_volumes_response::Entry {
                    volume: Some(v),
                    status: None,
                })
                .collect(),
            next_token,
        })
    }

    async fn capacity(&self, r: GetCapacityRequest) -> Result<GetCapacityResponse, Status> {
        params::capabilities(&r.volume_capabilities).or_else(|e| {
            if r.volume_capabilities.is_empty() {
                Ok(vec![])
            } else {
                Err(e)
            }
        })?;
        let p = params::parse(&r.parameters)
            .map_err(|e| self.refused("GetCapacity", REFUSED_PARAMETER, &r.parameters, e))?;
        let none = GetCapacityResponse {
            available_capacity: 0,
            maximum_volume_size: Some(0),
            minimum_volume_size: None,
        };
        if let Some(t) = &r.accessible_topology {
            if t.segments.get(&self.0.config.topology_key) != Some(&self.0.config.node_id) {
                return Ok(none);
            }
        }
        let c = self
            .storage_class_device_class("GetCapacity", &p, &r.parameters)
            .await?;
        if !c.error.is_empty() {
            return Ok(none);
        }
        let thin = match (&c.thin_pool, p.layout) {
            (Some(t), Layout::Thin | Layout::Unspecified) => Some(t),
            // A thin StorageClass on a class without a pool has nothing to offer.
            (None, Layout::Thin) => return Ok(none),
            _ => None,
        };
        if let Some(t) = thin {
            // What may still be provisioned under the pool's ratio; nothing while the
            // pool is at its usage limit (lvmd refuses new volumes then).
            let pct = |u: u64, n: u64| u.saturating_mul(100).checked_div(n).unwrap_or(0);
            let full = !t.trouble.is_empty()
                || pct(t.data_used_bytes, t.data_bytes) >= u64::from(t.usage_limit_percent)
                || pct(t.metadata_used_bytes, t.metadata_bytes) >= u64::from(t.usage_limit_percent);
            let left = if full {
                0
            } else {
                t.provisionable_bytes as i64
            };
            return Ok(GetCapacityResponse {
                available_capacity: left,
                maximum_volume_size: Some(left),
                minimum_volume_size: Some(c.extent_size_bytes as i64),
            });
        }
        let largest = match p.layout {
            Layout::Linear => c.largest_linear_bytes,
            Layout::Raid1 => {
                let at = p.mirrors.max(1) as usize - 1;
                // With integrity each leg also holds its checksums and journal.
                let list = if p.integrity.unwrap_or(c.default_integrity) {
                    &c.largest_raid1_integrity_bytes
                } else {
                    &c.largest_raid1_bytes
                };
                list.get(at).copied().unwrap_or(0)
            }
            _ => c.largest_bytes,
        };
        Ok(GetCapacityResponse {
            available_capacity: c.free_bytes as i64,
            maximum_volume_size: Some(largest as i64),
            minimum_volume_size: Some(c.extent_size_bytes as i64),
        })
    }

    /// Node-agnostic: checks the request and answers the size the volume will have,
    /// changing nothing. The external-resizer runs as one replica (a Deployment with
    /// leader election), not beside each lvmd, so this call may land on any node's
    /// plugin, or on one with no lvmd at all. The LV grows where it lives: the owning
    /// node's kubelet calls NodeExpandVolume (`node_expansion_required`), whose plugin
    /// asks its lvmd to grow the LV and then the filesystem on it.
    async fn expand(
        &self,
        r: ControllerExpandVolumeRequest,
    ) -> Result<ControllerExpandVolumeResponse, Status> {
        if r.volume_id.is_empty() {
            return Err(invalid("volume_id missing"));
        }
        let range = r
            .capacity_range
            .as_ref()
            .ok_or_else(|| invalid("capacity_range missing"))?;
        if let Some(c) = &r.volume_capability {
            params::capability(c)?;
        }
        // No volume can have an id that is not ours.
        let id = VolumeId::parse(&r.volume_id)
            .ok_or_else(|| Status::not_found(format!("no volume {:?}", r.volume_id)))?;
        if range.required_bytes <= 0 {
            return Err(Status::out_of_range(
                "capacity_range.required_bytes must be > 0",
            ));
        }
        // lvm2's default extent: the real size (whole extents of the VG, whole stripes)
        // may come out larger; NodeExpandVolume answers it.
        let (size, _) = sized(Some(range), EXPAND_UNIT)?;
        let capacity = i64::try_from(size).map_err(|_| {
            Status::out_of_range(format!("capacity {size} does not fit CSI's int64"))
        })?;
        tracing::info!(volume = %id, size, "expansion accepted; the owning node grows it");
        Ok(ControllerExpandVolumeResponse {
            capacity_bytes: capacity,
            node_expansion_required: true,
        })
    }
}

pub fn vref(id: &VolumeId) -> lvmd::VolumeRef {
    lvmd::VolumeRef {
        device_class: id.class.clone(),
        volume_group: String::new(),
        name: id.lv.clone(),
    }
}

fn rpc_cap(t: rpc::Type) -> ControllerServiceCapability {
    ControllerServiceCapability {
        r#type: Some(CapType::Rpc(Rpc { r#type: t as i32 })),
    }
}

/// The request with its secrets' values zeroed at once: the controller has no use for
/// them (the node reads an encrypted volume's key), and keeps no copy of them.
pub(super) fn wiped<T>(
    mut r: T,
    secrets: impl FnOnce(&mut T) -> &mut HashMap<String, String>,
) -> T {
    crate::rpc::WipeSecret::wipe(secrets(&mut r));
    r
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        r: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        timed(
            &self.0.metrics,
            "CreateVolume",
            self.create(wiped(r.into_inner(), |r| &mut r.secrets)),
        )
        .await
    }
    async fn delete_volume(
        &self,
        r: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        timed(
            &self.0.metrics,
            "DeleteVolume",
            self.delete(wiped(r.into_inner(), |r| &mut r.secrets)),
        )
        .await
    }
    async fn validate_volume_capabilities(
        &self,
        r: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        timed(
            &self.0.metrics,
            "ValidateVolumeCapabilities",
            self.validate(wiped(r.into_inner(), |r| &mut r.secrets)),
        )
        .await
    }
    async fn list_volumes(
        &self,
        r: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        timed(&self.0.metrics, "ListVolumes", self.list(r.into_inner())).await
    }
    async fn get_capacity(
        &self,
        r: Request<GetCapacityRequest>,
    ) -> Result<Response<GetCapacityResponse>, Status> {
        timed(
            &self.0.metrics,
            "GetCapacity",
            self.capacity(r.into_inner()),
        )
        .await
    }
    async fn controller_get_capabilities(
        &self,
        _: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        timed(&self.0.metrics, "ControllerGetCapabilities", async {
            Ok(ControllerGetCapabilitiesResponse {
                capabilities: [
                    rpc::Type::CreateDeleteVolume,
                    rpc::Type::ListVolumes,
                    rpc::Type::GetCapacity,
                    rpc::Type::ExpandVolume,
                    rpc::Type::CreateDeleteSnapshot,
                    rpc::Type::ListSnapshots,
                    rpc::Type::CloneVolume,
                ]
                .into_iter()
                .map(rpc_cap)
                .collect(),
            })
        })
        .await
    }
    async fn create_snapshot(
        &self,
        r: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        timed(
            &self.0.metrics,
            "CreateSnapshot",
            self.create_snapshot_rpc(wiped(r.into_inner(), |r| &mut r.secrets)),
        )
        .await
    }
    async fn delete_snapshot(
        &self,
        r: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        timed(
            &self.0.metrics,
            "DeleteSnapshot",
            self.delete_snapshot_rpc(wiped(r.into_inner(), |r| &mut r.secrets)),
        )
        .await
    }
    async fn list_snapshots(
        &self,
        r: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        timed(
            &self.0.metrics,
            "ListSnapshots",
            self.list_snapshots_rpc(wiped(r.into_inner(), |r| &mut r.secrets)),
        )
        .await
    }
    async fn controller_expand_volume(
        &self,
        r: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        timed(
            &self.0.metrics,
            "ControllerExpandVolume",
            self.expand(wiped(r.into_inner(), |r| &mut r.secrets)),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn range(r: i64, l: i64) -> CapacityRange {
        CapacityRange {
            required_bytes: r,
            limit_bytes: l,
        }
    }

    #[test]
    fn filesystem_minimum() {
        let e = 4 << 20;
        let min = 300 << 20;
        assert_eq!(
            at_least_filesystem_minimum(e, 0, e, Some("xfs"), false).unwrap(),
            min
        );
        assert_eq!(
            at_least_filesystem_minimum(e, 0, 7 << 20, Some("xfs"), false).unwrap(),
            301 << 20
        );
        assert_eq!(
            at_least_filesystem_minimum(2 * min, 0, e, Some("xfs"), false).unwrap(),
            2 * min
        );
        assert_eq!(
            at_least_filesystem_minimum(e, 0, e, Some("ext4"), false).unwrap(),
            e
        );
        assert_eq!(
            at_least_filesystem_minimum(e, 0, e, None, false).unwrap(),
            e
        );
        assert_eq!(
            at_least_filesystem_minimum(e, min, e, Some("xfs"), false).unwrap(),
            min
        );
        let s = at_least_filesystem_minimum(e, min - 1, e, Some("xfs"), false).unwrap_err();
        assert_eq!(s.code(), Code::OutOfRange);
        assert!(s.message().contains("xfs"), "{s:?}");
        // Encrypted: the filesystem gets the LV less its 16 MiB LUKS2 header.
        let header = 16 << 20;
        assert_eq!(
            at_least_filesystem_minimum(e, 0, e, Some("xfs"), true).unwrap(),
            min + header
        );
        assert_eq!(
            at_least_filesystem_minimum(min, 0, e, Some("xfs"), true).unwrap(),
            min + header
        );
        let s = at_least_filesystem_minimum(e, min, e, Some("xfs"), true).unwrap_err();
        assert_eq!(s.code(), Code::OutOfRange, "{s:?}");
        let ext4 = params::min_filesystem_bytes("ext4");
        assert_eq!(
            at_least_filesystem_minimum(e, 0, e, Some("ext4"), true).unwrap(),
            round_up(ext4 + header, e)
        );
        assert_eq!(at_least_filesystem_minimum(e, 0, e, None, true).unwrap(), e);
    }

    #[test]
    fn sizes() {
        let e = 4 << 20;
        assert_eq!(sized(None, e).unwrap(), (DEFAULT_SIZE, 0));
        assert_eq!(sized(Some(&range(1, 0)), e).unwrap().0, e);
        assert_eq!(sized(Some(&range(e as i64 + 1, 0)), e).unwrap().0, 2 * e);
        assert_eq!(sized(Some(&range(0, 10 << 20)), e).unwrap().0, 2 * e);
        let oor = |r, l| sized(Some(&range(r, l)), e).unwrap_err().code();
        assert_eq!(oor(5 << 20, 6 << 20), Code::OutOfRange);
        assert_eq!(oor(10, 5), Code::OutOfRange);
        assert_eq!(oor(-1, 0), Code::OutOfRange);
        assert_eq!(oor(0, 1 << 20), Code::OutOfRange);
    }
}
