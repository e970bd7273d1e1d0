//! streamOptimized VMDK images over a raw disk image, written in-process:
//! the form VMware's OVF/OVA tools and cloud importers (AWS VM Import)
//! expect.
//!
//! Takes a raw image (`Read + Seek`, read from its start, sequentially, one
//! 64 KiB grain at a time; never held in memory) and its length; gives a
//! single-file sparse VMDK whose bytes are a function of the raw image
//! alone. Each non-zero grain is compressed on its own as a zlib stream
//! (flate2 with the pinned zlib-rs backend, level [`LEVEL`]); all-zero
//! grains are not stored. The descriptor's content id (`CID`) is taken from
//! a SHA-256 of the non-zero grains, never from the clock or randomness.
//!
//! Hand-written from VMware's "Virtual Disk Format 5.0" specification:
//! LinuxKit shells out to `qemu-img`, and no maintained crate writes VMDK
//! deterministically.
//!
//! Layout (sectors of 512 bytes): the sparse extent header (version 3,
//! compressed grains and markers, grain directory "at end"), the embedded
//! descriptor at sector 1 (20 sectors reserved), grains from sector 128 on
//! in guest order, each a grain marker (guest sector, compressed length)
//! and its data padded to a sector; after the grains of each 32 MiB span, a
//! grain-table marker and the table (written for every span, even one
//! without data: VMware's own writers leave no directory entry empty, and
//! an empty table costs 2.5 KiB per 32 MiB); then a grain-directory marker and the directory,
//! a footer marker, the header again with the directory's offset, and the
//! end-of-stream marker. The descriptor names the extent `disk.vmdk`
//! (readers of single-file sparse VMDKs use the file itself) and describes
//! an IDE disk, as `qemu-img` does.

use std::io::{self, Read, Seek, SeekFrom, Write};

use flate2::{Compress, Compression, FlushCompress, Status};
use sha2::{Digest, Sha256};

use super::qcow2::{is_zero, DiskError, RawReader};

/// Deflate level for grains: fixed, so the bytes never depend on a default.
pub const LEVEL: u32 = 6;
/// Bytes per grain.
pub const GRAIN_SIZE: u64 = GRAIN_SECTORS * SECTOR;
const SECTOR: u64 = 512;
const GRAIN_SECTORS: u64 = 128;
/// Grain table entries (each table covers 32 MiB).
const GT_ENTRIES: u64 = 512;
const DESCRIPTOR_OFFSET: u64 = 1;
const DESCRIPTOR_SECTORS: u64 = 20;
/// Sectors before the first grain: header and descriptor, one grain.
const OVERHEAD_SECTORS: u64 = 128;
/// Header `gdOffset` meaning "read the footer".
const GD_AT_END: u64 = u64::MAX;
/// Header flags: newline detection, compressed grains, markers.
const FLAGS: u32 = 1 | (1 << 16) | (1 << 17);
/// The largest virtual size written: offsets are 32-bit sector numbers.
pub const MAX_SIZE: u64 = (1 << 41) - GRAIN_SIZE;

const MARKER_EOS: u32 = 0;
const MARKER_GT: u32 = 1;
const MARKER_GD: u32 = 2;
const MARKER_FOOTER: u32 = 3;

/// The 512-byte sparse extent header.
fn header(capacity: u64, gd_offset: u64) -> [u8; 512] {
    let mut h = Vec::with_capacity(512);
    h.extend_from_slice(b"KDMV");
    h.extend_from_slice(&3u32.to_le_bytes()); // version
    h.extend_from_slice(&FLAGS.to_le_bytes());
    h.extend_from_slice(&capacity.to_le_bytes());
    h.extend_from_slice(&GRAIN_SECTORS.to_le_bytes());
    h.extend_from_slice(&DESCRIPTOR_OFFSET.to_le_bytes());
    h.extend_from_slice(&DESCRIPTOR_SECTORS.to_le_bytes());
    h.extend_from_slice(&(GT_ENTRIES as u32).to_le_bytes());
    h.extend_from_slice(&0u64.to_le_bytes()); // no redundant directory
    h.extend_from_slice(&gd_offset.to_le_bytes());
    h.extend_from_slice(&OVERHEAD_SECTORS.to_le_bytes());
    h.push(0); // clean shutdown
    h.extend_from_slice(b"\n \r\n"); // newline-corruption detection
    h.extend_from_slice(&1u16.to_le_bytes()); // compression: deflate
    let mut out = [0u8; 512];
    out[..h.len()].copy_from_slice(&h);
    out
}

