//! A FAT32 filesystem writer, for EFI System Partitions.
//!
//! It takes a short list of files (a path such as `EFI/BOOT/BOOTX64.EFI`
//! and its [`Content`]) and writes a whole FAT32 volume to a sink, streaming
//! file bytes from the [`ContentStore`]; it gives the number of bytes
//! written. It never reads the clock: every timestamp is `epoch` (clamped to
//! FAT's 1980–2107 range), and the volume serial and label are options.
//!
//! It is written by hand rather than with the `fatfs` crate: a volume that
//! is written once, front to back, with every file in one contiguous
//! cluster run, needs no allocator, no directory search and no
//! read-modify-write of a storage file, and the code then owns every byte
//! (there is no library default that could pick up a time or an id).
//!
//! Layout, in 512-byte sectors: 32 reserved sectors (boot sector at 0,
//! FSInfo at 1, their backups at 6 and 7), two FATs, then the data region,
//! whose first cluster (2) is the root directory. Clusters are allocated in
//! a pre-order walk of the directory tree (children sorted by name), so
//! each directory is followed by its contents. The cluster size follows
//! Microsoft's FAT32 table for the volume size (512 B up to 260 MiB, 4 KiB
//! up to 8 GiB, 8, 16, then 32 KiB); the FATs are sized for the worst case
//! and rounded up to whole clusters, so the data region is cluster-aligned.
//! A FAT32 volume must have at least 65525 clusters (otherwise firmware
//! reads it as FAT16), which makes the smallest volume 33 MiB.
//!
//! Names that are already upper-case 8.3 names (`EFI`, `BOOTX64.EFI`) get a
//! single short entry; any other name gets VFAT long-name entries and a
//! generated short name (`LONGNA~1.TXT`). Names are compared
//! case-insensitively, as FAT does, and a clash is an error.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

mod entry;

use self::entry::{
    check_label, check_name, entry_count, lfn_entries, plain_short, short_entry, short_names,
    stamp, Stamp,
};
use super::{invalid_input as input, write_zeros, Counter};
use crate::tree::{Content, ContentStore};

/// How to format the volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FatOptions {
    /// The volume size in bytes, a multiple of 512; `None` for the
    /// smallest volume that holds the files, rounded up to 1 MiB.
    pub size_bytes: Option<u64>,
    /// The volume serial number (derive it from the content and the epoch).
    pub volume_id: u32,
    /// The volume label: upper-case 8.3 characters padded with spaces;
    /// `*b"NO NAME    "` for none.
    pub label: [u8; 11],
    /// The time stamped on every directory entry, in seconds since 1970.
    pub epoch: i64,
    /// The sector at which the volume starts on its disk (`BPB_HiddSec`);
    /// 0 for a bare image.
    pub hidden_sectors: u32,
    /// A boot loader's boot sector: its jump (bytes 0–2) and code (bytes
    /// 90–509) replace the volume's, around the volume's own BPB — what
    /// the SYSLINUX installer does. `None`: code that halts.
    pub boot_code: Option<[u8; 512]>,
}

const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;
/// Fewer clusters than this and firmware takes the volume for FAT16.
const MIN_CLUSTERS: u64 = 65525;
/// The largest cluster count whose numbers stay below the reserved values.
const MAX_CLUSTERS: u64 = 0x0FFF_FFF5;
/// Sectors per cluster by volume size: `(up to this many sectors, spc)`
/// (260 MiB, 8 GiB, 16 GiB, 32 GiB); larger volumes use 64 (32 KiB).
const CLUSTER_TABLE: [(u64, u64); 4] = [
    (532_480, 1),
    (16_777_216, 8),
    (33_554_432, 16),
    (67_108_864, 32),
];
const END_OF_CHAIN: u32 = 0x0FFF_FFFF;
/// A directory may hold at most this many 32-byte entries.
const MAX_DIR_ENTRIES: u64 = 65536;
const ATTR_DIR: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;
const ATTR_LABEL: u8 = 0x08;
const NO_LABEL: [u8; 11] = *b"NO NAME    ";

