//! The squashfs 4.0 writer, for LinuxKit's `kernel+squashfs` output.
//!
//! It takes a [`Tree`], its [`ContentStore`] and `SOURCE_DATE_EPOCH`, and
//! writes one gzip-compressed image with 128 KiB blocks that the Linux
//! kernel mounts and `unsquashfs` extracts. Every byte is a function of
//! those inputs: inode numbers, table order and id indices follow path
//! order, the superblock's creation time is the epoch, and compression runs
//! on one thread with the pinned pure-Rust zlib, so no thread count, clock
//! or host id can reach the image.
//!
//! Written by hand rather than with the `backhand` crate: its writer gives
//! no way to make two paths share an inode (hard links), and owning the
//! ~500 lines that fix every byte is simpler than auditing a general
//! reader/writer for order and clock use. The image is deliberately plain:
//! no fragments (a file's last block is simply short), no export table, no
//! sparse blocks; identical contents share their data blocks.
//!
//! Layout: superblock, data blocks (in the order files are written),
//! inode table, directory table, id table, xattr table. Directories are
//! written deepest first so each listing can name its children's inodes.
//! Mtimes are clamped to `0..=u32::MAX`; a hard link to a non-file is
//! written as a copy of its target, and one to a directory is an error.

mod meta;
mod xattr;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Seek, SeekFrom, Write};

use self::meta::{Blocks, Meta};
use super::{dir_and_name, invalid, resolve, show, write_zeros, Links, ZEROS};
use crate::tree::{parent, ContentStore, Entry, Kind, Tree};

/// Data block size: 128 KiB, mksquashfs's default.
const BLOCK_SIZE: u32 = 128 * 1024;
const BLOCK_LOG: u16 = 17;
const SUPERBLOCK_LEN: usize = 96;
const MAGIC: u32 = 0x7371_7368;
const COMPRESSION_GZIP: u16 = 1;
/// Superblock flags: no fragments; identical contents share blocks.
const FLAG_NO_FRAGMENTS: u16 = 0x0010;
const FLAG_DUPLICATES: u16 = 0x0040;
const FLAG_NO_XATTRS: u16 = 0x0200;
/// A table that is absent.
const NONE: u64 = u64::MAX;
/// "No fragment" in a file inode.
const NO_FRAGMENT: u32 = u32::MAX;
/// Longest name a directory entry can hold.
const NAME_MAX: usize = 256;
/// Most entries one directory header may cover.
const DIR_RUN_MAX: usize = 256;
/// Images are padded to a multiple of this, as mksquashfs does, so they
/// can be attached as block devices.
const PAD: u64 = 4096;

/// Basic inode types (the extended ones are these + 7).
const T_DIR: u16 = 1;
const T_FILE: u16 = 2;
const T_SYMLINK: u16 = 3;
const T_BLOCK: u16 = 4;
const T_CHAR: u16 = 5;
const T_FIFO: u16 = 6;
const EXTENDED: u16 = 7;

