//! Everything the names of a layout reach: `fsck` and the live set of `gc`.
//!
//! Takes an opened [`Layout`]; follows every `index.json` entry through
//! nested indexes and manifests to configs and layers, reading (and so
//! verifying) each index and manifest once, and gives the reachable blobs
//! with their sizes plus every problem met on the way, each naming the
//! image and the blob. [`fsck`] also streams every leaf blob (config,
//! layer) through its digest check and checks every other file of `blobs/`
//! against the digest its name claims. A problem never stops the walk:
//! `kiln layout fsck` reports them all, and `kiln layout gc` refuses to
//! delete anything while there is one (a manifest it cannot read might
//! reference any blob). Reads no layer contents unless asked to verify.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use super::blob::{BlobRef, MAX_JSON_BLOB};
use super::json::{self, Descriptor, Index, Kind, Manifest};
use super::{parse_json, Digest, Layout, OciError, MAX_DEPTH};

/// What [`Layout::fsck_all`] checked and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Entries of `index.json`.
    pub names: usize,
    /// Distinct blobs that names reach, verified.
    pub blobs: usize,
    /// Their total size.
    pub bytes: u64,
    /// Platform manifests an index names that the layout does not hold
    /// (`kiln pull --platform` keeps only the chosen ones; the image-layout
    /// spec allows referenced blobs to be absent).
    pub absent_manifests: usize,
    /// Blobs no name reaches (`kiln layout gc` removes them), verified
    /// against the digest of their file name.
    pub unreferenced: usize,
    pub unreferenced_bytes: u64,
    /// Temp files (`.tmp-*`) of writers, live or killed.
    pub temp_files: usize,
    /// Everything wrong, in the order found.
    pub problems: Vec<Problem>,
}

/// One missing or corrupt blob, or a reference that does not resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The `index.json` name it was reached from (or `blobs/` for a blob
    /// no name reaches).
    pub name: String,
    /// True when the blob is absent (a re-pull or re-import restores it).
    pub missing: bool,
    pub message: String,
}

/// The blobs the names of a layout reach, for `gc`.
#[derive(Debug, Default)]
pub struct Reachable {
    /// Digest → size.
    pub blobs: BTreeMap<String, u64>,
    /// Problems met (the first error of each), with the name.
    pub problems: Vec<(String, OciError)>,
    /// Digests reached that failed their checks.
    pub failed: BTreeSet<String>,
    pub absent_manifests: usize,
}

/// How much of a leaf blob (config, layer, signature payload) the walk
/// checks; indexes and manifests are always read and verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// That it exists with its descriptor's size.
    Stat,
    /// Its size and digest, streaming it whole.
    Verify,
}

struct Walker<'a> {
    layout: &'a Layout,
    check: Check,
    out: Reachable,
}

/// Walks `entries` (each named by its ref name) of `layout`.
pub(super) fn reachable(layout: &Layout, entries: &[Descriptor], check: Check) -> Reachable {
    let mut w = Walker {
        layout,
        check,
        out: Reachable::default(),
    };
    for d in entries {
        let name = d.ref_name().unwrap_or("index.json").to_string();
        w.desc(d, &name, 0, true);
    }
    w.out
}

impl Walker<'_> {
    fn problem(&mut self, name: &str, e: OciError) {
        if let Some(digest) = blob_digest(&e) {
            self.out.failed.insert(digest.to_string());
        }
        self.out.problems.push((name.to_string(), e));
    }

    /// Visits `d`; `required`: a blob that must be present (an absent
    /// platform manifest of an index is allowed).
    fn desc(&mut self, d: &Descriptor, name: &str, depth: usize, required: bool) {
        if self.out.blobs.contains_key(&d.digest) || self.out.failed.contains(&d.digest) {
            return;
        }
        if depth > MAX_DEPTH {
            return self.problem(
                name,
                OciError::TooDeep {
                    reference: name.to_string(),
                    limit: MAX_DEPTH,
                },
            );
        }
        let digest = match Digest::parse(&d.digest) {
            Ok(digest) => digest,
            Err(source) => {
                return self.problem(
                    name,
                    OciError::BadDigest {
                        context: format!("a descriptor of image {name:?}"),
                        source,
                    },
                )
            }
        };
        let blob = BlobRef::new(&self.layout.root, digest, d.size, name);
        if !required && json::kind_of(&d.media_type) == Some(Kind::Manifest) && !blob.path.exists()
        {
            self.out.absent_manifests += 1;
            return;
        }
        let kind = json::kind_of(&d.media_type);
        let sniff = kind.is_none()
            && d.media_type.is_empty()
            && !json::is_config_type(&d.media_type)
            && d.size <= MAX_JSON_BLOB;
        if kind.is_none() && !sniff {
            // A leaf: config, layer, signature payload.
            let checked = match self.check {
                Check::Verify => blob.open_stream().and_then(|r| r.verify()),
                // Opening refuses a missing blob or one of another size.
                Check::Stat => blob.open_stream().map(drop),
            };
            match checked {
                Ok(()) => {
                    self.out.blobs.insert(d.digest.clone(), d.size);
                }
                Err(e) => self.problem(name, e),
            }
            return;
        }
        let bytes = match blob.read_verified() {
            Ok(b) => b,
            Err(e) => return self.problem(name, e),
        };
        self.out.blobs.insert(d.digest.clone(), d.size);
        match kind.or_else(|| json::sniff_kind(&bytes)) {
            Some(Kind::Index) => match parse_json::<Index>(&blob, &bytes, "index") {
                Ok(idx) => {
                    let before = self.out.absent_manifests;
                    for c in &idx.manifests {
                        self.desc(c, name, depth + 1, false);
                    }
                    let manifests = idx
                        .manifests
                        .iter()
                        .filter(|c| json::kind_of(&c.media_type) == Some(Kind::Manifest))
                        .count();
                    if manifests > 0 && self.out.absent_manifests - before == manifests {
                        self.problem(
                            name,
                            OciError::NoManifestPresent {
                                reference: name.to_string(),
                                index: d.digest.clone(),
                            },
                        );
                    }
                }
                Err(e) => self.problem(name, e),
            },
            Some(Kind::Manifest) => match parse_json::<Manifest>(&blob, &bytes, "manifest") {
                Ok(m) => {
                    self.desc(&m.config, name, depth + 1, true);
                    for l in &m.layers {
                        self.desc(l, name, depth + 1, true);
                    }
                }
                Err(e) => self.problem(name, e),
            },
            // A JSON blob with no media type that is neither: a leaf.
            None => {}
        }
    }
}

