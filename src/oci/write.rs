//! Writing OCI image layouts that skopeo, umoci and kiln itself read.
//!
//! Takes layer tars (in memory or as files), image config fields and names;
//! gives blobs under `blobs/sha256/` and, on [`LayoutWriter::commit`], a new
//! `index.json`. Every blob is hashed while it is written to a temp file
//! beside its final place, fsynced and renamed in; `index.json` is written
//! last, the same way, so a build that fails before `commit` leaves the
//! layout as it was (plus unreferenced blobs). The JSON is deterministic:
//! fixed field order, sorted maps, no whitespace, entries sorted by ref name
//! then digest. Reads no clock: `created` is whatever the caller gives.
//!
//! Two advisory locks (`flock(2)`, one [`LayoutLock`] type) keep
//! concurrent users of a layout apart:
//!
//! - the **layout lock**, `DIR/.kiln-lock`, is held *shared* by every
//!   writer from [`LayoutWriter::open_or_create`] until the writer is
//!   dropped (after [`LayoutWriter::commit`]), and by builds while they
//!   read the layout ([`LayoutLock::for_reading`]); `kiln layout gc` holds
//!   it *exclusive* while it decides what is garbage and deletes it. A
//!   writer never releases it between writing its blobs and naming them,
//!   so a gc never sees a blob that is written but not yet named, nor
//!   deletes what a running build was resolved to;
//! - the **index lock**, `DIR/.kiln-index-lock`, is held *exclusive* only
//!   while `index.json` is rewritten: [`LayoutWriter::commit`] re-reads
//!   `index.json` under it and applies only this writer's additions and
//!   removals, so concurrent writers (two pulls, a pull and `kiln pkg
//!   build`, `kiln layout rm`) never drop each other's entries.
//!
//! (One lock cannot do both: `flock` converts shared to exclusive by
//! releasing first, and a gc waiting for the lock would get it in between.)
//! Readers that do not delete take no more than the shared layout lock:
//! every file they read is renamed into place whole.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::digest::{Algorithm, Digest, Hasher};
use super::json::{
    self, Compression, ConfigFile, Descriptor, Index, Manifest, OciLayoutFile, Platform, RootFs,
    RunConfig,
};
use super::{read_small_json, OciError};

/// Where a layer's uncompressed tar comes from.
#[derive(Clone, Debug)]
pub enum LayerSource {
    Bytes(Vec<u8>),
    Path(PathBuf),
}

/// One layer of an image to write.
#[derive(Clone, Debug)]
pub enum LayerSpec {
    /// An uncompressed tar, compressed by the writer.
    Tar {
        source: LayerSource,
        compression: Compression,
    },
    /// An already compressed tar, stored verbatim; the writer decompresses
    /// it only to compute its diff id.
    Precompressed {
        bytes: Vec<u8>,
        compression: Compression,
    },
    /// A blob stored verbatim under `media_type`, with the diff id the
    /// config records for it (tests use this to write broken layers).
    Encoded {
        bytes: Vec<u8>,
        media_type: String,
        diff_id: String,
    },
}

impl LayerSpec {
    /// An in-memory tar, compressed with `compression`.
    pub fn tar(bytes: Vec<u8>, compression: Compression) -> LayerSpec {
        LayerSpec::Tar {
            source: LayerSource::Bytes(bytes),
            compression,
        }
    }

    /// An already compressed tar, stored as it is.
    pub fn precompressed(bytes: Vec<u8>, compression: Compression) -> LayerSpec {
        LayerSpec::Precompressed { bytes, compression }
    }
}

/// An image to add: its layers, config and the names it is tagged with.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// `org.opencontainers.image.ref.name` values to tag it with in
    /// `index.json`; empty for a platform manifest of a multi-arch index.
    pub names: Vec<String>,
    pub layers: Vec<LayerSpec>,
    pub labels: BTreeMap<String, String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub arch: String,
    pub os: String,
    pub variant: Option<String>,
    /// RFC 3339; omitted when `None`. Never the current time.
    pub created: Option<String>,
    /// Manifest annotations.
    pub annotations: BTreeMap<String, String>,
}

