//! jws (to be written).
