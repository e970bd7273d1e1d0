//! The `files:` section: extra files, directories and symlinks, written
//! last so they win over image contents.
//!
//! Takes the spec's `files:` entries and the tree built so far; adds each
//! entry with LinuxKit's defaults (files and symlinks 0600, directories
//! 0700, octal `mode`, owners by number, `root` or container name) and
//! creates only the parent directories that are missing (with the entry's
//! mode plus search bits and its owner) — an existing directory keeps its
//! mode, unlike LinuxKit, whose re-emitted parents could turn `/etc` 0700.
//! `metadata: json|yaml` writes the merged spec with image references
//! expanded. The only host access is reading a `source:` file the spec
//! resolved; an `optional` source that cannot be opened skips the entry.

use std::io::Read;
use std::path::PathBuf;

use super::layout::show;
use super::{to_go_json, to_yaml, AssembleError, IdMap, Inputs};
use crate::spec::{FileEntry, FileSource, MetadataFormat};
use crate::tree::{Entry, Kind, Tree};

/// The largest `files: source:` file kiln copies into an image.
pub const MAX_SOURCE_BYTES: u64 = 4 << 30;

/// What is wrong with one `files:` entry.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the path is empty")]
    EmptyPath,
    #[error("the path may not contain `..`")]
    DotDot,
    #[error("cannot read source {path}: {err}")]
    Unreadable {
        path: PathBuf,
        #[source]
        err: std::io::Error,
    },
    #[error("source {0} is a directory, not a file")]
    SourceIsDir(PathBuf),
    #[error("source {0} is larger than {1} bytes")]
    SourceTooLarge(PathBuf, u64),
    #[error("parent {0:?} is not a directory (in the image or an earlier entry)")]
    ParentNotDir(String),
    #[error("{0:?} is a non-empty directory; only `directory: true` may be written over it")]
    ReplacesDir(String),
    #[error("{field}: cannot find id {name:?} (not a container name, `root` or a number)")]
    UnknownId { field: &'static str, name: String },
    #[error("cannot store the contents: {0}")]
    Store(#[source] std::io::Error),
    #[error("cannot serialise the metadata: {0}")]
    Metadata(String),
}

/// Add every `files:` entry to `tree`, in order.
pub fn add_files(tree: &mut Tree, inputs: &Inputs, ids: &IdMap) -> Result<(), AssembleError> {
    for f in &inputs.spec.files {
        add_file(tree, inputs, ids, f).map_err(|problem| AssembleError::File {
            pos: f.pos.clone(),
            path: f.path.clone(),
            problem,
        })?;
    }
    Ok(())
}

/// The tree key of a `files:` path: one leading `/` dropped, `.` and
/// empty components ignored, `..` refused.
pub fn file_key(path: &str) -> Result<Vec<u8>, FileError> {
    let mut parts = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => return Err(FileError::DotDot),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(FileError::EmptyPath);
    }
    Ok(parts.join("/").into_bytes())
}

/// A directory mode for parents: `mode` plus the search bit of each class
/// that has any permission.
pub fn dir_mode(mode: u32) -> u32 {
    let mut m = mode;
    if mode & 0o700 != 0 {
        m |= 0o100;
    }
    if mode & 0o070 != 0 {
        m |= 0o010;
    }
    if mode & 0o007 != 0 {
        m |= 0o001;
    }
    m
}

