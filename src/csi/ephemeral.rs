//! CSI inline ephemeral volumes: kubelet calls NodePublishVolume with no CreateVolume
//! before it (`csi.storage.k8s.io/ephemeral: "true"` in the context, the pod's
//! `volumeAttributes` beside it) and NodeUnpublishVolume when the pod goes; the volume
//! lives exactly that long.
//!
//! Nothing is kept in memory: the LV's name comes from kubelet's volume id
//! ([`ephemeral_lv_name`]) and its tags say it is this driver's ephemeral volume for that
//! id ([`ephemeral_tag`]). So an unpublish after lvmd-csi, lvmd or the node restarted
//! finds it, and only an LV carrying both tags is ever removed.
//!
//! Crashes: publish creates the LV, then mounts it. If the plugin dies between the two,
//! kubelet sees an error it cannot judge and either retries publish (the tagged LV is
//! reused, then mounted) or calls unpublish (nothing mounted; the LV is removed). A
//! publish that fails on its own removes an LV it created in the same call.

use super::controller::{
    at_least_filesystem_minimum, create_request, driver_tag, ephemeral_tag, round_up,
    stripes_and_unit, ControllerService, DEFAULT_SIZE,
};
use super::node::{need, passphrase, KeySecret, NodeService, Secrets};
use super::params::{self, Access, EphemeralParams};
use super::pb::*;
use super::status::{from_lvmd, invalid};
use super::volume_id::{ephemeral_lv_name, tag_value, VolumeId};
use crate::rpc::pb as lvmd;
use tonic::{Code, Status};

/// Whether `lv` is this driver's ephemeral volume for kubelet's `volume_id`.
fn is_ours(lv: &lvmd::LogicalVolume, driver: &str, volume_id: &str) -> bool {
    lv.tags.contains(&driver_tag(driver)) && lv.tags.contains(&ephemeral_tag(volume_id))
}

/// The tags of a new ephemeral volume: the driver's, the ephemeral marker with the
/// volume id, and the pod (for people listing LVs; nothing reads them back).
pub fn ephemeral_tags(driver: &str, volume_id: &str, p: &EphemeralParams) -> Vec<String> {
    let mut tags = vec![driver_tag(driver), ephemeral_tag(volume_id)];
    for (k, v) in [
        ("ns", &p.pod_namespace),
        ("pod", &p.pod_name),
        ("pod.uid", &p.pod_uid),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            tags.push(format!("csi.{k}={}", tag_value(v)));
        }
    }
    tags
}

/// The lvmd reference of a listed LV: by its VG, which stays right even if its device
/// class was renamed or dropped from lvmd's configuration since.
fn lv_ref(lv: &lvmd::LogicalVolume) -> lvmd::VolumeRef {
    lvmd::VolumeRef {
        device_class: String::new(),
        volume_group: lv.volume_group.clone(),
        name: lv.name.clone(),
    }
}

/// The filesystem: the capability's unless it is empty or the default (kubelet fills in
/// `csi.fsType` from the pod spec), else the `fsType` attribute, else ext4.
fn fs_type(cap: &Option<VolumeCapability>, p: &EphemeralParams) -> Result<String, Status> {
    use super::pb::volume_capability::AccessType;
    let from_cap = match cap.as_ref().and_then(|c| c.access_type.as_ref()) {
        Some(AccessType::Mount(m)) => m.fs_type.as_str(),
        _ => "",
    };
    match (from_cap, &p.volume.fs_type) {
        ("", Some(f)) => Ok(f.clone()),
        (c, Some(f)) if c == params::DEFAULT_FS => Ok(f.clone()),
        (c, Some(f)) if c != f => Err(invalid(format!(
            "inline ephemeral volume: volumeAttributes fsType={f:?} contradicts the pod's \
             csi.fsType {c:?}"
        ))),
        (c, _) => Ok(params::fs_type(c)?.to_string()),
    }
}

impl NodeService {
    /// This driver's ephemeral LV for `volume_id` on any device class: None if there is
    /// none; FAILED_PRECONDITION if an LV of that name is someone else's.
    pub(super) async fn find_ephemeral(
        &self,
        volume_id: &str,
    ) -> Result<Option<lvmd::LogicalVolume>, Status> {
        let name = ephemeral_lv_name(volume_id);
        let all = self.0.all_lvs().await?;
        let Some(lv) = all.into_iter().find(|l| l.name == name) else {
            return Ok(None);
        };
        if !is_ours(&lv, &self.0.config.driver_name, volume_id) {
            return Err(Status::failed_precondition(format!(
                "logical volume {}/{} is not the inline ephemeral volume {volume_id:?} of \
                 driver {} (tags {:?}); leaving it alone",
                lv.volume_group, lv.name, self.0.config.driver_name, lv.tags
            )));
        }
        Ok(Some(lv))
    }

