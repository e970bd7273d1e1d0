//! Test helpers: temp dirs, a kiln runner, and OCI layouts written from in-code descriptions.
