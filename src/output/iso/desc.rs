//! The fixed structures of an ISO 9660 image with an El Torito catalog:
//! volume descriptors, path tables, directory records, the boot catalog
//! and the two date formats. Each function takes plain values and gives
//! the structure's bytes; nothing here does I/O or reads the clock.
//!
//! ISO 9660 stores most numbers twice, little-endian then big-endian
//! ("both-byte order"); the path tables come in one copy per byte order.

use super::SECTOR;

/// The values the primary volume descriptor records.
pub(crate) struct Primary<'a> {
    /// The system identifier (at most 32 bytes, space-padded): `KILN` for
    /// boot media, `LINUX` for a Rock Ridge root filesystem.
    pub(crate) system: &'a [u8],
    pub(crate) label: &'a [u8; 32],
    pub(crate) total_sectors: u32,
    pub(crate) path_table_len: u32,
    pub(crate) path_l: u32,
    pub(crate) path_m: u32,
    /// The root directory's own record (34 bytes, no system use field).
    pub(crate) root: &'a [u8],
    pub(crate) epoch: i64,
}

/// One directory record.
pub(super) struct DirRecord {
    /// The file identifier: `NAME.EXT;1`, or `[0]`/`[1]` for `.`/`..`.
    pub(super) name: Vec<u8>,
    pub(super) lba: u32,
    pub(super) size: u32,
    pub(super) dir: bool,
    pub(super) epoch: i64,
}

const STANDARD_ID: &[u8; 5] = b"CD001";
const EL_TORITO_ID: &[u8] = b"EL TORITO SPECIFICATION";

/// The volume label from a free-form name: upper-cased, other characters
/// than `A-Z 0-9 _` replaced by `_`, at most 32 characters, space-padded;
/// `KILN` for an empty name.
pub(crate) fn volume_label(name: &str) -> [u8; 32] {
    let name = if name.is_empty() { "KILN" } else { name };
    let mut label = [b' '; 32];
    for (slot, c) in label.iter_mut().zip(name.chars()) {
        *slot = match c.to_ascii_uppercase() {
            c @ ('A'..='Z' | '0'..='9' | '_') => c as u8,
            _ => b'_',
        };
    }
    label
}

fn header(kind: u8) -> Vec<u8> {
    let mut s = vec![0u8; SECTOR as usize];
    s[0] = kind;
    s[1..6].copy_from_slice(STANDARD_ID);
    s[6] = 1;
    s
}

fn both32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
    buf[at + 4..at + 8].copy_from_slice(&v.to_be_bytes());
}

