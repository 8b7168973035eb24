//! httpsig (to be written).