/// Verifies every blob: those names reach against their descriptors, the
/// others against their file names.
pub(super) fn fsck(layout: &Layout) -> FsckReport {
    let walked = reachable(layout, &layout.index.manifests, Check::Verify);
    let mut report = FsckReport {
        names: layout.index.manifests.len(),
        blobs: walked.blobs.len(),
        bytes: walked.blobs.values().sum(),
        absent_manifests: walked.absent_manifests,
        ..FsckReport::default()
    };
    for (name, e) in walked.problems {
        report.problems.push(problem(name, &e));
    }
    for file in blob_files(layout) {
        match file {
            BlobFile::Temp(_) => report.temp_files += 1,
            BlobFile::Blob(digest, size) => {
                let key = digest.to_string();
                if walked.blobs.contains_key(&key) || walked.failed.contains(&key) {
                    continue;
                }
                let blob = BlobRef::new(&layout.root, digest, size, "(unreferenced)");
                match blob.open_stream().and_then(|r| r.verify()) {
                    Ok(()) => {
                        report.unreferenced += 1;
                        report.unreferenced_bytes += size;
                    }
                    Err(e) => report.problems.push(problem("blobs/".to_string(), &e)),
                }
            }
            BlobFile::Other(_) => {}
        }
    }
    report
}

/// The blob an integrity error is about.
fn blob_digest(e: &OciError) -> Option<&str> {
    match e {
        OciError::MissingBlob { digest, .. }
        | OciError::SizeMismatch { digest, .. }
        | OciError::TooLong { digest, .. }
        | OciError::DigestMismatch { digest, .. }
        | OciError::JsonTooLarge { digest, .. }
        | OciError::Json { digest, .. } => Some(digest),
        _ => None,
    }
}

fn problem(name: String, e: &OciError) -> Problem {
    Problem {
        name,
        missing: matches!(
            e,
            OciError::MissingBlob { .. } | OciError::NoManifestPresent { .. }
        ),
        message: e.to_string(),
    }
}

/// A file under `blobs/<algorithm>/`.
pub enum BlobFile {
    /// Named by a well-formed digest; its size.
    Blob(Digest, u64),
    /// A writer's temp file.
    Temp(std::path::PathBuf),
    /// Anything else (left alone).
    Other(std::path::PathBuf),
}

/// Every file under `blobs/*/`, sorted by path.
pub fn blob_files(layout: &Layout) -> Vec<BlobFile> {
    let mut out = Vec::new();
    let Ok(algs) = fs::read_dir(layout.root.join("blobs")) else {
        return out;
    };
    let mut dirs: Vec<_> = algs.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        let alg = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.flatten().collect();
        files.sort_by_key(|e| e.file_name());
        for e in files {
            let file_name = e.file_name().to_string_lossy().into_owned();
            let meta = match e.metadata() {
                Ok(m) if m.is_file() => m,
                _ => {
                    out.push(BlobFile::Other(e.path()));
                    continue;
                }
            };
            if file_name.starts_with(".tmp-") {
                out.push(BlobFile::Temp(e.path()));
            } else if let Ok(d) = Digest::parse(&format!("{alg}:{file_name}")) {
                out.push(BlobFile::Blob(d, meta.len()));
            } else {
                out.push(BlobFile::Other(e.path()));
            }
        }
    }
    out
}

/// Whether an error says a blob is absent or damaged (rather than the
/// layout being unreadable for another reason).
pub fn is_integrity_error(e: &OciError) -> bool {
    matches!(
        e,
        OciError::MissingBlob { .. }
            | OciError::SizeMismatch { .. }
            | OciError::TooLong { .. }
            | OciError::DigestMismatch { .. }
            | OciError::Json { .. }
            | OciError::JsonTooLarge { .. }
            | OciError::LayoutJson { .. }
            | OciError::BadDigest { .. }
            | OciError::NoManifestPresent { .. }
            | OciError::TooDeep { .. }
    )
}
