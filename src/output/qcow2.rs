//! qcow2 (version 3) images over a raw disk image, written in-process.
//!
//! Takes a raw image (`Read + Seek`, read from its start, sequentially, one
//! 64 KiB cluster at a time; never held in memory) and its length; gives a
//! qcow2 file whose virtual size is that length. All-zero clusters are left
//! unallocated (they read as zeros: there is no backing file), nothing is
//! compressed, and every header field is fixed or derived from the input,
//! so the bytes are a function of the raw image alone.
//!
//! This writer is hand-written from the qcow2 specification (QEMU's
//! `docs/interop/qcow2.txt`): LinuxKit shells out to `qemu-img`, and no
//! maintained crate writes qcow2 deterministically. Version 3 (qemu's
//! `compat=1.1`, the `qemu-img create` default since QEMU 1.7) is chosen
//! over version 2 because it carries an explicit refcount order and the
//! feature bitmaps; it sets none of them (no lazy refcounts, not dirty).
//!
//! Layout: cluster 0 holds the header (104 bytes, then the end-of-extensions
//! marker). Data clusters follow in guest order; after the data of each
//! 512 MiB span comes its L2 table (only if the span has data). Then the L1
//! table, the refcount table and the refcount blocks (16-bit refcounts,
//! order 4). Every cluster of the file is used exactly once, so every
//! refcount is 1 and every L1/L2 entry carries the COPIED flag.
//!
//! The raw-image helpers here ([`RawReader`], [`is_zero`], [`DiskError`])
//! are shared with the VHD and VMDK writers.

use std::io::{self, Read, Seek, SeekFrom, Write};

/// Cluster size in bytes (`cluster_bits` = 16).
pub const CLUSTER_SIZE: u64 = 1 << CLUSTER_BITS;
const CLUSTER_BITS: u32 = 16;
/// 64-bit entries per L2 table (one cluster).
const L2_ENTRIES: u64 = CLUSTER_SIZE / 8;
/// 16-bit refcounts per refcount block (one cluster).
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER_SIZE / 2;
/// QEMU refuses L1 tables larger than 32 MiB.
const MAX_L1_ENTRIES: u64 = (32 << 20) / 8;
/// L1/L2 flag: the cluster's refcount is exactly one.
const COPIED: u64 = 1 << 63;
/// Header length for version 3 without the optional compression-type field.
const HEADER_LEN: u32 = 104;

/// Why a virtual disk could not be written from a raw image.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("raw image ended at byte {at}, before its stated length of {len} bytes")]
    ShortRaw { at: u64, len: u64 },
    #[error("raw image of {len} bytes is larger than the {format} limit of {max} bytes")]
    TooLarge {
        format: &'static str,
        len: u64,
        max: u64,
    },
}

impl From<DiskError> for io::Error {
    fn from(err: DiskError) -> io::Error {
        let kind = match err {
            DiskError::ShortRaw { .. } => io::ErrorKind::UnexpectedEof,
            DiskError::TooLarge { .. } => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, err)
    }
}

/// Reads a raw image of a stated length from its start, in fixed-size
/// chunks; bytes past the length read as zeros.
pub(crate) struct RawReader<'a, R> {
    raw: &'a mut R,
    len: u64,
    pos: u64,
}

