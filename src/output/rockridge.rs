//! The `kernel+iso` root filesystem: a [`Tree`] as an ISO 9660 image with
//! Rock Ridge (RRIP 1.12 over SUSP 1.12), which Linux mounts read-only
//! (`mount -t iso9660 /dev/sr0`) as the root of the booted system.
//!
//! [`write_rootfs_iso`] takes the tree, its content store, the epoch and a
//! volume label, and streams the image to a sink front to back, giving the
//! number of bytes written. It holds metadata only (directory extents,
//! path tables, continuation areas), never file contents. It never reads
//! the clock: every ISO 9660 date is the epoch and Rock Ridge times are
//! each entry's mtime. Everything is sorted: inode serial numbers follow
//! path order, directories the path table order (depth, parent,
//! identifier), records their identifiers, file extents the records.
//!
//! Every entry carries Rock Ridge: PX (the whole `st_mode`, nlink, uid,
//! gid and a serial number, shared by the names of one hard-linked file),
//! TF (mtime as modify, access and change time), NM (the real name, of
//! any length), SL for symlinks (components, `.`/`..`/root as flags) and
//! PN for devices. The root's `.` record starts with SP and names the
//! extension with ER (`RRIP_1991A`, as xorriso does); entries that do not
//! fit a 255-byte directory record continue in CE areas, each within one
//! sector as Linux requires. Hard links are names of one extent with the
//! same PX; identical contents also share an extent; a hard link to a
//! symlink, device or fifo is written as a copy of it. The base ISO 9660
//! names, which Linux ignores when Rock Ridge is present, are valid
//! level-1 identifiers (8.3, d-characters, unique per directory by a
//! numeric suffix) so any reader can list the volume.
//!
//! Limits, each an error rather than a wrong image: a file of 4 GiB or
//! more is `InvalidInput` (that would need multi-extent files, which this
//! writer does not write), as are more than 65535 directories (the path
//! table's parent numbers are 16-bit), a volume past 2^32 sectors, and a
//! device with major 0 and a minor above 255 (no PN encoding Linux
//! decodes).
//! Directories deeper than ISO 9660's eight levels are written in place,
//! not relocated (no RE/CL entries): Linux and libisofs read them. Extended
//! attributes are dropped, file capabilities (`security.capability`)
//! included: Linux's iso9660 driver reads none. Linux shows at most 253
//! bytes of a name; libisofs (xorriso) refuses symlink targets over 1024
//! bytes, which Linux reads up to a page.
//!
//! Written by hand: no maintained crate writes Rock Ridge reproducibly
//! while streaming. `hadris-iso` (2.x, checked on docs.rs) writes Rock
//! Ridge, but its `IsoImageWriter::create` needs a `Read + Write +
//! Seek` target and builds from its own input tree (`InputFiles`) rather
//! than from our content store, so it would mean staging the whole image,
//! and auditing its dates, ordering and identifiers for reproducibility.
//!
//! Layout, in 2048-byte sectors: 0–15 zero, 16 the primary volume
//! descriptor, 17 the terminator, then the little- and big-endian path
//! tables, the directory extents in path table order, the continuation
//! areas, and the file extents in directory order.

mod base;
mod susp;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use self::base::{dir_record, path_record, sort_key, system_use_room};
use self::base::{Namer, Record, SECTOR};
use self::susp::{place, Continuations, Posix};
use super::iso::desc::{primary, terminator, volume_label, Primary};
use super::{dir_and_name, invalid, resolve, show, Counter, Links, ZEROS};
use crate::tree::{parent, Content, ContentStore, Entry, Kind, Tree};

const PVD_LBA: u32 = 16;
const PATH_L_LBA: u32 = 18;
/// The most directories a path table can number.
const MAX_DIRS: usize = u16::MAX as usize;

