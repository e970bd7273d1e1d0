//! kiln: hermetic, bit-reproducible LinuxKit image builds.
//!
//! The pipeline (see ARCHITECTURE.md): [`spec`] → [`resolve`] (over [`oci`])
//! → [`unpack`] → [`assemble`] → [`output`], all meeting in a [`tree::Tree`].
//! [`build`] drives the stages for the CLI.

pub mod assemble;
pub mod atomic;
pub mod build;
pub mod fetch;
pub mod golden;
pub mod hostfile;
pub mod inspect;
pub mod layout;
pub mod lock;
pub mod oci;
pub mod output;
pub mod pkg;
pub mod progress;
pub mod resolve;
pub mod run;
pub mod sbom;
pub mod spec;
pub mod tree;
pub mod trust;
pub mod unpack;

/// The fixed mtime of generated entries when `SOURCE_DATE_EPOCH` is unset:
/// LinuxKit's own default, 2017-04-18T16:30:00Z, so unpinned builds match its dates.
pub const DEFAULT_EPOCH: i64 = 1_492_533_000;
