//! VHD (Virtual PC / Hyper-V / Azure) images over a raw disk image,
//! fixed and dynamic, written in-process.
//!
//! Takes a raw image (`Read + Seek`, read from its start, sequentially, in
//! 1 MiB or 2 MiB chunks; never held in memory), its length and the
//! `SOURCE_DATE_EPOCH`; gives a VHD whose bytes are a function of those
//! alone. It never reads the clock and uses no randomness: the footer's
//! timestamp is the epoch (counted from 2000-01-01, clamped to the field),
//! and its unique id is a SHA-256 of the epoch, the size and the non-zero
//! content (formatted as an RFC 9562 version 8 UUID).
//!
//! Hand-written from Microsoft's "Virtual Hard Disk Image Format
//! Specification" 1.0: LinuxKit shells out to `qemu-img`, and no maintained
//! crate writes VHDs deterministically.
//!
//! Size: readers disagree on where a VHD's size comes from (Hyper-V and
//! Azure read the footer's current size; Virtual PC and QEMU, for creator
//! applications they do not know, read the CHS geometry), and Azure
//! requires a whole number of MiB. So the virtual size is the smallest
//! whole number of MiB, at least the raw length, that the specification's
//! geometry algorithm represents exactly (cylinders × heads × sectors ×
//! 512); the raw data is padded with zeros to it. Above the largest CHS
//! geometry (about 127 GiB) the size is the length rounded up to a MiB and
//! the geometry is the maximum, which QEMU reads as "use current size".
//! Creator application `kiln`, version 1.0, host OS `Wi2k` (what QEMU
//! writes, and what Azure accepts).
//!
//! Dynamic layout: footer copy, dynamic header, BAT at byte 1536, then
//! 2 MiB blocks in guest order (each a 512-byte all-ones sector bitmap and
//! the data), then the footer. All-zero blocks are not stored (BAT entry
//! `0xFFFFFFFF`).

use std::io::{self, Read, Seek, SeekFrom, Write};

use sha2::{Digest, Sha256};

use super::qcow2::{is_zero, DiskError, RawReader};

/// Bytes per dynamic-disk block.
pub const BLOCK_SIZE: u64 = 2 << 20;
/// The largest virtual size written (Hyper-V's limit for VHD).
pub const MAX_SIZE: u64 = 2040 << 30;
const MIB: u64 = 1 << 20;
const SECTOR: u64 = 512;
/// Unix time of 2000-01-01T00:00:00Z, the VHD timestamp origin.
const VHD_EPOCH: i64 = 946_684_800;
/// The largest CHS geometry, in sectors.
const MAX_CHS_SECTORS: u64 = 65535 * 16 * 255;
/// BAT offset: after the footer copy and the 1024-byte dynamic header.
const BAT_OFFSET: u64 = 1536;
const UNUSED: u32 = 0xFFFF_FFFF;

/// A CHS disk geometry as stored in the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub cylinders: u16,
    pub heads: u8,
    pub sectors: u8,
}

impl Geometry {
    /// The geometry the VHD specification's algorithm gives for a disk of
    /// `total` sectors.
    pub fn for_sectors(total: u64) -> Geometry {
        let total = total.min(MAX_CHS_SECTORS);
        let (mut spt, mut heads, mut cth);
        if total >= 65535 * 16 * 63 {
            spt = 255;
            heads = 16;
            cth = total / spt;
        } else {
            spt = 17;
            cth = total / spt;
            heads = cth.div_ceil(1024).max(4);
            if cth >= heads * 1024 || heads > 16 {
                spt = 31;
                heads = 16;
                cth = total / spt;
            }
            if cth >= heads * 1024 {
                spt = 63;
                heads = 16;
                cth = total / spt;
            }
        }
        // Each value is bounded by the clamp above.
        Geometry {
            cylinders: (cth / heads).min(65535) as u16,
            heads: heads as u8,
            sectors: spt as u8,
        }
    }

    /// Cylinders × heads × sectors.
    pub fn total_sectors(self) -> u64 {
        u64::from(self.cylinders) * u64::from(self.heads) * u64::from(self.sectors)
    }
}

/// The virtual size and geometry of a VHD holding `len` raw bytes (see the
/// module doc for the rule).
pub fn disk_size(len: u64) -> io::Result<(u64, Geometry)> {
    if len > MAX_SIZE {
        return Err(DiskError::TooLarge {
            format: "vhd",
            len,
            max: MAX_SIZE,
        }
        .into());
    }
    let mut size = len.div_ceil(MIB).max(1) * MIB;
    loop {
        let sectors = size / SECTOR;
        if sectors >= MAX_CHS_SECTORS {
            let size = len.div_ceil(MIB).max(1) * MIB;
            return Ok((size, Geometry::for_sectors(MAX_CHS_SECTORS)));
        }
        let geometry = Geometry::for_sectors(sectors);
        if geometry.total_sectors() == sectors {
            return Ok((size, geometry));
        }
        size += MIB;
    }
}

#[derive(Clone, Copy)]
enum DiskType {
    Fixed = 2,
    Dynamic = 3,
}

