//! Activation: making LVs usable block devices through device-mapper, natively (ioctls,
//! never lvm2 or dmsetup), so that lvm2 and lvmd see the same devices.
//!
//! - [`target`]: the device-mapper targets, one file per kind, with typed tables that
//!   render to and parse from the kernel's text (pure).
//! - [`plan`]: what a plan is; device-mapper names, uuids and plain LVs' tables, exactly
//!   as lvm2 (pure). [`planner`] sends each LV to its planner: [`plan`], [`raid`]
//!   (hidden leg devices under a dm-raid device) or `thin` (a pool's layers); they read
//!   segment keys through `seg_fields`.
//! - [`dm`]: applying plans with the `devicemapper` crate; reading back what is active.
//! - [`nodes`]: `/dev/mapper/<name>` and `/dev/<VG>/<LV>`, via udev or made directly.
//! - [`Activator`]: the public operations on top.
//!
//! What is active is always read from the kernel, never remembered: lvm2 may activate
//! or deactivate the same LVs between two calls, and both sides must agree.

mod activator;
pub mod cow;
pub mod dm;
mod error;
pub mod nodes;
pub mod plan;
pub mod planner;
pub mod raid;
pub(crate) mod seg_fields;
pub mod target;
#[cfg(test)]
mod test_fixture;
mod thin;

pub use activator::{split_dm_name, Activator, ActiveLv, PoolStatus};
pub use error::{ActivateError, Result};
pub use nodes::NodeMode;
pub use target::{DevNum, DevRef, TableLine, Target};
