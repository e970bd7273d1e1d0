//! Applying one layer's changes to the tree of the layers below it.
//!
//! Takes a [`Changes`] list (whiteouts and entries in tar order) and gives
//! the merged [`Tree`]. Whiteouts and opaque markers of a layer are applied
//! first, so they only ever hide what lower layers put there (the OCI rule,
//! whatever order the layer lists them in); then the entries are put in tar
//! order, a later entry replacing an earlier one at the same path.
//!
//! Hard links are kept as [`Kind::Hardlink`] pointing straight at a
//! [`Kind::File`] entry (never at another link). An index from target to
//! links keeps that true: when a link target is replaced or removed, its
//! first remaining link (in path order) becomes the file, with the
//! target's metadata, and the other links point at it — as with inodes on
//! a real filesystem. It never reads the host filesystem.

use std::collections::{BTreeMap, BTreeSet};

use super::{show, UnpackError};
use crate::tree::{Entry, Kind, Tree};

/// Metadata of directories created for missing parents: 0755, root, mtime 0.
const PARENT_MODE: u32 = 0o755;
const PARENT_MTIME: i64 = 0;

/// What one layer does, in tar order.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// Paths whose lower-layer entry (and subtree) a `.wh.NAME` removes.
    pub whiteouts: Vec<Vec<u8>>,
    /// Directories whose lower-layer children a `.wh..wh..opq` removes.
    pub opaque: Vec<Vec<u8>>,
    /// Entries to put. A hard link carries its (normalised) target.
    pub entries: Vec<(Vec<u8>, Entry)>,
}

/// A tree plus the index of its hard links.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    pub tree: Tree,
    /// File path → paths of the hard links to it.
    links: BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>>,
}

impl Overlay {
    /// Merge one layer's changes.
    pub fn apply(
        &mut self,
        changes: Changes,
        layer: &str,
        warnings: &mut Vec<String>,
    ) -> Result<(), UnpackError> {
        for path in &changes.whiteouts {
            self.remove(path, true);
        }
        for dir in &changes.opaque {
            if dir.is_empty() || self.tree.get(dir).is_some_and(Entry::is_dir) {
                self.remove(dir, false);
            }
        }
        for (path, entry) in changes.entries {
            self.put(path, entry, layer, warnings)?;
        }
        Ok(())
    }

    /// Put one entry at `path`, replacing what is there.
    fn put(
        &mut self,
        path: Vec<u8>,
        mut entry: Entry,
        layer: &str,
        warnings: &mut Vec<String>,
    ) -> Result<(), UnpackError> {
        self.make_parents(&path, layer, warnings);
        match self.tree.get_mut(&path) {
            Some(old) if old.is_dir() && entry.is_dir() => {
                // A directory over a directory only updates its metadata.
                *old = entry;
                return Ok(());
            }
            Some(_) => self.remove(&path, true),
            None => {}
        }
        if let Kind::Hardlink(target) = &mut entry.kind {
            let file = match self.tree.get(target) {
                _ if *target == path => Err("it links to itself"),
                Some(Entry {
                    kind: Kind::File(_),
                    ..
                }) => Ok(target.clone()),
                Some(Entry {
                    kind: Kind::Hardlink(file),
                    ..
                }) => Ok(file.clone()),
                Some(_) => Err("the target is not a regular file"),
                None => Err("the target does not exist"),
            };
            let file = file.map_err(|reason| UnpackError::HardLink {
                layer: layer.to_owned(),
                path: show(&path),
                target: show(target),
                reason,
            })?;
            self.links
                .entry(file.clone())
                .or_default()
                .insert(path.clone());
            *target = file;
        }
        self.tree.insert(path, entry);
        Ok(())
    }

    /// Ensure every ancestor of `path` is a directory. A non-directory
    /// ancestor (a symlink, say) is replaced by a directory, with a
    /// warning: kiln never follows symlinks in parent components.
    fn make_parents(&mut self, path: &[u8], layer: &str, warnings: &mut Vec<String>) {
        let mut end = 0;
        while let Some(i) = path[end..].iter().position(|&b| b == b'/') {
            end += i;
            let dir = &path[..end];
            match self.tree.get(dir) {
                Some(e) if e.is_dir() => {}
                Some(e) => {
                    let what = match e.kind {
                        Kind::Symlink(_) => "symlink",
                        _ => "non-directory",
                    };
                    warnings.push(format!(
                        "layer {layer}: {}: parent {} is a {what}; replaced by a directory \
                         (symlinks in parent components are not followed)",
                        show(path),
                        show(dir),
                    ));
                    self.remove(dir, true);
                    self.tree
                        .insert(dir.to_vec(), Entry::dir(PARENT_MODE, PARENT_MTIME));
                }
                None => {
                    self.tree
                        .insert(dir.to_vec(), Entry::dir(PARENT_MODE, PARENT_MTIME));
                }
            }
            end += 1;
        }
    }

    /// Remove everything below `path` (the whole tree for the empty path),
    /// and `path` itself if `include_self`, keeping hard links sane.
    fn remove(&mut self, path: &[u8], include_self: bool) {
        if !self.links.is_empty() {
            self.unlink_doomed(path, include_self);
        }
        if include_self {
            self.tree.remove_subtree(path);
        } else if path.is_empty() {
            self.tree = Tree::new();
        } else {
            self.tree.remove_children(path);
        }
    }

    /// Update the link index for the entries `remove` is about to drop.
    fn unlink_doomed(&mut self, path: &[u8], include_self: bool) {
        let mut doomed: Vec<Vec<u8>> = Vec::new();
        if include_self && self.tree.get(path).is_some() {
            doomed.push(path.to_vec());
        }
        if path.is_empty() || self.tree.get(path).is_some_and(Entry::is_dir) {
            doomed.extend(self.tree.children_of(path).map(|(k, _)| k.clone()));
        }
        // First forget doomed links, then re-home the survivors of doomed
        // files, so a link is never promoted to a doomed path.
        for p in &doomed {
            if let Some(Entry {
                kind: Kind::Hardlink(file),
                ..
            }) = self.tree.get(p)
            {
                if let Some(set) = self.links.get_mut(file) {
                    set.remove(p);
                    if set.is_empty() {
                        self.links.remove(file);
                    }
                }
            }
        }
        for p in &doomed {
            if let Some(survivors) = self.links.remove(p) {
                self.promote(p, survivors);
            }
        }
    }

    /// `file` is going away: its first link becomes the file.
    fn promote(&mut self, file: &[u8], survivors: BTreeSet<Vec<u8>>) {
        let Some(original) = self.tree.get(file).cloned() else {
            return;
        };
        let mut rest = survivors.into_iter();
        let Some(heir) = rest.next() else {
            return;
        };
        let rest: BTreeSet<Vec<u8>> = rest.collect();
        for link in &rest {
            if let Some(e) = self.tree.get_mut(link) {
                e.kind = Kind::Hardlink(heir.clone());
            }
        }
        if !rest.is_empty() {
            self.links.insert(heir.clone(), rest);
        }
        self.tree.insert(heir, original);
    }
}
