//! OCI layouts for tests, described in code and written by the library's `LayoutWriter`.
//!
//! [`TestImage`] is an image (name, layers, config fields); [`write_layout`]
//! writes several into a layout, [`write_multiarch_layout`] writes
//! multi-platform indexes. Helpers find and damage blobs for the tests of
//! digest checking.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln::oci::write::{ImageSpec, IndexSpec, LayerSpec, LayoutWriter};
use kiln::oci::{Compression, Descriptor};

/// An image to put in a test layout. Layers are tars (usually from
/// [`super::LayerBuilder`]), compressed by the writer.
#[derive(Clone, Debug)]
pub struct TestImage {
    /// Ref names to tag it with (written as given, not expanded).
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
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl TestImage {
    /// An `linux/amd64` image tagged `name`, with no layers.
    pub fn new(name: &str) -> TestImage {
        TestImage {
            names: vec![name.to_string()],
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
        }
    }

    /// An untagged image (a platform manifest for [`MultiArchImage`]).
    pub fn untagged() -> TestImage {
        TestImage {
            names: Vec::new(),
            ..TestImage::new("")
        }
    }

    /// Adds another tag.
    pub fn also_named(mut self, name: &str) -> TestImage {
        self.names.push(name.to_string());
        self
    }

    /// Adds a gzip layer from a tar.
    pub fn layer(self, tar: Vec<u8>) -> TestImage {
        self.layer_with(tar, Compression::Gzip)
    }

    /// Adds a layer from a tar, compressed with `c`.
    pub fn layer_with(mut self, tar: Vec<u8>, c: Compression) -> TestImage {
        self.layers.push(LayerSpec::tar(tar, c));
        self
    }

    /// Adds a layer blob stored verbatim (possibly lying about itself).
    pub fn raw_layer(mut self, blob: Vec<u8>, media_type: &str, diff_id: &str) -> TestImage {
        self.layers.push(LayerSpec::Encoded {
            bytes: blob,
            media_type: media_type.to_string(),
            diff_id: diff_id.to_string(),
        });
        self
    }

    pub fn label(mut self, k: &str, v: &str) -> TestImage {
        self.labels.insert(k.to_string(), v.to_string());
        self
    }

    pub fn entrypoint(mut self, v: &[&str]) -> TestImage {
        self.entrypoint = Some(strings(v));
        self
    }

    pub fn cmd(mut self, v: &[&str]) -> TestImage {
        self.cmd = Some(strings(v));
        self
    }

    pub fn env(mut self, v: &[&str]) -> TestImage {
        self.env = Some(strings(v));
        self
    }

    pub fn working_dir(mut self, d: &str) -> TestImage {
        self.working_dir = Some(d.to_string());
        self
    }

    pub fn user(mut self, u: &str) -> TestImage {
        self.user = Some(u.to_string());
        self
    }

    pub fn arch(mut self, a: &str) -> TestImage {
        self.arch = a.to_string();
        self
    }

    pub fn variant(mut self, v: &str) -> TestImage {
        self.variant = Some(v.to_string());
        self
    }

    /// The library's description of this image.
    pub fn spec(&self) -> ImageSpec {
        ImageSpec {
            names: self.names.clone(),
            layers: self.layers.clone(),
            labels: self.labels.clone(),
            entrypoint: self.entrypoint.clone(),
            cmd: self.cmd.clone(),
            env: self.env.clone(),
            working_dir: self.working_dir.clone(),
            user: self.user.clone(),
            arch: self.arch.clone(),
            os: self.os.clone(),
            variant: self.variant.clone(),
            created: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// A multi-platform image: an index tagged `name` over `platforms`
/// (whose own names are ignored).
#[derive(Clone, Debug)]
pub struct MultiArchImage {
    pub name: String,
    pub platforms: Vec<TestImage>,
}

impl MultiArchImage {
    pub fn new(name: &str, platforms: Vec<TestImage>) -> MultiArchImage {
        MultiArchImage {
            name: name.to_string(),
            platforms,
        }
    }
}

/// Writes `images` into the layout at `dir` (created or extended) and
/// commits; gives each image's manifest descriptor, in order.
pub fn write_layout(dir: &Path, images: &[TestImage]) -> Vec<Descriptor> {
    let mut w = LayoutWriter::open_or_create(dir).expect("open layout writer");
    let descs = images
        .iter()
        .map(|i| w.add_image(&i.spec()).expect("add image"))
        .collect();
    w.commit().expect("commit layout");
    descs
}

/// Writes multi-platform images into the layout at `dir`; gives each
/// index descriptor, in order.
pub fn write_multiarch_layout(dir: &Path, images: &[MultiArchImage]) -> Vec<Descriptor> {
    let mut w = LayoutWriter::open_or_create(dir).expect("open layout writer");
    let mut out = Vec::new();
    for m in images {
        let manifests = m
            .platforms
            .iter()
            .map(|p| {
                let mut spec = p.spec();
                spec.names.clear();
                w.add_image(&spec).expect("add platform image")
            })
            .collect();
        let idx = IndexSpec {
            names: vec![m.name.clone()],
            manifests,
            annotations: BTreeMap::new(),
        };
        out.push(w.add_index(&idx).expect("add index"));
    }
    w.commit().expect("commit layout");
    out
}

/// `dir/blobs/<alg>/<hex>` for a digest string.
pub fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').expect("digest has an algorithm");
    dir.join("blobs").join(alg).join(hex)
}

/// Flips the bits of byte `offset` of a file (negative: from the end).
pub fn corrupt_byte(path: &Path, offset: i64) {
    let mut bytes = std::fs::read(path).expect("read blob");
    let i = if offset < 0 {
        bytes.len() - offset.unsigned_abs() as usize
    } else {
        offset as usize
    };
    bytes[i] ^= 0xff;
    std::fs::write(path, bytes).expect("write blob");
}

/// `index.json` parsed.
pub fn read_index_json(dir: &Path) -> serde_json::Value {
    let bytes = std::fs::read(dir.join("index.json")).expect("read index.json");
    serde_json::from_slice(&bytes).expect("parse index.json")
}