    pub(super) async fn publish_ephemeral(
        &self,
        mut r: NodePublishVolumeRequest,
    ) -> Result<NodePublishVolumeResponse, Status> {
        let mut secrets = Secrets::take(&mut r.secrets);
        let vid = need(&r.volume_id, "volume_id")?;
        let target = need(&r.target_path, "target_path")?;
        let cap = params::required_capability(r.volume_capability.as_ref())?;
        // Unpublish tells the two kinds apart by the id alone: an inline volume with an
        // id shaped like a persistent one would never be removed.
        if VolumeId::parse(vid).is_some() {
            return Err(invalid(format!(
                "inline ephemeral volume {vid}: the id has the form of this plugin's \
                 persistent volume ids (<node>#<class>#<lv>); kubelet's ids never do"
            )));
        }
        let Access::Mount { flags, .. } = cap.access else {
            return Err(invalid(format!(
                "inline ephemeral volume {vid}: block access is not supported (inline \
                 volumes are filesystems)"
            )));
        };
        let p = params::ephemeral(&r.volume_context)?;
        let fs = fs_type(&r.volume_capability, &p)?;
        // A new LV holds no filesystem and a read-only mount cannot make one: refused
        // here, rather than by lvmd after creating the LV for nothing.
        if r.readonly || cap.read_only_mode {
            return Err(invalid(format!(
                "inline ephemeral volume {vid}: read-only (csi.readOnly or a read-only \
                 access mode) is not supported, the volume starts empty; make the \
                 container's volumeMount readOnly instead"
            )));
        }
        // Encrypted: the key comes with this publish, the only call kubelet makes before
        // the pod runs; checked before an LV is made for nothing.
        let key = passphrase(
            &mut secrets,
            p.volume.encrypted,
            vid,
            KeySecret::InlineVolume,
        )?;
        let (lv, created) = self.ensure_ephemeral(vid, &p, &fs).await?;
        if let Err(s) = self.mount_ephemeral(&lv, target, &fs, flags, key).await {
            // Nothing half-done: the LV goes again if this call made it. One found
            // stays: kubelet retries publish, or unpublish removes it.
            if created {
                self.remove_ephemeral(vid, &lv).await;
            }
            return Err(s);
        }
        tracing::info!(volume = vid, lv = %lv.name, vg = %lv.volume_group, target, fs,
            created, encrypted = p.volume.encrypted, "published inline ephemeral volume");
        Ok(NodePublishVolumeResponse {})
    }

    /// The tagged LV for `vid`, made now (true) or found from an earlier call (false).
    async fn ensure_ephemeral(
        &self,
        vid: &str,
        p: &EphemeralParams,
        fs: &str,
    ) -> Result<(lvmd::LogicalVolume, bool), Status> {
        if let Some(lv) = self.find_ephemeral(vid).await.map_err(|s| match s.code() {
            Code::FailedPrecondition => Status::already_exists(s.message()),
            _ => s,
        })? {
            return Ok((lv, false));
        }
        let class = ControllerService(self.0.clone())
            .class(&p.volume.device_class)
            .await
            .map_err(|s| match s.code() {
                Code::InvalidArgument => invalid(format!(
                    "inline ephemeral volume: volumeAttributes deviceClass={:?}: {}",
                    p.volume.device_class,
                    s.message()
                )),
                _ => s,
            })?;
        if !class.error.is_empty() {
            return Err(Status::unavailable(format!(
                "device class {} cannot be used now: {}",
                class.device_class, class.error
            )));
        }
        let (_, unit) = stripes_and_unit(&p.volume, &class);
        let size = round_up(p.size.unwrap_or(DEFAULT_SIZE), unit);
        let size = at_least_filesystem_minimum(size, 0, unit, Some(fs), p.volume.encrypted)?;
        let name = ephemeral_lv_name(vid);
        let id = VolumeId {
            node: self.0.config.node_id.clone(),
            class: class.device_class.clone(),
            lv: name,
        };
        let lv = self
            .0
            .lv()
            .create_logical_volume(create_request(
                &p.volume,
                super::controller::vref(&id),
                size,
                ephemeral_tags(&self.0.config.driver_name, vid, p),
            ))
            .await
            .map_err(|s| from_lvmd(s, &format!("CreateLogicalVolume {id} ({size} bytes)")))?
            .into_inner();
        tracing::info!(volume = vid, lv = %lv.name, vg = %lv.volume_group,
            size = lv.size_bytes, "created inline ephemeral volume");
        Ok((lv, true))
    }

    /// lvmd mounts it (making the filesystem if the LV holds none), then this namespace
    /// must see it; on failure nothing stays mounted at `target`.
    async fn mount_ephemeral(
        &self,
        lv: &lvmd::LogicalVolume,
        target: &str,
        fs: &str,
        flags: Vec<String>,
        key: Vec<u8>,
    ) -> Result<(), Status> {
        self.0
            .node()
            .mount_volume(lvmd::MountVolumeRequest {
                volume: Some(lv_ref(lv)),
                target_path: target.into(),
                fs_type: fs.into(),
                mount_options: flags,
                read_only: false,
                // Moved into lvmd's request, which zeroes it when dropped.
                passphrase: key,
            })
            .await
            .map_err(|s| from_lvmd(s, &format!("MountVolume {} at {target}", lv.name)))?;
        self.confirm_visible(target, true).await
    }

