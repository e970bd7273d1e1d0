//! `kiln layout import`: images from an oci-archive, a docker-archive or
//! another layout into a layout.
//!
//! Takes a source (a tar file or a layout directory) and a layout; gives
//! the images of the source in the layout, under their names. A tar is
//! read twice, front to back, never held in memory: first its members'
//! names, types and the small JSON documents (`index.json`, `oci-layout`,
//! `manifest.json`, each at most 4 MiB), then the blobs, each streamed
//! through a [`BlobWriter`] and renamed into `blobs/` only once its digest
//! checks: an oci-archive's `blobs/ALG/HEX` against the digest its name
//! claims, a docker-archive's config against its `HEX.json` name and its
//! layers against the config's `diff_ids`. A docker-archive image becomes
//! an OCI manifest over the config and layers as stored, named by its
//! `RepoTags` in canonical form (`busybox:latest` →
//! `docker.io/library/busybox:latest`). An archive holding both
//! `manifest.json` and `index.json` (what `docker save` writes since
//! Docker 25) is read as a docker-archive. Names enter `index.json` last,
//! all at once, through [`LayoutWriter::commit`]; a failed import leaves
//! the layout as it was plus unnamed blobs (`kiln layout gc` removes
//! them). No path from the archive is used on the host.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::path::Path;

use serde::Deserialize;

use super::archive::{self, MemberKind};
use super::LayoutError;
use crate::oci::blob::{BlobRef, LayerReader, MAX_JSON_BLOB};
use crate::oci::digest::{Algorithm, Hasher};
use crate::oci::json::{self, Compression, ConfigFile, Descriptor, Index, Manifest, OciLayoutFile};
use crate::oci::walk::Check;
use crate::oci::write::{BlobWriter, LayoutWriter};
use crate::oci::{name, Digest, Layout, OciError};

/// Most bytes of member paths an import keeps while reading an archive.
const MAX_CATALOG_BYTES: usize = 16 << 20;

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// `oci-archive`, `docker-archive` or `oci-layout`.
    pub format: &'static str,
    /// `(name, digest)` of every name added, sorted.
    pub images: Vec<(String, String)>,
    /// Blobs written, and their bytes.
    pub written: usize,
    pub written_bytes: u64,
    /// Blobs the layout already had.
    pub present: usize,
    pub warnings: Vec<String>,
}

