//! ca (to be written).