    /// Best effort, for a publish that failed: logged, since the error to return is the
    /// publish's own.
    async fn remove_ephemeral(&self, vid: &str, lv: &lvmd::LogicalVolume) {
        match self.remove_lv(lv).await {
            Ok(()) => tracing::info!(volume = vid, lv = %lv.name,
                "removed the inline ephemeral volume this failed publish created"),
            Err(s) => tracing::error!(volume = vid, lv = %lv.name, error = %s.message(),
                "could not remove the inline ephemeral volume a failed publish created; \
                 unpublish or a retry of publish takes it over"),
        }
    }

    async fn remove_lv(&self, lv: &lvmd::LogicalVolume) -> Result<(), Status> {
        // lvmd deactivates before removing, and refuses (FAILED_PRECONDITION) while
        // the device is still open or mounted.
        self.0
            .lv()
            .remove_logical_volume(lvmd::RemoveLogicalVolumeRequest {
                volume: Some(lv_ref(lv)),
            })
            .await
            .map(|_| ())
            .map_err(|s| {
                from_lvmd(
                    s,
                    &format!("RemoveLogicalVolume {}/{}", lv.volume_group, lv.name),
                )
            })
    }

    /// Unmounts `target`, then removes the volume's LV if it is this driver's ephemeral
    /// one. Already gone is success; an LV of that name that is not ours is left alone.
    pub(super) async fn unpublish_ephemeral(&self, vid: &str, target: &str) -> Result<(), Status> {
        self.unmount(target, true).await?;
        let lv = match self.find_ephemeral(vid).await {
            Ok(Some(lv)) => lv,
            Ok(None) => return Ok(()),
            Err(s) if s.code() == Code::FailedPrecondition => {
                tracing::warn!(volume = vid, target, error = %s.message(),
                    "unpublished; the LV of this name is not ours and stays");
                return Ok(());
            }
            Err(s) => return Err(s),
        };
        self.remove_lv(&lv).await?;
        tracing::info!(volume = vid, lv = %lv.name, vg = %lv.volume_group, target,
            "unpublished and removed inline ephemeral volume");
        Ok(())
    }

    /// The id to look an ephemeral volume up by for stats: its LV as a [`VolumeId`].
    pub(super) async fn ephemeral_id(&self, vid: &str) -> Result<Option<VolumeId>, Status> {
        Ok(self.find_ephemeral(vid).await?.map(|lv| VolumeId {
            node: self.0.config.node_id.clone(),
            class: lv.device_class,
            lv: lv.name,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::pb::volume_capability::{AccessType, MountVolume};
    use super::*;

    fn attrs(kv: &[(&str, &str)]) -> EphemeralParams {
        params::ephemeral(
            &kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    fn cap(fs: &str) -> Option<VolumeCapability> {
        Some(VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume {
                fs_type: fs.into(),
                ..Default::default()
            })),
            access_mode: None,
        })
    }

    #[test]
    fn tags() {
        let p = attrs(&[
            (params::POD_NAMESPACE, "team a"),
            (params::POD_NAME, "web-0"),
            (params::POD_UID, "0b1c-2d"),
        ]);
        let t = ephemeral_tags("lvmd.csi.local", "csi-ab", &p);
        assert_eq!(
            t,
            [
                "csi.driver=lvmd.csi.local",
                "csi.ephemeral=csi-ab",
                "csi.ns=team_a",
                "csi.pod=web-0",
                "csi.pod.uid=0b1c-2d"
            ]
        );
        for tag in &t {
            crate::model::name::validate_tag(tag).unwrap();
        }
        let lv = lvmd::LogicalVolume {
            tags: t,
            ..Default::default()
        };
        assert!(is_ours(&lv, "lvmd.csi.local", "csi-ab"));
        assert!(!is_ours(&lv, "lvmd.csi.local", "csi-cd"));
        assert!(!is_ours(&lv, "other.driver", "csi-ab"));
        assert_eq!(ephemeral_tags("d", "v", &attrs(&[])).len(), 2);
    }

    #[test]
    fn filesystems() {
        let xfs = attrs(&[("fsType", "xfs")]);
        assert_eq!(fs_type(&cap(""), &xfs).unwrap(), "xfs");
        assert_eq!(fs_type(&cap("ext4"), &xfs).unwrap(), "xfs");
        assert_eq!(fs_type(&cap("xfs"), &xfs).unwrap(), "xfs");
        assert_eq!(fs_type(&cap(""), &attrs(&[])).unwrap(), "ext4");
        assert_eq!(fs_type(&cap("xfs"), &attrs(&[])).unwrap(), "xfs");
        let ext4 = attrs(&[("fsType", "ext4")]);
        let s = fs_type(&cap("xfs"), &ext4).unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("fsType=\"ext4\""), "{s:?}");
        assert_eq!(
            fs_type(&cap("btrfs"), &attrs(&[])).unwrap_err().code(),
            Code::InvalidArgument
        );
    }
}
