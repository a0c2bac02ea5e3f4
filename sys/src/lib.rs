//! Raw Linux kernel interfaces for lvmd.
