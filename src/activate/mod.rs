//! Activation: making LVs usable block devices through device-mapper, natively (ioctls,
//! never lvm2 or dmsetup), so that lvm2 and lvmd see the same devices.
//!
//! - [`plan`]: metadata -> device-mapper names, uuids and tables, exactly as lvm2 (pure).
//! - [`raid`]: lvm2's raid1 LVs: hidden leg devices under a dm-raid device (pure).
//! - [`dm`]: applying plans with the `devicemapper` crate; reading back what is active.
//! - [`nodes`]: `/dev/mapper/<name>` and `/dev/<VG>/<LV>`, via udev or made directly.
//! - [`Activator`]: the public operations on top.
//!
//! What is active is always read from the kernel, never remembered: lvm2 may activate
//! or deactivate the same LVs between two calls, and both sides must agree.

mod activator;
pub mod dm;
mod error;
pub mod nodes;
pub mod plan;
pub mod raid;
#[cfg(test)]
mod test_fixture;
mod thin;

pub use activator::{split_dm_name, Activator, ActiveLv};
pub use error::{ActivateError, Result};
pub use nodes::NodeMode;
pub use plan::{DevNum, TableLine, Target};