fn both16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
    buf[at + 2..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// The primary volume descriptor (sector 16).
pub(crate) fn primary(p: &Primary) -> Vec<u8> {
    let mut s = header(1);
    s[8..72].fill(b' '); // system and volume identifiers
    s[8..8 + p.system.len().min(32)].copy_from_slice(&p.system[..p.system.len().min(32)]);
    s[40..72].copy_from_slice(p.label);
    both32(&mut s, 80, p.total_sectors);
    both16(&mut s, 120, 1); // volume set size
    both16(&mut s, 124, 1); // volume sequence number
    both16(&mut s, 128, SECTOR as u16);
    both32(&mut s, 132, p.path_table_len);
    s[140..144].copy_from_slice(&p.path_l.to_le_bytes());
    s[148..152].copy_from_slice(&p.path_m.to_be_bytes());
    s[156..156 + p.root.len()].copy_from_slice(p.root);
    // Volume set, publisher, preparer, application, and the copyright,
    // abstract and bibliographic file identifiers: all blank but one.
    s[190..813].fill(b' ');
    s[574..578].copy_from_slice(b"KILN");
    let now = long_date(p.epoch);
    s[813..830].copy_from_slice(&now); // creation
    s[830..847].copy_from_slice(&now); // modification
    s[847..864].copy_from_slice(&long_date_unset()); // expiration
    s[864..881].copy_from_slice(&now); // effective
    s[881] = 1; // file structure version
    s
}

/// The El Torito boot record volume descriptor (sector 17).
pub(super) fn boot_record(catalog_lba: u32) -> Vec<u8> {
    let mut s = header(0);
    s[7..7 + EL_TORITO_ID.len()].copy_from_slice(EL_TORITO_ID);
    s[71..75].copy_from_slice(&catalog_lba.to_le_bytes());
    s
}

/// The volume descriptor set terminator.
pub(crate) fn terminator() -> Vec<u8> {
    header(255)
}

/// A path table holding only the root directory, in little-endian (type
/// L) or big-endian (type M) order.
pub(super) fn path_table(root_lba: u32, big_endian: bool) -> Vec<u8> {
    let mut t = vec![1, 0]; // identifier length, extended attribute length
    if big_endian {
        t.extend_from_slice(&root_lba.to_be_bytes());
        t.extend_from_slice(&1u16.to_be_bytes());
    } else {
        t.extend_from_slice(&root_lba.to_le_bytes());
        t.extend_from_slice(&1u16.to_le_bytes());
    }
    t.extend_from_slice(&[0, 0]); // the root's identifier, then padding
    t
}

/// A directory record: 33 bytes, the identifier, and a pad byte to keep
/// the length even.
pub(super) fn dir_record(r: &DirRecord) -> Vec<u8> {
    let len = 33 + r.name.len() + (r.name.len() + 1) % 2;
    let mut d = vec![0u8; len];
    d[0] = len as u8;
    both32(&mut d, 2, r.lba);
    both32(&mut d, 10, r.size);
    d[18..25].copy_from_slice(&short_date(r.epoch));
    d[25] = if r.dir { 0x02 } else { 0 };
    both16(&mut d, 28, 1); // volume sequence number
    d[32] = r.name.len() as u8;
    d[33..33 + r.name.len()].copy_from_slice(&r.name);
    d
}

/// One bootable image of the catalog.
pub(super) struct CatalogEntry {
    /// El Torito platform id: 0 for x86 BIOS, 0xEF for UEFI.
    pub(super) platform: u8,
    pub(super) lba: u32,
    /// 512-byte sectors to load; 0 for "to the end of the volume".
    pub(super) sectors: u16,
}

/// The boot catalog: a validation entry naming the first entry's platform,
/// that entry as the default one, then a section (header and one entry)
/// for each further entry, the last header marked final. Every entry is
/// bootable and loads its image without emulation.
pub(super) fn boot_catalog(entries: &[CatalogEntry]) -> Vec<u8> {
    let mut c = vec![0u8; 64 * entries.len().max(1)];
    c[0] = 1; // header id
    c[1] = entries.first().map_or(0, |e| e.platform);
    c[4..8].copy_from_slice(b"KILN");
    c[30] = 0x55;
    c[31] = 0xAA;
    let sum = c[..32].chunks(2).fold(0u16, |s, w| {
        s.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
    });
    c[28..30].copy_from_slice(&0u16.wrapping_sub(sum).to_le_bytes());
    let entry = |e: &CatalogEntry, out: &mut [u8]| {
        out[0] = 0x88; // bootable
        out[1] = 0; // no emulation
        out[6..8].copy_from_slice(&e.sectors.to_le_bytes());
        out[8..12].copy_from_slice(&e.lba.to_le_bytes());
    };
    if let Some(first) = entries.first() {
        entry(first, &mut c[32..64]);
    }
    for (i, e) in entries.iter().enumerate().skip(1) {
        let at = 64 * i;
        let header = &mut c[at..at + 32];
        header[0] = if i + 1 == entries.len() { 0x91 } else { 0x90 };
        header[1] = e.platform;
        header[2..4].copy_from_slice(&1u16.to_le_bytes());
        entry(e, &mut c[at + 32..at + 64]);
    }
    c
}

/// Year, month, day, hour, minute, second (UTC) of seconds since 1970;
/// callers clamp to the range their field can hold.
pub(crate) fn civil(t: i64) -> [i64; 6] {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil, for days since 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    [year, month, day, secs / 3600, secs / 60 % 60, secs % 60]
}

/// The 17-byte volume descriptor date: `YYYYMMDDHHMMSScc` and a zero
/// offset from UTC, clamped to 1970–9999.
pub(crate) fn long_date(epoch: i64) -> [u8; 17] {
    let [y, mo, d, h, mi, s] = civil(epoch.clamp(0, 253_402_300_799));
    let text = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}00");
    let mut out = [0u8; 17];
    out[..16].copy_from_slice(text.as_bytes());
    out
}

