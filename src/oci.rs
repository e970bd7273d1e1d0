//! (stub) oci