/// Imports `source` (a tar file or a layout directory) into the layout at
/// `dir` (created if missing).
pub fn import(dir: &Path, source: &Path) -> Result<ImportReport, LayoutError> {
    let meta = std::fs::metadata(source).map_err(|e| LayoutError::io(source, e))?;
    if meta.is_dir() {
        return from_layout(dir, source);
    }
    let mut head = [0u8; 512];
    let mut f = crate::hostfile::open_regular(source).map_err(|e| LayoutError::io(source, e))?;
    let n = read_up_to(&mut f, &mut head).map_err(|e| LayoutError::io(source, e))?;
    let archive_err = |message: String| LayoutError::Archive {
        archive: source.to_path_buf(),
        message,
    };
    if head[..n].starts_with(&[0x1f, 0x8b]) || head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(archive_err(
            "a compressed file: decompress it first (gunzip, unzstd); kiln imports plain tar archives"
                .into(),
        ));
    }
    if n < 512 || &head[257..262] != b"ustar" {
        return Err(archive_err(
            "not a tar archive (an oci-archive or a docker-archive) nor a layout directory".into(),
        ));
    }
    let scan = Scan::read(source)?;
    if scan.manifest_json.is_some() {
        from_docker_archive(dir, source, scan)
    } else if let (Some(index), Some(marker)) = (&scan.index_json, &scan.oci_layout) {
        let version: OciLayoutFile = parse_member(source, "oci-layout", marker)?;
        if !version.image_layout_version.starts_with("1.") {
            return Err(LayoutError::Member {
                archive: source.to_path_buf(),
                member: "oci-layout".into(),
                message: format!(
                    "unsupported imageLayoutVersion {:?} (want 1.0.0)",
                    version.image_layout_version
                ),
            });
        }
        let index: Index = parse_member(source, "index.json", index)?;
        from_oci_archive(dir, source, index)
    } else {
        Err(archive_err(
            "neither an oci-archive (it has no oci-layout and index.json) nor a docker-archive (no manifest.json)"
                .into(),
        ))
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn parse_member<T: serde::de::DeserializeOwned>(
    archive: &Path,
    member: &str,
    bytes: &[u8],
) -> Result<T, LayoutError> {
    serde_json::from_slice(bytes).map_err(|e| LayoutError::Member {
        archive: archive.to_path_buf(),
        member: member.to_string(),
        message: format!("malformed JSON: {e}"),
    })
}

/// The first pass over an archive.
#[derive(Default)]
struct Scan {
    manifest_json: Option<Vec<u8>>,
    index_json: Option<Vec<u8>>,
    oci_layout: Option<Vec<u8>>,
    /// Regular files: path → size.
    files: BTreeMap<String, u64>,
    /// Symbolic links: path → target; hard links: path → the member's path.
    links: BTreeMap<String, String>,
    hardlinks: BTreeMap<String, String>,
}

impl Scan {
    fn read(source: &Path) -> Result<Scan, LayoutError> {
        let mut scan = Scan::default();
        let mut kept = 0usize;
        archive::each_member(source, |m, data| {
            let bad = |message: String| LayoutError::Member {
                archive: source.to_path_buf(),
                member: m.path.clone(),
                message,
            };
            kept += m.path.len();
            if kept > MAX_CATALOG_BYTES {
                return Err(LayoutError::Archive {
                    archive: source.to_path_buf(),
                    message: format!("member names add up to more than {MAX_CATALOG_BYTES} bytes"),
                });
            }
            match &m.kind {
                MemberKind::File => {
                    if scan.files.insert(m.path.clone(), m.size).is_some() {
                        return Err(bad("appears twice in the archive".into()));
                    }
                    let slot = match m.path.as_str() {
                        "manifest.json" => &mut scan.manifest_json,
                        "index.json" => &mut scan.index_json,
                        "oci-layout" => &mut scan.oci_layout,
                        _ => return Ok(()),
                    };
                    if m.size > MAX_JSON_BLOB {
                        return Err(bad(format!(
                            "{} bytes, more than the {MAX_JSON_BLOB} allowed for a JSON document",
                            m.size
                        )));
                    }
                    let mut bytes = Vec::with_capacity(m.size as usize);
                    data.take(MAX_JSON_BLOB + 1)
                        .read_to_end(&mut bytes)
                        .map_err(|e| bad(e.to_string()))?;
                    *slot = Some(bytes);
                }
                MemberKind::Symlink(target) => {
                    scan.links.insert(m.path.clone(), target.clone());
                }
                MemberKind::Hardlink(target) => {
                    scan.hardlinks.insert(m.path.clone(), target.clone());
                }
                MemberKind::Dir | MemberKind::Other => {}
            }
            Ok(())
        })?;
        Ok(scan)
    }

    /// The regular file `path` (through links) stands for.
    fn file(&self, archive: &Path, path: &str) -> Result<String, LayoutError> {
        let bad = |message: String| LayoutError::Member {
            archive: archive.to_path_buf(),
            member: path.to_string(),
            message,
        };
        let mut p = archive::resolve_links(path, &self.links).map_err(bad)?;
        if let Some(target) = self.hardlinks.get(&p) {
            p = target.clone();
        }
        if self.files.contains_key(&p) {
            Ok(p)
        } else {
            Err(bad(
                "manifest.json names it, but the archive holds no such file".into(),
            ))
        }
    }
}

/// Copies `data` into `w` in large chunks; read errors name the member.
fn copy_into(
    archive: &Path,
    dest: &Path,
    member: &str,
    data: &mut dyn Read,
    w: &mut BlobWriter,
    head: &mut Vec<u8>,
) -> Result<(), LayoutError> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = data.read(&mut buf).map_err(|e| LayoutError::Member {
            archive: archive.to_path_buf(),
            member: member.to_string(),
            message: format!("reading: {e}"),
        })?;
        if n == 0 {
            return Ok(());
        }
        if head.len() < 8 {
            let take = (8 - head.len()).min(n);
            head.extend_from_slice(&buf[..take]);
        }
        w.write_all(&buf[..n])
            .map_err(|e| LayoutError::io(dest, e))?;
    }
}

