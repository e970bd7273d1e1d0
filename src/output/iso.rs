//! The `iso-efi` format: an ISO 9660 image that UEFI firmware boots from a
//! CD (or a virtual CD) through El Torito.
//!
//! [`write_iso_efi`] takes the UKI, stages a FAT32 EFI System Partition
//! holding it as `\EFI\BOOT\BOOTX64.EFI` in an unnamed temporary file
//! (written by [`write_fat`]), and streams the image to a sink front to back;
//! it gives the number of bytes written. It never holds the image in
//! memory, never reads the clock (every date is `epoch`) and derives the
//! FAT volume serial and the GPT GUIDs from the UKI's sha256 and `epoch`.
//!
//! It is written by hand rather than with `hadris-iso` (or by running
//! `xorriso`): the image is eight fixed sectors and two files, all laid out
//! before the first byte is written, so a library would add a seekable
//! output, its own defaults for dates and identifiers, and a minimum
//! toolchain, and save little code.
//!
//! Layout, in 2048-byte sectors: 0–15 the system area, 16 the primary
//! volume descriptor, 17 the El Torito boot record, 18 the terminator, 19
//! and 20 the little- and big-endian path tables, 21 the root directory,
//! 22 the boot catalog, 23 `README.TXT`, then `EFI.IMG`, the ESP, last.
//! The catalog's validation entry names the EFI platform (0xEF) and its
//! default entry, the only one, loads the ESP without emulation — the
//! shape `xorriso -as mkisofs -e EFI.IMG -no-emul-boot` gives, with no BIOS
//! entry a legacy BIOS could mistake for its own.
//!
//! An entry counts its image in 512-byte sectors in 16 bits, so it cannot
//! describe an ESP of 32 MiB or more, and FAT32 volumes are at least
//! 33 MiB. Such an entry gets a count of 0, as xorriso writes too, which
//! UEFI firmware (EDK II's partition driver, hence OVMF) reads as "up to
//! the end of the volume": that is why the ESP is the volume's last extent.
//!
//! The image is also a disk (a "hybrid" ISO, for USB sticks and virtual
//! disks): the system area holds a protective MBR and a GPT, written by
//! [`write_gpt_disk`], whose one partition is an ESP over exactly the
//! bytes of `EFI.IMG` (disk sector 96). The backup GPT follows the ISO
//! volume, and the image is rounded up to whole MiB. Firmware reading the
//! image as a CD looks for a GPT in 2048-byte sectors and finds none.

use std::io::{self, Read, Seek, SeekFrom, Write};

use super::disk::{guid_from, write_gpt_disk, GptPartition, EFI_BOOT_PATH, ESP_TYPE};
use super::fat::{min_fat_size, write_fat, FatOptions};
use super::ZEROS;
use crate::tree::{Content, ContentStore};

mod desc;

use self::desc::{
    boot_catalog, boot_record, dir_record, path_table, primary, terminator, volume_label,
    DirRecord, Primary,
};

/// ISO 9660 logical sector (and block) size.
pub const SECTOR: u64 = 2048;
/// The name of the ESP image in the root directory.
pub const ESP_NAME: &str = "EFI.IMG";
/// The El Torito platform id of UEFI.
pub const PLATFORM_EFI: u8 = 0xEF;

/// 512-byte disk sectors per ISO sector.
const DISK_PER_ISO: u64 = SECTOR / 512;

const PVD_LBA: u32 = 16;
const PATH_L_LBA: u32 = 19;
const PATH_M_LBA: u32 = 20;
const ROOT_LBA: u32 = 21;
const CATALOG_LBA: u32 = 22;
const README_LBA: u32 = 23;
const ESP_LBA: u32 = 24;

const README: &[u8] = b"This image boots on UEFI systems, as a CD or as a disk.\r\n\
\r\n\
Its El Torito boot catalog has one entry, for the EFI platform, which\r\n\
points at EFI.IMG: a FAT32 EFI System Partition holding the unified\r\n\
kernel image as \\EFI\\BOOT\\BOOTX64.EFI. It was written by kiln; every\r\n\
byte follows from the kernel image and SOURCE_DATE_EPOCH. As a disk,\r\n\
its GPT has one partition: the same EFI.IMG.\r\n";

