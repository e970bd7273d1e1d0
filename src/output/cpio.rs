//! The `newc` cpio writer (magic `070701`), the format of Linux initramfs.
//!
//! It takes a [`Tree`] and its [`ContentStore`] and writes one archive:
//! entries in tree order (path bytes), names without a leading `/`, inode
//! numbers 1, 2, … in that order, device numbers 0, and a `TRAILER!!!`
//! record. It never pads the archive to a block size and never reads the
//! host: every byte is a function of the tree.
//!
//! Hard links follow GNU cpio's newc convention: all members of a group
//! share one inode number, carry the group's link count, and only the last
//! member (in tree order) carries the data; the others have size 0. The
//! kernel's unpacker (`init/initramfs.c`) creates the first member, links
//! the later ones to it by (major, minor, ino, mode) and writes whatever
//! data arrives, so it extracts this correctly; GNU `cpio -i` defers
//! size-0 members until the data arrives. Group members therefore share the
//! metadata (mode, owner, mtime) of the file they link to.
//!
//! Limits of the format, applied rather than failed on: extended
//! attributes are dropped (newc has no field for them, and the kernel's
//! unpacker would not apply them); mtimes are clamped to `0..=u32::MAX`.
//! A file larger than 4 GiB − 1 cannot be represented and is an error.

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::{invalid, resolve, show, Counter, Links, ZEROS};
use crate::tree::{ContentStore, Entry, Kind, Tree};

/// Write `tree` as a newc cpio archive to `w`; returns the bytes written.
///
/// Fails on any write error, on a hard link whose target is missing, and
/// on a file or name too large for the format.
pub fn write_cpio(tree: &Tree, store: &ContentStore, w: &mut dyn Write) -> io::Result<u64> {
    let links = Links::new(tree)?;
    let subdirs = subdir_counts(tree);
    let mut out = Counter { inner: w, count: 0 };
    let mut next_ino: u32 = 1;
    let mut group_ino: BTreeMap<&[u8], u32> = BTreeMap::new();

    for (path, _) in tree.iter() {
        let path = path.as_slice();
        // The entry whose metadata and data this path carries.
        let (_, inode) = resolve(tree, path)?;
        let (ino, nlink, carries_data) = match links.group_of(path) {
            Some(members) => {
                let first = members[0];
                let ino = match group_ino.get(first) {
                    Some(&ino) => ino,
                    None => {
                        let ino = take_ino(&mut next_ino, path)?;
                        group_ino.insert(first, ino);
                        ino
                    }
                };
                let last = members[members.len() - 1];
                (ino, members.len() as u32, last == path)
            }
            None => {
                let nlink = match inode.kind {
                    Kind::Dir => 2 + subdirs.get(path).copied().unwrap_or(0),
                    _ => 1,
                };
                (take_ino(&mut next_ino, path)?, nlink, true)
            }
        };
        write_member(&mut out, store, path, inode, ino, nlink, carries_data)?;
    }

    let trailer = Header {
        ino: 0,
        mode: 0,
        uid: 0,
        gid: 0,
        nlink: 1,
        mtime: 0,
        size: 0,
        rdev: (0, 0),
    };
    write_header(&mut out, &trailer, b"TRAILER!!!")?;
    Ok(out.count)
}

/// The next inode number, failing if the tree has more than `u32` entries.
fn take_ino(next: &mut u32, path: &[u8]) -> io::Result<u32> {
    let ino = *next;
    *next = next
        .checked_add(1)
        .ok_or_else(|| invalid(format!("{}: too many entries for cpio", show(path))))?;
    Ok(ino)
}

/// Number of immediate subdirectories of every directory, for `nlink`.
fn subdir_counts(tree: &Tree) -> BTreeMap<&[u8], u32> {
    let mut counts = BTreeMap::new();
    for (path, entry) in tree.iter() {
        if entry.is_dir() {
            if let Some(parent) = crate::tree::parent(path) {
                *counts.entry(parent).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// The numeric fields of one newc header.
struct Header {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    size: u32,
    rdev: (u32, u32),
}

fn write_member(
    out: &mut Counter<'_>,
    store: &ContentStore,
    path: &[u8],
    inode: &Entry,
    ino: u32,
    nlink: u32,
    carries_data: bool,
) -> io::Result<()> {
    let too_big = || invalid(format!("{}: larger than newc's 4 GiB limit", show(path)));
    let (size, rdev) = match &inode.kind {
        Kind::File(c) if carries_data => (u32::try_from(c.len()).map_err(|_| too_big())?, (0, 0)),
        Kind::Symlink(target) => (u32::try_from(target.len()).map_err(|_| too_big())?, (0, 0)),
        Kind::Char { major, minor } | Kind::Block { major, minor } => (0, (*major, *minor)),
        _ => (0, (0, 0)),
    };
    let header = Header {
        ino,
        mode: inode.file_type_bits() | (inode.mode & 0o7777),
        uid: inode.uid,
        gid: inode.gid,
        nlink,
        mtime: inode.mtime.clamp(0, i64::from(u32::MAX)) as u32,
        size,
        rdev,
    };
    write_header(out, &header, path)?;
    match &inode.kind {
        Kind::File(c) if carries_data => {
            let before = out.count;
            store.copy_to(c, out)?;
            if out.count - before != c.len() {
                return Err(invalid(format!("{}: content store gave a short read", show(path))));
            }
        }
        Kind::Symlink(target) => out.write_all(target)?,
        _ => {}
    }
    pad4(out, u64::from(size))
}

fn write_header(out: &mut Counter<'_>, h: &Header, name: &[u8]) -> io::Result<()> {
    if name.contains(&0) {
        return Err(invalid(format!("{}: name contains a NUL byte", show(name))));
    }
    let namesize = u32::try_from(name.len() + 1)
        .map_err(|_| invalid(format!("{}: name too long for cpio", show(name))))?;
    let fields = [
        h.ino, h.mode, h.uid, h.gid, h.nlink, h.mtime, h.size, 0, 0, h.rdev.0, h.rdev.1, namesize, 0,
    ];
    let mut buf = Vec::with_capacity(110 + name.len() + 4);
    buf.extend_from_slice(b"070701");
    for f in fields {
        write!(buf, "{f:08X}")?;
    }
    buf.extend_from_slice(name);
    buf.push(0);
    let pad = (4 - buf.len() % 4) % 4;
    buf.extend_from_slice(&ZEROS[..pad]);
    out.write_all(&buf)
}

fn pad4(out: &mut Counter<'_>, len: u64) -> io::Result<()> {
    let pad = ((4 - len % 4) % 4) as usize;
    out.write_all(&ZEROS[..pad])
}
