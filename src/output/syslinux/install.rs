//! SYSLINUX on a FAT volume: the `raw-bios` disk, and the BIOS half of the
//! hybrid `raw-efi` disk (SYSLINUX on its ESP, beside the UKI).
//!
//! [`syslinux_files`] gives SYSLINUX's files for a volume and [`install`]
//! patches them for the sectors they will occupy once the volume's other
//! files and size are known; the raw-bios writer and the raw-efi writer
//! ([`write_raw_efi`](super::super::disk::write_raw_efi)) both use them.
//!
//! [`write_raw_bios`] takes SYSLINUX's four pieces ([`Syslinux`]: the MBR
//! code, the boot sector, `ldlinux.sys` and its `ldlinux.c32`), the kernel,
//! the initrd and the command line, and writes a whole disk front to back:
//! an MBR (SYSLINUX's `mbr.bin`, one active FAT32-LBA partition at 1 MiB),
//! then the FAT32 volume from [`write_fat`] holding `LDLINUX.SYS`,
//! `LDLINUX.C32`, `SYSLINUX.CFG`, `KERNEL` and `INITRD.IMG`. It gives the
//! bytes written and never runs the `syslinux` installer.
//!
//! What the installer would do, done on the bytes before they are written:
//! the FAT writer places every file in one contiguous run of clusters at a
//! position that depends only on the file names and sizes, so the sectors
//! of `LDLINUX.SYS` are known before the volume exists. `ldlinux.sys` is
//! then patched as Syslinux 6's `syslinux_patch` does: its first sector's
//! address goes into the boot sector, the rest as extents into the
//! extended patch area, the two ADV sectors (an empty Auxiliary Data
//! Vector, appended to the file) into the ADV pointers, the sizes and a
//! checksum into the patch area. The boot sector keeps the volume's BPB
//! and takes SYSLINUX's jump and code. Sector numbers are relative to the
//! volume; SYSLINUX adds the BPB's hidden-sector count (the partition's
//! start) when it reads.

use std::io::{self, Write};

use super::super::disk::guid_from;
use super::super::fat::{file_sectors, min_fat_size, write_fat, FatOptions};
use super::super::{invalid_input as input, write_zeros};
use super::config;
use crate::tree::{Content, ContentStore};

/// SYSLINUX's pieces, all of one build.
pub struct Syslinux<'a> {
    /// 440 bytes of MBR code: `mbr.bin` (boots the active MBR partition)
    /// for an MBR disk, `gptmbr.bin` (boots the GPT partition marked
    /// legacy-BIOS-bootable) for a GPT disk.
    pub mbr: &'a [u8],
    /// `ldlinux.bss`: the FAT boot sector template (512 bytes).
    pub boot_sector: &'a [u8],
    /// `ldlinux.sys` as built (without its ADV).
    pub ldlinux_sys: &'a [u8],
    pub ldlinux_c32: &'a [u8],
}

/// The partition starts 1 MiB into the disk.
const PART_START: u64 = 2048;
const SECTOR: u64 = 512;
const LDLINUX_MAGIC: u32 = 0x3EB2_02FE;
const ADV_MAGIC1: u32 = 0x5A2D_2FA5;
const ADV_MAGIC2: u32 = 0xA304_1767;
const ADV_MAGIC3: u32 = 0xDD28_BF64;
/// The FAT32 (LBA) partition type.
const FAT32_LBA: u8 = 0x0C;

/// SYSLINUX's files for a FAT volume, by path: `LDLINUX.SYS` (zeros of
/// its final size until [`install`] patches it), `LDLINUX.C32`,
/// `SYSLINUX.CFG` (boot `/kernel` with `/initrd.img` and `cmdline`),
/// `KERNEL` and `INITRD.IMG`. Other files may go beside them on the same
/// volume (the ESP of a hybrid GPT disk keeps its UKI there). Pieces that
/// are not the sizes SYSLINUX's are an `InvalidInput` error.
pub fn syslinux_files(
    sl: &Syslinux,
    kernel: &Content,
    initrd: &Content,
    cmdline: &str,
    store: &ContentStore,
) -> io::Result<Vec<(&'static str, Content)>> {
    if sl.mbr.len() != 440 || sl.boot_sector.len() != 512 {
        return Err(input(format!(
            "syslinux: the MBR code ({} bytes) and ldlinux.bss ({} bytes) must be 440 \
             and 512 bytes",
            sl.mbr.len(),
            sl.boot_sector.len()
        )));
    }
    let sys_len = sl.ldlinux_sys.len() as u64 + 2 * SECTOR;
    Ok(vec![
        ("INITRD.IMG", initrd.clone()),
        ("KERNEL", kernel.clone()),
        ("LDLINUX.C32", store.add(sl.ldlinux_c32)?),
        ("LDLINUX.SYS", store.add(&vec![0; sys_len as usize])?),
        (
            "SYSLINUX.CFG",
            store.add(config(cmdline, "/kernel", "/initrd.img").as_bytes())?,
        ),
    ])
}