/// Write `tree` as a squashfs image to `w`, starting at its current
/// position; returns the bytes written (the image padded to 4 KiB).
///
/// Fails on any I/O error, on a hard link whose target is missing or that
/// names a directory, on an entry whose parent is not a directory, on a
/// name longer than 256 bytes, on more than 65535 distinct uids and gids,
/// on a path that is not normalised, and on an xattr name squashfs cannot
/// store.
pub fn write_squashfs(
    tree: &Tree,
    store: &ContentStore,
    epoch: i64,
    w: &mut (impl Write + Seek),
) -> io::Result<u64> {
    let start = w.stream_position()?;
    w.write_all(&ZEROS[..SUPERBLOCK_LEN])?;
    let root = tree
        .get(b"")
        .cloned()
        .unwrap_or_else(|| Entry::dir(0o755, epoch));
    let plan = Plan::new(tree, &root)?;
    let mut img = Image {
        tree,
        store,
        links: Links::new(tree)?,
        ids: plan.ids.clone(),
        out: w,
        pos: SUPERBLOCK_LEN as u64,
        inodes: Meta::default(),
        dirs: Meta::default(),
        xattrs: xattr::Table::default(),
        next_ino: plan.dir_number.len() as u32 + 1,
        blocks: BTreeMap::new(),
        groups: BTreeMap::new(),
        done_dirs: BTreeMap::new(),
    };
    for dir in &plan.order {
        img.write_dir(dir, &plan, &root)?;
    }
    let (root_ref, _) = img.done_dirs[&b""[..]];
    let inode_count = img.next_ino - 1;
    let Image {
        out,
        mut pos,
        inodes,
        dirs,
        xattrs,
        ids,
        ..
    } = img;

    let inode_table = pos;
    let inodes = inodes.finish()?;
    out.write_all(&inodes.out)?;
    pos += inodes.out.len() as u64;
    let dir_table = pos;
    let dirs = dirs.finish()?;
    out.write_all(&dirs.out)?;
    pos += dirs.out.len() as u64;

    let mut id_meta = Meta::default();
    for id in ids.keys() {
        id_meta.write(&id.to_le_bytes())?;
    }
    let id_meta = id_meta.finish()?;
    out.write_all(&id_meta.out)?;
    let id_table = pos + id_meta.out.len() as u64;
    for b in &id_meta.block_starts {
        out.write_all(&(pos + b).to_le_bytes())?;
    }
    pos = id_table + 8 * id_meta.block_starts.len() as u64;

    let (xattr_table, flags) = if xattrs.is_empty() {
        (NONE, FLAG_NO_FRAGMENTS | FLAG_DUPLICATES | FLAG_NO_XATTRS)
    } else {
        let (bytes, table) = xattrs.finish(pos)?;
        out.write_all(&bytes)?;
        pos += bytes.len() as u64;
        (table, FLAG_NO_FRAGMENTS | FLAG_DUPLICATES)
    };

    let bytes_used = pos;
    let padded = bytes_used.div_ceil(PAD) * PAD;
    write_zeros(out, padded - bytes_used)?;

    let mut sb = Vec::with_capacity(SUPERBLOCK_LEN);
    sb.extend_from_slice(&MAGIC.to_le_bytes());
    sb.extend_from_slice(&inode_count.to_le_bytes());
    sb.extend_from_slice(&clamp_time(epoch).to_le_bytes());
    sb.extend_from_slice(&BLOCK_SIZE.to_le_bytes());
    sb.extend_from_slice(&0u32.to_le_bytes()); // fragment entries
    sb.extend_from_slice(&COMPRESSION_GZIP.to_le_bytes());
    sb.extend_from_slice(&BLOCK_LOG.to_le_bytes());
    sb.extend_from_slice(&flags.to_le_bytes());
    sb.extend_from_slice(&(ids.len() as u16).to_le_bytes());
    sb.extend_from_slice(&4u16.to_le_bytes());
    sb.extend_from_slice(&0u16.to_le_bytes());
    for v in [
        root_ref,
        bytes_used,
        id_table,
        xattr_table,
        inode_table,
        dir_table,
        NONE, // fragment table
        NONE, // export table
    ] {
        sb.extend_from_slice(&v.to_le_bytes());
    }
    out.seek(SeekFrom::Start(start))?;
    out.write_all(&sb)?;
    out.seek(SeekFrom::Start(start + padded))?;
    Ok(padded)
}

/// What is known before anything is written: every directory's children,
/// the order directories are written in, directory inode numbers and the
/// id table.
struct Plan<'a> {
    /// Directory path (root: empty) to its children's paths, in name order.
    children: BTreeMap<&'a [u8], Vec<&'a [u8]>>,
    /// Deepest first, then path order, so children precede parents.
    order: Vec<&'a [u8]>,
    /// Directories are numbered 1..=D in path order (the root is 1).
    dir_number: BTreeMap<&'a [u8], u32>,
    /// uid/gid to its index in the id table, ascending.
    ids: BTreeMap<u32, u16>,
}