impl<'a, R: Read + Seek> RawReader<'a, R> {
    /// Seeks `raw` to its start.
    pub(crate) fn new(raw: &'a mut R, len: u64) -> io::Result<RawReader<'a, R>> {
        raw.seek(SeekFrom::Start(0))?;
        Ok(RawReader { raw, len, pos: 0 })
    }

    /// Fills `buf` with the next `buf.len()` bytes of the image, zeros past
    /// its length. Fails if the image ends before its stated length.
    pub(crate) fn fill(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let left = self.len - self.pos;
        let want = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        let mut got = 0;
        while got < want {
            match self.raw.read(&mut buf[got..want]) {
                Ok(0) => {
                    return Err(DiskError::ShortRaw {
                        at: self.pos + got as u64,
                        len: self.len,
                    }
                    .into())
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf[want..].fill(0);
        self.pos += want as u64;
        Ok(())
    }
}

/// Whether every byte of `buf` is zero.
pub(crate) fn is_zero(buf: &[u8]) -> bool {
    // OR-folding fixed chunks lets the compiler vectorise the inner loop.
    buf.chunks(64)
        .all(|chunk| chunk.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// Appends `entries` as big-endian u64s to `out`.
fn put_be64(out: &mut Vec<u8>, entries: &[u64]) {
    for e in entries {
        out.extend_from_slice(&e.to_be_bytes());
    }
}

/// Writes `bytes` padded with zeros to a whole number of clusters; gives
/// the number of clusters written.
fn write_clusters(w: &mut impl Write, mut bytes: Vec<u8>) -> io::Result<u64> {
    let clusters = (bytes.len() as u64).div_ceil(CLUSTER_SIZE).max(1);
    bytes.resize((clusters * CLUSTER_SIZE) as usize, 0);
    w.write_all(&bytes)?;
    Ok(clusters)
}

/// The refcount table and block counts (in clusters) for a file whose
/// other structures take `used` clusters: enough blocks to count every
/// cluster of the file, themselves and the table included.
pub(crate) fn refcount_layout(used: u64) -> (u64, u64) {
    let (mut table, mut blocks) = (1u64, 1u64);
    loop {
        let need_blocks = (used + table + blocks).div_ceil(REFCOUNTS_PER_BLOCK);
        let need_table = (need_blocks * 8).div_ceil(CLUSTER_SIZE);
        if need_blocks <= blocks && need_table <= table {
            return (table, blocks);
        }
        blocks = blocks.max(need_blocks);
        table = table.max(need_table);
    }
}

/// The qcow2 header fields that depend on the layout.
struct Header {
    size: u64,
    l1_size: u32,
    l1_offset: u64,
    refcount_table_offset: u64,
    refcount_table_clusters: u32,
}

impl Header {
    /// The header cluster's meaningful prefix: the version 3 header and
    /// the end-of-extensions marker (type 0, length 0).
    fn bytes(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(HEADER_LEN as usize + 8);
        h.extend_from_slice(b"QFI\xfb");
        h.extend_from_slice(&3u32.to_be_bytes()); // version
        h.extend_from_slice(&0u64.to_be_bytes()); // backing_file_offset
        h.extend_from_slice(&0u32.to_be_bytes()); // backing_file_size
        h.extend_from_slice(&CLUSTER_BITS.to_be_bytes());
        h.extend_from_slice(&self.size.to_be_bytes());
        h.extend_from_slice(&0u32.to_be_bytes()); // crypt_method: none
        h.extend_from_slice(&self.l1_size.to_be_bytes());
        h.extend_from_slice(&self.l1_offset.to_be_bytes());
        h.extend_from_slice(&self.refcount_table_offset.to_be_bytes());
        h.extend_from_slice(&self.refcount_table_clusters.to_be_bytes());
        h.extend_from_slice(&0u32.to_be_bytes()); // nb_snapshots
        h.extend_from_slice(&0u64.to_be_bytes()); // snapshots_offset
        h.extend_from_slice(&0u64.to_be_bytes()); // incompatible_features
        h.extend_from_slice(&0u64.to_be_bytes()); // compatible_features
        h.extend_from_slice(&0u64.to_be_bytes()); // autoclear_features
        h.extend_from_slice(&4u32.to_be_bytes()); // refcount_order: 16 bits
        h.extend_from_slice(&HEADER_LEN.to_be_bytes());
        h.extend_from_slice(&[0; 8]); // end of header extensions
        h
    }
}

/// Writes the raw image `raw` of `len` bytes as a qcow2 version 3 image to
/// `w`, starting at `w`'s current position (offsets inside the image are
/// relative to it); gives the number of bytes written, a multiple of the
/// 64 KiB cluster size. `w` is left at the end of the image.
pub fn write_qcow2(
    raw: &mut (impl Read + Seek),
    len: u64,
    w: &mut (impl Write + Seek),
) -> io::Result<u64> {
    let clusters = len.div_ceil(CLUSTER_SIZE);
    let l1_size = clusters.div_ceil(L2_ENTRIES);
    if l1_size > MAX_L1_ENTRIES {
        return Err(DiskError::TooLarge {
            format: "qcow2",
            len,
            max: MAX_L1_ENTRIES * L2_ENTRIES * CLUSTER_SIZE,
        }
        .into());
    }
    let mut reader = RawReader::new(raw, len)?;
    let base = w.stream_position()?;
    let mut buf = vec![0u8; CLUSTER_SIZE as usize];
    w.write_all(&buf)?; // the header cluster, written last
    let mut next: u64 = 1; // the next free cluster
    let mut l1 = vec![0u64; l1_size as usize];
    let mut l2 = vec![0u64; L2_ENTRIES as usize];
    for (index, l1_entry) in l1.iter_mut().enumerate() {
        let first = index as u64 * L2_ENTRIES;
        let end = (first + L2_ENTRIES).min(clusters);
        l2.fill(0);
        let mut used = false;
        for (slot, _) in l2.iter_mut().zip(first..end) {
            reader.fill(&mut buf)?;
            if is_zero(&buf) {
                continue;
            }
            w.write_all(&buf)?;
            *slot = (next * CLUSTER_SIZE) | COPIED;
            next += 1;
            used = true;
        }
        if used {
            let mut table = Vec::with_capacity(CLUSTER_SIZE as usize);
            put_be64(&mut table, &l2);
            w.write_all(&table)?;
            *l1_entry = (next * CLUSTER_SIZE) | COPIED;
            next += 1;
        }
    }

    let l1_offset = next * CLUSTER_SIZE;
    let mut table = Vec::new();
    put_be64(&mut table, &l1);
    next += write_clusters(w, table)?;

    let (table_clusters, blocks) = refcount_layout(next);
    let refcount_table_offset = next * CLUSTER_SIZE;
    let first_block = next + table_clusters;
    let total = first_block + blocks;
    let offsets: Vec<u64> = (first_block..total).map(|c| c * CLUSTER_SIZE).collect();
    let mut table = Vec::new();
    put_be64(&mut table, &offsets);
    write_clusters(w, table)?;
    let mut refcounts = Vec::with_capacity(CLUSTER_SIZE as usize);
    for block in 0..blocks {
        refcounts.clear();
        for cluster in block * REFCOUNTS_PER_BLOCK..(block + 1) * REFCOUNTS_PER_BLOCK {
            let count: u16 = if cluster < total { 1 } else { 0 };
            refcounts.extend_from_slice(&count.to_be_bytes());
        }
        w.write_all(&refcounts)?;
    }

    let header = Header {
        size: len,
        // Both fit: l1_size is bounded above, and the refcount table needs
        // 8 bytes per 2 GiB of file.
        l1_size: u32::try_from(l1_size).map_err(io::Error::other)?,
        l1_offset,
        refcount_table_offset,
        refcount_table_clusters: u32::try_from(table_clusters).map_err(io::Error::other)?,
    };
    w.seek(SeekFrom::Start(base))?;
    w.write_all(&header.bytes())?;
    let bytes = total * CLUSTER_SIZE;
    w.seek(SeekFrom::Start(base + bytes))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn be64(b: &[u8], at: usize) -> u64 {
        u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
    }

    fn image(raw: &[u8]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let n = write_qcow2(&mut Cursor::new(raw), raw.len() as u64, &mut out).unwrap();
        assert_eq!(n, out.get_ref().len() as u64);
        out.into_inner()
    }

    #[test]
    fn refcount_layout_counts_itself() {
        assert_eq!(refcount_layout(3), (1, 1));
        // 32768 clusters fill one block; the table and block spill over.
        assert_eq!(refcount_layout(REFCOUNTS_PER_BLOCK - 2), (1, 1));
        assert_eq!(refcount_layout(REFCOUNTS_PER_BLOCK - 1), (1, 2));
        let (table, blocks) = refcount_layout(10_000_000);
        assert!((10_000_000 + table + blocks) <= blocks * REFCOUNTS_PER_BLOCK);
        assert!(blocks * 8 <= table * CLUSTER_SIZE);
    }

    #[test]
    fn all_zero_image_stores_no_data() {
        let q = image(&vec![0u8; 3 << 20]);
        // Header, L1, refcount table, one refcount block.
        assert_eq!(q.len() as u64, 4 * CLUSTER_SIZE);
        assert_eq!(&q[..4], b"QFI\xfb");
        assert_eq!(be32(&q, 4), 3);
        assert_eq!(be64(&q, 24), 3 << 20);
        assert_eq!(be32(&q, 36), 1); // l1_size
        let l1 = be64(&q, 40) as usize;
        assert_eq!(be64(&q, l1), 0);
        assert_eq!(be32(&q, 96), 4); // refcount order
    }

    #[test]
    fn data_cluster_is_mapped() {
        let mut raw = vec![0u8; 1 << 20];
        raw[5 * CLUSTER_SIZE as usize + 7] = 0xAB;
        let q = image(&raw);
        let l1 = be64(&q, 40) as usize;
        let l2 = (be64(&q, l1) & !COPIED) as usize;
        let data = (be64(&q, l2 + 5 * 8) & !COPIED) as usize;
        assert_eq!(q[data + 7], 0xAB);
        assert_eq!(be64(&q, l2), 0);
        // Every cluster is counted exactly once.
        let rt = be64(&q, 48) as usize;
        let block = be64(&q, rt) as usize;
        let clusters = q.len() / CLUSTER_SIZE as usize;
        for c in 0..clusters + 2 {
            let want = u16::from(c < clusters);
            assert_eq!(q[block + 2 * c..block + 2 * c + 2], want.to_be_bytes());
        }
    }

    #[test]
    fn short_raw_is_an_error() {
        let mut out = Cursor::new(Vec::new());
        let err = write_qcow2(&mut Cursor::new(vec![1u8; 100]), 200, &mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            err.to_string(),
            "raw image ended at byte 100, before its stated length of 200 bytes"
        );
    }

    #[test]
    fn unaligned_length_pads_last_cluster() {
        let raw = vec![0x5Au8; 1000];
        let q = image(&raw);
        assert_eq!(be64(&q, 24), 1000);
        let l1 = be64(&q, 40) as usize;
        let l2 = (be64(&q, l1) & !COPIED) as usize;
        let data = (be64(&q, l2) & !COPIED) as usize;
        assert_eq!(&q[data..data + 1000], &raw[..]);
        assert!(is_zero(&q[data + 1000..data + CLUSTER_SIZE as usize]));
    }
}
