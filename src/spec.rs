//! LinuxKit YAML → a typed [`Spec`] that remembers where every item came from.
//!
//! Takes one or more YAML files (merged as LinuxKit merges them); gives a
//! [`Spec`] whose images and files carry their source position, so later
//! stages can report `file:line:col`. Never touches the OCI layout, the
//! network or the output directory; it reads only the YAML files and, for
//! `files: source:`, checks that the source is readable.
//!
//! The YAML is read with our own loader over `saphyr-parser` events
//! ([`yaml`]), which keeps a position for every node and bounds alias
//! expansion (a "billion laughs" document is an error, not an OOM).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

pub(crate) mod fields;
mod image;
pub mod parse;
pub mod yaml;

pub use image::{capability, label};
pub use parse::{load, load_str};

/// A place in a YAML file, 1-based line and column (line 0: the whole file).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // A whole-file problem (e.g. unreadable): no line to point at.
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.col)
        }
    }
}

/// An error in the YAML, with its position.
#[derive(Debug, thiserror::Error)]
#[error("{pos}: {msg}")]
pub struct SpecError {
    pub pos: Pos,
    pub msg: String,
}

/// The merged build description.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Spec {
    pub kernel: Kernel,
    /// Init images, unpacked at the root, in order.
    pub init: Vec<ImageRef>,
    pub onboot: Vec<Image>,
    pub onshutdown: Vec<Image>,
    pub services: Vec<Image>,
    pub files: Vec<FileEntry>,
    pub volumes: Vec<Volume>,
    /// The YAML documents as given, merged, for `metadata: yaml|json` files.
    /// A JSON value with the LinuxKit key names.
    pub raw: serde_json::Value,
    /// Things accepted but ignored (e.g. `trust:`), as `file:line:col: message`.
    pub warnings: Vec<String>,
    /// The text of each YAML file, in the order given, as it was read (the
    /// SBOM hashes these, so it describes the very bytes that were built).
    pub sources: Vec<String>,
}

/// An image reference as written, with where it was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageRef {
    pub reference: String,
    pub pos: Pos,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Kernel {
    pub image: Option<ImageRef>,
    pub cmdline: Option<String>,
    /// File in the kernel image holding the kernel; default `kernel`.
    pub binary: Option<String>,
    /// Tar of modules in the kernel image; default `kernel.tar`; `none` for none.
    pub tar: Option<String>,
    /// CPU microcode cpio in the kernel image, prepended to the initrd.
    pub ucode: Option<String>,
    pub pos: Option<Pos>,
}

/// A container (onboot, onshutdown, service) or a volume's image.
///
/// `None` means "not given in the YAML" — the image label or the built-in
/// default applies. `Some(vec![])` is an explicit empty list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Image {
    pub name: String,
    pub image: ImageRef,
    pub pos: Pos,
    pub capabilities: Option<Vec<String>>,
    pub capabilities_add: Option<Vec<String>>,
    pub ambient: Option<Vec<String>>,
    pub mounts: Option<Vec<Mount>>,
    pub binds: Option<Vec<String>>,
    pub binds_add: Option<Vec<String>>,
    pub tmpfs: Option<Vec<String>>,
    pub devices: Option<Vec<Device>>,
    pub command: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub cwd: Option<String>,
    pub net: Option<String>,
    pub pid: Option<String>,
    pub ipc: Option<String>,
    pub uts: Option<String>,
    pub userns: Option<String>,
    pub hostname: Option<String>,
    pub readonly: Option<bool>,
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    pub uid: Option<IdSpec>,
    pub gid: Option<IdSpec>,
    pub additional_gids: Option<Vec<IdSpec>>,
    pub no_new_privileges: Option<bool>,
    pub oom_score_adj: Option<i64>,
    pub rootfs_propagation: Option<String>,
    pub cgroups_path: Option<String>,
    /// OCI runtime-spec `linux.resources`, passed through (validated keys).
    pub resources: Option<serde_json::Value>,
    pub sysctl: Option<BTreeMap<String, String>>,
    pub rlimits: Option<Vec<String>>,
    pub uid_mappings: Option<Vec<IdMapping>>,
    pub gid_mappings: Option<Vec<IdMapping>>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub runtime: Option<Runtime>,
}

/// A user or group: a number, or a name looked up in the image's
/// `/etc/passwd` / `/etc/group` (allocated if absent, as LinuxKit does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdSpec {
    Id(u32),
    Name(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mount {
    pub destination: String,
    pub kind: Option<String>,
    pub source: Option<String>,
    pub options: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub path: String,
    /// `c`, `b`, `p` (fifo) or `a` (all, for cgroup rules)
    pub kind: String,
    pub major: i64,
    pub minor: i64,
    pub mode: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

/// LinuxKit's `runtime:` section: what init does around starting the container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Runtime {
    pub cgroups: Option<Vec<String>>,
    pub mounts: Option<Vec<Mount>>,
    pub mkdir: Option<Vec<String>>,
    pub interfaces: Option<Vec<Interface>>,
    pub bind_ns: Option<BindNs>,
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub add: Option<String>,
    pub peer: Option<String>,
    pub create_in_root: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BindNs {
    pub cgroup: Option<String>,
    pub ipc: Option<String>,
    pub mnt: Option<String>,
    pub net: Option<String>,
    pub pid: Option<String>,
    pub user: Option<String>,
    pub uts: Option<String>,
}

/// One `files:` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct FileEntry {
    pub path: String,
    pub pos: Pos,
    pub source: FileSource,
    pub optional: bool,
    pub mode: Option<u32>,
    pub uid: Option<IdSpec>,
    pub gid: Option<IdSpec>,
}

/// Where a `files:` entry's content comes from (exactly one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileSource {
    /// `directory: true`
    Directory,
    Symlink(String),
    Contents(String),
    /// A host file, resolved relative to the YAML file that named it.
    Source(PathBuf),
    /// `metadata: yaml` or `metadata: json`: the spec itself.
    Metadata(MetadataFormat),
    /// No content key: an empty file.
    Empty,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataFormat {
    Yaml,
    Json,
}

/// A `volumes:` entry (LinuxKit's named volumes, made from an image or empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub image: Option<ImageRef>,
    pub readonly: bool,
    pub format: Option<String>,
    pub platforms: Vec<String>,
    pub pos: Pos,
}

/// Linux capability names LinuxKit accepts (plus `all`), upper case, with
/// the `CAP_` prefix.
pub const CAPABILITIES: &[&str] = &[
    "CAP_AUDIT_CONTROL",
    "CAP_AUDIT_READ",
    "CAP_AUDIT_WRITE",
    "CAP_BLOCK_SUSPEND",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_KILL",
    "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_MKNOD",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_RAW",
    "CAP_PERFMON",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYSLOG",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT",
    "CAP_SYS_MODULE",
    "CAP_SYS_NICE",
    "CAP_SYS_PACCT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_WAKE_ALARM",
];
