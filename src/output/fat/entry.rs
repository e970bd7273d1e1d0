//! The 32-byte directory entries of FAT32 and the names and times in them.
//!
//! It takes a file name and gives the entries that store it: one short
//! (8.3) entry, preceded by VFAT long-name entries unless the name already
//! is an upper-case 8.3 name; generated short names are `BASE~N.EXT` with
//! the lowest free `N` of the directory, so they depend only on the sorted
//! names. Times come from the epoch given, never from the clock.

use std::collections::BTreeSet;
use std::io;

use super::{input, put16, put32, NO_LABEL};

const ATTR_LFN: u8 = 0x0F;

/// A FAT date and time.
#[derive(Clone, Copy)]
pub(super) struct Stamp {
    pub(super) date: u16,
    pub(super) time: u16,
}

pub(super) fn short_entry(
    name: &[u8; 11],
    attr: u8,
    cluster: u32,
    size: u32,
    stamp: Stamp,
) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[..11].copy_from_slice(name);
    e[11] = attr;
    put16(&mut e, 14, stamp.time); // created
    put16(&mut e, 16, stamp.date);
    put16(&mut e, 18, stamp.date); // accessed
    put16(&mut e, 20, (cluster >> 16) as u16);
    put16(&mut e, 22, stamp.time); // written
    put16(&mut e, 24, stamp.date);
    put16(&mut e, 26, cluster as u16);
    put32(&mut e, 28, size);
    e
}

/// The VFAT long-name entries for `name`, last part first, as stored.
pub(super) fn lfn_entries(name: &str, short: &[u8; 11]) -> Vec<u8> {
    let mut units: Vec<u16> = name.encode_utf16().collect();
    if !units.len().is_multiple_of(13) {
        units.push(0);
        units.resize(units.len().div_ceil(13) * 13, 0xFFFF);
    }
    let sum = short
        .iter()
        .fold(0u8, |s, &b| (s >> 1).wrapping_add(s << 7).wrapping_add(b));
    let count = units.len() / 13;
    let mut out = Vec::with_capacity(count * 32);
    for seq in (1..=count).rev() {
        let part = &units[(seq - 1) * 13..][..13];
        let mut e = [0u8; 32];
        e[0] = seq as u8 | if seq == count { 0x40 } else { 0 };
        e[11] = ATTR_LFN;
        e[13] = sum;
        let offsets = (1..11)
            .step_by(2)
            .chain((14..26).step_by(2))
            .chain((28..32).step_by(2));
        for (off, &u) in offsets.zip(part) {
            put16(&mut e, off, u);
        }
        out.extend(e);
    }
    out
}

/// How many 32-byte entries `name` takes.
pub(super) fn entry_count(name: &str) -> u64 {
    match plain_short(name) {
        Some(_) => 1,
        None => 1 + (name.encode_utf16().count() as u64).div_ceil(13),
    }
}

/// Characters allowed in a short name besides `A`–`Z` and `0`–`9`.
const SHORT_PUNCT: &[u8] = b"!#$%&'()-@^_`{}~";

fn short_char(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || SHORT_PUNCT.contains(&b)
}

/// `name` as an 11-byte short name, if it is already an upper-case 8.3
/// name that needs no long-name entries.
pub(super) fn plain_short(name: &str) -> Option<[u8; 11]> {
    let (base, ext) = name.split_once('.').unwrap_or((name, ""));
    let ok = |s: &str, max| s.len() <= max && s.bytes().all(short_char);
    if base.is_empty() || !ok(base, 8) || !ok(ext, 3) || (name.contains('.') && ext.is_empty()) {
        return None;
    }
    let mut out = [b' '; 11];
    out[..base.len()].copy_from_slice(base.as_bytes());
    out[8..8 + ext.len()].copy_from_slice(ext.as_bytes());
    Some(out)
}

/// Short names for the children of one directory, in the given order:
/// plain 8.3 names as they are, the others `BASE~N.EXT` with the lowest
/// `N` not yet taken in the directory.
pub(super) fn short_names<'n>(names: impl Iterator<Item = &'n str> + Clone) -> Vec<[u8; 11]> {
    let mut taken: BTreeSet<[u8; 11]> = names.clone().filter_map(plain_short).collect();
    names
        .map(|name| {
            if let Some(short) = plain_short(name) {
                return short;
            }
            let clean = |s: &str| -> Vec<u8> {
                s.chars()
                    .filter(|&c| c != ' ' && c != '.')
                    .map(|c| match u8::try_from(c.to_ascii_uppercase()) {
                        Ok(b) if short_char(b) => b,
                        _ => b'_',
                    })
                    .collect()
            };
            let trimmed = name.trim_start_matches('.');
            let (base, ext) = match trimmed.rfind('.') {
                Some(i) => (clean(&trimmed[..i]), clean(&trimmed[i + 1..])),
                None => (clean(trimmed), Vec::new()),
            };
            let base = if base.is_empty() { b"_".to_vec() } else { base };
            let mut out = [b' '; 11];
            let ext = &ext[..ext.len().min(3)];
            out[8..8 + ext.len()].copy_from_slice(ext);
            for n in 1u32.. {
                let tail = format!("~{n}");
                let keep = base.len().min(8 - tail.len());
                let mut candidate = out;
                candidate[..8].fill(b' ');
                candidate[..keep].copy_from_slice(&base[..keep]);
                candidate[keep..keep + tail.len()].copy_from_slice(tail.as_bytes());
                if taken.insert(candidate) {
                    return candidate;
                }
            }
            unreachable!("a directory holds fewer than 65536 names")
        })
        .collect()
}

