//! Operations as a library. (Placeholder: being written.)
