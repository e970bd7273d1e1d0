//! `kiln layout`: managing an OCI image layout (LinuxKit's `cache` verbs).
//!
//! Takes a layout directory; [`ls`] lists its names (digest, platforms,
//! size, whether a cosign signature image is present), [`rm`] drops names
//! from `index.json`, [`gc`] deletes the blobs no name reaches, [`fsck`]
//! re-verifies every blob, and [`import`](import::import) /
//! [`export`](export::export) move images in and out as oci-archive or
//! docker-archive tars (or from another layout). Never deletes a blob a
//! name reaches, never writes a blob it has not verified.
//!
//! The concurrency rule (see `oci::write` for the locks): `rm` and
//! `import` are writers like `kiln pull` (layout lock shared for their
//! whole run, index lock exclusive to rewrite `index.json`); `gc` takes
//! the layout lock **exclusive**, so it runs only when no writer is
//! between writing its blobs and naming them and no build is reading, and
//! while it runs no writer starts. It re-reads `index.json` under the
//! lock, keeps every blob the names reach (signature images are names
//! too), deletes the rest and the temp files of killed writers. `gc`
//! refuses to delete anything when an index or manifest a name reaches
//! cannot be read, since it cannot know what that one references.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::oci::json::{self, Descriptor, Index, Kind, Manifest};
use crate::oci::walk::{self, BlobFile, Check};
use crate::oci::write::{LayoutLock, LayoutWriter};
use crate::oci::{name, Digest, Layout, OciError};

pub mod archive;
pub mod export;
pub mod import;