/// Install SYSLINUX on the volume [`write_fat`] will write from `files`
/// (which hold [`syslinux_files`]) and `opts`: `LDLINUX.SYS` becomes the
/// loader patched for the sectors it will occupy, with its ADV, and
/// `opts.boot_code` SYSLINUX's boot sector pointing at it. What the
/// `syslinux` installer does to a mounted volume, done before it exists.
pub fn install(
    sl: &Syslinux,
    files: &mut [(&str, Content)],
    opts: &mut FatOptions,
    store: &ContentStore,
) -> io::Result<()> {
    let sys_len = sl.ldlinux_sys.len() as u64 + 2 * SECTOR;
    let refs: Vec<(&str, &Content)> = files.iter().map(|(p, c)| (*p, c)).collect();
    let (first, count) = file_sectors(&refs, opts, "LDLINUX.SYS")?
        .ok_or_else(|| io::Error::other("syslinux: the volume has no LDLINUX.SYS"))?;
    let sectors: Vec<u64> = (first..first + sys_len.div_ceil(SECTOR)).collect();
    if (sectors.len() as u64) > count {
        return Err(io::Error::other(
            "syslinux: LDLINUX.SYS outgrew its clusters",
        ));
    }
    let mut boot_sector = [0u8; 512];
    boot_sector.copy_from_slice(sl.boot_sector);
    let mut sys = sl.ldlinux_sys.to_vec();
    patch(&mut sys, &mut boot_sector, &sectors).map_err(input)?;
    sys.extend_from_slice(&empty_adv());
    if sys.len() as u64 != sys_len {
        return Err(io::Error::other("syslinux: LDLINUX.SYS changed size"));
    }
    let sys = store.add(&sys)?;
    for (path, content) in files.iter_mut() {
        if *path == "LDLINUX.SYS" {
            *content = sys.clone();
        }
    }
    opts.boot_code = Some(boot_sector);
    Ok(())
}

/// Write the `raw-bios` disk; returns the bytes written.
///
/// Without `size` the disk is the smallest that fits (1 MiB plus a FAT32
/// volume of at least 33 MiB); with it, the partition fills the disk. A
/// `size` too small or not a multiple of 512, or SYSLINUX pieces that are
/// not what they should be, is an `InvalidInput` error.
#[allow(clippy::too_many_arguments)]
pub fn write_raw_bios(
    sl: &Syslinux,
    kernel: &Content,
    initrd: &Content,
    cmdline: &str,
    store: &ContentStore,
    epoch: i64,
    size: Option<u64>,
    w: &mut dyn Write,
) -> io::Result<u64> {
    let mut files = syslinux_files(sl, kernel, initrd, cmdline, store)?;
    let refs: Vec<(&str, &Content)> = files.iter().map(|(p, c)| (*p, c)).collect();
    let min_volume = min_fat_size(&refs)?;
    let needed = PART_START * SECTOR + min_volume;
    let volume = match size {
        None => min_volume,
        Some(size) if !size.is_multiple_of(SECTOR) || size < needed => {
            return Err(input(format!(
                "raw-bios: the kernel and initrd ({} bytes) need a disk of at least {needed} \
                 bytes (a multiple of {SECTOR}), but the size given is {size} bytes",
                kernel.len() + initrd.len()
            )))
        }
        Some(size) => size - PART_START * SECTOR,
    };
    let mut seed = kernel.sha256().to_vec();
    seed.extend_from_slice(&initrd.sha256());
    seed.extend_from_slice(cmdline.as_bytes());
    seed.extend_from_slice(&epoch.to_le_bytes());
    let serial = guid_from(&[b"kiln raw-bios fat serial".as_slice(), &seed].concat());
    let signature = guid_from(&[b"kiln raw-bios mbr signature".as_slice(), &seed].concat());
    let mut opts = FatOptions {
        size_bytes: Some(volume),
        volume_id: u32::from_le_bytes([serial[0], serial[1], serial[2], serial[3]]),
        label: *b"KILN       ",
        epoch,
        hidden_sectors: PART_START as u32,
        boot_code: None,
    };
    install(sl, &mut files, &mut opts, store)?;
    let refs: Vec<(&str, &Content)> = files.iter().map(|(p, c)| (*p, c)).collect();

    let total = PART_START + volume / SECTOR;
    let mut mbr = [0u8; 512];
    mbr[..440].copy_from_slice(sl.mbr);
    mbr[440..444].copy_from_slice(&signature[..4]);
    let p = &mut mbr[446..462];
    p[0] = 0x80;
    p[1..4].copy_from_slice(&super::chs(PART_START));
    p[4] = FAT32_LBA;
    p[5..8].copy_from_slice(&super::chs(total - 1));
    p[8..12].copy_from_slice(&(PART_START as u32).to_le_bytes());
    let part_sectors = u32::try_from(volume / SECTOR)
        .map_err(|_| input("raw-bios: the partition is larger than 2 TiB".into()))?;
    p[12..16].copy_from_slice(&part_sectors.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    w.write_all(&mbr)?;
    write_zeros(w, (PART_START - 1) * SECTOR)?;
    let n = write_fat(&refs, store, &opts, w)?;
    Ok(PART_START * SECTOR + n)
}

fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize)
}