/// The one's complement of the byte sum (the checksum field must be zero).
fn checksum(bytes: &[u8]) -> u32 {
    !bytes
        .iter()
        .fold(0u32, |acc, &b| acc.wrapping_add(u32::from(b)))
}

/// A hasher over the identifying inputs; non-zero chunks are added with
/// their index, so the id does not depend on how zeros are stored.
fn id_hasher(kind: DiskType, epoch: i64, size: u64) -> Sha256 {
    let mut h = Sha256::new();
    h.update(b"kiln vhd\0");
    h.update([kind as u8]);
    h.update(epoch.to_be_bytes());
    h.update(size.to_be_bytes());
    h
}

fn unique_id(h: Sha256) -> [u8; 16] {
    let digest = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id[6] = (id[6] & 0x0f) | 0x80; // version 8: custom
    id[8] = (id[8] & 0x3f) | 0x80; // RFC 9562 variant
    id
}

/// The 512-byte hard disk footer.
fn footer(kind: DiskType, size: u64, geometry: Geometry, epoch: i64, id: [u8; 16]) -> [u8; 512] {
    let data_offset = match kind {
        DiskType::Fixed => u64::MAX,
        DiskType::Dynamic => SECTOR,
    };
    let timestamp = (epoch.saturating_sub(VHD_EPOCH)).clamp(0, i64::from(u32::MAX)) as u32;
    let mut f = Vec::with_capacity(512);
    f.extend_from_slice(b"conectix");
    f.extend_from_slice(&2u32.to_be_bytes()); // features: reserved bit
    f.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // format version 1.0
    f.extend_from_slice(&data_offset.to_be_bytes());
    f.extend_from_slice(&timestamp.to_be_bytes());
    f.extend_from_slice(b"kiln");
    f.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // creator version
    f.extend_from_slice(b"Wi2k");
    f.extend_from_slice(&size.to_be_bytes()); // original size
    f.extend_from_slice(&size.to_be_bytes()); // current size
    f.extend_from_slice(&geometry.cylinders.to_be_bytes());
    f.push(geometry.heads);
    f.push(geometry.sectors);
    f.extend_from_slice(&(kind as u32).to_be_bytes());
    f.extend_from_slice(&[0; 4]); // checksum, below
    f.extend_from_slice(&id);
    f.push(0); // saved state
    let mut out = [0u8; 512];
    out[..f.len()].copy_from_slice(&f);
    let sum = checksum(&out);
    out[64..68].copy_from_slice(&sum.to_be_bytes());
    out
}

/// The 1024-byte dynamic disk header.
fn dynamic_header(entries: u32) -> [u8; 1024] {
    let mut h = [0u8; 1024];
    h[..8].copy_from_slice(b"cxsparse");
    h[8..16].copy_from_slice(&u64::MAX.to_be_bytes()); // data offset: unused
    h[16..24].copy_from_slice(&BAT_OFFSET.to_be_bytes());
    h[24..28].copy_from_slice(&0x0001_0000u32.to_be_bytes()); // header version
    h[28..32].copy_from_slice(&entries.to_be_bytes());
    h[32..36].copy_from_slice(&(BLOCK_SIZE as u32).to_be_bytes());
    // No parent: the parent id, time, name and locators stay zero.
    let sum = checksum(&h);
    h[36..40].copy_from_slice(&sum.to_be_bytes());
    h
}

/// Writes the raw image `raw` of `len` bytes as a fixed VHD to `w`: the
/// data padded with zeros to the virtual size ([`disk_size`]), then the
/// footer. Gives the number of bytes written.
pub fn write_vhd_fixed(
    raw: &mut (impl Read + Seek),
    len: u64,
    epoch: i64,
    w: &mut impl Write,
) -> io::Result<u64> {
    let (size, geometry) = disk_size(len)?;
    let mut reader = RawReader::new(raw, len)?;
    let mut hasher = id_hasher(DiskType::Fixed, epoch, size);
    let mut buf = vec![0u8; MIB as usize];
    for index in 0..size / MIB {
        reader.fill(&mut buf)?;
        if !is_zero(&buf) {
            hasher.update(index.to_be_bytes());
            hasher.update(&buf);
        }
        w.write_all(&buf)?;
    }
    let id = unique_id(hasher);
    w.write_all(&footer(DiskType::Fixed, size, geometry, epoch, id))?;
    Ok(size + SECTOR)
}