impl<'a> Plan<'a> {
    fn new(tree: &'a Tree, root: &Entry) -> io::Result<Plan<'a>> {
        let mut children: BTreeMap<&[u8], Vec<&[u8]>> = BTreeMap::new();
        children.insert(b"", Vec::new());
        let mut ids = BTreeSet::from([root.uid, root.gid]);
        for (path, entry) in tree.iter() {
            let path = path.as_slice();
            if path.is_empty() {
                continue;
            }
            let (dir, name) = dir_and_name(tree, path)?;
            if name.len() > NAME_MAX {
                return Err(invalid(format!(
                    "{}: name longer than {NAME_MAX} bytes",
                    show(path)
                )));
            }
            children.entry(dir).or_default().push(path);
            if entry.is_dir() {
                children.entry(path).or_default();
            }
            let (_, inode) = resolve(tree, path)?;
            ids.insert(inode.uid);
            ids.insert(inode.gid);
        }
        // The superblock's id count is 16 bits: 65536 ids would read as 0.
        if ids.len() > usize::from(u16::MAX) {
            return Err(invalid(format!(
                "{} distinct uids and gids, squashfs holds at most 65535",
                ids.len()
            )));
        }
        let ids = ids.into_iter().zip(0u16..).collect();
        // Children of one parent share its prefix, so path order is name order.
        let dir_number = children.keys().copied().zip(1u32..).collect();
        let mut order: Vec<&[u8]> = children.keys().copied().collect();
        order.sort_by_key(|p| (std::cmp::Reverse(depth(p)), *p));
        Ok(Plan {
            children,
            order,
            dir_number,
            ids,
        })
    }
}

/// The image being written.
struct Image<'a, 'w, W: Write> {
    tree: &'a Tree,
    store: &'a ContentStore,
    links: Links<'a>,
    ids: BTreeMap<u32, u16>,
    out: &'w mut W,
    /// Bytes written since the image start.
    pos: u64,
    inodes: Meta,
    dirs: Meta,
    xattrs: xattr::Table,
    next_ino: u32,
    /// Content sha256 to where its blocks start and their size words.
    blocks: BTreeMap<[u8; 32], (u64, Vec<u32>)>,
    /// Hard-link group root to its inode (reference, number).
    groups: BTreeMap<&'a [u8], (u64, u32)>,
    /// Directories written so far: inode reference and number.
    done_dirs: BTreeMap<&'a [u8], (u64, u32)>,
}

/// One line of a directory listing.
struct Child<'a> {
    name: &'a [u8],
    reference: u64,
    number: u32,
    basic_type: u16,
}

