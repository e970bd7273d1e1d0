//! The `assemble` stage: a [`Spec`] plus one unpacked [`Tree`] per image →
//! the LinuxKit root filesystem [`Tree`].
//!
//! Takes the typed spec, the image trees (with each image's label and
//! config defaults), the unpacked kernel modules and the content store;
//! gives the tree LinuxKit's `build` would have written (`boot/kernel`,
//! `boot/cmdline`, `boot/ucode.cpio`, the modules, the init images at `/`,
//! `containers/{onboot,onshutdown,services,volumes}/…` with each
//! container's `config.json` and `runtime.json`, then `files:`), plus the
//! kernel, cmdline and microcode for formats that boot them separately.
//! Never reads the clock, the host's users or a directory listing, never
//! knows about output formats, and never writes to the host: the only host
//! reads are `files: source:` paths the spec already resolved.
//!
//! Where kiln deliberately differs from LinuxKit is listed in
//! `docs/linuxkit-compat.md`.

use std::collections::BTreeMap;

use crate::spec::{self, Pos, Spec};
use crate::tree::{Content, ContentStore, Entry, Kind, Tree};

mod files;
mod ids;
mod interp;
mod layout;
mod merge;
mod mounts;
mod oci_types;
mod resources;
mod runtime_config;
mod yaml_out;

#[cfg(test)]
mod tests_config;
#[cfg(test)]
mod tests_files;
#[cfg(test)]
mod tests_layout;
#[cfg(test)]
mod tests_snapshots;

pub use files::FileError;
pub use ids::IdMap;
pub use merge::Origin;
pub use oci_types::{to_go_json, OciSpec, RuntimeJson, OCI_VERSION};
pub use runtime_config::{config_json, oci_spec, runtime_json, runtime_spec, Bundle, ConfigError};
pub use yaml_out::to_yaml;

/// One image the spec names, unpacked.
#[derive(Clone, Debug)]
pub struct ImageInput {
    pub tree: Tree,
    /// The reference as written in the YAML.
    pub reference: String,
    /// The expanded reference, e.g. `docker.io/library/alpine:latest`.
    pub canonical: String,
    pub defaults: ImageDefaults,
}

/// What the image itself says about how to run it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageDefaults {
    /// The `org.mobyproject.config` label, parsed (name and image empty).
    pub label: Option<spec::Image>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub working_dir: Option<String>,
}

/// Everything `assemble` reads.
pub struct Inputs<'a> {
    pub spec: &'a Spec,
    /// Every image the spec names (kernel, init, containers, volumes), by
    /// the reference as written.
    pub images: &'a BTreeMap<String, ImageInput>,
    /// The kernel image's modules tarball, unpacked by the caller.
    pub kernel_modules: Option<Tree>,
    /// For each `format: oci` volume with an image, by volume name: the
    /// image as an OCI image layout, made by the caller.
    pub oci_volumes: &'a BTreeMap<String, Tree>,
    pub store: &'a ContentStore,
    /// mtime of every generated entry (`SOURCE_DATE_EPOCH`).
    pub epoch: i64,
}

/// The assembled root filesystem and the boot pieces.
#[derive(Clone, Debug)]
pub struct Assembled {
    pub tree: Tree,
    pub kernel: Option<Content>,
    pub cmdline: String,
    pub ucode: Option<Content>,
    /// Things that built but deserve a look (shadowed paths, duplicate names).
    pub warnings: Vec<String>,
}

/// The kernel image's file names, after LinuxKit's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelFiles {
    pub binary: String,
    pub tar: Option<String>,
    pub ucode: Option<String>,
}

