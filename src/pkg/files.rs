//! `files:` entries → image entries: recipe-directory files and
//! directories, inline contents, empty directories and symlinks.
//!
//! Takes one [`FileRule`] and the recipe directory; puts entries into the
//! image [`Tree`] and feeds every host byte it reads (relative path, mode,
//! contents or link target) to the tag hasher. Modes come from the rule,
//! never from the host umask or owner: directories 0755, files 0644, or
//! 0755 when any execute bit is set in the repository. Directories are
//! walked in name order; symlinks are stored as links and never followed,
//! so nothing outside the recipe directory is read through them. Sockets,
//! fifos and devices in the recipe directory are errors.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::recipe::{FileKind, FileRule};
use super::PkgError;
use crate::tree::{join, ContentStore, Entry, Tree};

/// Put `entry` at `path` (normalised, non-empty), replacing what is there:
/// a non-directory replaces a whole subtree, a directory only the entry.
/// Missing parents are created 0755 at `epoch`.
pub fn put(tree: &mut Tree, path: Vec<u8>, entry: Entry, epoch: i64) {
    if path.is_empty() {
        return;
    }
    if !entry.is_dir() {
        tree.remove_subtree(&path);
    }
    tree.mkdir_parents(&path, 0o755, epoch);
    tree.insert(path, entry);
}

/// Feed one length-prefixed field to the tag hasher.
pub fn hash_field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// Apply one `files:` entry.
pub fn apply(
    rule: &FileRule,
    recipe_dir: &Path,
    store: &ContentStore,
    tree: &mut Tree,
    hasher: &mut Sha256,
    epoch: i64,
) -> Result<(), PkgError> {
    let target = rule.path.as_bytes().to_vec();
    match &rule.kind {
        FileKind::Contents(text) => {
            let content = store.add(text.as_bytes()).map_err(PkgError::Store)?;
            let entry = Entry::file(content, rule.mode.unwrap_or(0o644), epoch);
            put(tree, target, entry, epoch);
        }
        FileKind::Directory => put(
            tree,
            target,
            Entry::dir(rule.mode.unwrap_or(0o755), epoch),
            epoch,
        ),
        FileKind::Symlink(to) => put(tree, target, Entry::symlink(to.as_bytes(), epoch), epoch),
        FileKind::Source(source) => {
            let walk = Walk {
                rule,
                recipe_dir,
                store,
                epoch,
            };
            walk.check_inside(source)?;
            walk.copy(source, target, tree, hasher)?;
        }
    }
    Ok(())
}

struct Walk<'a> {
    rule: &'a FileRule,
    recipe_dir: &'a Path,
    store: &'a ContentStore,
    epoch: i64,
}

impl Walk<'_> {
    fn err(&self, path: &Path, msg: impl Into<String>) -> PkgError {
        PkgError::Rule {
            pos: self.rule.pos.clone(),
            msg: format!("{}: {}", path.display(), msg.into()),
        }
    }

    fn io(&self, path: &Path, e: std::io::Error) -> PkgError {
        self.err(path, e.to_string())
    }

    /// Refuse a source reached through a symlinked parent directory that
    /// leads out of the recipe directory (the source itself, when a
    /// symlink, is copied as a link and not followed).
    fn check_inside(&self, rel: &str) -> Result<(), PkgError> {
        let host = self.recipe_dir.join(rel);
        let real = |p: &Path| fs::canonicalize(p).map_err(|e| self.io(p, e));
        let root = real(self.recipe_dir)?;
        let parent = host.parent().unwrap_or(self.recipe_dir);
        if !real(parent)?.starts_with(&root) {
            return Err(self.err(&host, "leads out of the recipe directory"));
        }
        let is_dir = fs::symlink_metadata(&host).is_ok_and(|m| m.is_dir());
        if self.rule.path.is_empty() && !is_dir {
            return Err(self.err(&host, "only a directory can be copied to `/`"));
        }
        Ok(())
    }

    /// Copy `rel` (relative to the recipe directory) to image path `target`.
    fn copy(
        &self,
        rel: &str,
        target: Vec<u8>,
        tree: &mut Tree,
        h: &mut Sha256,
    ) -> Result<(), PkgError> {
        let host = self.recipe_dir.join(rel);
        let meta = fs::symlink_metadata(&host).map_err(|e| self.io(&host, e))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let to = fs::read_link(&host).map_err(|e| self.io(&host, e))?;
            let to = to.as_os_str().as_bytes();
            hash_field(h, b"symlink");
            hash_field(h, rel.as_bytes());
            hash_field(h, to);
            put(tree, target, Entry::symlink(to, self.epoch), self.epoch);
        } else if ft.is_file() {
            let bytes = fs::read(&host).map_err(|e| self.io(&host, e))?;
            let mode = self.rule.mode.filter(|_| rel == self.top()).unwrap_or(
                if meta.permissions().mode() & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                },
            );
            hash_field(h, b"file");
            hash_field(h, rel.as_bytes());
            hash_field(h, &mode.to_le_bytes());
            hash_field(h, &bytes);
            let content = self.store.add(&bytes).map_err(PkgError::Store)?;
            put(
                tree,
                target,
                Entry::file(content, mode, self.epoch),
                self.epoch,
            );
        } else if ft.is_dir() {
            hash_field(h, b"dir");
            hash_field(h, rel.as_bytes());
            let mode = self
                .rule
                .mode
                .filter(|_| rel == self.top())
                .unwrap_or(0o755);
            put(
                tree,
                target.clone(),
                Entry::dir(mode, self.epoch),
                self.epoch,
            );
            let mut names = Vec::new();
            for item in fs::read_dir(&host).map_err(|e| self.io(&host, e))? {
                let item = item.map_err(|e| self.io(&host, e))?;
                let name = item.file_name();
                let Some(name) = name.to_str() else {
                    return Err(self.err(&item.path(), "the name is not UTF-8"));
                };
                names.push(name.to_owned());
            }
            names.sort();
            for name in names {
                let child_rel = format!("{}/{name}", rel.trim_end_matches('/'));
                let child = join(&target, name.as_bytes());
                self.copy(&child_rel, child, tree, h)?;
            }
        } else {
            return Err(self.err(&host, "is not a file, directory or symlink"));
        }
        Ok(())
    }

    /// The rule's own source path (a `mode` applies to it only).
    fn top(&self) -> &str {
        match &self.rule.kind {
            FileKind::Source(s) => s,
            _ => "",
        }
    }
}