/// Reject path components FAT cannot store.
pub(super) fn check_name(path: &str, name: &str) -> io::Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.ends_with('.')
        || name.ends_with(' ')
        || name.encode_utf16().count() > 255
        || name
            .chars()
            .any(|c| c < ' ' || "\"*/:<>?\\|\u{7f}".contains(c));
    if bad {
        return Err(input(format!(
            "fat: {path}: {name:?} is not a valid FAT file name"
        )));
    }
    Ok(())
}

pub(super) fn check_label(label: &[u8; 11]) -> io::Result<()> {
    if *label == NO_LABEL || (label[0] != b' ' && label.iter().all(|&b| b == b' ' || short_char(b)))
    {
        return Ok(());
    }
    Err(input(format!(
        "fat: volume label {:?} must be upper-case letters, digits or spaces",
        String::from_utf8_lossy(label)
    )))
}

/// `epoch` as a FAT date and time (UTC), clamped to 1980-01-01 00:00:00
/// ..= 2107-12-31 23:59:58; seconds are rounded down to even.
pub(super) fn stamp(epoch: i64) -> Stamp {
    let t = epoch.clamp(315_532_800, 4_354_819_198);
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (year, month, day) = civil_date(days);
    let date = ((year - 1980) << 9) | (month << 5) | day;
    let time = ((secs / 3600) << 11) | ((secs / 60 % 60) << 5) | (secs % 60 / 2);
    Stamp {
        date: date as u16,
        time: time as u16,
    }
}

/// The proleptic Gregorian (year, month, day) of a day count since
/// 1970-01-01, by shifting to years that start on 1 March.
fn civil_date(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let m = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * m + 2) / 5 + 1;
    let month = if m < 10 { m + 3 } else { m - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_and_clamped() {
        // 2024-02-29 13:45:31 UTC
        let Stamp { date: d, time: t } = stamp(1_709_214_331);
        assert_eq!((d >> 9, (d >> 5) & 15, d & 31), (44, 2, 29));
        assert_eq!((t >> 11, (t >> 5) & 63, (t & 31) * 2), (13, 45, 30));
        assert_eq!((stamp(0).date, stamp(0).time), (0x21, 0)); // 1980-01-01
        assert_eq!(stamp(i64::MAX).date, stamp(4_354_819_198).date);
        assert_eq!(civil_date(-1), (1969, 12, 31));
    }

    #[test]
    fn short_names_keep_plain_names_and_number_the_rest() {
        let names = [
            "BOOTX64.EFI",
            "a long name.conf",
            "a long nAme.txt",
            "efi",
            "ALONGN~1.CON",
        ];
        let got: Vec<String> = short_names(names.iter().copied())
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        assert_eq!(
            got,
            [
                "BOOTX64 EFI",
                "ALONGN~2CON",
                "ALONGN~1TXT",
                "EFI~1      ",
                "ALONGN~1CON"
            ]
        );
        assert_eq!(entry_count("BOOTX64.EFI"), 1);
        assert_eq!(entry_count("efi"), 2);
        assert_eq!(entry_count("abcdefghijklmn"), 3);
    }

    #[test]
    fn long_names_are_split_terminated_and_padded() {
        let short = *b"ABCDEF~1   ";
        let e = lfn_entries("abcdefghijklmn", &short);
        assert_eq!(e.len(), 64);
        let (last, first) = (&e[..32], &e[32..]);
        assert_eq!((last[0], first[0]), (0x42, 0x01));
        assert_eq!((last[11], first[11]), (ATTR_LFN, ATTR_LFN));
        assert_eq!(last[13], first[13], "one checksum for the set");
        assert_eq!(&first[1..3], &[b'a', 0]);
        // "n", then the terminator, then 0xFFFF padding.
        assert_eq!(&last[1..7], &[b'n', 0, 0, 0, 0xFF, 0xFF]);
        assert_eq!(&last[30..32], &[0xFF, 0xFF]);
    }
}