/// What went wrong managing a layout.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error("image {reference:?} is not a name in layout {}{}", dir.display(), closest_suffix(closest))]
    NotFound {
        reference: String,
        dir: PathBuf,
        closest: Vec<String>,
    },
    #[error("layout {} has {} problem(s); kiln layout gc deletes nothing until they are fixed (kiln layout fsck lists them; kiln layout rm or a new pull/import of the image fixes them):\n  {}", dir.display(), problems.len(), problems.join("\n  "))]
    GcRefused { dir: PathBuf, problems: Vec<String> },
    #[error("layout {} failed verification: {count} problem(s)", dir.display())]
    FsckFailed { dir: PathBuf, count: usize },
    #[error("{}: member {member:?}: {message}", archive.display())]
    Member {
        archive: PathBuf,
        member: String,
        message: String,
    },
    #[error("{}: {message}", archive.display())]
    Archive { archive: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LayoutError {
    /// A layout that failed its checks (exit 3), not bad input.
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            LayoutError::GcRefused { .. } | LayoutError::FsckFailed { .. }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> LayoutError {
        LayoutError::Io {
            path: path.into(),
            source,
        }
    }
}

fn closest_suffix(closest: &[String]) -> String {
    if closest.is_empty() {
        "; it holds no names".to_string()
    } else {
        format!("; closest: {}", closest.join(", "))
    }
}

/// One name of a layout, as `kiln layout ls` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The `org.opencontainers.image.ref.name` of the `index.json` entry.
    pub reference: String,
    /// The digest it points at (an index or a manifest).
    pub digest: String,
    pub media_type: String,
    /// The platforms held (`linux/amd64`), sorted.
    pub platforms: Vec<String>,
    /// Bytes of the distinct blobs the name reaches that are present.
    pub size: u64,
    /// A cosign signature image (`REPO:sha256-HEX.sig`) of the digest or
    /// of one of its platform manifests is in the layout (present, not
    /// verified: `--verify-key` verifies).
    pub signed: bool,
    /// For a signature image: the digest whose signature it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_of: Option<String>,
    /// Why the name does not fully resolve (`kiln layout fsck` says more).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The digest a cosign signature tag (`…:sha256-HEX.sig`) is for.
pub fn signature_target(name: &str) -> Option<String> {
    let tag = name.rsplit(':').next()?;
    let hex = tag.strip_prefix("sha256-")?.strip_suffix(".sig")?;
    Digest::parse(&format!("sha256:{hex}"))
        .ok()
        .map(|d| d.to_string())
}

/// The named entries of `index.json`, sorted by name then digest.
fn named_entries(layout: &Layout) -> Vec<(String, Descriptor)> {
    let mut v: Vec<(String, Descriptor)> = layout
        .manifests()
        .iter()
        .filter_map(|d| d.ref_name().map(|n| (n.to_string(), d.clone())))
        .collect();
    v.sort_by(|a, b| (&a.0, &a.1.digest).cmp(&(&b.0, &b.1.digest)));
    v
}

/// The digests of `d` and of the platform manifests of its index that are
/// present: what a signature may sign.
fn signable_digests(layout: &Layout, d: &Descriptor) -> Vec<String> {
    let mut out = vec![d.digest.clone()];
    if json::kind_of(&d.media_type) == Some(Kind::Index) {
        if let Ok(bytes) = layout.read_small_blob(d, d.ref_name().unwrap_or("")) {
            if let Ok(idx) = serde_json::from_slice::<Index>(&bytes) {
                out.extend(idx.manifests.into_iter().map(|c| c.digest));
            }
        }
    }
    out
}

/// Every name of the layout at `dir`, sorted; signature images only with `all`.
pub fn ls(dir: &Path, all: bool) -> Result<Vec<Entry>, LayoutError> {
    let layout = Layout::open(dir)?;
    let entries = named_entries(&layout);
    let signatures: BTreeSet<String> = entries
        .iter()
        .filter_map(|(n, _)| signature_target(n))
        .collect();
    let mut out = Vec::new();
    for (name, d) in &entries {
        let signature_of = signature_target(name);
        if signature_of.is_some() && !all {
            continue;
        }
        let walked = layout.reachable(std::slice::from_ref(d), Check::Stat);
        let problem = walked.problems.first().map(|(_, e)| e.to_string());
        out.push(Entry {
            reference: name.clone(),
            digest: d.digest.clone(),
            media_type: d.media_type.clone(),
            platforms: platforms(&layout, d),
            size: walked.blobs.values().sum(),
            signed: signable_digests(&layout, d)
                .iter()
                .any(|g| signatures.contains(g)),
            signature_of,
            problem,
        });
    }
    Ok(out)
}

/// The platforms `d` holds: its index's present platform manifests, or
/// its config's os/arch.
fn platforms(layout: &Layout, d: &Descriptor) -> Vec<String> {
    let image = d.ref_name().unwrap_or("");
    let mut out = BTreeSet::new();
    let Ok(bytes) = layout.read_small_blob(d, image) else {
        return Vec::new();
    };
    let kind = json::kind_of(&d.media_type).or_else(|| json::sniff_kind(&bytes));
    match kind {
        Some(Kind::Index) => {
            if let Ok(idx) = serde_json::from_slice::<Index>(&bytes) {
                for c in idx.manifests {
                    let present = Digest::parse(&c.digest)
                        .is_ok_and(|g| layout.root().join(g.blob_path()).is_file());
                    match c.platform {
                        Some(p) if present && p.os != "unknown" => {
                            out.insert(p.to_string());
                        }
                        None if present => out.extend(platforms(layout, &c)),
                        _ => {}
                    }
                }
            }
        }
        Some(Kind::Manifest) => {
            let config = serde_json::from_slice::<Manifest>(&bytes)
                .ok()
                .filter(|m| json::is_config_type(&m.config.media_type))
                .and_then(|m| layout.read_small_blob(&m.config, image).ok())
                .and_then(|c| serde_json::from_slice::<json::ConfigFile>(&c).ok());
            if let Some(c) = config {
                out.insert(
                    json::Platform {
                        architecture: c.architecture,
                        os: c.os,
                        os_version: None,
                        variant: c.variant,
                    }
                    .to_string(),
                );
            }
        }
        None => {}
    }
    out.into_iter().collect()
}

/// `1.5 MiB`: a size for people (JSON output keeps the bytes).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The entries of `index.json` a reference names: exactly that name, else
/// the entries whose name expands to the same canonical name.
fn matching<'a>(
    entries: &'a [(String, Descriptor)],
    reference: &str,
) -> Vec<&'a (String, Descriptor)> {
    let exact: Vec<_> = entries.iter().filter(|(n, _)| n == reference).collect();
    if !exact.is_empty() {
        return exact;
    }
    let Some(canonical) = name::canonical_name(reference) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter(|(n, _)| name::canonical_name(n).as_deref() == Some(canonical.as_str()))
        .collect()
}

fn not_found(layout: &Layout, reference: &str) -> LayoutError {
    let names = layout.names();
    let closest = match name::Reference::parse(reference) {
        Ok(r) => name::closest(&r, names.iter().map(String::as_str), 5),
        Err(_) => Vec::new(),
    };
    LayoutError::NotFound {
        reference: reference.to_string(),
        dir: layout.root().to_path_buf(),
        closest,
    }
}

/// Named `index.json` entries.
type Entries = Vec<(String, Descriptor)>;

