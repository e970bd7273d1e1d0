//! Writers that turn a [`Tree`](crate::tree::Tree) into the bytes of an
//! archive format, and the compressors wrapped around them.
//!
//! Each writer takes a tree, its content store and a sink, and gives the
//! number of bytes written. The bytes depend only on the tree: writers read
//! no clock, no host uid/gid and no host directory order, and they never
//! re-read images. Hard links are resolved once here ([`Links`]) so every
//! format agrees on which paths share an inode.

pub mod compress;
pub mod cpio;
pub mod disk;
pub mod fat;
pub mod gzip;
pub mod iso;
pub mod qcow2;
pub mod rockridge;
pub mod squashfs;
pub mod syslinux;
pub mod tar;
pub mod uki;
pub(crate) mod ustar;
pub mod vhd;
pub mod vmdk;

use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::tree::{Entry, Kind, Tree};

/// The hard-link structure of a tree.
///
/// A *group* is a regular file together with every [`Kind::Hardlink`] that
/// resolves (possibly through other links) to it. A hard link that resolves
/// to something other than a regular file (a symlink, a device, …) is an
/// *alias*: writers emit it as an independent copy of what it points at,
/// because links to such entries are rare, format-specific and refused by
/// some extractors.
pub(crate) struct Links<'a> {
    /// Group root (the file's path) to its members in tree order, the root
    /// included. Only groups with at least one link are present.
    groups: BTreeMap<&'a [u8], Vec<&'a [u8]>>,
    /// Every member of a group to its root.
    root_of: BTreeMap<&'a [u8], &'a [u8]>,
}

impl<'a> Links<'a> {
    /// Resolve every hard link of `tree`. Fails with `InvalidData` naming
    /// the path if a link's target is missing or the links form a cycle.
    pub(crate) fn new(tree: &'a Tree) -> io::Result<Links<'a>> {
        let mut groups: BTreeMap<&[u8], Vec<&[u8]>> = BTreeMap::new();
        for (path, entry) in tree.iter() {
            if let Kind::Hardlink(_) = entry.kind {
                let (root, target) = resolve(tree, path)?;
                if let Kind::File(_) = target.kind {
                    groups.entry(root).or_default().push(path);
                }
            }
        }
        let mut root_of = BTreeMap::new();
        for (root, members) in groups.iter_mut() {
            members.push(root);
            members.sort_unstable();
            for m in members.iter() {
                root_of.insert(*m, *root);
            }
        }
        Ok(Links { groups, root_of })
    }

    /// The members of the group `path` belongs to (tree order), if any.
    pub(crate) fn group_of(&self, path: &[u8]) -> Option<&[&'a [u8]]> {
        let root = self.root_of.get(path)?;
        self.groups.get(root).map(Vec::as_slice)
    }
}

/// Follow hard links from `path` to the entry they finally name: its path
/// and entry. An entry that is not a link resolves to itself.
pub(crate) fn resolve<'a>(tree: &'a Tree, path: &'a [u8]) -> io::Result<(&'a [u8], &'a Entry)> {
    let mut cur: &[u8] = path;
    // A chain longer than the tree must revisit an entry: a cycle.
    for _ in 0..=tree.len() {
        let (key, entry) = match tree.get(cur) {
            Some(e) => (cur, e),
            None => {
                return Err(invalid(format!(
                    "{}: hard link target {} is not in the tree",
                    show(path),
                    show(cur)
                )))
            }
        };
        match &entry.kind {
            Kind::Hardlink(target) => cur = target,
            _ => return Ok((key, entry)),
        }
    }
    Err(invalid(format!("{}: hard links form a cycle", show(path))))
}

/// An `InvalidData` error with `msg`.
pub(crate) fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The parent directory (`b""` for the root) and the name of `path`, a
/// non-root entry of `tree`, for the writers that lay out a directory
/// hierarchy. Fails with `InvalidData` if the parent is not a directory of
/// the tree or the name is empty, `.` or `..`.
pub(crate) fn dir_and_name<'a>(tree: &Tree, path: &'a [u8]) -> io::Result<(&'a [u8], &'a [u8])> {
    let dir = crate::tree::parent(path).unwrap_or(b"");
    if !dir.is_empty() && !tree.get(dir).is_some_and(Entry::is_dir) {
        return Err(invalid(format!(
            "{}: parent {} is not a directory",
            show(path),
            show(dir)
        )));
    }
    let name = &path[dir.len() + usize::from(!dir.is_empty())..];
    if matches!(name, b"" | b"." | b"..") {
        return Err(invalid(format!("{}: not a normalised path", show(path))));
    }
    Ok((dir, name))
}

/// A path for an error message (lossy UTF-8).
pub(crate) fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// Counts the bytes passed through to the inner writer.
pub(crate) struct Counter<'w> {
    pub(crate) inner: &'w mut dyn Write,
    pub(crate) count: u64,
}