/// Write `tree` as a Rock Ridge ISO 9660 image to `w`; returns the bytes
/// written (a whole number of sectors). `volume_id` becomes the volume
/// label (upper-cased d-characters, at most 32).
///
/// Fails with `InvalidData` on a tree that is not a tree (a missing or
/// non-directory parent, an unnormalised path, a hard link whose target
/// is missing, forms a cycle or is a directory), with `InvalidInput` on
/// what this format cannot hold (see the module doc), and on I/O errors.
pub fn write_rootfs_iso(
    tree: &Tree,
    store: &ContentStore,
    epoch: i64,
    volume_id: &str,
    w: &mut dyn Write,
) -> io::Result<u64> {
    let root = tree
        .get(b"")
        .cloned()
        .unwrap_or_else(|| Entry::dir(0o755, epoch));
    if !root.is_dir() {
        return Err(invalid("the root entry is not a directory".to_string()));
    }
    let links = Links::new(tree)?;
    let plan = Plan::new(tree, &links, &root, epoch)?;

    // Pass one: sizes. Records have the same length whatever their
    // extents, so dummy locations give the real directory sizes.
    let path_len = plan.path_table(&[], false).len();
    let path_sectors = sectors(path_len as u64)?;
    let mut at = PATH_L_LBA + 2 * path_sectors;
    let mut lay = Layout::default();
    let mut cont = Continuations::new(0);
    for i in 0..plan.dirs.len() {
        let size = u32::try_from(plan.extent(i, &lay, &mut cont).len()).map_err(|_| too_big())?;
        lay.dir_lba.push(at);
        lay.dir_size.push(size);
        at = add_sectors(at, u64::from(size))?;
    }
    let cont_lba = at;
    at = add_sectors(at, u64::from(cont.sectors()) * SECTOR as u64)?;
    for c in &plan.files {
        if !c.is_empty() && !lay.file_lba.contains_key(&c.sha256()) {
            lay.file_lba.insert(c.sha256(), at);
            at = add_sectors(at, c.len())?;
        }
    }
    let total = at;

    // Pass two: the bytes.
    let mut out = Counter { inner: w, count: 0 };
    zeros(&mut out, u64::from(PVD_LBA) * SECTOR as u64)?;
    let root_record = dir_record(
        &Record {
            ident: &[0],
            lba: lay.dir_lba[0],
            size: lay.dir_size[0],
            dir: true,
            epoch,
        },
        &[],
    );
    out.write_all(&primary(&Primary {
        system: b"LINUX",
        label: &volume_label(volume_id),
        total_sectors: total,
        path_table_len: path_len as u32,
        path_l: PATH_L_LBA,
        path_m: PATH_L_LBA + path_sectors,
        root: &root_record,
        epoch,
    }))?;
    out.write_all(&terminator())?;
    for big_endian in [false, true] {
        let table = plan.path_table(&lay.dir_lba, big_endian);
        out.write_all(&table)?;
        pad(&mut out)?;
    }
    let mut cont = Continuations::new(cont_lba);
    for i in 0..plan.dirs.len() {
        out.write_all(&plan.extent(i, &lay, &mut cont))?;
    }
    out.write_all(&cont.into_bytes())?;
    let mut written = BTreeSet::new();
    for c in &plan.files {
        if !c.is_empty() && written.insert(c.sha256()) {
            store.copy_to(c, &mut out)?;
            pad(&mut out)?;
        }
    }
    debug_assert_eq!(out.count, u64::from(total) * SECTOR as u64);
    Ok(out.count)
}

/// Where each directory and content lives.
#[derive(Default)]
struct Layout {
    /// By directory number - 1.
    dir_lba: Vec<u32>,
    dir_size: Vec<u32>,
    /// By content sha256; empty files have no extent (sector 0).
    file_lba: BTreeMap<[u8; 32], u32>,
}

/// An entry's metadata as recorded: the entry (a hard link's target), its
/// serial number and link count.
#[derive(Clone, Copy)]
struct Inode<'a> {
    entry: &'a Entry,
    serial: u32,
    nlink: u32,
}

struct Child<'a> {
    path: &'a [u8],
    name: &'a [u8],
    ident: Vec<u8>,
    inode: Inode<'a>,
    /// The directory's index, for a directory.
    dir: Option<usize>,
}

struct Dir<'a> {
    ident: Vec<u8>,
    /// Index of the parent (the root is its own parent).
    parent: usize,
    inode: Inode<'a>,
    children: Vec<Child<'a>>,
}

/// Everything known before the first byte: the directories in path table
/// order (by depth, then parent, then identifier), each with its sorted
/// children, and the file contents in the order they are written.
struct Plan<'a> {
    dirs: Vec<Dir<'a>>,
    files: Vec<&'a Content>,
    /// The date of every directory record.
    epoch: i64,
}