/// A digest mismatch while importing, named by archive and member.
fn member_error(archive: &Path, member: &str, e: OciError) -> LayoutError {
    let message = match e {
        OciError::DigestMismatch { digest, actual, .. } => {
            format!("its content hashes to {actual}, not {digest}; nothing was stored")
        }
        OciError::SizeMismatch {
            expected, actual, ..
        } => format!("{actual} bytes, not the {expected} expected; nothing was stored"),
        e => return e.into(),
    };
    LayoutError::Member {
        archive: archive.to_path_buf(),
        member: member.to_string(),
        message,
    }
}

fn from_oci_archive(dir: &Path, source: &Path, index: Index) -> Result<ImportReport, LayoutError> {
    let mut report = ImportReport {
        format: "oci-archive",
        ..ImportReport::default()
    };
    let mut named = Vec::new();
    for d in index.manifests {
        match d.ref_name() {
            Some(_) => named.push(d),
            None => report.warnings.push(format!(
                "{}: index.json entry {} has no org.opencontainers.image.ref.name; not imported",
                source.display(),
                d.digest
            )),
        }
    }
    if named.is_empty() {
        return Err(LayoutError::Archive {
            archive: source.to_path_buf(),
            message: "its index.json names no image".into(),
        });
    }
    let writer = LayoutWriter::open_or_create(dir)?;
    archive::each_member(source, |m, data| {
        let Some(rest) = m.path.strip_prefix("blobs/") else {
            return Ok(());
        };
        let Some((alg, hex)) = rest.split_once('/') else {
            return Ok(());
        };
        let digest = match Digest::parse(&format!("{alg}:{hex}")) {
            Ok(d) => d,
            // Not a blob name (a directory, a stray file): not imported.
            Err(_) => return Ok(()),
        };
        if m.kind != MemberKind::File {
            return Err(LayoutError::Member {
                archive: source.to_path_buf(),
                member: m.path.clone(),
                message: "a blob that is not a regular file".into(),
            });
        }
        if writer.has_blob(&digest, m.size) {
            report.present += 1;
            return Ok(());
        }
        let mut w = writer.blob_writer_for(&digest)?;
        copy_into(source, dir, &m.path, data, &mut w, &mut Vec::new())?;
        w.finish_expecting(&digest, m.size, &m.path)
            .map_err(|e| member_error(source, &m.path, e))?;
        report.written += 1;
        report.written_bytes += m.size;
        Ok(())
    })?;
    // Every blob the names reach must now be in the layout, whole.
    let target = Layout::with_index(
        dir,
        Index {
            manifests: named.clone(),
            ..Index::default()
        },
    )?;
    let walked = target.reachable(&named, Check::Stat);
    if let Some((image, e)) = walked.problems.into_iter().next() {
        return Err(LayoutError::Archive {
            archive: source.to_path_buf(),
            message: format!("image {image:?} is incomplete: {e}"),
        });
    }
    name_and_commit(writer, &named, report)
}

/// Names each of `named` by its `org.opencontainers.image.ref.name` and
/// commits `index.json`: the last step of an import, after every blob.
fn name_and_commit(
    mut writer: LayoutWriter,
    named: &[Descriptor],
    mut report: ImportReport,
) -> Result<ImportReport, LayoutError> {
    for d in named {
        let n = d.ref_name().unwrap_or_default().to_string();
        writer.add_ref(&n, d);
        report.images.push((n, d.digest.clone()));
    }
    writer.commit()?;
    report.images.sort();
    Ok(report)
}

/// One entry of a docker-archive's `manifest.json`.
#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// A member stored as a blob: its descriptor and the compression sniffed.
#[derive(Clone)]
struct Stored {
    digest: Digest,
    size: u64,
    compression: Compression,
}