impl Default for ImageSpec {
    fn default() -> ImageSpec {
        ImageSpec {
            names: Vec::new(),
            layers: Vec::new(),
            labels: BTreeMap::new(),
            entrypoint: None,
            cmd: None,
            env: None,
            working_dir: None,
            user: None,
            arch: "amd64".to_string(),
            os: "linux".to_string(),
            variant: None,
            created: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// A multi-platform index to add: platform manifests (from
/// [`LayoutWriter::add_image`], which sets their `platform`) or nested indexes.
#[derive(Clone, Debug, Default)]
pub struct IndexSpec {
    pub names: Vec<String>,
    pub manifests: Vec<Descriptor>,
    pub annotations: BTreeMap<String, String>,
}

/// Adds blobs and images to a layout; nothing is visible until [`commit`](Self::commit).
#[derive(Debug)]
pub struct LayoutWriter {
    root: PathBuf,
    /// The names this writer adds, applied to `index.json` as it is at commit.
    added: Vec<Descriptor>,
    /// The names this writer removes at commit.
    removed: Vec<String>,
    /// The layout lock, shared for the writer's whole life.
    _lock: LayoutLock,
}

/// One of the layout's advisory locks (`flock(2)` on a file in the layout
/// root; see the module doc for which is held when). Released when dropped.
#[derive(Debug)]
pub struct LayoutLock {
    file: File,
    path: PathBuf,
}

/// The layout lock's file name in the layout root.
pub const LOCK_FILE: &str = ".kiln-lock";
/// The index lock's file name in the layout root.
pub const INDEX_LOCK_FILE: &str = ".kiln-index-lock";

impl LayoutLock {
    /// Takes the layout lock of the layout at `dir` (which must exist),
    /// shared or exclusive, waiting (and saying so on stderr) while another
    /// process holds it.
    pub fn acquire(dir: &Path, exclusive: bool) -> Result<LayoutLock, OciError> {
        let lock = LayoutLock::open(dir, LOCK_FILE)?;
        lock.set(exclusive)?;
        Ok(lock)
    }

    /// Takes the index lock (exclusive): held only to rewrite `index.json`.
    pub fn acquire_index(dir: &Path) -> Result<LayoutLock, OciError> {
        let lock = LayoutLock::open(dir, INDEX_LOCK_FILE)?;
        lock.set(true)?;
        Ok(lock)
    }

    /// For a reader (a build): the layout lock, shared, if the layout has a
    /// lock file (every kiln writer and gc create one); `None` when it has
    /// none or it cannot be opened (a read-only copy). Never creates it: a
    /// build writes nothing into the layout.
    pub fn for_reading(dir: &Path) -> Option<LayoutLock> {
        let path = dir.join(LOCK_FILE);
        let file = File::open(&path).ok()?;
        let lock = LayoutLock { file, path };
        lock.set(false).ok()?;
        Some(lock)
    }

    fn open(dir: &Path, name: &str) -> Result<LayoutLock, OciError> {
        let path = dir.join(name);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| OciError::io(&path, e))?;
        Ok(LayoutLock { file, path })
    }

    /// Takes the layout lock shared; when no other writer holds it, first
    /// removes the temp files (`.tmp-*`) a killed writer left behind.
    pub fn sweep_then_share(dir: &Path) -> Result<LayoutLock, OciError> {
        let lock = LayoutLock::open(dir, LOCK_FILE)?;
        if lock.file.try_lock().is_ok() {
            sweep_temps(dir);
        }
        lock.set(false)?;
        Ok(lock)
    }

    /// Takes the lock shared or exclusive, converting a lock already held
    /// (not atomically: flock releases, then waits).
    pub fn set(&self, exclusive: bool) -> Result<(), OciError> {
        let tried = if exclusive {
            self.file.try_lock()
        } else {
            self.file.try_lock_shared()
        };
        match tried {
            Ok(()) => return Ok(()),
            Err(fs::TryLockError::WouldBlock) => {
                eprintln!("kiln: waiting for the lock on {}", self.path.display());
            }
            Err(fs::TryLockError::Error(e)) => return Err(OciError::io(&self.path, e)),
        }
        if exclusive {
            self.file.lock()
        } else {
            self.file.lock_shared()
        }
        .map_err(|e| OciError::io(&self.path, e))
    }
}

impl LayoutWriter {
    /// Opens an existing layout (keeping its `index.json` entries) or
    /// prepares a new one in `dir` (created if missing).
    pub fn open_or_create(dir: &Path) -> Result<LayoutWriter, OciError> {
        fs::create_dir_all(dir).map_err(|e| OciError::io(dir, e))?;
        let lock = LayoutLock::sweep_then_share(dir)?;
        let w = LayoutWriter {
            root: dir.to_path_buf(),
            added: Vec::new(),
            removed: Vec::new(),
            _lock: lock,
        };
        // Refuse a layout of another version before adding blobs to it.
        w.read_index()?;
        Ok(w)
    }

    /// The current `index.json` (empty for a new layout).
    fn read_index(&self) -> Result<Index, OciError> {
        let marker = self.root.join("oci-layout");
        let index_path = self.root.join("index.json");
        let mut idx = Index {
            schema_version: 2,
            media_type: Some(json::MT_OCI_INDEX.to_string()),
            manifests: Vec::new(),
            annotations: BTreeMap::new(),
        };
        if marker.exists() {
            let v: OciLayoutFile = read_small_json(&marker)?;
            if !v.image_layout_version.starts_with("1.") {
                return Err(OciError::LayoutVersion {
                    path: marker,
                    found: v.image_layout_version,
                });
            }
            if index_path.exists() {
                idx = read_small_json(&index_path)?;
            }
        }
        Ok(idx)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Starts a streaming blob.
    pub fn blob_writer(&self) -> Result<BlobWriter, OciError> {
        BlobWriter::new(&self.root, Algorithm::Sha256)
    }

    /// Starts a streaming blob that must turn out to be `digest`: finish
    /// it with [`BlobWriter::finish_expecting`].
    pub fn blob_writer_for(&self, digest: &Digest) -> Result<BlobWriter, OciError> {
        BlobWriter::new(&self.root, digest.algorithm())
    }

    /// Whether the layout already holds `digest` with `size` bytes (blobs
    /// are renamed in only once verified, so a present one is whole).
    pub fn has_blob(&self, digest: &Digest, size: u64) -> bool {
        fs::metadata(self.root.join(digest.blob_path()))
            .is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Stores `bytes` as a blob; the returned descriptor has digest and
    /// size set and an empty media type for the caller to fill in.
    pub fn add_blob(&self, bytes: &[u8]) -> Result<Descriptor, OciError> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes)
            .map_err(|e| OciError::io(&w.temp_path, e))?;
        w.finish()
    }

    fn add_json<T: serde::Serialize>(
        &self,
        media_type: &str,
        value: &T,
    ) -> Result<Descriptor, OciError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| OciError::io(&self.root, io::Error::new(io::ErrorKind::InvalidData, e)))?;
        Ok(Descriptor {
            media_type: media_type.to_string(),
            ..self.add_blob(&bytes)?
        })
    }