impl<'a> Plan<'a> {
    fn new(tree: &'a Tree, links: &Links<'a>, root: &'a Entry, epoch: i64) -> io::Result<Plan<'a>> {
        let mut serials: BTreeMap<&[u8], u32> = BTreeMap::new();
        let mut subdirs: BTreeMap<&[u8], u32> = BTreeMap::new();
        let mut listing: BTreeMap<&[u8], Vec<(&[u8], Inode)>> = BTreeMap::new();
        serials.insert(b"", 1);
        for (path, entry) in tree.iter() {
            let path = path.as_slice();
            if path.is_empty() {
                continue;
            }
            let (dir, _) = dir_and_name(tree, path)?;
            let (target, resolved) = resolve(tree, path)?;
            if resolved.is_dir() && !entry.is_dir() {
                return Err(invalid(format!(
                    "{}: hard link to directory {}",
                    show(path),
                    show(target)
                )));
            }
            let group = links.group_of(path);
            let key = if group.is_some() { target } else { path };
            let next = serials.len() as u32 + 1;
            let serial = *serials.entry(key).or_insert(next);
            let nlink = group.map_or(1, |g| g.len() as u32);
            if entry.is_dir() {
                *subdirs.entry(dir).or_default() += 1;
            }
            let inode = Inode {
                entry: resolved,
                serial,
                nlink,
            };
            listing.entry(dir).or_default().push((path, inode));
        }
        let dir_inode = |path: &[u8], entry| Inode {
            entry,
            serial: serials[path],
            nlink: 2 + subdirs.get(path).copied().unwrap_or(0),
        };
        let mut dirs = vec![Dir {
            ident: vec![0],
            parent: 0,
            inode: dir_inode(b"", root),
            children: Vec::new(),
        }];
        let mut paths: Vec<&[u8]> = vec![b""];
        let mut files = Vec::new();
        let mut i = 0;
        while i < dirs.len() {
            let mut namer = Namer::default();
            let mut children: Vec<Child> = listing
                .remove(paths[i])
                .unwrap_or_default()
                .into_iter()
                .map(|(path, inode)| {
                    let name = &path[parent(path).map_or(0, |p| p.len() + 1)..];
                    let is_dir = inode.entry.is_dir();
                    Child {
                        path,
                        name,
                        ident: namer.identifier(name, is_dir),
                        inode: if is_dir {
                            dir_inode(path, inode.entry)
                        } else {
                            inode
                        },
                        dir: is_dir.then_some(0),
                    }
                })
                .collect();
            children.sort_by(|a, b| sort_key(&a.ident).cmp(&sort_key(&b.ident)));
            for child in &mut children {
                if child.dir.is_some() {
                    child.dir = Some(dirs.len());
                    paths.push(child.path);
                    dirs.push(Dir {
                        ident: child.ident.clone(),
                        parent: i,
                        inode: child.inode,
                        children: Vec::new(),
                    });
                } else if let Some(c) = leaf_content(child.path, child.inode.entry)? {
                    files.push(c);
                }
            }
            if dirs.len() > MAX_DIRS {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "more than {MAX_DIRS} directories, more than ISO 9660 path tables number"
                    ),
                ));
            }
            dirs[i].children = children;
            i += 1;
        }
        Ok(Plan { dirs, files, epoch })
    }

    /// The path table: every directory in order, with its parent's number.
    fn path_table(&self, lbas: &[u32], big_endian: bool) -> Vec<u8> {
        let mut t = Vec::new();
        for (i, d) in self.dirs.iter().enumerate() {
            let lba = lbas.get(i).copied().unwrap_or(0);
            t.extend_from_slice(&path_record(&d.ident, lba, d.parent as u16 + 1, big_endian));
        }
        t
    }

    /// Directory `i`'s extent: `.`, `..` and its children's records,
    /// none crossing a sector boundary, padded to whole sectors. Entries
    /// that overflow a record go to `cont`.
    fn extent(&self, i: usize, lay: &Layout, cont: &mut Continuations) -> Vec<u8> {
        let dir = &self.dirs[i];
        let up = &self.dirs[dir.parent];
        let at = |d: usize| {
            (
                lay.dir_lba.get(d).copied().unwrap_or(0),
                lay.dir_size.get(d).copied().unwrap_or(0),
            )
        };
        let mut out = Vec::new();
        let mut push = |ident: &[u8], (lba, size): (u32, u32), is_dir, su: Vec<Vec<u8>>| {
            let su = place(su, system_use_room(ident), cont);
            let r = dir_record(
                &Record {
                    ident,
                    lba,
                    size,
                    dir: is_dir,
                    epoch: self.epoch,
                },
                &su,
            );
            if out.len() % SECTOR + r.len() > SECTOR {
                out.resize(out.len().next_multiple_of(SECTOR), 0);
            }
            out.extend_from_slice(&r);
        };
        let mut dot = Vec::new();
        if i == 0 {
            dot.push(susp::sp());
        }
        dot.extend(attributes(&dir.inode));
        if i == 0 {
            dot.push(susp::er());
        }
        push(&[0], at(i), true, dot);
        push(&[1], at(dir.parent), true, attributes(&up.inode));
        for child in &dir.children {
            let mut su = attributes(&child.inode);
            match &child.inode.entry.kind {
                Kind::Symlink(target) => su.extend(susp::sl(target)),
                Kind::Char { major, minor } | Kind::Block { major, minor } => {
                    // Checked in `Plan::new`.
                    su.extend(susp::pn(*major, *minor));
                }
                _ => {}
            }
            su.extend(susp::nm(child.name));
            let (lba, size) = match (&child.inode.entry.kind, child.dir) {
                (_, Some(d)) => at(d),
                (Kind::File(c), None) => (
                    lay.file_lba.get(&c.sha256()).copied().unwrap_or(0),
                    c.len() as u32,
                ),
                _ => (0, 0),
            };
            push(&child.ident, (lba, size), child.dir.is_some(), su);
        }
        out.resize(out.len().next_multiple_of(SECTOR), 0);
        out
    }
}