fn from_docker_archive(dir: &Path, source: &Path, scan: Scan) -> Result<ImportReport, LayoutError> {
    let mut report = ImportReport {
        format: "docker-archive",
        ..ImportReport::default()
    };
    let entries: Vec<DockerEntry> = parse_member(
        source,
        "manifest.json",
        scan.manifest_json.as_deref().unwrap_or_default(),
    )?;
    // Which members are blobs, and the digest a config's name claims.
    let mut wanted: BTreeMap<String, Option<Digest>> = BTreeMap::new();
    let mut images = Vec::new();
    for e in &entries {
        let config = scan.file(source, &e.config)?;
        wanted.insert(config.clone(), claimed_digest(&config));
        let mut layers = Vec::new();
        for l in &e.layers {
            let p = scan.file(source, l)?;
            wanted.entry(p.clone()).or_insert(None);
            layers.push(p);
        }
        images.push((e, config, layers));
    }
    let mut writer = LayoutWriter::open_or_create(dir)?;
    let mut stored: BTreeMap<String, Stored> = BTreeMap::new();
    archive::each_member(source, |m, data| {
        let Some(claim) = wanted.get(&m.path) else {
            return Ok(());
        };
        if m.kind != MemberKind::File {
            return Ok(());
        }
        if let Some(d) = claim.as_ref().filter(|d| writer.has_blob(d, m.size)) {
            report.present += 1;
            stored.insert(
                m.path.clone(),
                Stored {
                    digest: d.clone(),
                    size: m.size,
                    compression: Compression::None,
                },
            );
            return Ok(());
        }
        let mut w = match claim {
            Some(d) => writer.blob_writer_for(d)?,
            None => writer.blob_writer()?,
        };
        let mut head = Vec::new();
        copy_into(source, dir, &m.path, data, &mut w, &mut head)?;
        let d = match claim {
            Some(digest) => w
                .finish_expecting(digest, m.size, &m.path)
                .map_err(|e| member_error(source, &m.path, e))?,
            None => w.finish()?,
        };
        report.written += 1;
        report.written_bytes += d.size;
        let digest = Digest::parse(&d.digest).map_err(|e| OciError::BadDigest {
            context: m.path.clone(),
            source: e,
        })?;
        stored.insert(
            m.path.clone(),
            Stored {
                digest,
                size: d.size,
                compression: sniff_compression(&head),
            },
        );
        Ok(())
    })?;
    let mut named = 0;
    for (e, config_path, layer_paths) in images {
        let member_err = |member: &str, message: String| LayoutError::Member {
            archive: source.to_path_buf(),
            member: member.to_string(),
            message,
        };
        let config = stored
            .get(&config_path)
            .cloned()
            .ok_or_else(|| member_err(&config_path, "not found on the second read".into()))?;
        let config_bytes =
            BlobRef::new(dir, config.digest.clone(), config.size, &config_path).read_verified()?;
        let parsed: ConfigFile = parse_member(source, &config_path, &config_bytes)?;
        if parsed.rootfs.diff_ids.len() != layer_paths.len() {
            return Err(member_err(
                "manifest.json",
                format!(
                    "the image of {config_path} lists {} layers, its config {} diff_ids",
                    layer_paths.len(),
                    parsed.rootfs.diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (path, diff_id) in layer_paths.iter().zip(&parsed.rootfs.diff_ids) {
            let l = stored
                .get(path)
                .cloned()
                .ok_or_else(|| member_err(path, "not found on the second read".into()))?;
            let actual = diff_id_of(dir, &l, path)?;
            if actual != *diff_id {
                return Err(member_err(
                    path,
                    format!(
                        "its content is {actual} uncompressed, but the config {config_path} lists {diff_id}"
                    ),
                ));
            }
            layers.push(Descriptor {
                media_type: json::layer_media_type(l.compression).to_string(),
                digest: l.digest.to_string(),
                size: l.size,
                ..Descriptor::default()
            });
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(json::MT_OCI_MANIFEST.to_string()),
            config: Descriptor {
                media_type: json::MT_OCI_CONFIG.to_string(),
                digest: config.digest.to_string(),
                size: config.size,
                ..Descriptor::default()
            },
            layers,
            annotations: BTreeMap::new(),
        };
        let bytes =
            serde_json::to_vec(&manifest).map_err(|e| LayoutError::io(dir, io::Error::other(e)))?;
        let desc = Descriptor {
            media_type: json::MT_OCI_MANIFEST.to_string(),
            ..writer.add_blob(&bytes)?
        };
        let tags = e.repo_tags.clone().unwrap_or_default();
        if tags.is_empty() {
            report.warnings.push(format!(
                "{}: the image of {config_path} has no RepoTags; not imported",
                source.display()
            ));
            continue;
        }
        for tag in tags {
            let canonical = name::canonical_name(&tag).ok_or_else(|| {
                member_err(
                    "manifest.json",
                    format!("RepoTags entry {tag:?} is not an image name"),
                )
            })?;
            writer.add_ref(&canonical, &desc);
            report.images.push((canonical, desc.digest.clone()));
            named += 1;
        }
    }
    if named == 0 {
        return Err(LayoutError::Archive {
            archive: source.to_path_buf(),
            message: "its manifest.json names no image (no RepoTags)".into(),
        });
    }
    writer.commit()?;
    report.images.sort();
    report.images.dedup();
    Ok(report)
}

/// `HEX.json` and `blobs/sha256/HEX` name their content's sha256.
fn claimed_digest(path: &str) -> Option<Digest> {
    let file = path.rsplit('/').next()?;
    let hex = file.strip_suffix(".json").unwrap_or(file);
    if path.ends_with(".json") || path.starts_with("blobs/sha256/") {
        Digest::parse(&format!("sha256:{hex}")).ok()
    } else {
        None
    }
}

fn sniff_compression(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// The sha256 of a stored layer's uncompressed bytes (its own digest when
/// it is not compressed).
fn diff_id_of(dir: &Path, l: &Stored, member: &str) -> Result<String, LayoutError> {
    if l.compression == Compression::None {
        return Ok(l.digest.to_string());
    }
    let blob = BlobRef::new(dir, l.digest.clone(), l.size, member).open_stream()?;
    let path = blob.blob().path.clone();
    let mut r = LayerReader::new(blob, l.compression).map_err(|e| LayoutError::io(&path, e))?;
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).map_err(|e| LayoutError::io(&path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    r.finish().map_err(|e| LayoutError::io(&path, e))?;
    Ok(h.finish().to_string())
}

/// Copies every named image of the layout `source` into `dir`, each blob
/// verified as it streams.
fn from_layout(dir: &Path, source: &Path) -> Result<ImportReport, LayoutError> {
    let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    if same(dir, source) {
        return Err(LayoutError::Archive {
            archive: source.to_path_buf(),
            message: "is the layout being imported into".into(),
        });
    }
    let src = Layout::open(source)?;
    let named: Vec<Descriptor> = src
        .manifests()
        .iter()
        .filter(|d| d.ref_name().is_some())
        .cloned()
        .collect();
    let walked = src.reachable(&named, Check::Stat);
    if let Some((image, e)) = walked.problems.into_iter().next() {
        return Err(LayoutError::Archive {
            archive: source.to_path_buf(),
            message: format!("image {image:?} is incomplete: {e}"),
        });
    }
    let mut report = ImportReport {
        format: "oci-layout",
        ..ImportReport::default()
    };
    let writer = LayoutWriter::open_or_create(dir)?;
    let mut seen = BTreeSet::new();
    for (digest, size) in &walked.blobs {
        let digest = Digest::parse(digest).map_err(|e| OciError::BadDigest {
            context: format!("a descriptor in {}", source.display()),
            source: e,
        })?;
        if !seen.insert(digest.clone()) {
            continue;
        }
        if writer.has_blob(&digest, *size) {
            report.present += 1;
            continue;
        }
        let image = source.display().to_string();
        let mut from = BlobRef::new(source, digest.clone(), *size, &image).open_stream()?;
        let mut w = writer.blob_writer_for(&digest)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = from
                .read(&mut buf)
                .map_err(|e| LayoutError::io(source.join(digest.blob_path()), e))?;
            if n == 0 {
                break;
            }
            w.write_all(&buf[..n])
                .map_err(|e| LayoutError::io(dir, e))?;
        }
        w.finish_expecting(&digest, *size, &image)?;
        report.written += 1;
        report.written_bytes += size;
    }
    name_and_commit(writer, &named, report)
}