    /// Writes one layer; gives its descriptor and diff id.
    fn add_layer(&self, layer: &LayerSpec) -> Result<(Descriptor, String), OciError> {
        match layer {
            LayerSpec::Encoded {
                bytes,
                media_type,
                diff_id,
            } => {
                let d = self.add_blob(bytes)?;
                Ok((
                    Descriptor {
                        media_type: media_type.clone(),
                        ..d
                    },
                    diff_id.clone(),
                ))
            }
            LayerSpec::Precompressed { bytes, compression } => {
                let diff_id = diff_id_of(bytes, *compression).map_err(|e| {
                    OciError::io(
                        &self.root,
                        io::Error::new(e.kind(), format!("decompressing a layer: {e}")),
                    )
                })?;
                let d = self.add_blob(bytes)?;
                Ok((
                    Descriptor {
                        media_type: json::layer_media_type(*compression).to_string(),
                        ..d
                    },
                    diff_id,
                ))
            }
            LayerSpec::Tar {
                source,
                compression,
            } => {
                let (mut reader, origin): (Box<dyn Read>, PathBuf) = match source {
                    LayerSource::Bytes(b) => (Box::new(b.as_slice()), self.root.clone()),
                    LayerSource::Path(p) => (
                        Box::new(File::open(p).map_err(|e| OciError::io(p, e))?),
                        p.clone(),
                    ),
                };
                let blob = self.blob_writer()?;
                let temp = blob.temp_path.clone();
                let mut diff = Hasher::new(Algorithm::Sha256);
                let mut enc =
                    Encoder::new(blob, *compression).map_err(|e| OciError::io(&temp, e))?;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = reader
                        .read(&mut buf)
                        .map_err(|e| OciError::io(&origin, e))?;
                    if n == 0 {
                        break;
                    }
                    diff.update(&buf[..n]);
                    enc.write_all(&buf[..n])
                        .map_err(|e| OciError::io(&temp, e))?;
                }
                let blob = enc.finish().map_err(|e| OciError::io(&temp, e))?;
                let d = blob.finish()?;
                Ok((
                    Descriptor {
                        media_type: json::layer_media_type(*compression).to_string(),
                        ..d
                    },
                    diff.finish().to_string(),
                ))
            }
        }
    }

    /// Writes an image's layers, config and manifest, and tags the manifest
    /// with `spec.names`. The descriptor returned carries the platform, for
    /// use in [`IndexSpec::manifests`].
    pub fn add_image(&mut self, spec: &ImageSpec) -> Result<Descriptor, OciError> {
        let mut layers = Vec::with_capacity(spec.layers.len());
        let mut diff_ids = Vec::with_capacity(spec.layers.len());
        for l in &spec.layers {
            let (d, diff) = self.add_layer(l)?;
            layers.push(d);
            diff_ids.push(diff);
        }
        let config = ConfigFile {
            created: spec.created.clone(),
            architecture: spec.arch.clone(),
            os: spec.os.clone(),
            variant: spec.variant.clone(),
            config: RunConfig {
                user: spec.user.clone(),
                env: spec.env.clone(),
                entrypoint: spec.entrypoint.clone(),
                cmd: spec.cmd.clone(),
                working_dir: spec.working_dir.clone(),
                labels: (!spec.labels.is_empty()).then(|| spec.labels.clone()),
            },
            rootfs: RootFs {
                kind: "layers".to_string(),
                diff_ids,
            },
        };
        let config = self.add_json(json::MT_OCI_CONFIG, &config)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(json::MT_OCI_MANIFEST.to_string()),
            config,
            layers,
            annotations: spec.annotations.clone(),
        };
        let mut desc = self.add_json(json::MT_OCI_MANIFEST, &manifest)?;
        for n in &spec.names {
            self.add_ref(n, &desc);
        }
        desc.platform = Some(Platform {
            architecture: spec.arch.clone(),
            os: spec.os.clone(),
            os_version: None,
            variant: spec.variant.clone(),
        });
        Ok(desc)
    }

    /// Writes an image index over `spec.manifests` (in the order given) and
    /// tags it with `spec.names`.
    pub fn add_index(&mut self, spec: &IndexSpec) -> Result<Descriptor, OciError> {
        let index = Index {
            schema_version: 2,
            media_type: Some(json::MT_OCI_INDEX.to_string()),
            manifests: spec.manifests.clone(),
            annotations: spec.annotations.clone(),
        };
        let desc = self.add_json(json::MT_OCI_INDEX, &index)?;
        for n in &spec.names {
            self.add_ref(n, &desc);
        }
        Ok(desc)
    }

    /// Tags `desc` with `name` in `index.json`, replacing any entry of that
    /// name. The platform is dropped: index.json entries name whole images.
    pub fn add_ref(&mut self, name: &str, desc: &Descriptor) {
        self.added.retain(|e| e.ref_name() != Some(name));
        let mut d = desc.clone();
        d.platform = None;
        d.annotations
            .insert(json::ANNOTATION_REF_NAME.to_string(), name.to_string());
        self.added.push(d);
    }

    /// Drops the `index.json` entry named exactly `name` at commit (and
    /// any entry this writer added under it).
    pub fn remove_ref(&mut self, name: &str) {
        self.added.retain(|e| e.ref_name() != Some(name));
        self.removed.push(name.to_string());
    }

    /// Under the index lock: re-reads `index.json`, drops the names this
    /// writer removes, replaces the entries of the names it adds, checks
    /// their blobs are still there, and writes `oci-layout` if needed, then
    /// `index.json` (temp file, fsync, rename, fsync of the directory).
    pub fn commit(self) -> Result<(), OciError> {
        let _index_lock = LayoutLock::acquire_index(&self.root)?;
        let idx = self.read_index()?;
        let mut entries = idx.manifests;
        entries.retain(|e| {
            !e.ref_name()
                .is_some_and(|n| self.removed.iter().any(|r| r == n))
        });
        for d in &self.added {
            let digest = Digest::parse(&d.digest).map_err(|source| OciError::BadDigest {
                context: format!("the entry {:?} being added", d.ref_name().unwrap_or("")),
                source,
            })?;
            let path = self.root.join(digest.blob_path());
            if !path.is_file() {
                return Err(OciError::MissingBlob {
                    digest: d.digest.clone(),
                    path,
                    image: d.ref_name().unwrap_or("").to_string(),
                });
            }
            entries.retain(|e| e.ref_name() != d.ref_name());
            entries.push(d.clone());
        }
        entries.sort_by(|a, b| {
            (a.ref_name().unwrap_or(""), &a.digest).cmp(&(b.ref_name().unwrap_or(""), &b.digest))
        });
        entries.dedup();
        let marker = serde_json::to_vec(&OciLayoutFile {
            image_layout_version: json::OCI_LAYOUT_VERSION.to_string(),
        })
        .map_err(|e| OciError::io(&self.root, io::Error::other(e)))?;
        let marker_path = self.root.join("oci-layout");
        if fs::read(&marker_path).ok().as_deref() != Some(marker.as_slice()) {
            write_atomic(&self.root, "oci-layout", &marker)?;
        }
        let index = Index {
            schema_version: 2,
            media_type: Some(json::MT_OCI_INDEX.to_string()),
            manifests: entries,
            annotations: idx.annotations,
        };
        let bytes = serde_json::to_vec(&index)
            .map_err(|e| OciError::io(&self.root, io::Error::other(e)))?;
        write_atomic(&self.root, "index.json", &bytes)
    }
}