impl Write for Counter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Zero bytes for padding.
pub(crate) const ZEROS: [u8; 1024] = [0; 1024];

/// Write `n` zero bytes.
pub(crate) fn write_zeros(w: &mut dyn Write, mut n: u64) -> io::Result<()> {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        w.write_all(&ZEROS[..k])?;
        n -= k as u64;
    }
    Ok(())
}

/// An `InvalidInput` error with `msg`: the caller asked for something the
/// format cannot hold (a size too small, a file too large).
pub(crate) fn invalid_input(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// A tree with every kind of entry, shared by the writer and reader tests.
#[cfg(test)]
pub(crate) mod sample {
    use crate::tree::{ContentStore, Entry, Kind, Tree};

    /// A path longer than ustar's prefix/name split allows.
    pub(crate) fn long_path() -> Vec<u8> {
        let mut p = b"deep".to_vec();
        for i in 0..28 {
            p.extend_from_slice(format!("/component{i:02}").as_bytes());
        }
        p.extend_from_slice(b"/leaf.txt");
        p
    }

    pub(crate) fn tree(store: &ContentStore) -> Tree {
        let mut t = Tree::new();
        let mut add = |path: &[u8], e: Entry| {
            t.insert_with_parents(path.to_vec(), e, 0o755, 1_000);
        };
        add(b"bin", Entry::dir(0o755, 1_000));
        let busybox = store.add(b"#!busybox\nthe multi-call binary\n").unwrap();
        add(b"bin/busybox", Entry::file(busybox, 0o755, 1_000));
        // One link sorts before its target and one after.
        add(
            b"bin/ash",
            Entry::new(Kind::Hardlink(b"bin/busybox".to_vec()), 0o755, 1_000),
        );
        add(
            b"bin/zsh",
            Entry::new(Kind::Hardlink(b"bin/busybox".to_vec()), 0o755, 1_000),
        );
        add(b"bin/sh", Entry::symlink("busybox", 1_000));
        let mut console = Entry::new(Kind::Char { major: 5, minor: 1 }, 0o600, 1_000);
        console.gid = 5;
        add(b"dev/console", console);
        add(
            b"dev/sda",
            Entry::new(Kind::Block { major: 8, minor: 0 }, 0o660, 1_000),
        );
        add(b"dev/initctl", Entry::new(Kind::Fifo, 0o600, 1_000));
        add(
            b"etc/empty",
            Entry::file(store.add(b"").unwrap(), 0o644, -5),
        );
        let mut passwd = Entry::file(
            store.add(b"root:x:0:0::/root:/bin/sh\n").unwrap(),
            0o644,
            2_000,
        );
        passwd
            .xattrs
            .insert("user.kiln".to_string(), b"value\0with nul".to_vec());
        add(b"etc/passwd", passwd);
        let mut sudo = Entry::file(store.add(b"sudo").unwrap(), 0o4755, 1_000);
        sudo.uid = 0;
        sudo.gid = 1000;
        add(b"usr/bin/sudo", sudo);
        let mut home = Entry::dir(0o1777, 1_000);
        home.uid = 1000;
        home.gid = 1000;
        add(b"tmp", home);
        add(
            &long_path(),
            Entry::file(store.add(b"deep file").unwrap(), 0o600, 1_000),
        );
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::ContentStore;

    #[test]
    fn links_group_files_and_resolve_chains() {
        let store = ContentStore::new().unwrap();
        let mut t = Tree::new();
        let link = |to: &[u8]| Entry::new(Kind::Hardlink(to.to_vec()), 0o644, 0);
        t.insert(
            b"b".to_vec(),
            Entry::file(store.add(b"x").unwrap(), 0o644, 0),
        );
        t.insert(b"a".to_vec(), link(b"c"));
        t.insert(b"c".to_vec(), link(b"b"));
        t.insert(b"s".to_vec(), Entry::symlink("b", 0));
        t.insert(b"t".to_vec(), link(b"s"));
        let links = Links::new(&t).unwrap();
        let group: Vec<&[u8]> = links.group_of(b"c").unwrap().to_vec();
        assert_eq!(group, [&b"a"[..], b"b", b"c"]);
        // A link to a symlink is an alias, not a group.
        assert!(links.group_of(b"t").is_none());
        assert_eq!(resolve(&t, b"t").unwrap().0, b"s");
    }

    #[test]
    fn link_cycles_are_errors() {
        let mut t = Tree::new();
        t.insert(
            b"a".to_vec(),
            Entry::new(Kind::Hardlink(b"b".to_vec()), 0o644, 0),
        );
        t.insert(
            b"b".to_vec(),
            Entry::new(Kind::Hardlink(b"a".to_vec()), 0o644, 0),
        );
        let err = Links::new(&t).err().unwrap();
        assert_eq!(err.to_string(), "a: hard links form a cycle");
    }
}