impl<'a, W: Write> Image<'a, '_, W> {
    /// Write the inodes of `dir`'s non-directory children, its listing and
    /// its own inode. Its subdirectories must already be written.
    fn write_dir(&mut self, dir: &'a [u8], plan: &Plan<'a>, root: &Entry) -> io::Result<()> {
        let mut listing = Vec::new();
        let mut subdirs = 0u32;
        for &path in &plan.children[dir] {
            let child = if let Some(&(reference, number)) = self.done_dirs.get(path) {
                subdirs += 1;
                Child {
                    name: name_of(path),
                    reference,
                    number,
                    basic_type: T_DIR,
                }
            } else {
                self.write_leaf(path)?
            };
            listing.push(child);
        }
        let (block, offset) = self.dirs.pos();
        let size = self.write_listing(&listing)? + 3;
        let entry = if dir.is_empty() {
            root
        } else {
            self.entry(dir)?
        };
        let number = plan.dir_number[dir];
        let parent_number = match parent(dir) {
            _ if dir.is_empty() => plan.dir_number.len() as u32 + 1,
            Some(p) => plan.dir_number[p],
            None => plan.dir_number[&b""[..]],
        };
        let xattr = self.xattrs.add(dir, entry)?;
        let reference = self.inodes.reference();
        let nlink = 2 + subdirs;
        let mut b = Vec::with_capacity(40);
        if size > 0xFFFF || xattr.is_some() {
            self.header(&mut b, T_DIR + EXTENDED, entry, number);
            put32(&mut b, nlink);
            put32(&mut b, size);
            put32(&mut b, block as u32);
            put32(&mut b, parent_number);
            put16(&mut b, 0); // no directory index
            put16(&mut b, offset);
            put32(&mut b, xattr.unwrap_or(u32::MAX));
        } else {
            self.header(&mut b, T_DIR, entry, number);
            put32(&mut b, block as u32);
            put32(&mut b, nlink);
            put16(&mut b, size as u16);
            put16(&mut b, offset);
            put32(&mut b, parent_number);
        }
        if block > u64::from(u32::MAX) {
            return Err(invalid(format!(
                "{}: directory table larger than 4 GiB",
                show(dir)
            )));
        }
        self.inodes.write(&b)?;
        self.done_dirs.insert(dir, (reference, number));
        Ok(())
    }

    /// Append a listing to the directory table; gives its size in bytes.
    fn write_listing(&mut self, listing: &[Child]) -> io::Result<u32> {
        let mut b = Vec::new();
        let mut i = 0;
        while i < listing.len() {
            let first = &listing[i];
            let block = first.reference >> 16;
            let mut run = 1;
            while i + run < listing.len()
                && run < DIR_RUN_MAX
                && listing[i + run].reference >> 16 == block
                && i16::try_from(i64::from(listing[i + run].number) - i64::from(first.number))
                    .is_ok()
            {
                run += 1;
            }
            put32(&mut b, run as u32 - 1);
            put32(&mut b, block as u32);
            put32(&mut b, first.number);
            for c in &listing[i..i + run] {
                put16(&mut b, (c.reference & 0xFFFF) as u16);
                put16(
                    &mut b,
                    (c.number as i64 - first.number as i64) as i16 as u16,
                );
                put16(&mut b, c.basic_type);
                put16(&mut b, c.name.len() as u16 - 1);
                b.extend_from_slice(c.name);
            }
            i += run;
        }
        self.dirs.write(&b)?;
        Ok(b.len() as u32)
    }

    /// Write the inode of a non-directory (or reuse its hard-link group's).
    fn write_leaf(&mut self, path: &'a [u8]) -> io::Result<Child<'a>> {
        let name = name_of(path);
        let (target, entry) = resolve(self.tree, path)?;
        if entry.is_dir() {
            return Err(invalid(format!(
                "{}: hard link to directory {}",
                show(path),
                show(target)
            )));
        }
        let group = self.links.group_of(path).map(|m| (m[0], m.len() as u32));
        if let Some((first, _)) = group {
            if let Some(&(reference, number)) = self.groups.get(first) {
                return Ok(Child {
                    name,
                    reference,
                    number,
                    basic_type: T_FILE,
                });
            }
        }
        let number = self.next_ino;
        self.next_ino += 1;
        let xattr = self.xattrs.add(path, entry)?;
        let mut b = Vec::with_capacity(64);
        let basic_type = match &entry.kind {
            Kind::File(content) => {
                let nlink = group.map_or(1, |(_, n)| n);
                let (start, sizes) = match self.blocks.get(&content.sha256()) {
                    Some(done) => done.clone(),
                    None if content.is_empty() => (0, Vec::new()),
                    None => {
                        let mut blocks = Blocks::new(&mut *self.out, BLOCK_SIZE as usize);
                        self.store.copy_to(content, &mut blocks)?;
                        let (sizes, written) = blocks.finish()?;
                        let done = (self.pos, sizes);
                        self.pos += written;
                        self.blocks.insert(content.sha256(), done.clone());
                        done
                    }
                };
                let len = content.len();
                if nlink > 1
                    || xattr.is_some()
                    || len > u64::from(u32::MAX)
                    || start > u64::from(u32::MAX)
                {
                    self.header(&mut b, T_FILE + EXTENDED, entry, number);
                    put64(&mut b, start);
                    put64(&mut b, len);
                    put64(&mut b, 0); // sparse bytes
                    put32(&mut b, nlink);
                    put32(&mut b, NO_FRAGMENT);
                    put32(&mut b, 0);
                    put32(&mut b, xattr.unwrap_or(u32::MAX));
                } else {
                    self.header(&mut b, T_FILE, entry, number);
                    put32(&mut b, start as u32);
                    put32(&mut b, NO_FRAGMENT);
                    put32(&mut b, 0);
                    put32(&mut b, len as u32);
                }
                for s in &sizes {
                    put32(&mut b, *s);
                }
                T_FILE
            }
            Kind::Symlink(link) => {
                self.header(&mut b, T_SYMLINK + ext(xattr), entry, number);
                put32(&mut b, 1);
                put32(&mut b, link.len() as u32);
                b.extend_from_slice(link);
                T_SYMLINK
            }
            &Kind::Char { major, minor } => {
                self.header(&mut b, T_CHAR + ext(xattr), entry, number);
                put32(&mut b, 1);
                put32(&mut b, encode_dev(major, minor));
                T_CHAR
            }
            &Kind::Block { major, minor } => {
                self.header(&mut b, T_BLOCK + ext(xattr), entry, number);
                put32(&mut b, 1);
                put32(&mut b, encode_dev(major, minor));
                T_BLOCK
            }
            Kind::Fifo => {
                self.header(&mut b, T_FIFO + ext(xattr), entry, number);
                put32(&mut b, 1);
                T_FIFO
            }
            Kind::Dir | Kind::Hardlink(_) => unreachable!("resolved above"),
        };
        if basic_type != T_FILE {
            if let Some(x) = xattr {
                put32(&mut b, x);
            }
        }
        let reference = self.inodes.reference();
        self.inodes.write(&b)?;
        if let Some((first, _)) = group {
            self.groups.insert(first, (reference, number));
        }
        Ok(Child {
            name,
            reference,
            number,
            basic_type,
        })
    }

    fn entry(&self, path: &[u8]) -> io::Result<&'a Entry> {
        self.tree
            .get(path)
            .ok_or_else(|| invalid(format!("{}: not in the tree", show(path))))
    }

    /// The 16-byte header every inode starts with.
    fn header(&self, b: &mut Vec<u8>, kind: u16, entry: &Entry, number: u32) {
        put16(b, kind);
        put16(b, (entry.mode & 0o7777) as u16);
        put16(b, self.ids[&entry.uid]);
        put16(b, self.ids[&entry.gid]);
        put32(b, clamp_time(entry.mtime));
        put32(b, number);
    }
}

