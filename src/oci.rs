//! OCI image layouts: the only place kiln's images come from.
//!
//! Takes a directory in the OCI image layout format (as written by skopeo,
//! umoci, `linuxkit cache`, or kiln's own [`write::LayoutWriter`]) and gives
//! [`ResolvedImage`]s: for a reference and an architecture, the manifest,
//! the parsed image config and the layer descriptors, every JSON blob on the
//! way read fully and checked against its descriptor's size and digest.
//! Layers are handed out as streams ([`Layout::open_layer`]) that check the
//! same at EOF. Never trusts a blob before its digest is checked, never
//! opens a path that is not `blobs/<sha256|sha512>/<hex>` under the layout,
//! and never touches the network.
//!
//! Names are matched the way LinuxKit expands them (`alpine` is
//! `docker.io/library/alpine:latest`) against the
//! `org.opencontainers.image.ref.name` annotations of `index.json`,
//! including the bare-tag form `skopeo copy … oci:DIR:TAG` writes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

pub mod blob;
pub mod digest;
pub mod error;
pub mod json;
pub mod name;
mod select;
pub mod walk;
pub mod write;

pub use blob::{BlobReader, LayerReader};
pub use digest::Digest;
pub use error::OciError;
pub use json::{Compression, Descriptor, Platform};
pub use walk::{FsckReport, Problem};

use blob::BlobRef;
use json::{Index, OciLayoutFile};
use name::Reference;

/// One image of a layout, resolved for one architecture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The reference as written in the YAML.
    pub reference: String,
    /// The canonical name (`docker.io/library/alpine:latest`), or the
    /// digest for a bare `sha256:` reference.
    pub name: String,
    /// The index the name points at, for a multi-arch image (what cosign
    /// signs and a lock pins); `None` when it points at the manifest.
    pub index_digest: Option<String>,
    /// The platform manifest chosen (not the index, for multi-arch images).
    pub manifest_digest: String,
    pub manifest_size: u64,
    /// As its descriptor (or, if that has none, the manifest) says.
    pub manifest_media_type: String,
    pub config_digest: String,
    pub config_size: u64,
    pub config: ImageConfig,
    /// Bottom layer first.
    pub layers: Vec<LayerDesc>,
    /// The bare tag of the layout entry that matched, when no entry carried
    /// the full name (skopeo's `oci:DIR:TAG` form).
    pub short_tag_match: Option<String>,
}

/// The parts of an image config kiln uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub labels: BTreeMap<String, String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub architecture: String,
    pub os: String,
}

/// One layer blob of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerDesc {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub compression: Compression,
}

/// An opened OCI image layout: `oci-layout` checked, `index.json` read, the
/// names it holds collected.
#[derive(Debug)]
pub struct Layout {
    root: PathBuf,
    index: Index,
    /// Every named descriptor: index.json's own, and those inside unnamed
    /// nested indexes.
    named: Vec<Named>,
    /// Layouts searched after this one, in order (`--layout A --layout B`).
    more: Vec<Layout>,
}

#[derive(Clone, Debug)]
struct Named {
    name: String,
    /// The name in canonical form, when it parses as a reference.
    canonical: Option<String>,
    desc: Descriptor,
}

/// Why `dir`, which has no `oci-layout` file, is not a layout, and what to do.
fn not_a_layout(dir: &Path) -> String {
    if !dir.exists() {
        return "it does not exist".into();
    }
    if dir.is_file() {
        let mut head = [0u8; 262];
        let is_tar = std::fs::File::open(dir)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .is_ok()
            && &head[257..262] == b"ustar";
        return if is_tar {
            format!(
                "it is a tar archive (an oci-archive or a `docker save`); import it into a \
                 layout with `kiln layout import --layout DIR {}` and pass DIR",
                dir.display()
            )
        } else {
            "it is a file, not a directory".into()
        };
    }
    format!("{}/oci-layout is missing", dir.display())
}