/// Removes `.tmp-*` files from the layout root and `blobs/*/` (best
/// effort: only called under the exclusive layout lock, when no writer is
/// live); gives how many it removed.
pub(crate) fn sweep_temps(root: &Path) -> usize {
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf()];
    if let Ok(algs) = fs::read_dir(root.join("blobs")) {
        dirs.extend(algs.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    for d in dirs {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp-")
                && fs::remove_file(e.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

/// The sha256 of a compressed layer's uncompressed bytes.
fn diff_id_of(bytes: &[u8], c: Compression) -> io::Result<String> {
    let mut reader: Box<dyn Read + '_> = match c {
        Compression::None => Box::new(bytes),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(bytes)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(bytes)?),
    };
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish().to_string());
        }
        h.update(&buf[..n]);
    }
}

/// Mode 0644 for blobs, `index.json` and `oci-layout`, as skopeo writes
/// them: a layout is copied between machines and users (the air-gapped
/// workflow), and its content is public by construction.
fn readable() -> fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    fs::Permissions::from_mode(0o644)
}

/// Writes `dir/name` via a temp file in `dir`, fsync and rename.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), OciError> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(readable())
        .tempfile_in(dir)
        .map_err(|e| OciError::io(dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| OciError::io(tmp.path(), e))?;
    let dest = dir.join(name);
    tmp.persist(&dest)
        .map_err(|e| OciError::io(&dest, e.error))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), OciError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| OciError::io(dir, e))
}

