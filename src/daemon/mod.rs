//! The daemon: the engine (what lvmd can do to the machine) and what runs it.
//!
//! - [`engine`]: the [`Engine`](engine::Engine) trait, its types and errors.
//! - [`volumes`]: the engine's policy, once, over a [`Metadata`](volumes::Metadata) store;
//!   [`real`] (the `Lvm` library) and [`sim`] (in memory) provide the store.
//! - [`activation`]: the device-mapper interface the activation layer implements, and
//!   [`SimActivation`](activation::SimActivation) until it does.
//! - [`node`], [`node_work`], [`paths`]: filesystems and mounts, and which paths are allowed.
//! - [`reconcile`]: start-up repair of device-mapper state a crash left behind;
//!   [`crash`]: the crash points tests kill the daemon at.
//! - [`view`]: sizes and free space read off a VG.
//! - [`marks`]: the tags lvmd keeps on its own LVs (fresh, formatted, being wiped).
//! - [`wipe`]: zeroing what volumes give back and the edges of new ones; the
//!   background wipe thread.
//! - [`thin`], [`snapshots`]: a device class's thin pool, its volumes, snapshots and
//!   the volumes made from them.
//! - [`auto_repair`]: repairing degraded mirrors of the classes that ask for it;
//!   [`auto_grow`]: growing the thin pools of the classes that ask for it; both run
//!   as [`rounds`].

pub mod activation;
pub mod auto_grow;
pub mod auto_repair;
pub mod classes;
pub mod config;
pub mod crash;
pub mod engine;
pub mod formatting;
pub mod marks;
pub mod node;
pub mod node_work;
pub mod paths;
mod raid_legs;
pub mod real;
pub mod reconcile;
pub mod rounds;
pub mod run;
pub mod setup;
pub mod sim;
pub mod snapshot_groups;
pub mod snapshots;
pub mod thin;
pub mod view;
pub mod volumes;
pub mod wipe;

pub use activation::{Activation, ActivationError, ActiveVolume, DmActivation, SimActivation};
pub use engine::{Engine, EngineError};
pub use node::{FsGrow, HostNode, Node, NodeError, SimNode};
pub use real::RealEngine;
pub use sim::SimEngine;