/// The deepest chain of nested indexes followed.
const MAX_DEPTH: usize = 8;

impl Layout {
    /// Opens a layout: checks `oci-layout`'s version and reads `index.json`.
    pub fn open(dir: &Path) -> Result<Layout, OciError> {
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            return Err(OciError::NotALayout {
                dir: dir.to_path_buf(),
                why: not_a_layout(dir),
            });
        }
        let version: OciLayoutFile = read_small_json(&marker)?;
        if !version.image_layout_version.starts_with("1.") {
            return Err(OciError::LayoutVersion {
                path: marker,
                found: version.image_layout_version,
            });
        }
        let index: Index = read_small_json(&dir.join("index.json"))?;
        Layout::with_index(dir, index)
    }

    /// Opens several layouts as one, searched in order: a name resolves in
    /// the first layout that holds it (an exact name in a later layout wins
    /// over a bare-tag match in an earlier one), and a blob is read from the
    /// first layout that has its file — digests are checked on every read,
    /// so a blob is the same bytes wherever it is found. The first
    /// directory is [`root`](Self::root), the one `kiln pull` writes to.
    pub fn open_search(dirs: &[PathBuf]) -> Result<Layout, OciError> {
        let (first, rest) = dirs.split_first().ok_or_else(|| OciError::NotALayout {
            dir: PathBuf::from("oci-layout"),
            why: "no layout was given".into(),
        })?;
        let mut layout = Layout::open(first)?;
        for dir in rest {
            layout.more.push(Layout::open(dir)?);
        }
        Ok(layout)
    }

    /// This layout, then the ones searched after it.
    fn search_order(&self) -> impl Iterator<Item = &Layout> {
        std::iter::once(self).chain(self.more.iter())
    }

    /// The directory of the first layout holding the file of `digest`
    /// (the first layout's if none does, so errors name it).
    fn blob_root(&self, digest: &Digest) -> &Path {
        if !self.more.is_empty() {
            for l in self.search_order() {
                if l.root.join(digest.blob_path()).exists() {
                    return &l.root;
                }
            }
        }
        &self.root
    }

    /// Collects names, descending into unnamed nested indexes (each once).
    /// `known` indexes `named` by (name, digest), so a layout of n names
    /// is read in O(n log n), not O(n²).
    fn collect_names(
        &mut self,
        descs: &[Descriptor],
        depth: usize,
        seen: &mut BTreeSet<String>,
        known: &mut BTreeMap<(String, String), Vec<usize>>,
    ) -> Result<(), OciError> {
        for d in descs {
            let names = [
                d.ref_name(),
                d.annotations
                    .get(json::ANNOTATION_CONTAINERD_NAME)
                    .map(String::as_str),
            ];
            let mut any = false;
            for n in names.into_iter().flatten() {
                any = true;
                let same = known.entry((n.to_string(), d.digest.clone())).or_default();
                if same.iter().any(|&i| self.named[i].desc == *d) {
                    continue;
                }
                same.push(self.named.len());
                self.named.push(Named {
                    name: n.to_string(),
                    canonical: name::canonical_name(n),
                    desc: d.clone(),
                });
            }
            if !any
                && depth < MAX_DEPTH
                && json::kind_of(&d.media_type) == Some(json::Kind::Index)
                && seen.insert(d.digest.clone())
            {
                let idx: Index = self.read_json(d, "index.json", "index")?;
                self.collect_names(&idx.manifests, depth + 1, seen, known)?;
            }
        }
        Ok(())
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The descriptors listed in `index.json`, in file order.
    pub fn manifests(&self) -> &[Descriptor] {
        &self.index.manifests
    }

    /// Every image name the layouts hold, sorted and without duplicates.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .search_order()
            .flat_map(|l| l.named.iter().map(|n| n.name.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Resolves `reference` (a name, `name@digest`, or a bare digest of a
    /// blob in the layout) for `linux/<arch>`.
    pub fn resolve(&self, reference: &str, arch: &str) -> Result<ResolvedImage, OciError> {
        if self.more.is_empty() {
            return select::resolve(self, reference, arch);
        }
        let mut first_error = None;
        let mut short_tag = None;
        for l in self.search_order() {
            match select::resolve(l, reference, arch) {
                Ok(img) if img.short_tag_match.is_none() => return Ok(img),
                Ok(img) => {
                    short_tag.get_or_insert(img);
                }
                Err(e @ OciError::NotFound { .. }) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        match (short_tag, first_error) {
            (Some(img), _) => Ok(img),
            (
                None,
                Some(OciError::NotFound {
                    reference, closest, ..
                }),
            ) => Err(OciError::NotFound {
                reference,
                dir: PathBuf::from(
                    self.search_order()
                        .map(|l| l.root.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", nor in "),
                ),
                closest,
            }),
            (None, Some(e)) => Err(e),
            (None, None) => unreachable!("the search order holds at least this layout"),
        }
    }

    /// The descriptors a name (not a bare digest) points at, as
    /// [`resolve`](Self::resolve) finds them: one, or one per platform when
    /// the layout tags each platform's manifest with the same name.
    pub fn lookup(&self, reference: &str) -> Result<Vec<Descriptor>, OciError> {
        let r = Reference::parse(reference)?;
        let mut first_error = None;
        for l in self.search_order() {
            match select::lookup(l, reference, &r) {
                Ok(found) => return Ok(found.map(|f| f.descriptors).unwrap_or_default()),
                Err(e @ OciError::NotFound { .. }) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(first_error.expect("the search order holds at least this layout"))
    }

    /// Every `(name, descriptor)` pair the layouts hold, in search order
    /// and each layout's index order.
    pub fn named(&self) -> impl Iterator<Item = (&str, &Descriptor)> {
        self.search_order()
            .flat_map(|l| l.named.iter().map(|n| (n.name.as_str(), &n.desc)))
    }

    /// Reads a small (JSON-sized) blob fully, size- and digest-checked.
    pub fn read_small_blob(&self, desc: &Descriptor, image: &str) -> Result<Vec<u8>, OciError> {
        self.blob_ref(desc, image)?.read_verified()
    }

    /// Opens a layer blob as a stream that verifies size and digest at EOF.
    /// The bytes are the blob as stored (still compressed).
    pub fn open_layer(
        &self,
        image: &ResolvedImage,
        layer: &LayerDesc,
    ) -> Result<BlobReader, OciError> {
        let digest = parse_digest(&layer.digest, &image.reference)?;
        BlobRef::new(
            self.blob_root(&digest),
            digest,
            layer.size,
            &image.reference,
        )
        .open_stream()
    }

    /// Opens any blob of `image` (manifest, config, layer) as its raw bytes,
    /// size- and digest-checked as they are read.
    pub fn open_blob(
        &self,
        image: &ResolvedImage,
        digest: &str,
        size: u64,
    ) -> Result<BlobReader, OciError> {
        let digest = parse_digest(digest, &image.reference)?;
        BlobRef::new(self.blob_root(&digest), digest, size, &image.reference).open_stream()
    }

    /// Opens a layer as its uncompressed tar stream; call
    /// [`LayerReader::finish`] when done to verify the blob.
    pub fn open_layer_tar(
        &self,
        image: &ResolvedImage,
        layer: &LayerDesc,
    ) -> Result<LayerReader, OciError> {
        let blob = self.open_layer(image, layer)?;
        let path = blob.blob().path.clone();
        LayerReader::new(blob, layer.compression).map_err(|e| OciError::io(path, e))
    }

    /// Re-verifies every blob reachable from `index.json`; the first
    /// problem is the error.
    pub fn fsck(&self) -> Result<FsckReport, OciError> {
        let walked = walk::reachable(self, &self.index.manifests, walk::Check::Verify);
        if let Some((_, e)) = walked.problems.into_iter().next() {
            return Err(e);
        }
        Ok(FsckReport {
            names: self.index.manifests.len(),
            blobs: walked.blobs.len(),
            bytes: walked.blobs.values().sum(),
            absent_manifests: walked.absent_manifests,
            ..FsckReport::default()
        })
    }

    /// Re-verifies every blob of the layout, those no name reaches too, and
    /// reports every problem (`kiln layout fsck`).
    pub fn fsck_all(&self) -> FsckReport {
        walk::fsck(self)
    }

    /// The blobs `entries` (descriptors of this layout, e.g. its
    /// [`manifests`](Self::manifests)) reach, and the problems met: indexes
    /// and manifests are verified, other blobs checked as `check` says.
    pub fn reachable(&self, entries: &[Descriptor], check: walk::Check) -> walk::Reachable {
        walk::reachable(self, entries, check)
    }

    /// The layout at `dir` as if its `index.json` were `index` (an
    /// archive's, being imported): nothing is read but nested indexes.
    pub fn with_index(dir: &Path, index: Index) -> Result<Layout, OciError> {
        let mut layout = Layout {
            root: dir.to_path_buf(),
            index,
            named: Vec::new(),
            more: Vec::new(),
        };
        let top = layout.index.manifests.clone();
        layout.collect_names(&top, 0, &mut BTreeSet::new(), &mut BTreeMap::new())?;
        Ok(layout)
    }

    /// Reads and verifies a JSON blob named by `desc`, then parses it.
    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        desc: &Descriptor,
        image: &str,
        what: &'static str,
    ) -> Result<T, OciError> {
        let blob = self.blob_ref(desc, image)?;
        let bytes = blob.read_verified()?;
        parse_json(&blob, &bytes, what)
    }

    fn blob_ref(&self, desc: &Descriptor, image: &str) -> Result<BlobRef, OciError> {
        let digest = parse_digest(&desc.digest, image)?;
        Ok(BlobRef::new(
            self.blob_root(&digest),
            digest,
            desc.size,
            image,
        ))
    }
}

fn parse_digest(s: &str, image: &str) -> Result<Digest, OciError> {
    Digest::parse(s).map_err(|source| OciError::BadDigest {
        context: format!("a descriptor of image {image:?}"),
        source,
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(
    blob: &BlobRef,
    bytes: &[u8],
    what: &'static str,
) -> Result<T, OciError> {
    serde_json::from_slice(bytes).map_err(|e| OciError::Json {
        digest: blob.digest.to_string(),
        path: blob.path.clone(),
        image: blob.image.clone(),
        what,
        message: e.to_string(),
    })
}

/// Reads a small, unaddressed JSON file (`oci-layout`, `index.json`).
fn read_small_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, OciError> {
    let file = crate::hostfile::open_regular(path).map_err(|e| OciError::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(blob::MAX_JSON_BLOB + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| OciError::io(path, e))?;
    if bytes.len() as u64 > blob::MAX_JSON_BLOB {
        return Err(OciError::LayoutJson {
            path: path.to_path_buf(),
            message: format!("larger than {} bytes", blob::MAX_JSON_BLOB),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| OciError::LayoutJson {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

impl Named {
    /// Whether this name is one of `keys` (raw or canonical).
    fn matches(&self, keys: &[String]) -> bool {
        keys.iter()
            .any(|k| *k == self.name || self.canonical.as_deref() == Some(k.as_str()))
    }
}

/// Canonical arch names (`x86_64` → `amd64`, `aarch64` → `arm64`).
pub fn normalize_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub(crate) fn reference_keys(r: &Reference) -> Vec<String> {
    let mut keys = vec![r.written.clone(), r.canonical(), r.tagged()];
    if let Some((bare, _)) = r.written.split_once('@') {
        keys.push(bare.to_string());
    }
    keys.sort();
    keys.dedup();
    keys
}