/// Write the `iso-efi` image for `uki` to `w`; returns the bytes written.
///
/// `volume_id` becomes the volume label: upper-cased, characters outside
/// `A-Z 0-9 _` replaced by `_`, cut to 32 characters (an empty label is
/// `KILN`). Fails with `InvalidInput` if the UKI is too large for the ESP
/// or the ESP for a single ISO 9660 extent (4 GiB).
pub fn write_iso_efi(
    uki: &Content,
    store: &ContentStore,
    epoch: i64,
    volume_id: &str,
    w: &mut dyn Write,
) -> io::Result<u64> {
    let files = [(EFI_BOOT_PATH, uki)];
    let mut seed = uki.sha256().to_vec();
    seed.extend_from_slice(&epoch.to_le_bytes());
    let serial = guid_from(&[b"kiln iso-efi fat serial".as_slice(), &seed].concat());
    let opts = FatOptions {
        size_bytes: Some(min_fat_size(&files)?),
        volume_id: u32::from_le_bytes([serial[0], serial[1], serial[2], serial[3]]),
        label: *b"ESP        ",
        epoch,
        hidden_sectors: ESP_LBA * DISK_PER_ISO as u32,
    };
    let ids = DiskIds {
        disk: guid_from(&[b"kiln iso-efi disk".as_slice(), &seed].concat()),
        esp: guid_from(&[b"kiln iso-efi esp".as_slice(), &seed].concat()),
    };
    let mut esp = io::BufWriter::new(tempfile::tempfile()?);
    let esp_len = write_fat(&files, store, &opts, &mut esp)?;
    let mut esp = esp.into_inner().map_err(io::IntoInnerError::into_error)?;
    esp.seek(SeekFrom::Start(0))?;
    write_iso(
        &mut io::BufReader::new(esp),
        esp_len,
        epoch,
        &volume_label(volume_id),
        &ids,
        w,
    )
}

/// Write the ISO around an ESP image of `esp_len` bytes read from `esp`.
fn write_iso(
    esp: &mut dyn Read,
    esp_len: u64,
    epoch: i64,
    label: &[u8; 32],
    ids: &DiskIds,
    w: &mut dyn Write,
) -> io::Result<u64> {
    let esp_size = u32::try_from(esp_len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "iso-efi: the EFI system partition ({esp_len} bytes) does not fit in one \
                 ISO 9660 extent (at most 4 GiB)"
            ),
        )
    })?;
    let esp_sectors = esp_len.div_ceil(SECTOR);
    let total = u32::try_from(u64::from(ESP_LBA) + esp_sectors)
        .map_err(|_| io::Error::other("iso-efi: the image has more than 2^32 sectors"))?;

    let root = |name: &[u8]| DirRecord {
        name: name.to_vec(),
        lba: ROOT_LBA,
        size: SECTOR as u32,
        dir: true,
        epoch,
    };
    let files = [
        root(&[0]),
        root(&[1]),
        DirRecord {
            name: format!("{ESP_NAME};1").into_bytes(),
            lba: ESP_LBA,
            size: esp_size,
            dir: false,
            epoch,
        },
        DirRecord {
            name: b"README.TXT;1".to_vec(),
            lba: README_LBA,
            size: README.len() as u32,
            dir: false,
            epoch,
        },
    ];
    let mut root_dir = Vec::new();
    for f in &files {
        root_dir.extend_from_slice(&dir_record(f));
    }

    // An entry's count is 16 bits of 512-byte sectors; 0 means "to the end".
    let count = u16::try_from(esp_len.div_ceil(512)).unwrap_or(0);

    // Sectors 16 to 23: everything but the system area and the ESP.
    let mut head = Vec::with_capacity(((ESP_LBA - PVD_LBA) as u64 * SECTOR) as usize);
    head.extend_from_slice(&primary(&Primary {
        label,
        total_sectors: total,
        path_table_len: path_table(ROOT_LBA, false).len() as u32,
        path_l: PATH_L_LBA,
        path_m: PATH_M_LBA,
        root: &dir_record(&files[0]),
        epoch,
    }));
    head.extend_from_slice(&boot_record(CATALOG_LBA));
    head.extend_from_slice(&terminator());
    write_sector(&mut head, &path_table(ROOT_LBA, false))?;
    write_sector(&mut head, &path_table(ROOT_LBA, true))?;
    write_sector(&mut head, &root_dir)?;
    write_sector(&mut head, &boot_catalog(PLATFORM_EFI, ESP_LBA, count))?;
    write_sector(&mut head, README)?;

    // The GPT writer lays out the disk and fills the gap before the ESP
    // with zeros; the overlay puts the ISO sectors in that gap.
    let mut out = Overlay {
        inner: w,
        at: 0,
        start: u64::from(PVD_LBA) * SECTOR,
        bytes: &head,
    };
    let mut parts = [GptPartition {
        type_guid: ESP_TYPE,
        unique_guid: ids.esp,
        name: "ESP",
        first_lba: Some(u64::from(ESP_LBA) * DISK_PER_ISO),
        data: esp,
        len: esp_len,
    }];
    let n = write_gpt_disk(&mut parts, ids.disk, None, &mut out)?;
    if out.at < out.start + head.len() as u64 {
        return Err(io::Error::other(
            "iso-efi: the disk ended inside the ISO sectors",
        ));
    }
    Ok(n)
}