/// The extended-type offset when an inode carries an xattr.
fn ext(xattr: Option<u32>) -> u16 {
    if xattr.is_some() {
        EXTENDED
    } else {
        0
    }
}

/// The last component of a tree path.
fn name_of(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// Components in a path; the root has none.
fn depth(path: &[u8]) -> usize {
    if path.is_empty() {
        0
    } else {
        1 + path.iter().filter(|&&b| b == b'/').count()
    }
}

/// The kernel's `new_encode_dev`: 12-bit major, 20-bit minor.
fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

fn clamp_time(t: i64) -> u32 {
    t.clamp(0, i64::from(u32::MAX)) as u32
}

fn put16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_use_the_kernel_encoding() {
        assert_eq!(encode_dev(8, 1), 0x801);
        assert_eq!(encode_dev(259, 0x12345), 0x1231_0345);
    }

    #[test]
    fn id_count_fits_its_16_bit_field() {
        // Files with distinct uid and gid: `pairs` files give 2 * pairs ids
        // plus the root's 0.
        let plan_for = |pairs: u32| {
            let mut tree = Tree::new();
            for i in 0..pairs {
                let mut e = Entry::dir(0o755, 0);
                e.uid = 1 + 2 * i;
                e.gid = 2 + 2 * i;
                tree.insert(format!("d{i}").into_bytes(), e);
            }
            Plan::new(&tree, &Entry::dir(0o755, 0)).map(|p| p.ids.len())
        };
        assert_eq!(plan_for(32767).unwrap(), 65535);
        let e = plan_for(32768).unwrap_err().to_string();
        assert!(
            e.contains("65537 distinct uids and gids, squashfs holds at most 65535"),
            "{e}"
        );
    }

    #[test]
    fn deepest_directories_come_first() {
        let store = ContentStore::new().unwrap();
        let tree = super::super::sample::tree(&store);
        let root = Entry::dir(0o755, 0);
        let plan = Plan::new(&tree, &root).unwrap();
        assert_eq!(plan.order.last().copied(), Some(&b""[..]));
        for w in plan.order.windows(2) {
            assert!(depth(w[0]) >= depth(w[1]));
        }
    }
}
