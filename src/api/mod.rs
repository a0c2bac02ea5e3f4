//! The gRPC front-end: generated types, the one error mapping, the services, the server
//! and a client connector. It translates; the engine decides.

pub mod audit;
pub mod client;
pub mod server;
pub mod service;
pub mod status;

pub mod pb {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("lvmd.v1");
}

pub use server::{serve, AccessPolicy};
pub use service::Api;