fn add_file(tree: &mut Tree, inputs: &Inputs, ids: &IdMap, f: &FileEntry) -> Result<(), FileError> {
    let key = file_key(&f.path)?;
    let is_dir = f.source == FileSource::Directory;
    let mode = f.mode.unwrap_or(if is_dir { 0o700 } else { 0o600 }) & 0o7777;
    let uid = ids
        .resolve(f.uid.as_ref())
        .map_err(|name| FileError::UnknownId { field: "uid", name })?;
    let gid = ids
        .resolve(f.gid.as_ref())
        .map_err(|name| FileError::UnknownId { field: "gid", name })?;
    let store_err = FileError::Store;
    let kind = match &f.source {
        FileSource::Directory => Kind::Dir,
        FileSource::Symlink(target) => Kind::Symlink(target.clone().into_bytes()),
        FileSource::Contents(s) => Kind::File(inputs.store.add(s.as_bytes()).map_err(store_err)?),
        FileSource::Empty => Kind::File(inputs.store.add(b"").map_err(store_err)?),
        FileSource::Metadata(format) => {
            let bytes = metadata(inputs, *format)?;
            Kind::File(inputs.store.add(&bytes).map_err(store_err)?)
        }
        FileSource::Source(path) => {
            let unreadable = |err| FileError::Unreadable {
                path: path.clone(),
                err,
            };
            if path.is_dir() {
                return Err(FileError::SourceIsDir(path.clone()));
            }
            let file = match crate::hostfile::open_regular(path) {
                Ok(file) => file,
                Err(_) if f.optional => return Ok(()),
                Err(err) => return Err(unreadable(err)),
            };
            // Read one byte past the bound to tell "at the bound" from "over".
            let mut bounded = file.take(MAX_SOURCE_BYTES + 1);
            let content = inputs
                .store
                .add_reader(&mut bounded, None)
                .map_err(unreadable)?;
            if content.len() > MAX_SOURCE_BYTES {
                return Err(FileError::SourceTooLarge(path.clone(), MAX_SOURCE_BYTES));
            }
            Kind::File(content)
        }
    };
    // Parents: create the missing ones, refuse a non-directory in the way.
    let mut end = 0;
    while let Some(i) = key[end..].iter().position(|&b| b == b'/') {
        let dir = &key[..end + i];
        match tree.get(dir) {
            Some(e) if e.is_dir() => {}
            Some(_) => return Err(FileError::ParentNotDir(show(dir))),
            None => {
                let mut d = Entry::dir(dir_mode(mode), inputs.epoch);
                d.uid = uid;
                d.gid = gid;
                tree.insert(dir.to_vec(), d);
            }
        }
        end += i + 1;
    }
    if let Some(old) = tree.get(&key) {
        if old.is_dir() && !is_dir && tree.children_of(&key).next().is_some() {
            return Err(FileError::ReplacesDir(show(&key)));
        }
    }
    let mut entry = Entry::new(kind, mode, inputs.epoch);
    entry.uid = uid;
    entry.gid = gid;
    tree.insert(key, entry);
    Ok(())
}

/// The merged spec, image references expanded, as LinuxKit's metadata
/// file: JSON with a 4-space indent, or YAML.
fn metadata(inputs: &Inputs, format: MetadataFormat) -> Result<Vec<u8>, FileError> {
    let value = expanded_raw(inputs);
    match format {
        MetadataFormat::Json => to_go_json(&value).map_err(|e| FileError::Metadata(e.to_string())),
        MetadataFormat::Yaml => Ok(to_yaml(&value).into_bytes()),
    }
}

/// `Spec.raw` with kernel, init and container image strings replaced by
/// their canonical form (volumes keep theirs, as in LinuxKit).
pub fn expanded_raw(inputs: &Inputs) -> serde_json::Value {
    use serde_json::Value;
    let mut raw = inputs.spec.raw.clone();
    let expand = |v: &mut Value| {
        if let Value::String(s) = v {
            if let Some(input) = inputs.images.get(s.as_str()) {
                *s = input.canonical.clone();
            }
        }
    };
    if let Some(k) = raw.pointer_mut("/kernel/image") {
        expand(k);
    }
    if let Some(Value::Array(init)) = raw.get_mut("init") {
        init.iter_mut().for_each(expand);
    }
    for section in ["onboot", "onshutdown", "services"] {
        if let Some(Value::Array(list)) = raw.get_mut(section) {
            for item in list {
                if let Some(img) = item.get_mut("image") {
                    expand(img);
                }
            }
        }
    }
    raw
}
