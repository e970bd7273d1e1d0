//! System use entries: SUSP 1.12 (SP, CE) and Rock Ridge 1.12 (ER, PX,
//! TF, NM, SL, PN), and how a record's entries are split between its
//! directory record and continuation areas. Each entry builder takes plain
//! values and gives the entry's bytes; nothing here does I/O.

use super::base::{both32, short_date, SECTOR};

/// The length of a CE entry.
const CE_LEN: usize = 28;
/// The longest entry (its length is one byte).
const ENTRY_MAX: usize = 255;
/// Header bytes of an NM or SL entry: signature, length, version, flags.
const NAME_HEAD: usize = 5;

/// The extension identifier xorriso and mkisofs record for Rock Ridge.
const RRIP_ID: &[u8] = b"RRIP_1991A";
const RRIP_DESCRIPTOR: &[u8] =
    b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const RRIP_SOURCE: &[u8] = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  \
SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";

fn head(sig: &[u8; 2], len: usize) -> Vec<u8> {
    let mut e = Vec::with_capacity(len);
    e.extend_from_slice(sig);
    e.push(len as u8);
    e.push(1); // entry version
    e
}

/// SP: "this volume uses SUSP", first in the root's `.` record; no bytes
/// are skipped before other records' entries.
pub(super) fn sp() -> Vec<u8> {
    let mut e = head(b"SP", 7);
    e.extend_from_slice(&[0xBE, 0xEF, 0]);
    e
}

/// ER: names the Rock Ridge extension, in the root's `.` record.
pub(super) fn er() -> Vec<u8> {
    let len = 8 + RRIP_ID.len() + RRIP_DESCRIPTOR.len() + RRIP_SOURCE.len();
    let mut e = head(b"ER", len);
    e.push(RRIP_ID.len() as u8);
    e.push(RRIP_DESCRIPTOR.len() as u8);
    e.push(RRIP_SOURCE.len() as u8);
    e.push(1); // extension version
    e.extend_from_slice(RRIP_ID);
    e.extend_from_slice(RRIP_DESCRIPTOR);
    e.extend_from_slice(RRIP_SOURCE);
    e
}

/// The POSIX attributes an entry's PX records.
pub(super) struct Posix {
    /// `st_mode`, file type bits included.
    pub(super) mode: u32,
    pub(super) nlink: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    /// `st_ino`: the same for every name of one file.
    pub(super) serial: u32,
}

/// PX in its RRIP 1.12 form (44 bytes, with the serial number).
pub(super) fn px(p: &Posix) -> Vec<u8> {
    let mut e = head(b"PX", 44);
    for v in [p.mode, p.nlink, p.uid, p.gid, p.serial] {
        both32(&mut e, v);
    }
    e
}

/// TF with modification, access and attribute-change times, all `mtime`,
/// in the 7-byte form.
pub(super) fn tf(mtime: i64) -> Vec<u8> {
    let mut e = head(b"TF", 5 + 3 * 7);
    e.push(0x02 | 0x04 | 0x08); // MODIFY | ACCESS | ATTRIBUTES
    for _ in 0..3 {
        e.extend_from_slice(&short_date(mtime));
    }
    e
}

/// PN: a device number, or `None` if Linux could not read it back.
///
/// Linux takes `high:low` as `major:minor`, except that when `high` is 0
/// and `low` is above 255 it reads `low` as an old 16-bit `major << 8 |
/// minor` (as libisofs and the C library's `dev_t` lay it out). So a small
/// device is written in that 16-bit form, which both readers agree on, a
/// large one as `major:minor`, and a large minor under major 0 has no
/// encoding Linux decodes.
pub(super) fn pn(major: u32, minor: u32) -> Option<Vec<u8>> {
    let (high, low) = if major < 1 << 12 && minor < 1 << 8 {
        (0, major << 8 | minor)
    } else if major != 0 {
        (major, minor)
    } else {
        return None;
    };
    let mut e = head(b"PN", 20);
    both32(&mut e, high);
    both32(&mut e, low);
    Some(e)
}

/// NM entries holding `name`, as many as it takes; all but the last
/// carry the CONTINUE flag.
pub(super) fn nm(name: &[u8]) -> Vec<Vec<u8>> {
    let max = ENTRY_MAX - NAME_HEAD;
    let pieces: Vec<&[u8]> = if name.is_empty() {
        vec![name]
    } else {
        name.chunks(max).collect()
    };
    let last = pieces.len() - 1;
    pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let mut e = head(b"NM", NAME_HEAD + piece.len());
            e.push(u8::from(i < last)); // CONTINUE
            e.extend_from_slice(piece);
            e
        })
        .collect()
}

