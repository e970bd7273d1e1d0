//! Synthetic images for the benchmark: files described in code, written
//! as single-platform images with gzip layers into an OCI layout through
//! kiln's own `LayoutWriter`, so the layout is a pure function of the input.

use std::path::Path;

use anyhow::Context;
use kiln::oci::write::{ImageSpec, LayerSpec, LayoutWriter};
use kiln::oci::Compression;

/// One file of a synthetic layer.
pub struct SynthFile {
    pub path: String,
    pub mode: u32,
    pub bytes: Vec<u8>,
}

/// A synthetic single-platform image.
#[derive(Default)]
pub struct SynthImage {
    pub name: String,
    pub layers: Vec<Vec<SynthFile>>,
    pub labels: Vec<(String, String)>,
    pub cmd: Option<Vec<String>>,
}

/// A tar layer of `files` (parents created), deterministic.
fn layer_tar(files: &[SynthFile]) -> anyhow::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for f in files {
        let mut p = Path::new(&f.path).parent();
        let mut missing = Vec::new();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            if dirs.insert(d.to_path_buf()) {
                missing.push(d.to_path_buf());
            }
            p = d.parent();
        }
        for d in missing.into_iter().rev() {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            h.set_mtime(0);
            b.append_data(&mut h, &d, std::io::empty())?;
        }
        let mut h = tar::Header::new_ustar();
        h.set_mode(f.mode);
        h.set_size(f.bytes.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, &f.path, &f.bytes[..])?;
    }
    Ok(b.into_inner()?)
}

/// Write `images` into the OCI layout at `dir` (created if needed).
pub fn write_images(dir: &Path, images: &[SynthImage]) -> anyhow::Result<()> {
    let mut w = LayoutWriter::open_or_create(dir)
        .with_context(|| format!("opening layout {}", dir.display()))?;
    for img in images {
        let mut layers = Vec::new();
        for files in &img.layers {
            layers.push(LayerSpec::tar(layer_tar(files)?, Compression::Gzip));
        }
        let spec = ImageSpec {
            names: vec![img.name.clone()],
            layers,
            labels: img.labels.iter().cloned().collect(),
            cmd: img.cmd.clone(),
            ..ImageSpec::default()
        };
        w.add_image(&spec)
            .with_context(|| format!("writing image {}", img.name))?;
    }
    w.commit()?;
    Ok(())
}
