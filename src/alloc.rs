//! Extent allocation. (Placeholder: being written.)
