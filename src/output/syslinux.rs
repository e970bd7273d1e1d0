//! The Syslinux family's on-disk contracts: what ISOLINUX and SYSLINUX
//! need patched into their own binaries and the sectors around them.
//!
//! Takes the loader binaries of the `kiln.dev/syslinux` image (built by
//! `pkg/syslinux` from Debian's syslinux 6.04 packages) and gives the bytes
//! the ISO and disk writers place: the configuration file, the El Torito
//! boot-information table patched into `isolinux.bin`, the isohybrid MBR
//! that boots an ISO image as a disk, and (in [`install`]) SYSLINUX
//! installed on a FAT volume — its boot sector merged with the volume's
//! BPB and `ldlinux.sys` patched with the sectors it occupies. It never runs
//! the `syslinux` or `isohybrid` programs and never writes a file itself;
//! every value follows from its arguments.
//!
//! Hand-written because no crate does it: the Syslinux installer is C that
//! mounts or mtools-edits a device. The structures follow Syslinux 6.04's
//! `libinstaller` (`struct patch_area`, `struct ext_patch_area`, the
//! extent list, the ADV) and `isohybrid`'s MBR fields.

use std::io;

pub mod install;

/// `isolinux.bin` carries this at byte 64 when it can boot from a disk.
const HYBRID_MAGIC: u32 = 0x7078_C0FB;
/// Size of the isohybrid MBR code (`isohdpfx.bin`).
pub const ISOHYBRID_CODE_LEN: usize = 432;

/// Check that `loader` is an isohybrid-capable ISOLINUX and `mbr` the
/// isohybrid MBR code; the message says which is wrong.
pub fn check_isolinux(loader: &[u8], mbr: &[u8]) -> Result<(), String> {
    if loader.len() < 2048 || !loader.len().is_multiple_of(4) {
        return Err(format!(
            "isolinux.bin has {} bytes, not a whole number of 4-byte words of at least 2048",
            loader.len()
        ));
    }
    if u32::from_le_bytes([loader[64], loader[65], loader[66], loader[67]]) != HYBRID_MAGIC {
        return Err("isolinux.bin has no isohybrid signature at byte 64".into());
    }
    if mbr.len() != ISOHYBRID_CODE_LEN {
        return Err(format!(
            "isohdpfx.bin has {} bytes, not {ISOHYBRID_CODE_LEN}",
            mbr.len()
        ));
    }
    Ok(())
}

/// Patch the El Torito boot-information table into `loader` (bytes 8 to
/// 63): the primary volume descriptor's sector, the loader's own sector and
/// length, and the sum of its 32-bit words from byte 64 on. ISOLINUX reads
/// it to load the rest of itself, from a CD or (isohybrid) from a disk.
pub fn patch_boot_info(loader: &mut [u8], pvd_lba: u32, lba: u32) {
    let sum = loader[64..].chunks(4).fold(0u32, |s, w| {
        let mut word = [0u8; 4];
        word[..w.len()].copy_from_slice(w);
        s.wrapping_add(u32::from_le_bytes(word))
    });
    let len = u32::try_from(loader.len()).unwrap_or(u32::MAX);
    loader[8..12].copy_from_slice(&pvd_lba.to_le_bytes());
    loader[12..16].copy_from_slice(&lba.to_le_bytes());
    loader[16..20].copy_from_slice(&len.to_le_bytes());
    loader[20..24].copy_from_slice(&sum.to_le_bytes());
    loader[24..64].fill(0);
}

/// A configuration that boots `kernel` with `initrd` and `cmdline` at
/// once, with the loader's console on the first serial port too.
pub fn config(cmdline: &str, kernel: &str, initrd: &str) -> String {
    // A line break would end the APPEND line and start a directive.
    let cmdline: String = cmdline
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!(
        "SERIAL 0 115200\nDEFAULT kiln\nPROMPT 0\nTIMEOUT 0\nLABEL kiln\n  KERNEL {kernel}\n  \
         INITRD {initrd}\n  APPEND {}\n",
        cmdline.trim()
    )
}