/// Write a FAT32 volume holding `files` to `w`; returns the bytes written.
///
/// Parent directories are created as needed. Fails with `InvalidInput` on
/// an empty, `.`/`..` or otherwise invalid path component, a name given
/// twice (ignoring case), a file of 4 GiB or more, a bad label or size, or
/// files that do not fit in `size_bytes` (the message names both sizes).
pub fn write_fat(
    files: &[(&str, &Content)],
    store: &ContentStore,
    opts: &FatOptions,
    w: &mut dyn Write,
) -> io::Result<u64> {
    check_label(&opts.label)?;
    let tree = DirTree::build(files)?;
    let size = match opts.size_bytes {
        Some(size) => {
            let geo = Geometry::for_size(size)?;
            let needed = tree.clusters(geo.cluster_bytes());
            if needed > geo.clusters {
                return Err(input(format!(
                    "fat: the files need at least {} bytes but the volume size is {size} bytes",
                    min_size(&tree)?
                )));
            }
            size
        }
        None => min_size(&tree)?,
    };
    let geo = Geometry::for_size(size)?;
    let mut out = Counter { inner: w, count: 0 };
    write_volume(&tree, store, opts, &geo, &mut out)?;
    Ok(out.count)
}

/// Where the file at `path` lies in the volume [`write_fat`] writes with
/// the same `files` and `opts`: its first sector (from the volume's start)
/// and its sector count (whole clusters). Every file is one contiguous run.
/// `None` if `path` is not one of `files` or is empty.
pub fn file_sectors(
    files: &[(&str, &Content)],
    opts: &FatOptions,
    path: &str,
) -> io::Result<Option<(u64, u64)>> {
    let tree = DirTree::build(files)?;
    let size = match opts.size_bytes {
        Some(size) => size,
        None => min_size(&tree)?,
    };
    let geo = Geometry::for_size(size)?;
    let mut node = 0;
    for name in path.split('/') {
        match &tree.nodes[node] {
            Node::Dir(children) => match children.get(name) {
                Some(&child) => node = child,
                None => return Ok(None),
            },
            Node::File(_) => return Ok(None),
        }
    }
    let cluster = geo.cluster_bytes();
    let mut next = 2;
    for (n, _) in tree.order() {
        let c = tree.node_clusters(n, cluster);
        if n == node {
            if c == 0 || matches!(tree.nodes[n], Node::Dir(_)) {
                return Ok(None);
            }
            let first = geo.reserved + 2 * geo.fat_sectors + (next - 2) * geo.sectors_per_cluster;
            return Ok(Some((first, c * geo.sectors_per_cluster)));
        }
        next += c;
    }
    Ok(None)
}

/// The smallest volume size (a multiple of 1 MiB) that holds `files`.
pub fn min_fat_size(files: &[(&str, &Content)]) -> io::Result<u64> {
    min_size(&DirTree::build(files)?)
}

fn min_size(tree: &DirTree) -> io::Result<u64> {
    // Start at the first size with enough clusters for FAT32 and grow by
    // the shortfall (at least 1 MiB): no size in between can hold it, as
    // larger clusters only add rounding waste.
    let mut size = 33 * MIB;
    loop {
        let geo = Geometry::for_size(size)?;
        let needed = tree.clusters(geo.cluster_bytes());
        if needed <= geo.clusters {
            return Ok(size);
        }
        let short = (needed - geo.clusters) * geo.cluster_bytes();
        size += short.div_ceil(MIB).max(1) * MIB;
    }
}

/// Sizes of the regions of one volume, in sectors.
#[derive(Debug)]
struct Geometry {
    total_sectors: u64,
    sectors_per_cluster: u64,
    reserved: u64,
    fat_sectors: u64,
    clusters: u64,
}

