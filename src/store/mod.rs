//! Devices, scanning and commits. (Placeholder: being written.)