/// The first 440 bytes of an isohybrid MBR: the code, then the 512-byte
/// sector of `isolinux.bin` on the disk (which the code loads), then zero.
pub fn isohybrid_code(code: &[u8], loader_sector: u64) -> io::Result<[u8; 440]> {
    let sector = u32::try_from(loader_sector).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "isohybrid: isolinux.bin lies beyond 2 TiB",
        )
    })?;
    if code.len() != ISOHYBRID_CODE_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("isohybrid: the MBR code has {} bytes, not 432", code.len()),
        ));
    }
    let mut out = [0u8; 440];
    out[..ISOHYBRID_CODE_LEN].copy_from_slice(code);
    out[432..436].copy_from_slice(&sector.to_le_bytes());
    Ok(out)
}

/// A whole isohybrid MBR for a BIOS-only image of `total` 512-byte
/// sectors: `code`, the disk `signature`, and one active partition of type
/// 0x17 over the whole image starting at sector 0, as `isohybrid` writes.
pub fn isohybrid_mbr(code: &[u8; 440], signature: u32, total: u64) -> [u8; 512] {
    let mut m = [0u8; 512];
    m[..440].copy_from_slice(code);
    m[440..444].copy_from_slice(&signature.to_le_bytes());
    let p = &mut m[446..462];
    p[0] = 0x80;
    p[1..4].copy_from_slice(&chs(0));
    p[4] = 0x17;
    p[5..8].copy_from_slice(&chs(total.saturating_sub(1)));
    p[12..16].copy_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xAA;
    m
}

/// Heads and sectors per track `isohybrid` assumes (1 MiB cylinders).
const HEADS: u64 = 64;
const SECTORS: u64 = 32;

/// The CHS address of `lba` in that geometry; cylinders past 1023 clamp.
pub fn chs(lba: u64) -> [u8; 3] {
    let cylinder = (lba / (HEADS * SECTORS)).min(1023);
    let head = (lba / SECTORS) % HEADS;
    let sector = lba % SECTORS + 1;
    [
        head as u8,
        sector as u8 | ((cylinder >> 2) & 0xC0) as u8,
        cylinder as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loader() -> Vec<u8> {
        let mut l = vec![0u8; 4096];
        l[64..68].copy_from_slice(&HYBRID_MAGIC.to_le_bytes());
        l[100] = 7;
        l
    }

    #[test]
    fn boot_info_table_sums_the_words_after_it() {
        let mut l = loader();
        l[20] = 0xAA; // stale fields do not count
        patch_boot_info(&mut l, 16, 33);
        let sum = HYBRID_MAGIC.wrapping_add(7);
        let field = |at: usize| u32::from_le_bytes([l[at], l[at + 1], l[at + 2], l[at + 3]]);
        assert_eq!(
            (field(8), field(12), field(16), field(20)),
            (16, 33, 4096, sum)
        );
    }

    #[test]
    fn loaders_are_checked() {
        assert!(check_isolinux(&loader(), &[0; 432]).is_ok());
        let e = check_isolinux(&vec![0; 4096], &[0; 432]).unwrap_err();
        assert!(e.contains("signature"), "{e}");
        let e = check_isolinux(&loader()[..2050], &[0; 432]).unwrap_err();
        assert!(e.contains("2050 bytes"), "{e}");
        let e = check_isolinux(&loader(), &[0; 440]).unwrap_err();
        assert!(e.contains("440"), "{e}");
    }

    #[test]
    fn mbr_points_at_the_loader_and_spans_the_image() {
        let code = isohybrid_code(&[0x33; 432], 92).unwrap();
        let m = isohybrid_mbr(&code, 0x1234_5678, 2048);
        assert_eq!(&m[432..436], &92u32.to_le_bytes());
        assert_eq!(&m[440..444], &0x1234_5678u32.to_le_bytes());
        assert_eq!(&m[446..450], &[0x80, 0, 1, 0]);
        assert_eq!(m[450], 0x17);
        // Last sector 2047: cylinder 0, head 63, sector 32.
        assert_eq!(&m[451..454], &[63, 32, 0]);
        assert_eq!(&m[458..462], &2048u32.to_le_bytes());
        assert_eq!(&m[510..], &[0x55, 0xAA]);
        assert!(isohybrid_code(&[0; 432], 1 << 32).is_err());
    }

    #[test]
    fn config_keeps_the_command_line_on_one_line() {
        let c = config("console=ttyS0\nDEFAULT evil", "/kernel", "/initrd.img");
        assert!(c.contains("  APPEND console=ttyS0 DEFAULT evil\n"), "{c}");
        assert_eq!(c.matches("DEFAULT").count(), 2);
        assert!(c.starts_with("SERIAL 0 115200\nDEFAULT kiln\n"));
    }
}
