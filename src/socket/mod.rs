//! Serving on a unix socket, for both binaries (lvmd's API socket, lvmd-csi's CSI
//! socket): binding it or taking it from systemd ([`listen`]), and checking every peer
//! against an allow list ([`peer`]), and serving clients whose `:authority` h2 would
//! refuse ([`authority`]).

pub mod authority;
pub mod listen;
pub mod peer;

pub use peer::AccessPolicy;
