//! kiln's integration tests: one binary, one module per area.
//! Fixtures (OCI layouts, YAML) are built in code by `support`.

mod support;

mod cli;
mod corpus;
mod disk;
mod fuzz;
mod iso;
mod layout;
mod lock;
mod oci;
mod output;
mod pkg;
mod pull;
mod spec;
mod squashfs;
mod trust;
mod uki;
mod unpack;
mod vdisk;
