//! The contract between lvmd and its clients (`proto/lvmd.proto`): the generated types
//! and a connector to lvmd's unix socket. The server (`api`), lvmd-ctl and
//! lvmd-csi all speak it; none of them reaches into another for it.

pub mod client;

pub mod pb {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("lvmd.v1");
}
