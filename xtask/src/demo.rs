//! `cargo xtask demo-layout [DIR]`: a small OCI layout that `examples/demo.yml`
//! builds from, until the vendored system images exist.
//!
//! The images are made here from literal bytes (a placeholder kernel, an
//! init script, a service with an `org.mobyproject.config` label), so the
//! layout is a pure function of this file. It proves the build pipeline,
//! not that anything boots.

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

fn file(path: &str, mode: u32, bytes: &[u8]) -> SynthFile {
    SynthFile {
        path: path.into(),
        mode,
        bytes: bytes.to_vec(),
    }
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let dir = args
        .first()
        .map(String::as_str)
        .unwrap_or("target/demo-layout");
    let modules = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(5);
        h.set_mtime(0);
        b.append_data(&mut h, "lib/modules/demo/modules.dep", &b"demo\n"[..])?;
        b.into_inner()?
    };
    let images = vec![
        SynthImage {
            name: "kiln.dev/demo/kernel:0.1".into(),
            layers: vec![vec![file("kernel", 0o644, b"placeholder bzImage\n"), file("kernel.tar", 0o644, &modules)]],
            ..SynthImage::default()
        },
        SynthImage {
            name: "kiln.dev/demo/init:0.1".into(),
            layers: vec![vec![
                file("init", 0o755, b"#!/bin/sh\necho demo init\n"),
                file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n"),
            ]],
            ..SynthImage::default()
        },
        SynthImage {
            name: "kiln.dev/demo/hello:0.1".into(),
            layers: vec![vec![file("bin/hello", 0o755, b"#!/bin/sh\necho hello from kiln\n")]],
            labels: vec![(
                "org.mobyproject.config".into(),
                r#"{"capabilities":["CAP_NET_BIND_SERVICE"],"binds":["/etc/resolv.conf:/etc/resolv.conf"]}"#.into(),
            )],
            cmd: Some(vec!["/bin/hello".into()]),
        },
    ];
    write_images(Path::new(dir), &images)?;
    println!("wrote {dir}");
    Ok(())
}