/// The 17-byte "not specified" date.
fn long_date_unset() -> [u8; 17] {
    let mut out = [b'0'; 17];
    out[16] = 0;
    out
}

/// The 7-byte date of directory records and short-form Rock Ridge TF
/// entries: years since 1900 in one byte, so clamped to 1900–2155, UTC.
pub(crate) fn short_date(epoch: i64) -> [u8; 7] {
    // Clamp first so the calendar arithmetic stays in range.
    let [y, mo, d, h, mi, s] = civil(epoch.clamp(-2_208_988_800, 5_869_583_999));
    [
        (y - 1900) as u8,
        mo as u8,
        d as u8,
        h as u8,
        mi as u8,
        s as u8,
        0,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_and_clamped() {
        // 2024-02-29 13:45:31 UTC.
        assert_eq!(&long_date(1_709_214_331), b"2024022913453100\0");
        assert_eq!(short_date(1_709_214_331), [124, 2, 29, 13, 45, 31, 0]);
        assert_eq!(&long_date(-5), b"1970010100000000\0");
        assert_eq!(short_date(i64::MAX), [255, 12, 31, 23, 59, 59, 0]);
        assert_eq!(&long_date(i64::MAX), b"9999123123595900\0");
    }

    #[test]
    fn catalog_validation_entry_sums_to_zero() {
        let c = boot_catalog(&[CatalogEntry {
            platform: 0xEF,
            lba: 24,
            sectors: 10,
        }]);
        assert_eq!(c.len(), 64);
        let sum = c[..32].chunks(2).fold(0u16, |s, w| {
            s.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
        });
        assert_eq!(sum, 0);
        assert_eq!(&c[30..32], &[0x55, 0xAA]);
    }

    #[test]
    fn a_second_platform_gets_a_final_section() {
        let c = boot_catalog(&[
            CatalogEntry {
                platform: 0,
                lba: 30,
                sectors: 4,
            },
            CatalogEntry {
                platform: 0xEF,
                lba: 99,
                sectors: 0,
            },
        ]);
        assert_eq!(
            (c[1], c[32], c[38], &c[40..44]),
            (0, 0x88, 4, &30u32.to_le_bytes()[..])
        );
        assert_eq!(&c[64..68], &[0x91, 0xEF, 1, 0]);
        assert_eq!((c[96], &c[102..104]), (0x88, &[0u8, 0][..]));
        assert_eq!(&c[104..108], &99u32.to_le_bytes());
    }

    #[test]
    fn labels_are_d_characters() {
        assert_eq!(&volume_label("my-image.v2")[..12], b"MY_IMAGE_V2 ");
        assert_eq!(&volume_label("")[..5], b"KILN ");
        assert_eq!(volume_label(&"x".repeat(40)), [b'X'; 32]);
    }

    #[test]
    fn records_have_even_lengths() {
        let r = |name: &[u8]| DirRecord {
            name: name.to_vec(),
            lba: 1,
            size: 2,
            dir: false,
            epoch: 0,
        };
        assert_eq!(dir_record(&r(&[0])).len(), 34);
        assert_eq!(dir_record(&r(b"EFI.IMG;1")).len(), 42);
        assert_eq!(dir_record(&r(b"README.TXT;1")).len(), 46);
    }
}
