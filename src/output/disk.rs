//! Partitioned disk images: a GPT writer and the `raw-efi` format.
//!
//! [`write_gpt_disk`] takes partitions (type and unique GUID, name, bytes
//! as a reader) and writes a whole disk image front to back: a protective
//! MBR, the primary GPT header and its 128 entries of 128 bytes, each
//! partition at a 1 MiB boundary (or at the sector asked for), and the
//! backup entries and header in the last 33 sectors. Sectors are 512 bytes.
//! It is written by hand rather than with the `gpt` or `gptman` crates:
//! the format is a few fixed structures and two CRC32s, and writing it
//! sequentially needs no seekable device and leaves no field to a library
//! default. Nothing here is random: every GUID is an argument, and
//! [`guid_from`] derives GUIDs from a seed (content hash and
//! `SOURCE_DATE_EPOCH`).
//!
//! [`write_raw_efi`] composes it with the [FAT32 writer](super::fat): one
//! EFI System Partition holding the removable-media boot path
//! `\EFI\BOOT\BOOTX64.EFI`, written by the FAT writer straight into the
//! disk's stream (a [`PartData::Writer`]). With a [`BiosBoot`] the
//! disk is hybrid: the protective MBR carries SYSLINUX's `gptmbr.bin`, the
//! ESP has the legacy-BIOS-bootable attribute and SYSLINUX is installed on
//! it by the [SYSLINUX installer](super::syslinux::install) beside the UKI.
//!
//! GUIDs are `[u8; 16]` in on-disk order: GPT stores the first three
//! fields of the textual form little-endian ([`guid_string`] prints them).

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use super::fat::{min_fat_size, write_fat, FatOptions};
use super::syslinux::install::{install, syslinux_files, Syslinux};
use super::{invalid_input as input, write_zeros, Counter};
use crate::tree::{Content, ContentStore};

/// `C12A7328-F81F-11D2-BA4B-00A0C93EC93B`, the EFI System Partition type.
pub const ESP_TYPE: [u8; 16] = [
    0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B,
];

/// `0FC63DAF-8483-4772-8E79-3D69D8477DE4`, the Linux filesystem data type.
pub const LINUX_FS_TYPE: [u8; 16] = [
    0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4,
];

/// GPT attribute bit 2: the partition holds legacy BIOS boot code (the
/// one `gptmbr.bin` boots).
pub const LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;

/// One partition to write.
pub struct GptPartition<'a> {
    pub type_guid: [u8; 16],
    pub unique_guid: [u8; 16],
    /// At most 36 UTF-16 code units.
    pub name: &'a str,
    /// The entry's attribute bits ([`LEGACY_BIOS_BOOTABLE`], …); 0 for none.
    pub attributes: u64,
    /// The first sector; `None` for the next 1 MiB boundary.
    pub first_lba: Option<u64>,
    /// Exactly `len` bytes of contents; the last sector is zero-padded.
    pub data: PartData<'a>,
    pub len: u64,
}

/// Where a partition's bytes come from.
pub enum PartData<'a> {
    /// Read from here.
    Reader(&'a mut dyn Read),
    /// Written by this function into the disk's stream (no copy through a
    /// buffer or pipe); it returns the bytes it wrote.
    Writer(&'a mut dyn FnMut(&mut dyn Write) -> io::Result<u64>),
}

const SECTOR: u64 = 512;
/// Partitions start on 1 MiB boundaries.
const ALIGN: u64 = 2048;
const ENTRIES: usize = 128;
const ENTRY_SIZE: usize = 128;
/// Sectors taken by the entry array.
const ENTRY_SECTORS: u64 = (ENTRIES * ENTRY_SIZE) as u64 / SECTOR;

/// The sectors each partition occupies and the disk's size in sectors.
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    /// `(first, last)` sector of each partition, inclusive.
    ranges: Vec<(u64, u64)>,
    total: u64,
}

