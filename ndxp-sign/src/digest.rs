//! digest (to be written).
