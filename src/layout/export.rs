//! `kiln layout export`: images of a layout as an oci-archive tar.
//!
//! Takes a layout, references and an output file; gives a tar of an OCI
//! image layout holding those images (and the signature images of their
//! digests, so `--verify-key` works where it is imported), the format
//! `skopeo copy oci-archive:FILE:REF` and `kiln layout import` read. The
//! bytes are a function of the images and the epoch only: members sorted
//! by path (`blobs/`, `blobs/ALG/`, the blobs, `index.json`, `oci-layout`),
//! ustar headers with mode 0644/0755, uid/gid 0, no user or group names,
//! mtime = the epoch. Every blob streams through its digest check into
//! the archive, which is written to a temp file beside the output and
//! renamed into place only when whole.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{select, LayoutError};
use crate::oci::blob::BlobRef;
use crate::oci::json::{self, Descriptor, Index, OciLayoutFile};
use crate::oci::walk::Check;
use crate::oci::{Digest, Layout};

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportReport {
    pub path: PathBuf,
    /// The names in the archive's `index.json`, sorted.
    pub names: Vec<String>,
    pub blobs: usize,
    pub len: u64,
    pub sha256: String,
}

/// Writes the images `refs` select from the layout at `dir` to `out`.
pub fn export(
    dir: &Path,
    refs: &[String],
    out: &Path,
    epoch: i64,
) -> Result<ExportReport, LayoutError> {
    let layout = Layout::open(dir)?;
    let (chosen, sigs) = select(&layout, refs)?;
    let entries: Vec<Descriptor> = chosen.into_iter().chain(sigs).map(|(_, d)| d).collect();
    let walked = layout.reachable(&entries, Check::Stat);
    if let Some((image, e)) = walked.problems.into_iter().next() {
        return Err(LayoutError::Archive {
            archive: dir.to_path_buf(),
            message: format!("image {image:?} cannot be exported: {e}"),
        });
    }
    let mut manifests = entries.clone();
    manifests.sort_by(|a, b| {
        (a.ref_name().unwrap_or(""), &a.digest).cmp(&(b.ref_name().unwrap_or(""), &b.digest))
    });
    let index = Index {
        schema_version: 2,
        media_type: Some(json::MT_OCI_INDEX.to_string()),
        manifests,
        annotations: BTreeMap::new(),
    };
    let index_bytes =
        serde_json::to_vec(&index).map_err(|e| LayoutError::io(out, io::Error::other(e)))?;
    let marker = serde_json::to_vec(&OciLayoutFile {
        image_layout_version: json::OCI_LAYOUT_VERSION.to_string(),
    })
    .map_err(|e| LayoutError::io(out, io::Error::other(e)))?;

    let (parent, file_name) = split(out)?;
    let file = crate::atomic::AtomicFile::create(&parent, &file_name)
        .map_err(|e| LayoutError::io(out, e))?;
    let mut tar = tar::Builder::new(file);
    let mtime = u64::try_from(epoch).unwrap_or(0);
    let io_err = |e: io::Error| LayoutError::io(out, e);
    // Blobs, grouped by algorithm directory, in path order.
    let mut by_path: BTreeMap<PathBuf, (Digest, u64)> = BTreeMap::new();
    for (digest, size) in &walked.blobs {
        let d = Digest::parse(digest).map_err(|e| crate::oci::OciError::BadDigest {
            context: format!("a blob of layout {}", dir.display()),
            source: e,
        })?;
        by_path.insert(d.blob_path(), (d, *size));
    }
    append_dir(&mut tar, "blobs/", mtime).map_err(io_err)?;
    let mut dirs_done = std::collections::BTreeSet::new();
    for (path, (digest, size)) in &by_path {
        let alg_dir = format!("blobs/{}/", digest.algorithm().name());
        if dirs_done.insert(alg_dir.clone()) {
            append_dir(&mut tar, &alg_dir, mtime).map_err(io_err)?;
        }
        let reader = BlobRef::new(dir, digest.clone(), *size, "export").open_stream()?;
        let mut h = header(tar::EntryType::Regular, 0o644, *size, mtime);
        tar.append_data(&mut h, path, reader)
            .map_err(|e| LayoutError::io(dir.join(path), e))?;
    }
    for (name, bytes) in [("index.json", &index_bytes), ("oci-layout", &marker)] {
        let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64, mtime);
        tar.append_data(&mut h, name, bytes.as_slice())
            .map_err(io_err)?;
    }
    let mut file = tar.into_inner().map_err(io_err)?;
    file.flush().map_err(io_err)?;
    let written = file.commit().map_err(io_err)?;
    let mut names: Vec<String> = entries
        .iter()
        .filter_map(|d| d.ref_name().map(str::to_string))
        .collect();
    names.sort();
    Ok(ExportReport {
        path: written.path,
        names,
        blobs: by_path.len(),
        len: written.len,
        sha256: written.sha256,
    })
}

fn split(out: &Path) -> Result<(PathBuf, String), LayoutError> {
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| LayoutError::Archive {
            archive: out.to_path_buf(),
            message: "-o needs a file name".into(),
        })?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name.to_string()))
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(size);
    h.set_mtime(mtime);
    h
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str, mtime: u64) -> io::Result<()> {
    let mut h = header(tar::EntryType::Directory, 0o755, 0, mtime);
    tar.append_data(&mut h, path, io::empty())
}
