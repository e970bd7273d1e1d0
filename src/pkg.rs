//! `kiln pkg build`: recipe directories (`build.yml`) → OCI images in a layout.
//!
//! Takes recipe directories (format: `docs/pkg.md`), the pinned Debian
//! packages they name (`vendor-images/debs.yml` plus a directory of
//! `.deb`s), their files, and static binaries of workspace crates; gives
//! one single-layer image per recipe, tagged `IMAGE:TAG` and `IMAGE:HASH`,
//! where HASH is 12 hex digits of a sha256 over the build's inputs (see
//! [`image`]). Every entry is root-owned with mtime `SOURCE_DATE_EPOCH` (or
//! [`crate::DEFAULT_EPOCH`]), modes come from the recipe rules, the layer is
//! kiln's own tar writer and gzip, and the config has no `created` date, so
//! the image bytes are a function of the inputs alone.
//!
//! Every recipe is built in memory first; the layout is opened and written
//! only when all of them succeeded, and `index.json` is replaced last, so a
//! failing build leaves the layout exactly as it was. Never runs package
//! maintainer scripts, never extracts to the host, never reads the network.

mod crates;
mod deb;
mod files;
mod glob;
mod image;
pub mod pins;
pub mod recipe;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::oci::write::LayoutWriter;
use crate::oci::OciError;
use crate::spec::{Pos, SpecError};
use crate::tree::ContentStore;
use crate::unpack::UnpackError;

pub use crates::{check_static, host_arch, Cargo, CrateBuilder, NotStatic};
pub use image::TAG_HEX;

/// The recipe file in each directory.
pub const RECIPE_FILE: &str = "build.yml";

/// What [`build`] needs besides the recipe directories.
#[derive(Clone, Debug)]
pub struct PkgOptions {
    /// The OCI layout to add images to (created if missing).
    pub layout: PathBuf,
    /// Where the `.deb`s are; default: `debs/` beside the pin file.
    pub debs: Option<PathBuf>,
    /// The pin file; default: the first `vendor-images/debs.yml` found
    /// walking up from the recipe directory.
    pub pins: Option<PathBuf>,
    /// The architecture of recipes that name none.
    pub arch: String,
    /// mtime of every entry; `SOURCE_DATE_EPOCH` for cargo.
    pub epoch: i64,
}

/// One image written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Built {
    pub dir: PathBuf,
    /// `IMAGE:TAG`.
    pub name: String,
    /// `IMAGE:HASH`.
    pub hash_name: String,
    /// The manifest digest, `sha256:…`.
    pub digest: String,
    /// Oddities met while reading `.deb`s (each names the package).
    pub warnings: Vec<String>,
}

/// Why a recipe could not be built. Every message names the recipe file,
/// package, glob or path at fault.
#[derive(Debug, thiserror::Error)]
pub enum PkgError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("{}: no {} in it or a parent directory; pass --pins FILE", dir.display(), pins::PINS_PATH)]
    NoPins { dir: PathBuf },
    #[error("{pos}: deb {package} ({arch}) is not pinned in {}", pins.display())]
    Unpinned {
        pos: Pos,
        package: String,
        arch: String,
        pins: PathBuf,
    },
    #[error("deb {package}: {} is missing (pinned sha256 {expected})", path.display())]
    DebMissing {
        package: String,
        path: PathBuf,
        expected: String,
    },
    #[error("deb {package}: {} has sha256 {actual}, but {expected} is pinned", path.display())]
    DebHash {
        package: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("deb {package}: {}: {reason}", path.display())]
    DebFormat {
        package: String,
        path: PathBuf,
        reason: String,
    },
    #[error("deb {package}: cannot unpack its data.tar")]
    DebUnpack {
        package: String,
        #[source]
        source: UnpackError,
    },
    #[error("{pos}: deb {package}: keep glob `{glob}` matches nothing")]
    NoMatch {
        pos: Pos,
        package: String,
        glob: String,
    },
    #[error("{pos}: deb {package}: kept path {path} is not under strip `{strip}`")]
    NotUnderStrip {
        pos: Pos,
        package: String,
        path: String,
        strip: String,
    },
    #[error("{pos}: {msg}")]
    Rule { pos: Pos, msg: String },
    #[error("crate {package}: {msg}")]
    Crate { package: String, msg: String },
    #[error("crate {package}: binary {binary} is not statically linked ({why})")]
    NotStatic {
        package: String,
        binary: String,
        why: String,
    },
    #[error("cannot store file contents")]
    Store(#[source] std::io::Error),
    #[error(transparent)]
    Layout(#[from] OciError),
}

impl PkgError {
    /// Whether the inputs are at fault (exit 1) rather than kiln or the host.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, PkgError::Store(_) | PkgError::Layout(_))
    }
}

/// Build every recipe of `dirs` and add the images to the layout, all or
/// nothing. Crate binaries come from `crates`.
pub fn build(
    dirs: &[PathBuf],
    opts: &PkgOptions,
    crates: &dyn CrateBuilder,
) -> Result<Vec<Built>, PkgError> {
    let store = ContentStore::new().map_err(PkgError::Store)?;
    let mut cache = PinCache::default();
    let mut prepared = Vec::with_capacity(dirs.len());
    for dir in dirs {
        prepared.push(image::prepare(dir, opts, &store, crates, &mut cache)?);
    }
    let mut writer = LayoutWriter::open_or_create(&opts.layout)?;
    let mut built = Vec::with_capacity(prepared.len());
    for p in prepared {
        let desc = writer.add_image(&p.spec)?;
        built.push(Built {
            dir: p.dir,
            name: p.name,
            hash_name: p.hash_name,
            digest: desc.digest.to_string(),
            warnings: p.warnings,
        });
    }
    writer.commit()?;
    Ok(built)
}

/// Pin files read so far, by path.
#[derive(Default)]
struct PinCache {
    files: BTreeMap<PathBuf, pins::Pins>,
}

impl PinCache {
    /// The pins for a recipe in `dir` (absolute).
    fn for_dir(&mut self, dir: &Path, given: Option<&Path>) -> Result<&pins::Pins, PkgError> {
        let file = match given {
            Some(f) => f.to_owned(),
            None => pins::find(dir).ok_or_else(|| PkgError::NoPins {
                dir: dir.to_owned(),
            })?,
        };
        if !self.files.contains_key(&file) {
            let text = std::fs::read_to_string(&file).map_err(|source| PkgError::Read {
                path: file.clone(),
                source,
            })?;
            let parsed = pins::parse(&file, &text)?;
            self.files.insert(file.clone(), parsed);
        }
        Ok(&self.files[&file])
    }
}
