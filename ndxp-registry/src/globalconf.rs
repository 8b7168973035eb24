//! globalconf (to be written).
