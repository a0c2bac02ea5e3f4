//! The gRPC front-end: generated types, the one error mapping, the services.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("lvmd.v1");
}