/// A blob being written: hashed as bytes arrive, renamed into
/// `blobs/sha256/<hex>` by [`finish`](Self::finish). Dropped unfinished, it
/// leaves nothing behind.
pub struct BlobWriter {
    dir: PathBuf,
    temp: tempfile::NamedTempFile,
    temp_path: PathBuf,
    hasher: Hasher,
    size: u64,
}

impl BlobWriter {
    fn new(root: &Path, algorithm: Algorithm) -> Result<BlobWriter, OciError> {
        let dir = root.join("blobs").join(algorithm.name());
        fs::create_dir_all(&dir).map_err(|e| OciError::io(&dir, e))?;
        let temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .permissions(readable())
            .tempfile_in(&dir)
            .map_err(|e| OciError::io(&dir, e))?;
        Ok(BlobWriter {
            temp_path: temp.path().to_path_buf(),
            dir,
            temp,
            hasher: Hasher::new(algorithm),
            size: 0,
        })
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Syncs and renames the blob into place; gives digest and size (the
    /// media type is left empty).
    pub fn finish(self) -> Result<Descriptor, OciError> {
        self.finish_checked(None)
    }

    /// [`finish`](Self::finish), but only if the content is exactly `size`
    /// bytes hashing to `digest`; otherwise the temp file is removed and
    /// nothing enters `blobs/`. `image` names the image in the error.
    pub fn finish_expecting(
        self,
        digest: &Digest,
        size: u64,
        image: &str,
    ) -> Result<Descriptor, OciError> {
        self.finish_checked(Some((digest, size, image)))
    }

    fn finish_checked(
        mut self,
        expect: Option<(&Digest, u64, &str)>,
    ) -> Result<Descriptor, OciError> {
        let digest = self.hasher.clone().finish();
        if let Some((want, size, image)) = expect {
            let path = self.dir.join(want.hex());
            if self.size != size {
                return Err(OciError::SizeMismatch {
                    digest: want.to_string(),
                    path,
                    image: image.to_string(),
                    expected: size,
                    actual: self.size,
                });
            }
            if digest != *want {
                return Err(OciError::DigestMismatch {
                    digest: want.to_string(),
                    path,
                    image: image.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        self.temp
            .flush()
            .and_then(|()| self.temp.as_file().sync_all())
            .map_err(|e| OciError::io(&self.temp_path, e))?;
        let dest = self.dir.join(digest.hex());
        self.temp
            .persist(&dest)
            .map_err(|e| OciError::io(&dest, e.error))?;
        sync_dir(&self.dir)?;
        Ok(Descriptor {
            digest: digest.to_string(),
            size: self.size,
            ..Descriptor::default()
        })
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.temp.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.temp.flush()
    }
}

/// Compression with fixed parameters: gzip level 6 with no name and mtime
/// 0, zstd level 3 single-threaded.
enum Encoder {
    None(BlobWriter),
    Gzip(flate2::write::GzEncoder<BlobWriter>),
    Zstd(zstd::stream::write::Encoder<'static, BlobWriter>),
}

impl Encoder {
    fn new(w: BlobWriter, c: Compression) -> io::Result<Encoder> {
        Ok(match c {
            Compression::None => Encoder::None(w),
            Compression::Gzip => Encoder::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .write(w, flate2::Compression::new(6)),
            ),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(w, 3)?),
        })
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.write_all(buf),
            Encoder::Gzip(w) => w.write_all(buf),
            Encoder::Zstd(w) => w.write_all(buf),
        }
    }

    fn finish(self) -> io::Result<BlobWriter> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(w) => w.finish(),
            Encoder::Zstd(w) => w.finish(),
        }
    }
}