/// Why the tree could not be assembled. Every message starts with the
/// YAML position it is about.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("{pos}: container {name:?}: {source}")]
    Config {
        pos: Pos,
        name: String,
        #[source]
        source: ConfigError,
    },
    #[error("{pos}: container {name:?}: cannot serialise {what}: {err}")]
    Json {
        pos: Pos,
        name: String,
        what: &'static str,
        err: String,
    },
    #[error(
        "{pos}: image {reference:?} was not unpacked (it is missing from the assemble inputs)"
    )]
    ImageMissing { pos: Pos, reference: String },
    #[error("{pos}: kernel {what} {file:?} not found in kernel image {image}")]
    KernelFileMissing {
        pos: Pos,
        image: String,
        what: &'static str,
        file: String,
    },
    #[error("{pos}: kernel {what} {file:?} in kernel image {image} is not a regular file")]
    KernelFileNotRegular {
        pos: Pos,
        image: String,
        what: &'static str,
        file: String,
    },
    #[error("{pos}: {section} name {name:?} is not usable as a directory name (empty, `.`, `..` or containing `/`)")]
    BadName {
        pos: Pos,
        section: &'static str,
        name: String,
    },
    #[error(
        "{pos}: volume {name:?}: format {format:?} is not supported (only `filesystem` or `oci`)"
    )]
    VolumeFormat {
        pos: Pos,
        name: String,
        format: String,
    },
    #[error("{pos}: container {name:?} has no command: neither its `command`, nor the `org.mobyproject.config` label nor the Entrypoint/Cmd of image {image} give one, and runc cannot start it")]
    NoCommand {
        pos: Pos,
        name: String,
        image: String,
    },
    #[error("{pos}: files: {path:?}: {problem}")]
    File {
        pos: Pos,
        path: String,
        #[source]
        problem: FileError,
    },
    #[error("{pos}: storing {what}: {err}")]
    Store {
        pos: Pos,
        what: String,
        #[source]
        err: std::io::Error,
    },
}

/// The kernel image's file names with LinuxKit's defaults: `kernel`,
/// `kernel.tar` (none for `none` or `""`), no microcode.
pub fn kernel_file_names(k: &spec::Kernel) -> KernelFiles {
    let binary = match k.binary.as_deref() {
        None | Some("") => "kernel".to_string(),
        Some(b) => b.to_string(),
    };
    let tar = match k.tar.as_deref() {
        None => Some("kernel.tar".to_string()),
        Some("") | Some("none") => None,
        Some(t) => Some(t.to_string()),
    };
    KernelFiles {
        binary,
        tar,
        ucode: k.ucode.clone().filter(|u| !u.is_empty()),
    }
}

/// Build the LinuxKit root filesystem tree.
pub fn assemble(inputs: &Inputs) -> Result<Assembled, AssembleError> {
    let spec = inputs.spec;
    let (ids, mut warnings) = id_map(spec);
    let mut tree = Tree::new();
    let cmdline = spec.kernel.cmdline.clone().unwrap_or_default();
    let (kernel, ucode) = match &spec.kernel.image {
        Some(kref) => {
            let (k, u) = place_kernel(&mut tree, inputs, kref, &cmdline, &mut warnings)?;
            (Some(k), u)
        }
        None => (None, None),
    };
    layout::add_init(&mut tree, inputs, &mut warnings)?;
    layout::add_volumes(&mut tree, inputs, &mut warnings)?;
    layout::add_containers(&mut tree, inputs, &ids, &mut warnings)?;
    files::add_files(&mut tree, inputs, &ids)?;
    Ok(Assembled {
        tree,
        kernel,
        cmdline,
        ucode,
        warnings,
    })
}

/// Every check of [`assemble`] that needs no layer contents, for
/// `kiln validate`: names, volume formats, each container's `config.json`
/// and `runtime.json` from the YAML, the label and the image config
/// (capabilities, mounts, binds of volumes, devices, rlimits, …), and
/// `files:`. The image trees of `inputs` may be empty; the kernel's files
/// are not looked for. Gives the warnings a build would give about them.
pub fn check(inputs: &Inputs) -> Result<Vec<String>, AssembleError> {
    let (ids, mut warnings) = id_map(inputs.spec);
    let mut tree = Tree::new();
    layout::add_init(&mut tree, inputs, &mut warnings)?;
    layout::add_volumes(&mut tree, inputs, &mut warnings)?;
    layout::add_containers(&mut tree, inputs, &ids, &mut warnings)?;
    files::add_files(&mut tree, inputs, &ids)?;
    Ok(warnings)
}

