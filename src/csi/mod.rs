//! lvmd-csi: the CSI v1 plugin. It speaks CSI to kubelet and the sidecars and only
//! `lvmd.v1` to the daemon over its unix socket: no LVM types and no privileged work here.

pub mod pb {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("csi.v1");
}
