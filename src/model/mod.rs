//! The typed volume group. (Placeholder: being written.)
