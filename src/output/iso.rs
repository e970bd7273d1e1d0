//! The ISO formats: ISO 9660 images that BIOS and UEFI firmware boot from
//! a CD (or a virtual CD) through El Torito, and from a disk ("hybrid").
//!
//! [`write_iso`] takes what each firmware needs — for BIOS, ISOLINUX
//! ([`IsoLinux`]: its loader, `ldlinux.c32`, the isohybrid MBR code, the
//! kernel, the initrd and the command line), for UEFI the UKI — and
//! streams the image to a sink front to back, giving the number of bytes
//! written. It never holds the image in memory (the ESP is written
//! straight into the stream, the initrd is read from its own file), never reads
//! the clock (every date is `epoch`), and derives the FAT volume serial,
//! the MBR signature and the GPT GUIDs from the content hashes and `epoch`.
//!
//! It is written by hand rather than with `hadris-iso` (or by running
//! `xorriso`): the image is seven fixed sectors and a handful of files in
//! one directory, all laid out before the first byte is written, so a
//! library would add a seekable output, its own defaults for dates and
//! identifiers, and a minimum toolchain, and save little code.
//!
//! Layout, in 2048-byte sectors: 0–15 the system area, 16 the primary
//! volume descriptor, 17 the El Torito boot record, 18 the terminator, 19
//! and 20 the little- and big-endian path tables, 21 the root directory,
//! 22 the boot catalog, 23 `README.TXT`, then the BIOS files
//! (`ISOLINUX.BIN`, `LDLINUX.C32`, `ISOLINUX.CFG`, `KERNEL`, `INITRD.IMG`)
//! and `EFI.IMG`, the ESP, last. The boot catalog has an x86 entry that
//! loads `ISOLINUX.BIN` without emulation (4 sectors; ISOLINUX loads the
//! rest itself, found through the boot-information table patched into
//! it), then a final section for the EFI platform (0xEF) whose entry loads
//! the ESP without emulation — the catalog `xorriso -as mkisofs -b ... -e
//! EFI.IMG` writes. An EFI-only image has only the EFI entry, as the
//! validation entry's platform.
//!
//! An entry counts its image in 512-byte sectors in 16 bits, so it cannot
//! describe an ESP of 32 MiB or more, and FAT32 volumes are at least
//! 33 MiB. Such an entry gets a count of 0, as xorriso writes too, which
//! UEFI firmware (EDK II's partition driver, hence OVMF) reads as "up to
//! the end of the volume": that is why the ESP is the volume's last extent.
//!
//! As a disk (USB sticks, virtual disks): with UEFI, the system area holds
//! a protective MBR and a GPT, written by [`write_gpt_disk`], whose one
//! partition is an ESP over exactly the bytes of `EFI.IMG`; the backup GPT
//! follows the ISO volume. With BIOS, the MBR's code is ISOLINUX's
//! isohybrid loader, given the disk sector of `ISOLINUX.BIN`; a BIOS-only
//! image has an MBR partition table (one active partition over the whole
//! image, type 0x17, as `isohybrid` writes). Images are rounded up to whole
//! MiB. Firmware reading the image as a CD looks for a GPT in 2048-byte
//! sectors and finds none.

use std::io::{self, Read, Write};

use super::disk::{guid_from, write_gpt_disk, GptPartition, PartData, EFI_BOOT_PATH, ESP_TYPE};
use super::fat::{min_fat_size, write_fat, FatOptions};
use super::syslinux;
use super::{invalid_input as input, write_zeros};
use crate::tree::{Content, ContentStore};

pub(crate) mod desc;

use self::desc::{
    boot_catalog, boot_record, dir_record, path_table, primary, terminator, volume_label,
    CatalogEntry, DirRecord, Primary,
};

/// ISO 9660 logical sector (and block) size.
pub const SECTOR: u64 = 2048;
/// The name of the ESP image in the root directory.
pub const ESP_NAME: &str = "EFI.IMG";
/// The El Torito platform id of UEFI.
pub const PLATFORM_EFI: u8 = 0xEF;
/// The El Torito platform id of x86 PCs (BIOS).
pub const PLATFORM_X86: u8 = 0;

