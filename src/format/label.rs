//! The PV label and header. (Placeholder: being written.)
