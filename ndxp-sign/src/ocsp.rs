//! ocsp (to be written).
