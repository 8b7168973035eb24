//! chain (to be written).