/// Place partitions of the given `(first_lba, len)`; the disk is
/// `size_bytes` or, if `None`, the smallest multiple of 1 MiB that holds
/// them and the backup GPT.
fn layout(parts: &[(Option<u64>, u64)], size_bytes: Option<u64>) -> io::Result<Layout> {
    if parts.len() > ENTRIES {
        return Err(input(format!(
            "gpt: {} partitions given, at most {ENTRIES} fit",
            parts.len()
        )));
    }
    let mut next = 2 + ENTRY_SECTORS;
    let mut ranges = Vec::with_capacity(parts.len());
    for (i, &(first, len)) in parts.iter().enumerate() {
        let first = first.unwrap_or(next.next_multiple_of(ALIGN));
        if first < next {
            return Err(input(format!(
                "gpt: partition {} would start at sector {first}, before sector {next}",
                i + 1
            )));
        }
        if len == 0 {
            return Err(input(format!("gpt: partition {} is empty", i + 1)));
        }
        next = first + len.div_ceil(SECTOR);
        ranges.push((first, next - 1));
    }
    let needed = (next + 1 + ENTRY_SECTORS).next_multiple_of(ALIGN);
    let total = match size_bytes {
        None => needed,
        Some(size) if size % SECTOR != 0 => {
            return Err(input(format!(
                "gpt: disk size {size} is not a multiple of {SECTOR} bytes"
            )))
        }
        Some(size) if size / SECTOR < needed => {
            return Err(input(format!(
                "gpt: the partitions need a disk of at least {} bytes but the disk size is {size} bytes",
                needed * SECTOR
            )))
        }
        Some(size) => size / SECTOR,
    };
    Ok(Layout { ranges, total })
}

/// Write a GPT disk image holding `partitions` to `w`; returns the bytes
/// written (`size_bytes` if given). `mbr_code` is the boot code of the
/// protective MBR (its first 440 bytes, such as SYSLINUX's `gptmbr.bin`);
/// `None` leaves them zero.
///
/// Fails with `InvalidInput` on overlapping or empty partitions, a name
/// too long, more than 128 partitions, or a size that is too small or not
/// a multiple of 512 (the message names both sizes); with
/// `UnexpectedEof` if a partition's reader ends before `len` bytes.
pub fn write_gpt_disk(
    partitions: &mut [GptPartition],
    disk_guid: [u8; 16],
    size_bytes: Option<u64>,
    mbr_code: Option<&[u8; 440]>,
    w: &mut dyn Write,
) -> io::Result<u64> {
    let plan: Vec<_> = partitions.iter().map(|p| (p.first_lba, p.len)).collect();
    let Layout { ranges, total } = layout(&plan, size_bytes)?;
    let last = total - 1;

    let mut entries = vec![0u8; ENTRIES * ENTRY_SIZE];
    for (i, (p, &(first, end))) in partitions.iter().zip(&ranges).enumerate() {
        let name: Vec<u16> = p.name.encode_utf16().collect();
        if name.len() > 36 {
            return Err(input(format!(
                "gpt: partition name {:?} is longer than 36 UTF-16 units",
                p.name
            )));
        }
        let e = &mut entries[i * ENTRY_SIZE..][..ENTRY_SIZE];
        e[0..16].copy_from_slice(&p.type_guid);
        e[16..32].copy_from_slice(&p.unique_guid);
        e[32..40].copy_from_slice(&first.to_le_bytes());
        e[40..48].copy_from_slice(&end.to_le_bytes());
        e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
        for (k, unit) in name.iter().enumerate() {
            e[56 + 2 * k..][..2].copy_from_slice(&unit.to_le_bytes());
        }
    }
    let entries_crc = crc32fast::hash(&entries);
    let header = |mine: u64, other: u64, table: u64| {
        let mut h = [0u8; SECTOR as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&mine.to_le_bytes());
        h[32..40].copy_from_slice(&other.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + ENTRY_SECTORS).to_le_bytes());
        h[48..56].copy_from_slice(&(last - 1 - ENTRY_SECTORS).to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid);
        h[72..80].copy_from_slice(&table.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };

    let mut out = Counter { inner: w, count: 0 };
    let mut mbr = protective_mbr(total);
    if let Some(code) = mbr_code {
        mbr[..440].copy_from_slice(code);
    }
    out.write_all(&mbr)?;
    out.write_all(&header(1, last, 2))?;
    out.write_all(&entries)?;
    let mut at = 2 + ENTRY_SECTORS;
    for (i, (p, &(first, end))) in partitions.iter_mut().zip(&ranges).enumerate() {
        write_zeros(&mut out, (first - at) * SECTOR)?;
        let copied = match &mut p.data {
            PartData::Reader(r) => io::copy(&mut (&mut **r).take(p.len), &mut out)?,
            PartData::Writer(f) => {
                let n = f(&mut out)?;
                if n > p.len {
                    return Err(io::Error::other(format!(
                        "gpt: partition {} ({:?}) wrote {n} bytes, more than its {}",
                        i + 1,
                        p.name,
                        p.len
                    )));
                }
                n
            }
        };
        if copied != p.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "gpt: partition {} ({:?}) gave {copied} of {} bytes",
                    i + 1,
                    p.name,
                    p.len
                ),
            ));
        }
        at = end + 1;
        write_zeros(&mut out, at * SECTOR - first * SECTOR - p.len)?;
    }
    let backup_table = last - ENTRY_SECTORS;
    write_zeros(&mut out, (backup_table - at) * SECTOR)?;
    out.write_all(&entries)?;
    out.write_all(&header(last, 1, backup_table))?;
    Ok(out.count)
}