/// 512-byte disk sectors per ISO sector.
const DISK_PER_ISO: u64 = SECTOR / 512;
const MIB: u64 = 1 << 20;

const PVD_LBA: u32 = 16;
const PATH_L_LBA: u32 = 19;
const PATH_M_LBA: u32 = 20;
const ROOT_LBA: u32 = 21;
const CATALOG_LBA: u32 = 22;
const README_LBA: u32 = 23;

/// What BIOS booting through ISOLINUX needs.
pub struct IsoLinux<'a> {
    /// `isolinux.bin` as shipped; the boot-information table is patched in.
    pub loader: &'a [u8],
    /// ISOLINUX's `ldlinux.c32`, of the same build as `loader`.
    pub ldlinux_c32: &'a [u8],
    /// `isohdpfx.bin`: the MBR code that boots the image as a disk.
    pub mbr: &'a [u8],
    pub kernel: &'a Content,
    /// The compressed initrd, exactly `initrd_len` bytes.
    pub initrd: &'a mut dyn Read,
    pub initrd_len: u64,
    pub cmdline: &'a str,
}

/// Write an ISO image that boots BIOS firmware if `bios` is given and UEFI
/// firmware if `uki` is; returns the bytes written. At least one must be.
///
/// `volume_id` becomes the volume label: upper-cased, characters outside
/// `A-Z 0-9 _` replaced by `_`, cut to 32 characters (an empty label is
/// `KILN`). Fails with `InvalidInput` if the UKI is too large for the ESP,
/// a file for a single ISO 9660 extent (4 GiB), or the ISOLINUX files are
/// not ISOLINUX's.
pub fn write_iso(
    bios: Option<IsoLinux>,
    uki: Option<&Content>,
    store: &ContentStore,
    epoch: i64,
    volume_id: &str,
    w: &mut dyn Write,
) -> io::Result<u64> {
    if bios.is_none() && uki.is_none() {
        return Err(input(
            "iso: neither a BIOS nor a UEFI loader to boot".into(),
        ));
    }
    let mut seed = Vec::new();
    if let Some(b) = &bios {
        seed.extend_from_slice(&b.kernel.sha256());
        seed.extend_from_slice(&b.initrd_len.to_le_bytes());
        seed.extend_from_slice(b.cmdline.as_bytes());
    }
    if let Some(uki) = uki {
        seed.extend_from_slice(&uki.sha256());
    }
    seed.extend_from_slice(&epoch.to_le_bytes());
    let id = |what: &str| guid_from(&[what.as_bytes(), &seed].concat());

    // The files, in volume order; the ESP, if any, is last.
    let mut files = vec![File::bytes(
        "README.TXT",
        readme(bios.is_some(), uki.is_some()),
    )];
    let mut mbr_code = None;
    if let Some(b) = bios {
        syslinux::check_isolinux(b.loader, b.mbr).map_err(input)?;
        mbr_code = Some(b.mbr);
        files.push(File::bytes("ISOLINUX.BIN", b.loader.to_vec()));
        files.push(File::bytes("LDLINUX.C32", b.ldlinux_c32.to_vec()));
        let config = syslinux::config(b.cmdline, "/kernel", "/initrd.img");
        files.push(File::bytes("ISOLINUX.CFG", config.into_bytes()));
        files.push(File {
            name: "KERNEL.",
            len: b.kernel.len(),
            source: Source::Stored(b.kernel),
            lba: 0,
        });
        files.push(File {
            name: "INITRD.IMG",
            len: b.initrd_len,
            source: Source::Reader(b.initrd),
            lba: 0,
        });
    }
    let esp_files = uki.map(|uki| [(EFI_BOOT_PATH, uki)]);
    if let Some(esp_files) = &esp_files {
        files.push(File {
            name: ESP_NAME,
            len: min_fat_size(esp_files)?,
            source: Source::Esp,
            lba: 0,
        });
    }
    let mut next = u64::from(README_LBA);
    for f in &mut files {
        if f.len > u64::from(u32::MAX) {
            return Err(input(format!(
                "iso: {} ({} bytes) does not fit in one ISO 9660 extent (at most 4 GiB)",
                f.name, f.len
            )));
        }
        f.lba = u32::try_from(next)
            .map_err(|_| io::Error::other("iso: the image has more than 2^32 sectors"))?;
        next += f.len.div_ceil(SECTOR);
    }
    let total = u32::try_from(next)
        .map_err(|_| io::Error::other("iso: the image has more than 2^32 sectors"))?;
    let lba_of = |files: &[File], name: &str| {
        files
            .iter()
            .find(|f| f.name == name)
            .map(|f| (f.lba, f.len))
    };

    let mut entries = Vec::new();
    let mut loader_sector = None;
    if let Some((lba, len)) = lba_of(&files, "ISOLINUX.BIN") {
        if let Some(File {
            source: Source::Bytes(bytes),
            ..
        }) = files.iter_mut().find(|f| f.name == "ISOLINUX.BIN")
        {
            syslinux::patch_boot_info(bytes, PVD_LBA, lba);
        }
        debug_assert_eq!(len % 4, 0);
        // The BIOS loads 4 virtual (512-byte) sectors: ISOLINUX's first
        // 2048 bytes, which load the rest.
        entries.push(CatalogEntry {
            platform: PLATFORM_X86,
            lba,
            sectors: 4,
        });
        loader_sector = Some(u64::from(lba) * DISK_PER_ISO);
    }
    let mut esp = None;
    if let (Some(_), Some((lba, len))) = (&esp_files, lba_of(&files, ESP_NAME)) {
        let serial = id("kiln iso-efi fat serial");
        let opts = FatOptions {
            size_bytes: Some(len),
            volume_id: u32::from_le_bytes([serial[0], serial[1], serial[2], serial[3]]),
            label: *b"ESP        ",
            epoch,
            hidden_sectors: lba * DISK_PER_ISO as u32,
            boot_code: None,
        };
        esp = Some((opts, lba, len));
        // An entry's count is 16 bits of 512-byte sectors; 0 means "to
        // the end of the volume".
        entries.push(CatalogEntry {
            platform: PLATFORM_EFI,
            lba,
            sectors: u16::try_from(len.div_ceil(512)).unwrap_or(0),
        });
    }

    // The root directory, its records sorted by name as ISO 9660 asks.
    let root = |name: &[u8]| DirRecord {
        name: name.to_vec(),
        lba: ROOT_LBA,
        size: SECTOR as u32,
        dir: true,
        epoch,
    };
    let mut records: Vec<DirRecord> = files
        .iter()
        .map(|f| DirRecord {
            name: format!("{};1", f.name).into_bytes(),
            lba: f.lba,
            size: f.len as u32,
            dir: false,
            epoch,
        })
        .collect();
    records.sort_by_key(|r| sort_key(&r.name));
    let mut root_dir = Vec::new();
    for r in [root(&[0]), root(&[1])].iter().chain(&records) {
        root_dir.extend_from_slice(&dir_record(r));
    }

    // Sectors 16 to 22: the descriptors, path tables, root and catalog.
    let mut head = Vec::with_capacity(((README_LBA - PVD_LBA) as u64 * SECTOR) as usize);
    head.extend_from_slice(&primary(&Primary {
        system: b"KILN",
        label: &volume_label(volume_id),
        total_sectors: total,
        path_table_len: path_table(ROOT_LBA, false).len() as u32,
        path_l: PATH_L_LBA,
        path_m: PATH_M_LBA,
        root: &dir_record(&root(&[0])),
        epoch,
    }));
    head.extend_from_slice(&boot_record(CATALOG_LBA));
    head.extend_from_slice(&terminator());
    write_sector(&mut head, &path_table(ROOT_LBA, false))?;
    write_sector(&mut head, &path_table(ROOT_LBA, true))?;
    write_sector(&mut head, &root_dir)?;
    write_sector(&mut head, &boot_catalog(&entries))?;

    // Everything from sector 16 up to the ESP (or the end), as one stream.
    let mut body_len = head.len() as u64;
    let mut body: Box<dyn Read + '_> = Box::new(io::Cursor::new(head));
    for f in files {
        let padded = f.len.div_ceil(SECTOR) * SECTOR;
        let data: Box<dyn Read + '_> = match f.source {
            Source::Bytes(b) => Box::new(io::Cursor::new(b)),
            Source::Stored(c) => Box::new(ExactReader {
                inner: store.reader(c),
                left: f.len,
                name: f.name,
            }),
            Source::Reader(r) => Box::new(ExactReader {
                inner: r.take(f.len),
                left: f.len,
                name: f.name,
            }),
            Source::Esp => continue,
        };
        body = Box::new(body.chain(data).chain(io::repeat(0).take(padded - f.len)));
        body_len += padded;
    }
    let body_start = u64::from(PVD_LBA) * SECTOR;
    let code = match (mbr_code, loader_sector) {
        (Some(code), Some(sector)) => Some(syslinux::isohybrid_code(code, sector)?),
        _ => None,
    };

    let (Some((esp_opts, esp_lba, esp_len)), Some(esp_files)) = (esp, &esp_files) else {
        // BIOS only: an isohybrid MBR, the volume, zeros to a whole MiB.
        let code = code.ok_or_else(|| io::Error::other("iso: no BIOS loader"))?;
        let end = body_start + body_len;
        let size = end.div_ceil(MIB) * MIB;
        let sig = id("kiln iso-bios mbr signature");
        let mbr = syslinux::isohybrid_mbr(
            &code,
            u32::from_le_bytes([sig[0], sig[1], sig[2], sig[3]]),
            size / 512,
        );
        w.write_all(&mbr)?;
        write_zeros(w, body_start - 512)?;
        let copied = io::copy(&mut body, w)?;
        if copied != body_len {
            return Err(io::Error::other("iso: the volume came out short"));
        }
        write_zeros(w, size - end)?;
        return Ok(size);
    };

    // With UEFI: the GPT writer lays out the disk and fills the gap before
    // the ESP with zeros; the overlay puts the ISO sectors (and the MBR
    // code) there.
    let mut out = Overlay {
        inner: w,
        at: 0,
        code: code.as_ref().map(|c| c.as_slice()),
        body_start,
        body_end: body_start + body_len,
        body: &mut body,
        scratch: Vec::new(),
    };
    // The FAT writer writes the ESP straight into the disk's stream.
    let mut write_esp = |w: &mut dyn Write| write_fat(esp_files, store, &esp_opts, w);
    let mut parts = [GptPartition {
        type_guid: ESP_TYPE,
        unique_guid: id("kiln iso-efi esp"),
        name: "ESP",
        attributes: 0,
        first_lba: Some(u64::from(esp_lba) * DISK_PER_ISO),
        data: PartData::Writer(&mut write_esp),
        len: esp_len,
    }];
    let n = write_gpt_disk(&mut parts, id("kiln iso-efi disk"), None, None, &mut out)?;
    if out.at < out.body_end {
        return Err(io::Error::other(
            "iso: the disk ended inside the ISO sectors",
        ));
    }
    Ok(n)
}

