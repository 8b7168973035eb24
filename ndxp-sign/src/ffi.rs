//! ffi (to be written).