/// Sector 0: an MBR whose one partition (type `0xEE`) covers the disk,
/// so MBR-only tools see it as in use.
fn protective_mbr(total: u64) -> [u8; 512] {
    let mut m = [0u8; 512];
    let p = &mut m[446..462];
    p[1..4].copy_from_slice(&chs(1));
    p[4] = 0xEE;
    p[5..8].copy_from_slice(&chs(total - 1));
    p[8..12].copy_from_slice(&1u32.to_le_bytes());
    let sectors = u32::try_from(total - 1).unwrap_or(u32::MAX);
    p[12..16].copy_from_slice(&sectors.to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xAA;
    m
}

/// The cylinder/head/sector address of `lba` for 255 heads and 63
/// sectors per track; `FF FF FF` past what CHS can address.
fn chs(lba: u64) -> [u8; 3] {
    let (heads, sectors) = (255, 63);
    let cylinder = lba / (heads * sectors);
    if cylinder > 1023 {
        return [0xFF; 3];
    }
    let head = (lba / sectors) % heads;
    let sector = lba % sectors + 1;
    [
        head as u8,
        sector as u8 | ((cylinder >> 2) & 0xC0) as u8,
        cylinder as u8,
    ]
}

/// A GUID (on-disk order) derived from sha256 of `seed`, marked as an
/// RFC 4122 version 4 GUID: reproducible, and as unlikely to collide as a
/// random one for distinct seeds.
pub fn guid_from(seed: &[u8]) -> [u8; 16] {
    let hash = Sha256::digest(seed);
    let mut g = [0u8; 16];
    g.copy_from_slice(&hash[..16]);
    // Byte 7 is the high byte of the little-endian third field.
    g[7] = (g[7] & 0x0F) | 0x40;
    g[8] = (g[8] & 0x3F) | 0x80;
    g
}

/// The textual form (`C12A7328-F81F-11D2-BA4B-00A0C93EC93B`) of an
/// on-disk GUID.
pub fn guid_string(g: &[u8; 16]) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{}-{}",
        u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
        u16::from_le_bytes([g[4], g[5]]),
        u16::from_le_bytes([g[6], g[7]]),
        hex::encode_upper(&g[8..10]),
        hex::encode_upper(&g[10..16])
    )
}

