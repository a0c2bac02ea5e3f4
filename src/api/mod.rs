//! The gRPC front-end: the services of [`crate::rpc`]'s contract, the one error
//! mapping and the server. It translates; the engine decides.

pub mod audit;
pub mod server;
pub mod service;
pub mod status;

pub use server::serve;
pub use service::Api;