/// A metadata marker sector: `sectors` of metadata of `kind` follow.
fn marker(sectors: u64, kind: u32) -> [u8; 512] {
    let mut m = [0u8; 512];
    m[..8].copy_from_slice(&sectors.to_le_bytes());
    m[12..16].copy_from_slice(&kind.to_le_bytes());
    m
}

/// The embedded descriptor, padded to its reserved sectors.
fn descriptor(cid: u32, capacity: u64) -> Vec<u8> {
    let cylinders = (capacity / (16 * 63)).min(16383);
    let text = format!(
        "# Disk DescriptorFile\n\
         version=1\n\
         CID={cid:08x}\n\
         parentCID=ffffffff\n\
         createType=\"streamOptimized\"\n\
         \n\
         # Extent description\n\
         RW {capacity} SPARSE \"disk.vmdk\"\n\
         \n\
         # The Disk Data Base\n\
         #DDB\n\
         \n\
         ddb.virtualHWVersion = \"4\"\n\
         ddb.geometry.cylinders = \"{cylinders}\"\n\
         ddb.geometry.heads = \"16\"\n\
         ddb.geometry.sectors = \"63\"\n\
         ddb.adapterType = \"ide\"\n"
    );
    let mut bytes = text.into_bytes();
    bytes.resize((DESCRIPTOR_SECTORS * SECTOR) as usize, 0);
    bytes
}

/// A sector number as the 32-bit value grain tables and directories hold.
fn sector32(sector: u64, len: u64) -> io::Result<u32> {
    u32::try_from(sector).map_err(|_| {
        DiskError::TooLarge {
            format: "vmdk (compressed file)",
            len,
            max: u64::from(u32::MAX) * SECTOR,
        }
        .into()
    })
}

/// Compresses one grain into `out` as a complete zlib stream.
fn compress_grain(z: &mut Compress, grain: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    z.reset();
    out.clear();
    out.reserve(grain.len() + grain.len() / 64 + 64);
    loop {
        let consumed = z.total_in() as usize;
        let status = z
            .compress_vec(&grain[consumed..], out, FlushCompress::Finish)
            .map_err(io::Error::other)?;
        match status {
            Status::StreamEnd => return Ok(()),
            Status::Ok | Status::BufError => out.reserve(out.capacity().max(4096)),
        }
    }
}