/// The names `refs` select (each must select one at least), plus the
/// signature images of their digests: what `rm` drops and `export` writes.
fn select(layout: &Layout, refs: &[String]) -> Result<(Entries, Entries), LayoutError> {
    let entries = named_entries(layout);
    let mut chosen: BTreeMap<String, Descriptor> = BTreeMap::new();
    for r in refs {
        let m = matching(&entries, r);
        if m.is_empty() {
            return Err(not_found(layout, r));
        }
        for (n, d) in m {
            chosen.insert(n.clone(), d.clone());
        }
    }
    let signed: BTreeSet<String> = chosen
        .values()
        .flat_map(|d| signable_digests(layout, d))
        .collect();
    let sigs = entries
        .iter()
        .filter(|(n, _)| !chosen.contains_key(n))
        .filter(|(n, _)| signature_target(n).is_some_and(|t| signed.contains(&t)))
        .cloned()
        .collect();
    Ok((chosen.into_iter().collect(), sigs))
}

/// `kiln layout rm`: drops the names `refs` select from `index.json`, and
/// the signature images of their digests that no remaining name points at.
/// Gives the names dropped. Blobs stay until [`gc`].
pub fn rm(dir: &Path, refs: &[String]) -> Result<Vec<String>, LayoutError> {
    let layout = Layout::open(dir)?;
    let (chosen, sigs) = select(&layout, refs)?;
    let dropped: BTreeSet<&str> = chosen.iter().map(|(n, _)| n.as_str()).collect();
    // A signature stays while another name still points at what it signs.
    let still_named: BTreeSet<String> = named_entries(&layout)
        .iter()
        .filter(|(n, _)| !dropped.contains(n.as_str()) && signature_target(n).is_none())
        .flat_map(|(_, d)| signable_digests(&layout, d))
        .collect();
    let mut names: Vec<String> = chosen.into_iter().map(|(n, _)| n).collect();
    names.extend(
        sigs.into_iter()
            .filter(|(n, _)| signature_target(n).is_some_and(|t| !still_named.contains(&t)))
            .map(|(n, _)| n),
    );
    let mut w = LayoutWriter::open_or_create(dir)?;
    for n in &names {
        w.remove_ref(n);
    }
    w.commit()?;
    Ok(names)
}

/// What [`gc`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    pub kept: usize,
    pub kept_bytes: u64,
    pub removed: usize,
    pub removed_bytes: u64,
    /// Temp files of killed writers removed.
    pub temp_files: usize,
}

/// `kiln layout gc`: under the exclusive layout lock, deletes every blob
/// no name reaches and the temp files of writers that died.
pub fn gc(dir: &Path) -> Result<GcReport, LayoutError> {
    // Refuse a non-layout before creating a lock file in it.
    Layout::open(dir)?;
    let _lock = LayoutLock::acquire(dir, true)?;
    let layout = Layout::open(dir)?;
    let walked = layout.reachable(layout.manifests(), Check::Stat);
    if !walked.problems.is_empty() {
        return Err(LayoutError::GcRefused {
            dir: dir.to_path_buf(),
            problems: walked.problems.iter().map(|(_, e)| e.to_string()).collect(),
        });
    }
    let mut report = GcReport {
        temp_files: crate::oci::write::sweep_temps(dir),
        ..GcReport::default()
    };
    let mut touched = BTreeSet::new();
    for file in walk::blob_files(&layout) {
        let BlobFile::Blob(digest, size) = file else {
            continue;
        };
        if walked.blobs.contains_key(&digest.to_string()) {
            report.kept += 1;
            report.kept_bytes += size;
            continue;
        }
        let path = dir.join(digest.blob_path());
        fs::remove_file(&path).map_err(|e| LayoutError::io(&path, e))?;
        report.removed += 1;
        report.removed_bytes += size;
        if let Some(parent) = path.parent() {
            touched.insert(parent.to_path_buf());
        }
    }
    for d in touched {
        fs::File::open(&d)
            .and_then(|f| f.sync_all())
            .map_err(|e| LayoutError::io(&d, e))?;
    }
    Ok(report)
}

/// `kiln layout fsck`: every blob verified, every name followed. A layout
/// whose `index.json` cannot be read is one problem; a directory that is
/// not a layout is an error.
pub fn fsck(dir: &Path) -> Result<walk::FsckReport, LayoutError> {
    match Layout::open(dir) {
        Ok(layout) => Ok(layout.fsck_all()),
        Err(e @ OciError::NotALayout { .. }) => Err(e.into()),
        Err(e) if walk::is_integrity_error(&e) => Ok(walk::FsckReport {
            problems: vec![walk::Problem {
                name: "index.json".to_string(),
                missing: matches!(e, OciError::MissingBlob { .. }),
                message: e.to_string(),
            }],
            ..walk::FsckReport::default()
        }),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_tags_name_their_digest() {
        let hex = "ab".repeat(32);
        assert_eq!(
            signature_target(&format!("h:5000/a/b:sha256-{hex}.sig")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(
            signature_target(&format!("sha256-{hex}.sig")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(signature_target("a/b:1"), None);
        assert_eq!(signature_target("a/b:sha256-zz.sig"), None);
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(20 << 20), "20.0 MiB");
    }
}