/// Where firmware looks for a removable disk's x86-64 boot loader.
pub const EFI_BOOT_PATH: &str = "EFI/BOOT/BOOTX64.EFI";

/// What a hybrid `raw-efi` disk boots under BIOS firmware: SYSLINUX
/// (with `gptmbr.bin` as its MBR code) loading `kernel` and `initrd` with
/// `cmdline`, from the ESP.
pub struct BiosBoot<'a> {
    pub syslinux: &'a Syslinux<'a>,
    pub kernel: &'a Content,
    pub initrd: &'a Content,
    pub cmdline: &'a str,
}

/// Write the `raw-efi` image: a GPT disk with one FAT32 EFI System
/// Partition holding `efi_binary` as `\EFI\BOOT\BOOTX64.EFI`; returns the
/// bytes written.
///
/// With `bios` the disk is hybrid: the protective MBR carries `gptmbr.bin`,
/// the ESP is marked legacy-BIOS-bootable and SYSLINUX is installed on it
/// beside the UKI (its files at the volume's root), so BIOS firmware boots
/// SYSLINUX and UEFI firmware the UKI.
///
/// Disk and partition GUIDs and the volume serial are derived from the
/// binary's sha256 and `epoch`. With `size` the disk has exactly that many
/// bytes (the ESP fills it up to the last 1 MiB boundary before the backup
/// GPT); without, it is the smallest that fits. A `size` too small or not
/// a multiple of 512 is an `InvalidInput` error naming both sizes.
pub fn write_raw_efi(
    efi_binary: &Content,
    bios: Option<&BiosBoot>,
    store: &ContentStore,
    epoch: i64,
    size: Option<u64>,
    w: &mut dyn Write,
) -> io::Result<u64> {
    let mut files = vec![(EFI_BOOT_PATH, efi_binary.clone())];
    if let Some(b) = bios {
        files.extend(syslinux_files(
            b.syslinux, b.kernel, b.initrd, b.cmdline, store,
        )?);
    }
    let refs: Vec<(&str, &Content)> = files.iter().map(|(p, c)| (*p, c)).collect();
    let min_esp = min_fat_size(&refs)?;
    let needed = layout(&[(None, min_esp)], None)?.total * SECTOR;
    let esp_size = match size {
        None => min_esp,
        Some(size) if size % SECTOR != 0 || size < needed => {
            return Err(input(format!(
                "raw-efi: the EFI binary ({} bytes){} needs a disk of at least {needed} bytes \
                 (a multiple of {SECTOR}), but the size given is {size} bytes",
                efi_binary.len(),
                if bios.is_some() {
                    " with the BIOS boot files"
                } else {
                    ""
                }
            )))
        }
        Some(size) => ((size / SECTOR - 1 - ENTRY_SECTORS) / ALIGN * ALIGN - ALIGN) * SECTOR,
    };

    let mut seed = efi_binary.sha256().to_vec();
    seed.extend_from_slice(&epoch.to_le_bytes());
    let id = |what: &str| guid_from(&[what.as_bytes(), &seed].concat());
    let serial = id("kiln raw-efi fat serial");
    let mut opts = FatOptions {
        size_bytes: Some(esp_size),
        volume_id: u32::from_le_bytes([serial[0], serial[1], serial[2], serial[3]]),
        label: *b"ESP        ",
        epoch,
        hidden_sectors: ALIGN as u32,
        boot_code: None,
    };
    let mut mbr_code = None;
    let mut attributes = 0;
    if let Some(b) = bios {
        install(b.syslinux, &mut files, &mut opts, store)?;
        let code: &[u8; 440] = b.syslinux.mbr.try_into().map_err(|_| {
            input(format!(
                "raw-efi: gptmbr.bin has {} bytes, not 440",
                b.syslinux.mbr.len()
            ))
        })?;
        mbr_code = Some(code);
        attributes = LEGACY_BIOS_BOOTABLE;
    }
    let refs: Vec<(&str, &Content)> = files.iter().map(|(p, c)| (*p, c)).collect();
    // The FAT writer writes the volume straight into the disk's stream:
    // its size is known before a byte is written.
    let mut write_esp = |w: &mut dyn Write| write_fat(&refs, store, &opts, w);
    let mut parts = [GptPartition {
        type_guid: ESP_TYPE,
        unique_guid: id("kiln raw-efi esp"),
        name: "ESP",
        attributes,
        first_lba: Some(ALIGN),
        data: PartData::Writer(&mut write_esp),
        len: esp_size,
    }];
    write_gpt_disk(&mut parts, id("kiln raw-efi disk"), size, mbr_code, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_guids_print_in_textual_order() {
        assert_eq!(
            guid_string(&ESP_TYPE),
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
        );
        assert_eq!(
            guid_string(&LINUX_FS_TYPE),
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
        );
    }

    #[test]
    fn derived_guids_are_stable_version_4() {
        let g = guid_from(b"seed");
        assert_eq!(g, guid_from(b"seed"));
        assert_ne!(g, guid_from(b"seed2"));
        let s = guid_string(&g);
        assert_eq!(&s[14..15], "4", "{s}");
        assert!("89AB".contains(&s[19..20]), "{s}");
    }

    #[test]
    fn partitions_align_to_one_mib_and_leave_room_for_the_backup() {
        let l = layout(&[(None, 33 << 20), (None, 1)], None).unwrap();
        assert_eq!(l.ranges, [(2048, 69631), (69632, 69632)]);
        assert_eq!(l.total, 71680);
        assert!(layout(&[(Some(33), 1)], None).is_err());
        assert!(layout(&[(None, 0)], None).is_err());
        assert!(layout(&[(None, 1)], Some(2 << 20)).is_ok());
        let err = layout(&[(None, 1 << 20)], Some(2 << 20)).unwrap_err();
        assert!(err.to_string().contains("3145728"), "{err}");
    }

    #[test]
    fn attributes_and_mbr_code_are_written_and_checksummed() {
        let mut data: &[u8] = &[7u8; 512];
        let mut parts = [GptPartition {
            type_guid: ESP_TYPE,
            unique_guid: guid_from(b"p"),
            name: "ESP",
            attributes: LEGACY_BIOS_BOOTABLE,
            first_lba: None,
            data: PartData::Reader(&mut data),
            len: 512,
        }];
        let mut disk = Vec::new();
        let code = [0x33u8; 440];
        write_gpt_disk(&mut parts, guid_from(b"d"), None, Some(&code), &mut disk).unwrap();
        assert_eq!(&disk[..440], &code[..]);
        assert_eq!((disk[450], &disk[510..512]), (0xEE, &[0x55, 0xAA][..]));
        let last = disk.len() - 512;
        for (header, table) in [(512, 1024), (last, last - 32 * 512)] {
            let entries = &disk[table..table + ENTRIES * ENTRY_SIZE];
            assert_eq!(u64::from_le_bytes(entries[48..56].try_into().unwrap()), 4);
            let h = &disk[header..header + 92];
            assert_eq!(&h[88..92], &crc32fast::hash(entries).to_le_bytes());
            let mut h = h.to_vec();
            let crc = h[16..20].to_vec();
            h[16..20].fill(0);
            assert_eq!(crc, crc32fast::hash(&h).to_le_bytes());
        }
    }

    #[test]
    fn chs_addresses_saturate() {
        assert_eq!(chs(1), [0, 2, 0]);
        assert_eq!(chs(63 * 255), [0, 1, 1]);
        assert_eq!(chs(1 << 40), [0xFF; 3]);
    }
}