/// Writes the raw image `raw` of `len` bytes as a dynamic VHD to `w`,
/// starting at `w`'s current position (offsets inside the image are
/// relative to it); all-zero 2 MiB blocks are not stored. Gives the number
/// of bytes written; `w` is left at the end of the image.
pub fn write_vhd_dynamic(
    raw: &mut (impl Read + Seek),
    len: u64,
    epoch: i64,
    w: &mut (impl Write + Seek),
) -> io::Result<u64> {
    let (size, geometry) = disk_size(len)?;
    let blocks = size.div_ceil(BLOCK_SIZE);
    let mut reader = RawReader::new(raw, len)?;
    let mut hasher = id_hasher(DiskType::Dynamic, epoch, size);
    let base = w.stream_position()?;
    let bat_bytes = (blocks * 4).div_ceil(SECTOR) * SECTOR;
    let mut pos = BAT_OFFSET + bat_bytes;
    w.write_all(&vec![0u8; pos as usize])?; // footer copy, header, BAT: last

    let mut bat = vec![UNUSED; blocks as usize];
    let mut buf = vec![0u8; BLOCK_SIZE as usize];
    let bitmap = [0xFFu8; SECTOR as usize];
    for (index, entry) in bat.iter_mut().enumerate() {
        reader.fill(&mut buf)?;
        if is_zero(&buf) {
            continue;
        }
        hasher.update((index as u64).to_be_bytes());
        hasher.update(&buf);
        // Below MAX_SIZE the file stays far under 2^32 sectors.
        *entry = u32::try_from(pos / SECTOR).map_err(io::Error::other)?;
        w.write_all(&bitmap)?;
        w.write_all(&buf)?;
        pos += SECTOR + BLOCK_SIZE;
    }
    let id = unique_id(hasher);
    let foot = footer(DiskType::Dynamic, size, geometry, epoch, id);
    w.write_all(&foot)?;
    let total = pos + SECTOR;

    let mut head = Vec::with_capacity((BAT_OFFSET + bat_bytes) as usize);
    head.extend_from_slice(&foot);
    head.extend_from_slice(&dynamic_header(
        u32::try_from(blocks).map_err(io::Error::other)?,
    ));
    for entry in &bat {
        head.extend_from_slice(&entry.to_be_bytes());
    }
    head.resize((BAT_OFFSET + bat_bytes) as usize, 0xFF);
    w.seek(SeekFrom::Start(base))?;
    w.write_all(&head)?;
    w.seek(SeekFrom::Start(base + total))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn geometry_follows_the_specification() {
        // 17 MiB: 512 cylinders, 4 heads, 17 sectors, exactly.
        let g = Geometry::for_sectors(34816);
        assert_eq!((g.cylinders, g.heads, g.sectors), (512, 4, 17));
        let g = Geometry::for_sectors(MAX_CHS_SECTORS + 1);
        assert_eq!((g.cylinders, g.heads, g.sectors), (65535, 16, 255));
    }

    #[test]
    fn size_is_whole_mib_and_exact_chs() {
        for len in [1u64, 8 << 20, 100 << 20, (1 << 30) + 1, 40 << 30] {
            let (size, g) = disk_size(len).unwrap();
            assert!(size >= len, "{len}");
            assert_eq!(size % MIB, 0, "{len}");
            assert_eq!(g.total_sectors() * SECTOR, size, "{len}");
        }
        assert_eq!(disk_size(8 << 20).unwrap().0, 17 << 20);
        let (size, g) = disk_size(200 << 30).unwrap();
        assert_eq!((size, g.cylinders), (200 << 30, 65535));
        assert!(disk_size(MAX_SIZE + 1).is_err());
    }

    #[test]
    fn fixed_footer_is_checksummed_and_dated() {
        let raw = vec![7u8; 4096];
        let mut out = Vec::new();
        let n = write_vhd_fixed(&mut Cursor::new(&raw), 4096, VHD_EPOCH + 60, &mut out).unwrap();
        assert_eq!(n, out.len() as u64);
        let f = &out[out.len() - 512..];
        assert_eq!(&f[..8], b"conectix");
        assert_eq!(f[24..28], 60u32.to_be_bytes());
        assert_eq!(f[60..64], 2u32.to_be_bytes());
        let mut zeroed = f.to_vec();
        zeroed[64..68].fill(0);
        assert_eq!(f[64..68], checksum(&zeroed).to_be_bytes());
        assert_eq!(&out[..4096], &raw[..]);
        // Before 2000 the timestamp clamps to zero, and the id changes.
        let mut old = Vec::new();
        write_vhd_fixed(&mut Cursor::new(&raw), 4096, 0, &mut old).unwrap();
        let g = &old[old.len() - 512..];
        assert_eq!(g[24..28], [0; 4]);
        assert_ne!(g[68..84], f[68..84]);
    }

    #[test]
    fn dynamic_skips_zero_blocks() {
        let mut raw = vec![0u8; 6 << 20];
        raw[(4 << 20) + 3] = 1;
        let mut out = Cursor::new(Vec::new());
        let n = write_vhd_dynamic(&mut Cursor::new(&raw), raw.len() as u64, 0, &mut out).unwrap();
        let out = out.into_inner();
        assert_eq!(n, out.len() as u64);
        assert_eq!(out[..512], out[out.len() - 512..]);
        assert_eq!(&out[512..520], b"cxsparse");
        let bat = &out[1536..];
        assert_eq!(bat[..8], [0xFF; 8]);
        let sector = u32::from_be_bytes(bat[8..12].try_into().unwrap()) as usize;
        let data = sector * 512 + 512;
        assert_eq!(out[data + 3], 1);
        // One stored block: head, bitmap + block, footer.
        assert_eq!(out.len(), sector * 512 + 512 + (2 << 20) + 512);
    }
}