/// Component record flags.
const COMP_CONTINUE: u8 = 0x01;
const COMP_CURRENT: u8 = 0x02;
const COMP_PARENT: u8 = 0x04;
const COMP_ROOT: u8 = 0x08;

/// SL entries recording the symbolic link `target`: one component record
/// per `/`-separated component (`.`, `..` and a leading `/` as flags),
/// long components split over records marked CONTINUE, and the records
/// packed into entries of at most 255 bytes, all but the last entry
/// marked CONTINUE. Empty components (`a//b`, `a/`) are kept.
pub(super) fn sl(target: &[u8]) -> Vec<Vec<u8>> {
    let max_text = ENTRY_MAX - NAME_HEAD - 2;
    let mut comps: Vec<(u8, &[u8])> = Vec::new();
    let mut rest = target;
    if let Some(r) = target.strip_prefix(b"/") {
        comps.push((COMP_ROOT, &[]));
        rest = r;
    }
    // A bare `/` is the root component alone.
    if !rest.is_empty() || comps.is_empty() {
        for part in rest.split(|&b| b == b'/') {
            match part {
                b"." => comps.push((COMP_CURRENT, &[])),
                b".." => comps.push((COMP_PARENT, &[])),
                b"" => comps.push((0, &[])),
                text => {
                    let pieces: Vec<&[u8]> = text.chunks(max_text).collect();
                    let last = pieces.len() - 1;
                    for (i, piece) in pieces.into_iter().enumerate() {
                        let flags = if i < last { COMP_CONTINUE } else { 0 };
                        comps.push((flags, piece));
                    }
                }
            }
        }
    }
    let mut entries: Vec<Vec<u8>> = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    for (flags, text) in comps {
        if NAME_HEAD + body.len() + 2 + text.len() > ENTRY_MAX {
            entries.push(std::mem::take(&mut body));
        }
        body.push(flags);
        body.push(text.len() as u8);
        body.extend_from_slice(text);
    }
    entries.push(body);
    let last = entries.len() - 1;
    entries
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let mut e = head(b"SL", NAME_HEAD + body.len());
            e.push(u8::from(i < last)); // CONTINUE
            e.extend_from_slice(&body);
            e
        })
        .collect()
}

fn ce(lba: u32, offset: u32, len: usize) -> Vec<u8> {
    let mut e = head(b"CE", CE_LEN);
    both32(&mut e, lba);
    both32(&mut e, offset);
    both32(&mut e, len as u32);
    e
}

/// The continuation areas of the image, laid out one after another from
/// sector `base`; an area never crosses a sector boundary, as Linux
/// requires.
pub(super) struct Continuations {
    base: u32,
    /// Bytes of the areas so far, from the first sector's start.
    bytes: Vec<u8>,
}

impl Continuations {
    pub(super) fn new(base: u32) -> Continuations {
        Continuations {
            base,
            bytes: Vec::new(),
        }
    }

    /// Sectors the areas so far take.
    pub(super) fn sectors(&self) -> u32 {
        self.bytes.len().div_ceil(SECTOR) as u32
    }

    /// The areas, padded to whole sectors.
    pub(super) fn into_bytes(mut self) -> Vec<u8> {
        self.bytes.resize(self.sectors() as usize * SECTOR, 0);
        self.bytes
    }

    /// Reserve `len` bytes (at most a sector): their sector and offset.
    fn reserve(&mut self, len: usize) -> (u32, u32, usize) {
        let used = self.bytes.len() % SECTOR;
        if used + len > SECTOR {
            let pad = SECTOR - used;
            self.bytes.resize(self.bytes.len() + pad, 0);
        }
        let at = self.bytes.len();
        self.bytes.resize(at + len, 0);
        (self.base + (at / SECTOR) as u32, (at % SECTOR) as u32, at)
    }
}