impl Geometry {
    fn for_size(size: u64) -> io::Result<Geometry> {
        if !size.is_multiple_of(SECTOR) {
            return Err(input(format!(
                "fat: volume size {size} is not a multiple of {SECTOR} bytes"
            )));
        }
        let total = size / SECTOR;
        let spc = CLUSTER_TABLE
            .iter()
            .find(|&&(max, _)| total <= max)
            .map_or(64, |&(_, spc)| spc);
        let reserved = spc.max(32);
        let too_small = || {
            input(format!(
                "fat: a FAT32 volume needs at least {} bytes, the volume size is {size} bytes",
                33 * MIB
            ))
        };
        let avail = total.checked_sub(reserved).ok_or_else(too_small)?;
        // Enough FAT entries for every cluster the space could hold, plus
        // the two reserved entries; rounded to whole clusters.
        let fat_sectors = ((avail / spc + 2) * 4).div_ceil(SECTOR).div_ceil(spc) * spc;
        let data = avail.checked_sub(2 * fat_sectors).ok_or_else(too_small)?;
        let clusters = data / spc;
        if clusters < MIN_CLUSTERS {
            return Err(too_small());
        }
        if clusters > MAX_CLUSTERS || total > u64::from(u32::MAX) {
            return Err(input(format!(
                "fat: volume size {size} bytes is too large for FAT32"
            )));
        }
        Ok(Geometry {
            total_sectors: total,
            sectors_per_cluster: spc,
            reserved,
            fat_sectors,
            clusters,
        })
    }

    fn cluster_bytes(&self) -> u64 {
        self.sectors_per_cluster * SECTOR
    }
}

/// One directory or file of the volume.
enum Node<'a> {
    /// Children by name (as given), each with its node index.
    Dir(BTreeMap<String, usize>),
    File(&'a Content),
}

/// The directory tree of the volume; node 0 is the root.
struct DirTree<'a> {
    nodes: Vec<Node<'a>>,
}

