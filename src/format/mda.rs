//! The metadata area header and its circular buffer. (Placeholder: being written.)