/// PX and TF for an inode.
fn attributes(inode: &Inode) -> Vec<Vec<u8>> {
    let e = inode.entry;
    vec![
        susp::px(&Posix {
            mode: e.file_type_bits() | (e.mode & 0o7777),
            nlink: inode.nlink,
            uid: e.uid,
            gid: e.gid,
            serial: inode.serial,
        }),
        susp::tf(e.mtime),
    ]
}

/// A leaf's content to write, if it has one, once the format is known to
/// hold the leaf: `InvalidInput` for a file of 4 GiB or more and for a
/// device number with no PN encoding Linux reads.
fn leaf_content<'a>(path: &[u8], entry: &'a Entry) -> io::Result<Option<&'a Content>> {
    match &entry.kind {
        Kind::File(c) => {
            file_size(path, c.len())?;
            Ok(Some(c))
        }
        Kind::Char { major, minor } | Kind::Block { major, minor }
            if susp::pn(*major, *minor).is_none() =>
        {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: device {major}:{minor} has no Rock Ridge encoding Linux reads",
                    show(path)
                ),
            ))
        }
        _ => Ok(None),
    }
}

/// A file's size as ISO 9660 records it; `InvalidInput` from 4 GiB on.
fn file_size(path: &[u8], len: u64) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: {len} bytes; files of 4 GiB or more need multi-extent ISO 9660 files, which are not supported",
                show(path)
            ),
        )
    })
}

/// Sectors holding `bytes`, if the volume can address them.
fn sectors(bytes: u64) -> io::Result<u32> {
    u32::try_from(bytes.div_ceil(SECTOR as u64)).map_err(|_| too_big())
}

/// The sector after `bytes` placed at sector `at`.
fn add_sectors(at: u32, bytes: u64) -> io::Result<u32> {
    at.checked_add(sectors(bytes)?).ok_or_else(too_big)
}

fn too_big() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "the image would pass 2^32 sectors (8 TiB)",
    )
}

fn zeros(out: &mut Counter, mut n: u64) -> io::Result<()> {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..k])?;
        n -= k as u64;
    }
    Ok(())
}

/// Zeros up to the next sector boundary.
fn pad(out: &mut Counter) -> io::Result<()> {
    let n = out.count.next_multiple_of(SECTOR as u64) - out.count;
    zeros(out, n)
}