/// GUIDs of the hybrid disk.
struct DiskIds {
    disk: [u8; 16],
    esp: [u8; 16],
}

/// A writer that replaces the bytes at `start..start + bytes.len()` of
/// its stream with `bytes`.
struct Overlay<'a, 'w> {
    inner: &'w mut dyn Write,
    at: u64,
    start: u64,
    bytes: &'a [u8],
}

impl Write for Overlay<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let end = self.start + self.bytes.len() as u64;
        let (from, to) = (self.at, self.at + buf.len() as u64);
        let n = if to <= self.start || from >= end {
            self.inner.write(buf)?
        } else if from < self.start {
            self.inner.write(&buf[..(self.start - from) as usize])?
        } else {
            let lo = (from - self.start) as usize;
            let hi = (to.min(end) - self.start) as usize;
            self.inner.write(&self.bytes[lo..hi])?
        };
        self.at += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Write `bytes` (at most one sector) zero-padded to a whole sector.
fn write_sector(w: &mut dyn Write, bytes: &[u8]) -> io::Result<()> {
    debug_assert!(bytes.len() as u64 <= SECTOR);
    w.write_all(bytes)?;
    write_zeros(w, SECTOR - bytes.len() as u64)
}

fn write_zeros(w: &mut dyn Write, mut n: u64) -> io::Result<()> {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        w.write_all(&ZEROS[..k])?;
        n -= k as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: DiskIds = DiskIds {
        disk: [1; 16],
        esp: [2; 16],
    };

    #[test]
    fn layout_puts_the_esp_last_and_counts_sectors() {
        let esp = vec![0xA5u8; 5000];
        let mut out = Vec::new();
        let n = write_iso(
            &mut esp.as_slice(),
            5000,
            0,
            &volume_label("t"),
            &IDS,
            &mut out,
        )
        .unwrap();
        assert_eq!(n, out.len() as u64);
        // A hybrid disk: whole MiBs, a protective MBR and a GPT header.
        assert_eq!(n, 1 << 20);
        assert_eq!(&out[510..512], &[0x55, 0xAA]);
        assert_eq!(&out[512..520], b"EFI PART");
        assert_eq!(out[446 + 4], 0xEE);
        let at = |lba: u32| &out[(u64::from(lba) * SECTOR) as usize..];
        assert_eq!(&at(PVD_LBA)[..6], b"\x01CD001");
        // The ISO volume ends with the ESP, before the backup GPT.
        assert_eq!(&at(PVD_LBA)[80..84], &27u32.to_le_bytes());
        assert_eq!(&at(17)[..6], b"\x00CD001");
        assert_eq!(&at(18)[..6], b"\xFFCD001");
        assert_eq!(&at(ESP_LBA)[..5000], esp.as_slice());
        // The catalog's default entry: bootable, no emulation, 10 sectors.
        let entry = &at(CATALOG_LBA)[32..64];
        assert_eq!(entry[0], 0x88);
        assert_eq!(u16::from_le_bytes([entry[6], entry[7]]), 10);
        assert_eq!(&entry[8..12], &ESP_LBA.to_le_bytes());
    }

    #[test]
    fn large_esps_get_a_count_of_zero() {
        let len = 40u64 << 20;
        let mut esp = io::repeat(0).take(len);
        let mut out = Vec::new();
        write_iso(&mut esp, len, 0, &volume_label("t"), &IDS, &mut out).unwrap();
        let entry = &out[(u64::from(CATALOG_LBA) * SECTOR) as usize + 32..][..32];
        assert_eq!(&entry[6..8], &[0, 0]);
    }

    #[test]
    fn a_short_esp_is_an_error() {
        let err = write_iso(
            &mut [0u8; 10].as_slice(),
            20,
            0,
            &volume_label(""),
            &IDS,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("10 of 20"), "{err}");
    }
}