/// Container names → uids/gids, with a warning per ambiguous name.
fn id_map(spec: &Spec) -> (IdMap, Vec<String>) {
    let ids = IdMap::from_spec(spec);
    let warnings = ids
        .duplicates()
        .iter()
        .map(|dup| {
            format!(
                "container name {dup:?} is used more than once; as a uid/gid it means the last one"
            )
        })
        .collect();
    (ids, warnings)
}

fn image_input<'a>(
    inputs: &'a Inputs,
    r: &spec::ImageRef,
) -> Result<&'a ImageInput, AssembleError> {
    inputs
        .images
        .get(&r.reference)
        .ok_or_else(|| AssembleError::ImageMissing {
            pos: r.pos.clone(),
            reference: r.reference.clone(),
        })
}

fn store(inputs: &Inputs, pos: &Pos, what: &str, bytes: &[u8]) -> Result<Content, AssembleError> {
    inputs.store.add(bytes).map_err(|err| AssembleError::Store {
        pos: pos.clone(),
        what: what.to_string(),
        err,
    })
}

/// `boot/kernel`, `boot/cmdline`, `boot/ucode.cpio` and the modules.
fn place_kernel(
    tree: &mut Tree,
    inputs: &Inputs,
    kref: &spec::ImageRef,
    cmdline: &str,
    warnings: &mut Vec<String>,
) -> Result<(Content, Option<Content>), AssembleError> {
    let input = image_input(inputs, kref)?;
    let names = kernel_file_names(&inputs.spec.kernel);
    let pos = inputs
        .spec
        .kernel
        .pos
        .clone()
        .unwrap_or_else(|| kref.pos.clone());
    let find = |what: &'static str, file: &str| -> Result<Option<(Content, u32)>, AssembleError> {
        let key = crate::tree::normalize(file.as_bytes()).0;
        let mut entry = match input.tree.get(&key) {
            Some(e) => e,
            None => return Ok(None),
        };
        if let Kind::Hardlink(target) = &entry.kind {
            entry = input.tree.get(target).unwrap_or(entry);
        }
        match &entry.kind {
            Kind::File(c) => Ok(Some((c.clone(), entry.mode))),
            _ => Err(AssembleError::KernelFileNotRegular {
                pos: pos.clone(),
                image: input.canonical.clone(),
                what,
                file: file.to_string(),
            }),
        }
    };
    let missing = |what: &'static str, file: &str| AssembleError::KernelFileMissing {
        pos: pos.clone(),
        image: input.canonical.clone(),
        what,
        file: file.to_string(),
    };
    let (kernel, kernel_mode) =
        find("binary", &names.binary)?.ok_or_else(|| missing("binary", &names.binary))?;
    let ucode = match &names.ucode {
        Some(u) => Some(find("ucode", u)?.ok_or_else(|| missing("ucode", u))?),
        None => None,
    };
    if let Some(t) = &names.tar {
        if find("tar", t)?.is_none() {
            return Err(missing("tar", t));
        }
        if inputs.kernel_modules.is_none() {
            warnings.push(format!(
                "{pos}: kernel tar {t:?} of {} was not unpacked; no modules in the image",
                input.canonical
            ));
        }
    }
    let epoch = inputs.epoch;
    tree.insert(b"boot".to_vec(), Entry::dir(0o755, epoch));
    tree.insert(
        b"boot/kernel".to_vec(),
        Entry::file(kernel.clone(), kernel_mode, epoch),
    );
    let cmd = store(inputs, &pos, "boot/cmdline", cmdline.as_bytes())?;
    tree.insert(b"boot/cmdline".to_vec(), Entry::file(cmd, 0o644, epoch));
    if let Some((c, mode)) = &ucode {
        tree.insert(
            b"boot/ucode.cpio".to_vec(),
            Entry::file(c.clone(), *mode, epoch),
        );
    }
    if let Some(modules) = &inputs.kernel_modules {
        layout::overlay(
            tree,
            b"",
            modules.clone(),
            epoch,
            warnings,
            "kernel modules",
        );
    }
    Ok((kernel, ucode.map(|(c, _)| c)))
}
