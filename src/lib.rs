//! kiln: hermetic, bit-reproducible LinuxKit image builds.
//!
//! The pipeline (see ARCHITECTURE.md): [`spec`] → [`resolve`] (over [`oci`])
//! → [`unpack`] → [`assemble`] → [`output`], all meeting in a [`tree::Tree`].
//! [`build`] drives the stages for the CLI.

pub mod assemble;
pub mod atomic;
pub mod build;
pub mod golden;
pub mod inspect;
pub mod oci;
pub mod output;
pub mod resolve;
pub mod spec;
pub mod tree;
pub mod unpack;

/// The fixed mtime of generated entries when `SOURCE_DATE_EPOCH` is unset
/// (2000-01-01T00:00:00Z, positive and before any real input).
pub const DEFAULT_EPOCH: i64 = 946_684_800;
