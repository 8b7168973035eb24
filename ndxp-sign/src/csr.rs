//! csr (to be written).