/// Writes the raw image `raw` of `len` bytes as a streamOptimized VMDK to
/// `w`, starting at `w`'s current position (offsets inside the image are
/// relative to it). The capacity is `len` rounded up to a sector. Gives the
/// number of bytes written; `w` is left at the end of the image.
pub fn write_vmdk_stream_optimized(
    raw: &mut (impl Read + Seek),
    len: u64,
    w: &mut (impl Write + Seek),
) -> io::Result<u64> {
    if len > MAX_SIZE {
        return Err(DiskError::TooLarge {
            format: "vmdk",
            len,
            max: MAX_SIZE,
        }
        .into());
    }
    let capacity = len.div_ceil(SECTOR);
    let grains = capacity.div_ceil(GRAIN_SECTORS);
    let tables = grains.div_ceil(GT_ENTRIES);
    let mut reader = RawReader::new(raw, len)?;
    let base = w.stream_position()?;
    w.write_all(&vec![0u8; (OVERHEAD_SECTORS * SECTOR) as usize])?; // header, descriptor: last
    let mut pos = OVERHEAD_SECTORS;

    let mut hasher = Sha256::new();
    hasher.update(b"kiln vmdk\0");
    hasher.update(capacity.to_be_bytes());
    let mut z = Compress::new(Compression::new(LEVEL), true);
    let mut grain = vec![0u8; GRAIN_SIZE as usize];
    let mut packed = Vec::new();
    let mut directory = vec![0u32; tables as usize];
    let mut table = vec![0u32; GT_ENTRIES as usize];
    for (index, dir_entry) in directory.iter_mut().enumerate() {
        let first = index as u64 * GT_ENTRIES;
        let end = (first + GT_ENTRIES).min(grains);
        table.fill(0);
        for (slot, number) in table.iter_mut().zip(first..end) {
            reader.fill(&mut grain)?;
            if is_zero(&grain) {
                continue;
            }
            hasher.update(number.to_be_bytes());
            hasher.update(&grain);
            compress_grain(&mut z, &grain, &mut packed)?;
            let mut record = Vec::with_capacity(12 + packed.len() + SECTOR as usize);
            record.extend_from_slice(&(number * GRAIN_SECTORS).to_le_bytes());
            record.extend_from_slice(&(packed.len() as u32).to_le_bytes());
            record.extend_from_slice(&packed);
            let sectors = (record.len() as u64).div_ceil(SECTOR);
            record.resize((sectors * SECTOR) as usize, 0);
            *slot = sector32(pos, len)?;
            w.write_all(&record)?;
            pos += sectors;
        }
        let sectors = GT_ENTRIES * 4 / SECTOR;
        w.write_all(&marker(sectors, MARKER_GT))?;
        *dir_entry = sector32(pos + 1, len)?;
        let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
        w.write_all(&bytes)?;
        pos += 1 + sectors;
    }

    let gd_sectors = (tables * 4).div_ceil(SECTOR);
    w.write_all(&marker(gd_sectors, MARKER_GD))?;
    let gd_offset = pos + 1;
    let mut bytes: Vec<u8> = directory.iter().flat_map(|e| e.to_le_bytes()).collect();
    bytes.resize((gd_sectors * SECTOR) as usize, 0);
    w.write_all(&bytes)?;
    pos = gd_offset + gd_sectors;
    w.write_all(&marker(1, MARKER_FOOTER))?;
    w.write_all(&header(capacity, gd_offset))?;
    w.write_all(&marker(0, MARKER_EOS))?;
    let total = (pos + 3) * SECTOR;

    let digest = hasher.finalize();
    let cid = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    w.seek(SeekFrom::Start(base))?;
    w.write_all(&header(capacity, GD_AT_END))?;
    w.write_all(&descriptor(cid, capacity))?;
    w.seek(SeekFrom::Start(base + total))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::ZlibDecoder;
    use std::io::Cursor;

    fn le32(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn le64(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    fn image(raw: &[u8]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let n =
            write_vmdk_stream_optimized(&mut Cursor::new(raw), raw.len() as u64, &mut out).unwrap();
        assert_eq!(n, out.get_ref().len() as u64);
        out.into_inner()
    }

    /// Reads guest sector `lba`'s grain back through footer, directory,
    /// table and marker.
    fn read_grain(v: &[u8], grain: u64) -> Option<Vec<u8>> {
        let footer = v.len() - 1024;
        assert_eq!(&v[footer..footer + 4], b"KDMV");
        let gd = le64(v, footer + 56) as usize * 512;
        let gt = le32(v, gd + 4 * (grain / GT_ENTRIES) as usize) as usize * 512;
        if gt == 0 {
            return None;
        }
        let at = le32(v, gt + 4 * (grain % GT_ENTRIES) as usize) as usize * 512;
        if at == 0 {
            return None;
        }
        assert_eq!(le64(v, at), grain * GRAIN_SECTORS);
        let size = le32(v, at + 8) as usize;
        let mut out = Vec::new();
        ZlibDecoder::new(&v[at + 12..at + 12 + size])
            .read_to_end(&mut out)
            .unwrap();
        Some(out)
    }

    #[test]
    fn grains_read_back() {
        let mut raw = vec![0u8; 40 << 20];
        raw[100] = 1;
        let far = (35 << 20) + 17;
        raw[far] = 2;
        let v = image(&raw);
        assert_eq!(le64(&v, 56), GD_AT_END);
        assert_eq!(le64(&v, 12), (40 << 20) / 512);
        let g0 = read_grain(&v, 0).unwrap();
        assert_eq!(&g0[..], &raw[..GRAIN_SIZE as usize]);
        let g = far as u64 / GRAIN_SIZE;
        let gn = read_grain(&v, g).unwrap();
        let start = (g * GRAIN_SIZE) as usize;
        assert_eq!(&gn[..], &raw[start..start + GRAIN_SIZE as usize]);
        assert_eq!(read_grain(&v, 1), None);
        // Every span has a table, even one without data.
        let v = image(&vec![0u8; 40 << 20]);
        let footer = v.len() - 1024;
        let gd = le64(&v, footer + 56) as usize * 512;
        for span in 0..2 {
            let gt = le32(&v, gd + 4 * span) as usize * 512;
            assert_eq!(le32(&v, gt - 512 + 12), MARKER_GT);
            assert!(is_zero(&v[gt..gt + 2048]));
        }
        assert_eq!(read_grain(&v, 0), None);
        // Last 512 bytes: the end-of-stream marker.
        assert_eq!(v[v.len() - 512..], [0; 512]);
    }

    #[test]
    fn cid_follows_content() {
        let text = |v: &[u8]| String::from_utf8_lossy(&v[512..1024]).into_owned();
        let mut raw = vec![0u8; 1 << 20];
        let a = image(&raw);
        raw[9] = 9;
        let b = image(&raw);
        assert!(text(&a).contains("createType=\"streamOptimized\""));
        assert!(text(&a).contains("RW 2048 SPARSE"));
        assert_ne!(text(&a), text(&b));
        assert_eq!(a, image(&vec![0u8; 1 << 20]));
    }
}
