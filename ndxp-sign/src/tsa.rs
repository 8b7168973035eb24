//! tsa (to be written).