/// Write the `iso-efi-initrd` image for `uki` (UEFI only) to `w`; returns
/// the bytes written. See [`write_iso`].
pub fn write_iso_efi(
    uki: &Content,
    store: &ContentStore,
    epoch: i64,
    volume_id: &str,
    w: &mut dyn Write,
) -> io::Result<u64> {
    write_iso(None, Some(uki), store, epoch, volume_id, w)
}

/// One file of the root directory.
struct File<'a> {
    /// The ISO 9660 name without its `;1` version.
    name: &'static str,
    len: u64,
    source: Source<'a>,
    lba: u32,
}

enum Source<'a> {
    Bytes(Vec<u8>),
    /// Streamed from the content store.
    Stored(&'a Content),
    Reader(&'a mut dyn Read),
    /// The ESP, written by the FAT writer straight into the GPT disk.
    Esp,
}

impl<'a> File<'a> {
    fn bytes(name: &'static str, bytes: Vec<u8>) -> File<'a> {
        File {
            name,
            len: bytes.len() as u64,
            source: Source::Bytes(bytes),
            lba: 0,
        }
    }
}

/// ISO 9660 order: names, then extensions, compared as if space-padded.
fn sort_key(name: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let name = name.split(|&b| b == b';').next().unwrap_or(name);
    let mut parts = name.splitn(2, |&b| b == b'.');
    let pad = |p: &[u8], n: usize| {
        let mut v = p.to_vec();
        v.resize(v.len().max(n), b' ');
        v
    };
    let base = pad(parts.next().unwrap_or(&[]), 8);
    let ext = pad(parts.next().unwrap_or(&[]), 3);
    (base, ext)
}

fn readme(bios: bool, efi: bool) -> Vec<u8> {
    let mut t = String::from("This image was written by kiln; every byte follows from its inputs and\r\nSOURCE_DATE_EPOCH. ");
    t.push_str(match (bios, efi) {
        (true, true) => "It boots on BIOS and UEFI systems, as a CD or as a disk.\r\n",
        (true, false) => "It boots on BIOS systems, as a CD or as a disk.\r\n",
        _ => "It boots on UEFI systems, as a CD or as a disk.\r\n",
    });
    if bios {
        t.push_str(
            "\r\nBIOS: the El Torito x86 entry loads ISOLINUX.BIN, which reads\r\n\
             ISOLINUX.CFG and boots KERNEL with INITRD.IMG. As a disk, the MBR's\r\n\
             isohybrid code loads ISOLINUX.BIN.\r\n",
        );
    }
    if efi {
        t.push_str(
            "\r\nUEFI: the El Torito EFI entry points at EFI.IMG, a FAT32 EFI System\r\n\
             Partition holding the unified kernel image as \\EFI\\BOOT\\BOOTX64.EFI.\r\n\
             As a disk, its GPT has one partition: the same EFI.IMG.\r\n",
        );
    }
    t.into_bytes()
}

/// A reader that fails unless its inner reader gives exactly `left` bytes.
struct ExactReader<R> {
    inner: R,
    left: u64,
    name: &'static str,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("iso: {} ended {} bytes early", self.name, self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A writer that passes its stream through, except that bytes
/// `0..code.len()` are replaced by `code` and bytes `body_start..body_end`
/// by what `body` reads.
struct Overlay<'a, 'w> {
    inner: &'w mut dyn Write,
    at: u64,
    code: Option<&'a [u8]>,
    body_start: u64,
    body_end: u64,
    body: &'a mut dyn Read,
    scratch: Vec<u8>,
}

impl Write for Overlay<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (from, to) = (self.at, self.at + buf.len() as u64);
        let code_end = self.code.map_or(0, |c| c.len() as u64);
        let n = if from < code_end {
            let n = (to.min(code_end) - from) as usize;
            let code = self.code.unwrap_or_default();
            self.inner
                .write_all(&code[from as usize..from as usize + n])?;
            n
        } else if from >= self.body_start && from < self.body_end {
            let n = (to.min(self.body_end) - from).min(1 << 20) as usize;
            self.scratch.resize(n, 0);
            self.body.read_exact(&mut self.scratch)?;
            self.inner.write_all(&self.scratch)?;
            n
        } else {
            let stop = if from < self.body_start {
                to.min(self.body_start)
            } else {
                to
            };
            let n = (stop - from) as usize;
            self.inner.write_all(&buf[..n])?;
            n
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
    if bytes.len() as u64 > SECTOR {
        return Err(io::Error::other("iso: a directory outgrew its sector"));
    }
    w.write_all(bytes)?;
    write_zeros(w, SECTOR - bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Bios {
        loader: Vec<u8>,
        c32: Vec<u8>,
        mbr: Vec<u8>,
        kernel: Content,
        initrd: Vec<u8>,
    }

    fn bios(store: &ContentStore) -> Bios {
        let mut loader = vec![0x90u8; 4096];
        loader[64..68].copy_from_slice(&HYBRID.to_le_bytes());
        Bios {
            loader,
            c32: b"ldlinux.c32".to_vec(),
            mbr: vec![0x33; 432],
            kernel: store.add(&[0x4B; 3000]).unwrap(),
            initrd: vec![0x49; 5000],
        }
    }

    const HYBRID: u32 = 0x7078_C0FB;

    fn iso_linux<'a>(b: &'a Bios, initrd: &'a mut &'a [u8], len: u64) -> IsoLinux<'a> {
        IsoLinux {
            loader: &b.loader,
            ldlinux_c32: &b.c32,
            mbr: &b.mbr,
            kernel: &b.kernel,
            initrd,
            initrd_len: len,
            cmdline: "console=ttyS0",
        }
    }

    fn sector(out: &[u8], lba: u32) -> &[u8] {
        &out[(u64::from(lba) * SECTOR) as usize..]
    }

    fn le32(b: &[u8]) -> u32 {
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// (name, lba, size) of every file record of the root directory.
    fn root_files(out: &[u8]) -> Vec<(String, u32, u32)> {
        let mut dir = &sector(out, ROOT_LBA)[..SECTOR as usize];
        let mut files = Vec::new();
        while dir[0] != 0 {
            let len = dir[0] as usize;
            let name = &dir[33..33 + dir[32] as usize];
            if dir[25] & 2 == 0 {
                files.push((
                    String::from_utf8_lossy(name).into_owned(),
                    le32(&dir[2..]),
                    le32(&dir[10..]),
                ));
            }
            dir = &dir[len..];
        }
        files
    }

    #[test]
    fn efi_only_puts_the_esp_last_behind_a_gpt() {
        let store = ContentStore::new().unwrap();
        let uki = store.add(&[0xA5; 5000]).unwrap();
        let mut out = Vec::new();
        let n = write_iso(None, Some(&uki), &store, 0, "t", &mut out).unwrap();
        assert_eq!(n, out.len() as u64);
        assert_eq!(n % MIB, 0);
        assert_eq!(&out[510..512], &[0x55, 0xAA]);
        assert_eq!(&out[512..520], b"EFI PART");
        assert_eq!(out[446 + 4], 0xEE);
        assert_eq!(&out[..8], &[0; 8], "no MBR code without BIOS");
        let files = root_files(&out);
        let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(names, ["EFI.IMG;1", "README.TXT;1"]);
        let (_, esp_lba, esp_len) = files[0];
        // The volume ends with the ESP, before the backup GPT.
        let total = esp_lba + (esp_len as u64).div_ceil(SECTOR) as u32;
        assert_eq!(le32(&sector(&out, PVD_LBA)[80..]), total);
        assert_eq!(&sector(&out, esp_lba)[82..90], b"FAT32   ");
        // The catalog: one EFI entry as the default.
        let cat = sector(&out, CATALOG_LBA);
        assert_eq!((cat[1], cat[32], cat[64]), (PLATFORM_EFI, 0x88, 0));
        assert_eq!(le32(&cat[40..]), esp_lba);
    }

    #[test]
    fn bios_only_is_an_isohybrid_image() {
        let store = ContentStore::new().unwrap();
        let b = bios(&store);
        let mut initrd = b.initrd.as_slice();
        let mut out = Vec::new();
        let n = write_iso(
            Some(iso_linux(&b, &mut initrd, 5000)),
            None,
            &store,
            0,
            "t",
            &mut out,
        )
        .unwrap();
        assert_eq!((n, out.len() as u64), (MIB, MIB));
        let files = root_files(&out);
        let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "INITRD.IMG;1",
                "ISOLINUX.BIN;1",
                "ISOLINUX.CFG;1",
                "KERNEL.;1",
                "LDLINUX.C32;1",
                "README.TXT;1"
            ]
        );
        let find = |name: &str| files.iter().find(|f| f.0 == name).cloned().unwrap();
        let (_, loader, _) = find("ISOLINUX.BIN;1");
        // The MBR: isohybrid code pointing at the loader, an active 0x17
        // partition over the image.
        assert_eq!(&out[..432], &[0x33; 432][..]);
        assert_eq!(le32(&out[432..]), loader * 4);
        assert_eq!((out[446], out[450]), (0x80, 0x17));
        assert_eq!(le32(&out[458..]), (MIB / 512) as u32);
        // The boot-information table, and the x86 catalog entry.
        let l = sector(&out, loader);
        assert_eq!(
            (le32(&l[8..]), le32(&l[12..]), le32(&l[16..])),
            (16, loader, 4096)
        );
        let cat = sector(&out, CATALOG_LBA);
        assert_eq!(
            (cat[1], cat[32], cat[38], le32(&cat[40..])),
            (0, 0x88, 4, loader)
        );
        assert_eq!(cat[64], 0, "one entry only");
        let (_, k, klen) = find("KERNEL.;1");
        assert_eq!(&sector(&out, k)[..klen as usize], &[0x4B; 3000][..]);
        let (_, i, ilen) = find("INITRD.IMG;1");
        assert_eq!(&sector(&out, i)[..ilen as usize], b.initrd.as_slice());
        let (_, c, clen) = find("ISOLINUX.CFG;1");
        let cfg = String::from_utf8_lossy(&sector(&out, c)[..clen as usize]).into_owned();
        assert!(cfg.contains("APPEND console=ttyS0\n"), "{cfg}");
    }

    #[test]
    fn bios_and_efi_share_one_image() {
        let store = ContentStore::new().unwrap();
        let b = bios(&store);
        let uki = store.add(&[0xA5; 5000]).unwrap();
        let mut initrd = b.initrd.as_slice();
        let mut out = Vec::new();
        write_iso(
            Some(iso_linux(&b, &mut initrd, 5000)),
            Some(&uki),
            &store,
            0,
            "t",
            &mut out,
        )
        .unwrap();
        let files = root_files(&out);
        let find = |name: &str| files.iter().find(|f| f.0 == name).cloned().unwrap();
        let (_, loader, _) = find("ISOLINUX.BIN;1");
        let (_, esp, _) = find("EFI.IMG;1");
        assert!(esp > loader, "the ESP is last");
        // MBR code and a protective MBR + GPT together.
        assert_eq!(&out[..432], &[0x33; 432][..]);
        assert_eq!(le32(&out[432..]), loader * 4);
        assert_eq!(out[446 + 4], 0xEE);
        assert_eq!(&out[512..520], b"EFI PART");
        // The GPT's ESP starts where EFI.IMG does.
        let entry = &out[1024..1024 + 128];
        assert_eq!(le32(&entry[32..]), esp * 4);
        let cat = sector(&out, CATALOG_LBA);
        assert_eq!((cat[1], le32(&cat[40..])), (0, loader));
        assert_eq!(&cat[64..68], &[0x91, PLATFORM_EFI, 1, 0]);
        assert_eq!(le32(&cat[104..]), esp);
    }

    #[test]
    fn large_esps_get_a_count_of_zero() {
        let store = ContentStore::new().unwrap();
        let uki = store.add(&vec![7u8; 40 << 20]).unwrap();
        let mut out = Vec::new();
        write_iso(None, Some(&uki), &store, 0, "t", &mut out).unwrap();
        let entry = &sector(&out, CATALOG_LBA)[32..64];
        assert_eq!(&entry[6..8], &[0, 0]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let store = ContentStore::new().unwrap();
        let err = write_iso(None, None, &store, 0, "t", &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let b = bios(&store);
        // The initrd reader ends before its length.
        let mut initrd = b.initrd.as_slice();
        let err = write_iso(
            Some(iso_linux(&b, &mut initrd, 6000)),
            None,
            &store,
            0,
            "t",
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("INITRD.IMG ended 1000 bytes early"),
            "{err}"
        );
        let mut bad = bios(&store);
        bad.loader[64] = 0;
        let mut initrd = b.initrd.as_slice();
        let err = write_iso(
            Some(iso_linux(&bad, &mut initrd, 5000)),
            None,
            &store,
            0,
            "t",
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("isohybrid signature"), "{err}");
    }
}