impl<'a> DirTree<'a> {
    fn build(files: &[(&str, &'a Content)]) -> io::Result<DirTree<'a>> {
        let mut tree = DirTree {
            nodes: vec![Node::Dir(BTreeMap::new())],
        };
        // Upper-cased names already used in each directory.
        let mut folded: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
        for &(path, content) in files {
            if content.len() > u64::from(u32::MAX) {
                return Err(input(format!(
                    "fat: {path}: {} bytes is too large for FAT (4 GiB - 1 at most)",
                    content.len()
                )));
            }
            let parts: Vec<&str> = path.split('/').collect();
            let mut dir = 0;
            for (i, &name) in parts.iter().enumerate() {
                check_name(path, name)?;
                let last = i + 1 == parts.len();
                let existing = match &tree.nodes[dir] {
                    Node::Dir(children) => children.get(name).copied(),
                    Node::File(_) => unreachable!("only directories are walked"),
                };
                match existing {
                    Some(child) if !last && matches!(tree.nodes[child], Node::Dir(_)) => {
                        dir = child;
                        continue;
                    }
                    Some(_) => {
                        return Err(input(format!("fat: {path}: given twice or under a file")))
                    }
                    None => {}
                }
                if !folded.entry(dir).or_default().insert(name.to_uppercase()) {
                    return Err(input(format!(
                        "fat: {path}: {name:?} clashes with another name that differs only in case"
                    )));
                }
                let node = if last {
                    Node::File(content)
                } else {
                    Node::Dir(BTreeMap::new())
                };
                tree.nodes.push(node);
                let child = tree.nodes.len() - 1;
                if let Node::Dir(children) = &mut tree.nodes[dir] {
                    children.insert(name.to_string(), child);
                }
                dir = child;
            }
        }
        for node in &tree.nodes {
            if let Node::Dir(children) = node {
                let entries: u64 = 2 + children.keys().map(|n| entry_count(n)).sum::<u64>();
                if entries > MAX_DIR_ENTRIES {
                    return Err(input(format!(
                        "fat: a directory with {} names is too large for FAT",
                        children.len()
                    )));
                }
            }
        }
        Ok(tree)
    }

    /// `(node, parent)` in allocation order: a pre-order walk from the
    /// root, which is its own parent.
    fn order(&self) -> Vec<(usize, usize)> {
        let mut order = Vec::with_capacity(self.nodes.len());
        let mut stack = vec![(0, 0)];
        while let Some((n, parent)) = stack.pop() {
            order.push((n, parent));
            if let Node::Dir(children) = &self.nodes[n] {
                stack.extend(children.values().rev().map(|&c| (c, n)));
            }
        }
        order
    }

    /// The bytes node `n` occupies in the data region, before padding.
    fn byte_len(&self, n: usize) -> u64 {
        match &self.nodes[n] {
            // "." and ".." (kept for the root too, as room for the label).
            Node::Dir(children) => 32 * (2 + children.keys().map(|n| entry_count(n)).sum::<u64>()),
            Node::File(content) => content.len(),
        }
    }

    /// Clusters node `n` takes: at least one for a directory, none for an
    /// empty file.
    fn node_clusters(&self, n: usize, cluster: u64) -> u64 {
        let c = self.byte_len(n).div_ceil(cluster);
        match self.nodes[n] {
            Node::Dir(_) => c.max(1),
            Node::File(_) => c,
        }
    }

    fn clusters(&self, cluster: u64) -> u64 {
        (0..self.nodes.len())
            .map(|n| self.node_clusters(n, cluster))
            .sum()
    }
}

fn write_volume(
    tree: &DirTree,
    store: &ContentStore,
    opts: &FatOptions,
    geo: &Geometry,
    w: &mut dyn Write,
) -> io::Result<()> {
    let cluster = geo.cluster_bytes();
    let order = tree.order();
    // First cluster of every node (0 for an empty file) and each chain's end.
    let mut first = vec![0u32; tree.nodes.len()];
    let mut ends = BTreeSet::new();
    let mut next: u64 = 2;
    for &(n, _) in &order {
        let c = tree.node_clusters(n, cluster);
        if c > 0 {
            first[n] = next as u32;
            next += c;
            ends.insert((next - 1) as u32);
        }
    }
    let used = next - 2;

    let boot = boot_sector(opts, geo);
    let info = fs_info(geo.clusters - used, next as u32);
    let mut reserved = vec![0u8; (geo.reserved * SECTOR) as usize];
    for (sector, bytes) in [(0, &boot), (1, &info), (6, &boot), (7, &info)] {
        reserved[sector * 512..][..512].copy_from_slice(bytes);
    }
    w.write_all(&reserved)?;

    let fat = fat_table(geo, next as u32, &ends);
    w.write_all(&fat)?;
    w.write_all(&fat)?;

    let stamp = stamp(opts.epoch);
    for &(n, parent) in &order {
        let len = match &tree.nodes[n] {
            Node::Dir(children) => {
                let bytes = dir_bytes(tree, n, parent, children, &first, &opts.label, stamp);
                w.write_all(&bytes)?;
                bytes.len() as u64
            }
            Node::File(content) => {
                store.copy_to(content, w)?;
                content.len()
            }
        };
        let padded = tree.node_clusters(n, cluster) * cluster;
        write_zeros(w, padded - len)?;
    }
    let written = geo.reserved + 2 * geo.fat_sectors + used * geo.sectors_per_cluster;
    write_zeros(w, (geo.total_sectors - written) * SECTOR)
}

fn boot_sector(opts: &FatOptions, geo: &Geometry) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[0..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
    b[3..11].copy_from_slice(b"MSWIN4.1");
    put16(&mut b, 11, SECTOR as u16);
    b[13] = geo.sectors_per_cluster as u8;
    put16(&mut b, 14, geo.reserved as u16);
    b[16] = 2; // FATs
    b[21] = 0xF8; // media: fixed disk
                  // A nominal 64-head, 32-sector geometry: volumes of whole MiB are then
                  // whole cylinders, which mtools checks.
    put16(&mut b, 24, 32); // sectors per track
    put16(&mut b, 26, 64); // heads
    put32(&mut b, 28, opts.hidden_sectors);
    put32(&mut b, 32, geo.total_sectors as u32);
    put32(&mut b, 36, geo.fat_sectors as u32);
    put32(&mut b, 44, 2); // root directory cluster
    put16(&mut b, 48, 1); // FSInfo sector
    put16(&mut b, 50, 6); // backup boot sector
    b[64] = 0x80; // drive number
    b[66] = 0x29; // extended boot signature
    put32(&mut b, 67, opts.volume_id);
    b[71..82].copy_from_slice(&opts.label);
    b[82..90].copy_from_slice(b"FAT32   ");
    match &opts.boot_code {
        Some(code) => {
            b[0..3].copy_from_slice(&code[0..3]);
            b[90..510].copy_from_slice(&code[90..510]);
        }
        // Boot code for anyone who jumps here: cli; hlt; jmp back to hlt.
        None => b[90..94].copy_from_slice(&[0xFA, 0xF4, 0xEB, 0xFD]),
    }
    b[510] = 0x55;
    b[511] = 0xAA;
    b
}

fn fs_info(free: u64, next_free: u32) -> [u8; 512] {
    let mut b = [0u8; 512];
    put32(&mut b, 0, 0x4161_5252);
    put32(&mut b, 484, 0x6141_7272);
    put32(&mut b, 488, free as u32);
    put32(&mut b, 492, next_free);
    put32(&mut b, 508, 0xAA55_0000);
    b
}

/// One FAT: the media and clean-shutdown entries, then a chain per node.
fn fat_table(geo: &Geometry, next: u32, ends: &BTreeSet<u32>) -> Vec<u8> {
    let mut fat = vec![0u8; (geo.fat_sectors * SECTOR) as usize];
    put32(&mut fat, 0, 0x0FFF_FFF8);
    put32(&mut fat, 4, END_OF_CHAIN);
    for c in 2..next {
        let value = if ends.contains(&c) {
            END_OF_CHAIN
        } else {
            c + 1
        };
        put32(&mut fat, 4 * c as usize, value);
    }
    fat
}

/// The entries of directory `n`: `.` and `..` (or the volume label for
/// the root), then each child with its long-name entries.
fn dir_bytes(
    tree: &DirTree,
    n: usize,
    parent: usize,
    children: &BTreeMap<String, usize>,
    first: &[u32],
    label: &[u8; 11],
    stamp: Stamp,
) -> Vec<u8> {
    let mut out = Vec::new();
    if n == 0 {
        if *label != NO_LABEL {
            out.extend(short_entry(label, ATTR_LABEL, 0, 0, stamp));
        }
    } else {
        // ".." of a directory in the root points at cluster 0, not 2.
        let up = if parent == 0 { 0 } else { first[parent] };
        out.extend(short_entry(b".          ", ATTR_DIR, first[n], 0, stamp));
        out.extend(short_entry(b"..         ", ATTR_DIR, up, 0, stamp));
    }
    let shorts = short_names(children.keys().map(String::as_str));
    for ((name, &child), short) in children.iter().zip(shorts) {
        let (attr, size) = match tree.nodes[child] {
            Node::Dir(_) => (ATTR_DIR, 0),
            // Checked against u32::MAX when the tree was built.
            Node::File(content) => (ATTR_ARCHIVE, content.len() as u32),
        };
        if plain_short(name).is_none() {
            out.extend(lfn_entries(name, &short));
        }
        out.extend(short_entry(&short, attr, first[child], size, stamp));
    }
    out
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_follows_the_cluster_table() {
        let small = Geometry::for_size(33 * MIB).unwrap();
        assert_eq!(small.sectors_per_cluster, 1);
        assert!(small.clusters >= MIN_CLUSTERS);
        assert!(Geometry::for_size(32 * MIB).is_err());
        let big = Geometry::for_size(1 << 30).unwrap();
        assert_eq!(big.sectors_per_cluster, 8);
        assert_eq!((big.reserved + 2 * big.fat_sectors) % 8, 0);
        assert!(big.fat_sectors * 128 >= big.clusters + 2);
        assert!(Geometry::for_size(33 * MIB + 1).is_err());
    }

    #[test]
    fn bad_names_and_clashes_are_refused() {
        let store = ContentStore::new().unwrap();
        let c = store.add(b"x").unwrap();
        for path in [
            "", "a//b", "a/./b", "a/../b", "a:b", "dot.", "trail ", "a\\b",
        ] {
            assert!(DirTree::build(&[(path, &c)]).is_err(), "{path:?}");
        }
        for other in ["a/b", "A/b", "a/B", "a", "a/b/c"] {
            assert!(
                DirTree::build(&[("a/b", &c), (other, &c)]).is_err(),
                "{other}"
            );
        }
        assert!(DirTree::build(&[("a/b", &c), ("a/c", &c)]).is_ok());
    }
}
