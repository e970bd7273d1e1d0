//! One recipe directory → an [`ImageSpec`] ready for the layout writer.
//!
//! Takes the recipe directory and the build options; reads `build.yml`,
//! applies debs, then files, then crates, then tars (later sources replace
//! earlier ones at the same path), and writes the image tree as one gzip
//! layer. Writes nothing to the layout: [`super::build`] does that once
//! every recipe has been prepared.
//!
//! The content tag is the first [`TAG_HEX`] hex digits of a sha256 over,
//! in order, each field length-prefixed: the format version `kiln-pkg-v1`,
//! kiln's version, the architecture, the epoch, the bytes of `build.yml`,
//! each deb's pinned sha256 (in recipe order), each file read from the
//! recipe directory (kind, relative path, mode, bytes or link target, in
//! walk order) and each crate binary's bytes. Equal tags mean equal images.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::crates::{check_static, host_arch, CrateBuilder, NotStatic};
use super::files::{self, hash_field, put};
use super::recipe::{self, Recipe, TarRule, CONFIG_LABEL};
use super::{deb, PinCache, PkgError, PkgOptions, RECIPE_FILE};
use crate::oci::write::{ImageSpec, LayerSpec};
use crate::output::compress::{Compression, Compressor};
use crate::output::tar::write_tar;
use crate::spec::Pos;
use crate::tree::{parent, ContentStore, Entry, Kind, Tree};

/// Hex digits of the content tag.
pub const TAG_HEX: usize = 12;

/// A recipe built in memory.
pub(super) struct Prepared {
    pub dir: PathBuf,
    pub name: String,
    pub hash_name: String,
    pub spec: ImageSpec,
    pub warnings: Vec<String>,
}

pub(super) fn prepare(
    dir: &Path,
    opts: &PkgOptions,
    store: &ContentStore,
    crates: &dyn CrateBuilder,
    pins: &mut PinCache,
) -> Result<Prepared, PkgError> {
    let file = dir.join(RECIPE_FILE);
    let read_err = |source| PkgError::Read {
        path: file.clone(),
        source,
    };
    let bytes = std::fs::read(&file).map_err(read_err)?;
    let text = String::from_utf8(bytes.clone()).map_err(|_| {
        read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not UTF-8",
        ))
    })?;
    let file_name = file.display().to_string();
    let r = recipe::parse(&file_name, &text)?;
    let whole_file = Pos {
        file: file_name.as_str().into(),
        line: 0,
        col: 0,
    };
    let name = format!("{}:{}", r.image, r.tag);
    check_name(&name, &r.tag, &whole_file)?;
    let abs_dir = std::path::absolute(dir).map_err(|source| PkgError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let arch = r.arch.clone().unwrap_or_else(|| opts.arch.clone());
    let epoch = opts.epoch;

    let mut h = Sha256::new();
    for field in [
        b"kiln-pkg-v1".as_slice(),
        env!("CARGO_PKG_VERSION").as_bytes(),
        arch.as_bytes(),
        &epoch.to_le_bytes(),
        &bytes,
    ] {
        hash_field(&mut h, field);
    }

    let mut tree = Tree::new();
    let mut warnings = Vec::new();
    // What went in, for the SBOM (crate::sbom reads it from SBOM_LABEL).
    let mut used_debs = std::collections::BTreeMap::new();
    if !r.debs.is_empty() {
        let pins = pins.for_dir(&abs_dir, opts.pins.as_deref())?;
        let debs_dir = match &opts.debs {
            Some(d) => d.clone(),
            None => pins.file.parent().unwrap_or(Path::new(".")).join("debs"),
        };
        for d in &r.debs {
            let pin = pins
                .get(&d.package, &arch)
                .ok_or_else(|| PkgError::Unpinned {
                    pos: d.pos.clone(),
                    package: d.package.clone(),
                    arch: arch.clone(),
                    pins: pins.file.clone(),
                })?;
            hash_field(&mut h, pin.sha256.as_bytes());
            used_debs.insert(
                pin.package.clone(),
                serde_json::json!({
                    "package": pin.package,
                    "version": pin.version,
                    "arch": pin.arch,
                    "sha256": pin.sha256,
                    "source": pin.source,
                    "license": pin.license,
                }),
            );
            let path = debs_dir.join(pin.file_name());
            let f = deb::open_verified(pin, &path)?;
            let unpacked = deb::unpack_data(pin, &path, f, store)?;
            warnings.extend(unpacked.warnings);
            for (p, e) in deb::select(d, &unpacked.tree, epoch)? {
                put(&mut tree, p, e, epoch);
            }
            for x in &d.extract {
                let content = deb::extract(x, &d.package, &unpacked.tree, store)?;
                let entry = Entry::file(content, 0o644, epoch);
                put(&mut tree, x.path.as_bytes().to_vec(), entry, epoch);
            }
        }
    }
    for rule in &r.files {
        files::apply(rule, &abs_dir, store, &mut tree, &mut h, epoch)?;
    }
    add_crates(&r, &abs_dir, crates, store, &mut tree, &mut h, &arch, epoch)?;
    for t in &r.tars {
        pack(t, store, &mut tree, epoch)?;
    }

    let hash = hex::encode(h.finalize())[..TAG_HEX].to_owned();
    let hash_name = format!("{}:{hash}", r.image);
    let layer = layer_bytes(&tree, store)?;
    let mut spec = image_spec(&r, arch, vec![name.clone(), hash_name.clone()], layer);
    let used_crates: Vec<serde_json::Value> = r
        .crates
        .iter()
        .map(|c| c.package.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|p| {
            let version = locked_version(&abs_dir, &p).unwrap_or_default();
            serde_json::json!({"name": p, "version": version})
        })
        .collect();
    if !used_debs.is_empty() || !used_crates.is_empty() {
        let debs: Vec<_> = used_debs.into_values().collect();
        spec.labels.insert(
            crate::sbom::PKG_LABEL.to_owned(),
            serde_json::json!({"debs": debs, "crates": used_crates}).to_string(),
        );
    }
    Ok(Prepared {
        dir: dir.to_owned(),
        name,
        hash_name,
        spec,
        warnings,
    })
}