/// Lay out `entries`: as many as fit in a directory record's system use
/// field of `room` bytes go there, the rest into continuation areas
/// reserved in `cont`, chained by CE entries. Gives the record's field.
pub(super) fn place(entries: Vec<Vec<u8>>, room: usize, cont: &mut Continuations) -> Vec<u8> {
    let total: usize = entries.iter().map(Vec::len).sum();
    if total <= room {
        return entries.concat();
    }
    let mut field = Vec::with_capacity(room);
    let mut rest = entries.into_iter().peekable();
    while let Some(e) = rest.next_if(|e| field.len() + e.len() + CE_LEN <= room) {
        field.extend_from_slice(&e);
    }
    // Group the rest into areas, each leaving room for a CE while more
    // entries follow it.
    let rest: Vec<Vec<u8>> = rest.collect();
    let mut areas: Vec<Vec<u8>> = vec![Vec::new()];
    for (i, e) in rest.iter().enumerate() {
        let more = if i + 1 < rest.len() { CE_LEN } else { 0 };
        let area = areas.last_mut().expect("areas start non-empty");
        if !area.is_empty() && area.len() + e.len() + more > SECTOR {
            areas.push(Vec::new());
        }
        areas.last_mut().expect("just pushed").extend_from_slice(e);
    }
    let spots: Vec<(u32, u32, usize, usize)> = areas
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let len = a.len() + if i + 1 < areas.len() { CE_LEN } else { 0 };
            let (lba, offset, at) = cont.reserve(len);
            (lba, offset, at, len)
        })
        .collect();
    for (i, mut area) in areas.into_iter().enumerate() {
        if let Some(&(lba, offset, _, len)) = spots.get(i + 1) {
            area.extend_from_slice(&ce(lba, offset, len));
        }
        let at = spots[i].2;
        cont.bytes[at..at + area.len()].copy_from_slice(&area);
    }
    let (lba, offset, _, len) = spots[0];
    field.extend_from_slice(&ce(lba, offset, len));
    field
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The target Linux rebuilds from SL entries (fs/isofs/rock.c).
    fn linux_target(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in entries {
            assert_eq!(&e[..2], b"SL");
            assert_eq!(e[2] as usize, e.len());
            let continued = e[4] & 1 != 0;
            let mut body = &e[5..];
            while body.len() > 1 {
                let (flags, len) = (body[0], body[1] as usize);
                match flags & !1 {
                    0 => out.extend_from_slice(&body[2..2 + len]),
                    COMP_CURRENT => out.push(b'.'),
                    COMP_PARENT => out.extend_from_slice(b".."),
                    COMP_ROOT => out.push(b'/'),
                    other => panic!("flag {other}"),
                }
                body = &body[2 + len..];
                let root = flags & !1 == COMP_ROOT;
                let last = body.len() < 2;
                if !root && flags & 1 == 0 && (!last || continued) {
                    out.push(b'/');
                }
            }
        }
        out
    }

    #[test]
    fn symlink_targets_round_trip_through_linux_rules() {
        let long = format!("../{}/./x//y/", "z".repeat(600));
        for t in [
            "/",
            "/usr/bin/env",
            "busybox",
            "../lib/../lib64/./ld",
            "a//b",
            "a/",
            "//x",
            "",
        ] {
            assert_eq!(linux_target(&sl(t.as_bytes())), t.as_bytes(), "{t}");
        }
        let entries = sl(long.as_bytes());
        assert!(entries.len() > 2);
        assert!(entries.iter().all(|e| e.len() <= ENTRY_MAX));
        assert_eq!(linux_target(&entries), long.as_bytes());
    }

    #[test]
    fn long_names_split_with_continue() {
        let name = vec![b'n'; 600];
        let e = nm(&name);
        assert_eq!(e.len(), 3);
        assert_eq!((e[0][4], e[1][4], e[2][4]), (1, 1, 0));
        let joined: Vec<u8> = e.iter().flat_map(|x| x[5..].to_vec()).collect();
        assert_eq!(joined, name);
    }

    #[test]
    fn devices_encode_as_linux_decodes() {
        // Linux: MKDEV(low >> 8, low & 0xff) if high == 0 and low > 255,
        // else MKDEV(high, low).
        let decode = |e: &[u8]| {
            let high = u32::from_le_bytes(e[4..8].try_into().unwrap());
            let low = u32::from_le_bytes(e[12..16].try_into().unwrap());
            if low & !0xff != 0 && high == 0 {
                (low >> 8, low & 0xff)
            } else {
                (high, low)
            }
        };
        for (ma, mi) in [(5, 1), (0, 7), (259, 3), (8, 300), (4095, 255)] {
            assert_eq!(decode(&pn(ma, mi).unwrap()), (ma, mi));
        }
        assert!(pn(0, 256).is_none());
    }

    #[test]
    fn overflow_goes_to_chained_areas_within_sectors() {
        let mut cont = Continuations::new(100);
        let entries: Vec<Vec<u8>> = (0..20).map(|i| vec![i as u8; 200]).collect();
        let field = place(entries, 150, &mut cont);
        assert_eq!(field.len(), CE_LEN);
        assert_eq!(&field[..2], b"CE");
        // 4000 bytes of entries: two areas, the first ending in a CE.
        assert_eq!(cont.sectors(), 2);
        let bytes = cont.into_bytes();
        assert_eq!(&bytes[2000..2002], b"CE");
        assert_eq!(
            u32::from_le_bytes(bytes[2004..2008].try_into().unwrap()),
            101
        );
        assert_eq!(bytes[2048], 10);
    }
}
