//! The xattr table of a squashfs image.
//!
//! It takes each inode's extended attributes and gives the index the inode
//! stores; identical sets are stored once, numbered in the order they are
//! first seen (which is the image's write order, so deterministic). Names
//! must start with `user.`, `trusted.` or `security.`, the only namespaces
//! squashfs can hold; any other is an error rather than silently dropped.

use std::collections::BTreeMap;
use std::io;

use super::meta::Meta;
use super::{invalid, show};
use crate::tree::Entry;

/// Namespaces squashfs encodes, with their type numbers.
const PREFIXES: [(&str, u16); 3] = [("user.", 0), ("trusted.", 1), ("security.", 2)];

/// Xattr sets collected so far.
#[derive(Default)]
pub(super) struct Table {
    /// Encoded name/value pairs, one run per set.
    pairs: Meta,
    /// Per set: reference into `pairs`, pair count and listing size.
    sets: Vec<(u64, u32, u32)>,
    index: BTreeMap<BTreeMap<String, Vec<u8>>, u32>,
}

impl Table {
    pub(super) fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// The xattr index for `entry` at `path`, or `None` if it has none.
    pub(super) fn add(&mut self, path: &[u8], entry: &Entry) -> io::Result<Option<u32>> {
        if entry.xattrs.is_empty() {
            return Ok(None);
        }
        if let Some(&i) = self.index.get(&entry.xattrs) {
            return Ok(Some(i));
        }
        let reference = self.pairs.reference();
        let mut b = Vec::new();
        let mut size = 0u32;
        for (name, value) in &entry.xattrs {
            let (suffix, kind) = PREFIXES
                .iter()
                .find_map(|&(p, k)| name.strip_prefix(p).map(|s| (s, k)))
                .filter(|(s, _)| !s.is_empty() && s.len() <= usize::from(u16::MAX))
                .ok_or_else(|| {
                    invalid(format!(
                        "{}: xattr {name} is not in a namespace squashfs can store \
                         (user., trusted., security.)",
                        show(path)
                    ))
                })?;
            let vlen = u32::try_from(value.len())
                .map_err(|_| invalid(format!("{}: xattr {name} value too large", show(path))))?;
            b.extend_from_slice(&kind.to_le_bytes());
            b.extend_from_slice(&(suffix.len() as u16).to_le_bytes());
            b.extend_from_slice(suffix.as_bytes());
            b.extend_from_slice(&vlen.to_le_bytes());
            b.extend_from_slice(value);
            size = size.saturating_add(name.len() as u32 + 1 + vlen);
        }
        self.pairs.write(&b)?;
        let i = self.sets.len() as u32;
        self.sets.push((reference, entry.xattrs.len() as u32, size));
        self.index.insert(entry.xattrs.clone(), i);
        Ok(Some(i))
    }

    /// The table's bytes when placed at image offset `pos`, and the offset
    /// of its id table (the superblock's `xattr_id_table_start`).
    pub(super) fn finish(self, pos: u64) -> io::Result<(Vec<u8>, u64)> {
        let pairs = self.pairs.finish()?;
        let mut ids = Meta::default();
        for (reference, count, size) in &self.sets {
            ids.write(&reference.to_le_bytes())?;
            ids.write(&count.to_le_bytes())?;
            ids.write(&size.to_le_bytes())?;
        }
        let ids = ids.finish()?;
        let ids_at = pos + pairs.out.len() as u64;
        let mut out = pairs.out;
        out.extend_from_slice(&ids.out);
        let table = pos + out.len() as u64;
        out.extend_from_slice(&pos.to_le_bytes());
        out.extend_from_slice(&(self.sets.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for b in &ids.block_starts {
            out.extend_from_slice(&(ids_at + b).to_le_bytes());
        }
        Ok((out, table))
    }
}