/// `IMAGE:TAG` must be a plain tagged reference.
fn check_name(name: &str, tag: &str, at: &Pos) -> Result<(), PkgError> {
    let bad = |msg: String| PkgError::Rule {
        pos: at.clone(),
        msg,
    };
    let r = crate::oci::name::Reference::parse(name).map_err(|e| bad(e.to_string()))?;
    if r.pin.is_some() || r.tag.as_deref() != Some(tag) {
        return Err(bad(format!(
            "`{name}` is not an image name with tag `{tag}`"
        )));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn add_crates(
    r: &Recipe,
    dir: &Path,
    builder: &dyn CrateBuilder,
    store: &ContentStore,
    tree: &mut Tree,
    h: &mut Sha256,
    arch: &str,
    epoch: i64,
) -> Result<(), PkgError> {
    let Some(first) = r.crates.first() else {
        return Ok(());
    };
    if arch != host_arch() {
        return Err(PkgError::Rule {
            pos: first.pos.clone(),
            msg: format!(
                "crates are built for the host ({}), not {arch}",
                host_arch()
            ),
        });
    }
    let workspace = workspace_root(dir).ok_or_else(|| PkgError::Rule {
        pos: first.pos.clone(),
        msg: format!("no cargo workspace above {}", dir.display()),
    })?;
    for c in &r.crates {
        let bytes = builder.build(&workspace, &c.package, &c.binary)?;
        check_static(&bytes).map_err(|why| PkgError::NotStatic {
            package: c.package.clone(),
            binary: c.binary.clone(),
            why: match why {
                NotStatic::NotElf(m) => format!("not an ELF file: {m}"),
                NotStatic::Interpreter => "it names an ELF interpreter".to_owned(),
            },
        })?;
        hash_field(h, &bytes);
        let content = store.add(&bytes).map_err(PkgError::Store)?;
        put(
            tree,
            c.path.as_bytes().to_vec(),
            Entry::file(content, 0o755, epoch),
            epoch,
        );
    }
    Ok(())
}

/// The nearest ancestor of `dir` whose `Cargo.toml` has a `[workspace]`.
fn workspace_root(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| {
            std::fs::read_to_string(d.join("Cargo.toml"))
                .is_ok_and(|t| t.lines().any(|l| l.trim() == "[workspace]"))
        })
        .map(Path::to_owned)
}

/// Move the `from` paths of `t` into a tar file at `t.path`. The tar holds
/// them at their image paths, with their parent directories (0755); parents
/// left empty in the image are removed.
fn pack(t: &TarRule, store: &ContentStore, tree: &mut Tree, epoch: i64) -> Result<(), PkgError> {
    let mut sub = Tree::new();
    for from in &t.from {
        let key = from.as_bytes();
        let Some(top) = tree.get(key) else {
            return Err(PkgError::Rule {
                pos: t.pos.clone(),
                msg: format!("tars: {from} is not in the image"),
            });
        };
        sub.insert_with_parents(key.to_vec(), top.clone(), 0o755, epoch);
        for (p, e) in tree.children_of(key) {
            sub.insert(p.clone(), e.clone());
        }
    }
    // A hard link to a path outside the tar becomes a copy of its target.
    let outside: Vec<(Vec<u8>, Entry)> = sub
        .iter()
        .filter_map(|(p, e)| match &e.kind {
            Kind::Hardlink(target) if sub.get(target).is_none() => {
                tree.get(target).map(|t| (p.clone(), t.clone()))
            }
            _ => None,
        })
        .collect();
    for (p, e) in outside {
        sub.insert(p, e);
    }
    let mut bytes = Vec::new();
    write_tar(&sub, store, &mut bytes).map_err(|e| PkgError::Rule {
        pos: t.pos.clone(),
        msg: format!("cannot write {}: {e}", t.path),
    })?;
    for from in &t.from {
        tree.remove_subtree(from.as_bytes());
        let mut dir = parent(from.as_bytes());
        while let Some(d) = dir {
            if tree.children_of(d).next().is_some() {
                break;
            }
            tree.remove_subtree(d);
            dir = parent(d);
        }
    }
    let content = store.add(&bytes).map_err(PkgError::Store)?;
    put(
        tree,
        t.path.as_bytes().to_vec(),
        Entry::file(content, 0o644, epoch),
        epoch,
    );
    Ok(())
}

/// The version `Cargo.lock` of the workspace above `dir` gives `package`.
fn locked_version(dir: &Path, package: &str) -> Option<String> {
    let lock = dir
        .ancestors()
        .map(|d| d.join("Cargo.lock"))
        .find(|p| p.is_file())?;
    let text = std::fs::read_to_string(lock).ok()?;
    let want = format!("name = \"{package}\"");
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == want {
            let v = lines.next()?.trim().strip_prefix("version = \"")?;
            return Some(v.trim_end_matches('"').to_owned());
        }
    }
    None
}

/// The tree as one gzip-compressed tar.
fn layer_bytes(tree: &Tree, store: &ContentStore) -> Result<Vec<u8>, PkgError> {
    let mut gz = Compressor::new(Compression::Gzip, Vec::new(), 1).map_err(PkgError::Store)?;
    write_tar(tree, store, &mut gz).map_err(PkgError::Store)?;
    gz.finish().map_err(PkgError::Store)
}

fn image_spec(r: &Recipe, arch: String, names: Vec<String>, layer: Vec<u8>) -> ImageSpec {
    let mut spec = ImageSpec {
        names,
        layers: vec![LayerSpec::precompressed(
            layer,
            crate::oci::Compression::Gzip,
        )],
        entrypoint: r.entrypoint.clone(),
        cmd: r.cmd.clone(),
        env: r.env.clone(),
        working_dir: r.workdir.clone(),
        arch,
        created: None,
        ..ImageSpec::default()
    };
    if let Some(c) = &r.config {
        spec.labels.insert(CONFIG_LABEL.to_owned(), c.clone());
    }
    spec
}