/// Patch `sys` (ldlinux.sys, without ADV) and the boot sector template for
/// a file lying at `sectors` (volume-relative; the last two are the ADV),
/// as Syslinux 6.04's `syslinux_patch` does.
fn patch(sys: &mut [u8], boot_sector: &mut [u8; 512], sectors: &[u64]) -> Result<(), String> {
    let bad = |what: &str| format!("ldlinux.sys: {what}; is it SYSLINUX 6's?");
    let nsect = (sys.len() as u64).div_ceil(SECTOR) as usize + 2;
    if sectors.len() < nsect || !sys.len().is_multiple_of(4) {
        return Err(bad("its size does not match its sectors"));
    }
    let pa = (0..sys.len() / 4)
        .map(|i| i * 4)
        .find(|&i| sys[i..i + 4] == LDLINUX_MAGIC.to_le_bytes())
        .ok_or_else(|| bad("no patch area"))?;
    // struct patch_area: magic, instance, data_sectors, adv_sectors,
    // dwords, checksum, maxtransfer, epaoffset.
    let epa = u16_at(sys, pa + 22).ok_or_else(|| bad("patch area cut short"))?;
    let field =
        |i: usize| u16_at(sys, epa + 2 * i).ok_or_else(|| bad("extended patch area cut short"));
    let (advptr, secptr, secptrcnt) = (field(0)?, field(5)?, field(6)?);
    let (sect1ptr0, sect1ptr1) = (field(7)?, field(8)?);
    if sect1ptr0 + 4 > 510 || sect1ptr1 + 4 > 510 || sect1ptr0 < 90 || sect1ptr1 < 90 {
        return Err(bad("the boot sector pointer lies outside the boot code"));
    }
    boot_sector[sect1ptr0..sect1ptr0 + 4].copy_from_slice(&(sectors[0] as u32).to_le_bytes());
    boot_sector[sect1ptr1..sect1ptr1 + 4]
        .copy_from_slice(&((sectors[0] >> 32) as u32).to_le_bytes());

    let dwords = sys.len() / 4;
    sys[pa + 8..pa + 10].copy_from_slice(&((nsect - 2) as u16).to_le_bytes());
    sys[pa + 10..pa + 12].copy_from_slice(&2u16.to_le_bytes());
    sys[pa + 12..pa + 16].copy_from_slice(&(dwords as u32).to_le_bytes());

    // The sectors after the first, as extents loaded from 0x8000 on: runs
    // of consecutive sectors under 64 KiB that do not cross a 64 KiB line.
    let data = &sectors[1..nsect - 2];
    let mut extents: Vec<(u64, u16)> = Vec::new();
    let mut addr: u64 = 0x8000;
    let mut base = addr;
    for &sect in data {
        if let Some((lba, len)) = extents.last_mut() {
            let xbytes = (u64::from(*len) + 1) * SECTOR;
            if sect == *lba + u64::from(*len)
                && xbytes < 65536
                && (addr ^ (base + xbytes - 1)) & 0xFFFF_0000 == 0
            {
                *len += 1;
                addr += SECTOR;
                continue;
            }
        }
        base = addr;
        extents.push((sect, 1));
        addr += SECTOR;
    }
    if extents.len() > secptrcnt || secptr + 10 * secptrcnt > sys.len() {
        return Err(bad("too many extents for its sector pointer table"));
    }
    sys[secptr..secptr + 10 * secptrcnt].fill(0);
    for (i, (lba, len)) in extents.iter().enumerate() {
        let at = secptr + 10 * i;
        sys[at..at + 8].copy_from_slice(&lba.to_le_bytes());
        sys[at + 8..at + 10].copy_from_slice(&len.to_le_bytes());
    }
    if advptr + 16 > sys.len() {
        return Err(bad("the ADV pointers lie outside the file"));
    }
    sys[advptr..advptr + 8].copy_from_slice(&sectors[nsect - 2].to_le_bytes());
    sys[advptr + 8..advptr + 16].copy_from_slice(&sectors[nsect - 1].to_le_bytes());

    // The checksum makes the dwords sum to LDLINUX_MAGIC.
    sys[pa + 16..pa + 20].fill(0);
    let sum = sys.chunks_exact(4).fold(0u32, |s, w| {
        s.wrapping_add(u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
    });
    sys[pa + 16..pa + 20].copy_from_slice(&LDLINUX_MAGIC.wrapping_sub(sum).to_le_bytes());
    Ok(())
}

/// Two copies of an empty Auxiliary Data Vector (SYSLINUX's saved state).
fn empty_adv() -> [u8; 1024] {
    let mut adv = [0u8; 1024];
    for copy in adv.chunks_exact_mut(512) {
        copy[0..4].copy_from_slice(&ADV_MAGIC1.to_le_bytes());
        // The checksum of all-zero data is the magic itself.
        copy[4..8].copy_from_slice(&ADV_MAGIC2.to_le_bytes());
        copy[508..512].copy_from_slice(&ADV_MAGIC3.to_le_bytes());
    }
    adv
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in ldlinux.sys: a patch area at 0x18, its extended patch
    /// area at 0x100 (ADV pointers at 0x200, 8 extents at 0x300, boot
    /// sector pointers at 0x1F0/0x1F4).
    fn fake_sys() -> Vec<u8> {
        let mut s = vec![0u8; 4096];
        s[0x18..0x1C].copy_from_slice(&LDLINUX_MAGIC.to_le_bytes());
        s[0x18 + 22..0x18 + 24].copy_from_slice(&0x100u16.to_le_bytes());
        for (i, v) in [0x200u16, 0, 0, 0, 0, 0x300, 8, 0x1F0, 0x1F4]
            .iter()
            .enumerate()
        {
            s[0x100 + 2 * i..0x100 + 2 * i + 2].copy_from_slice(&v.to_le_bytes());
        }
        s[0x400] = 0x77;
        s
    }

    #[test]
    fn patch_fills_pointers_extents_and_checksum() {
        let mut sys = fake_sys();
        let mut bs = [0u8; 512];
        // 8 data sectors + 2 ADV; a gap splits the extents after sector 104.
        let sectors = [100, 101, 102, 103, 104, 200, 201, 202, 203, 300, 301];
        patch(&mut sys, &mut bs, &sectors[..10]).unwrap();
        assert_eq!(&bs[0x1F0..0x1F4], &100u32.to_le_bytes());
        assert_eq!(&bs[0x1F4..0x1F8], &0u32.to_le_bytes());
        let le16 = |at: usize| u16::from_le_bytes([sys[at], sys[at + 1]]);
        let le64 = |at: usize| u64::from_le_bytes(sys[at..at + 8].try_into().unwrap());
        assert_eq!((le16(0x18 + 8), le16(0x18 + 10)), (8, 2));
        assert_eq!(&sys[0x18 + 12..0x18 + 16], &1024u32.to_le_bytes());
        assert_eq!((le64(0x300), le16(0x308)), (101, 4));
        assert_eq!((le64(0x30A), le16(0x312)), (200, 3));
        assert_eq!(le64(0x314), 0, "no third extent");
        assert_eq!((le64(0x200), le64(0x208)), (203, 300));
        let sum = sys.chunks_exact(4).fold(0u32, |s, w| {
            s.wrapping_add(u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        });
        assert_eq!(sum, LDLINUX_MAGIC);
    }

    #[test]
    fn extents_hold_at_most_127_sectors() {
        let mut sys = vec![0u8; 512 * 200];
        sys[..4096].copy_from_slice(&fake_sys());
        let mut bs = [0u8; 512];
        let sectors: Vec<u64> = (1000..1202).collect();
        patch(&mut sys, &mut bs, &sectors).unwrap();
        let le16 = |at: usize| u16::from_le_bytes([sys[at], sys[at + 1]]);
        // 199 sectors after the first: one read moves less than 64 KiB.
        assert_eq!(le16(0x308), 127);
        assert_eq!(le16(0x312), 72);
        assert_eq!(le16(0x31C), 0);
    }

    #[test]
    fn foreign_loaders_are_refused() {
        let mut bs = [0u8; 512];
        let err = patch(&mut vec![0u8; 4096], &mut bs, &[1; 10]).unwrap_err();
        assert!(err.contains("no patch area"), "{err}");
        let err = patch(&mut fake_sys(), &mut bs, &[1; 3]).unwrap_err();
        assert!(err.contains("size"), "{err}");
    }

    #[test]
    fn adv_copies_check_out() {
        let adv = empty_adv();
        assert_eq!(adv[..512], adv[512..]);
        assert_eq!(&adv[508..512], &ADV_MAGIC3.to_le_bytes());
    }
}
