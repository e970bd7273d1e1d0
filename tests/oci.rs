//! Integration tests: oci.
