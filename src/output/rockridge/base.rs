//! The plain ISO 9660 pieces of the Rock Ridge root-filesystem image that
//! the boot ISO does not share (its volume descriptors and dates come from
//! `iso::desc`): path table records for a whole hierarchy, directory
//! records with a system use field, and the level-1 identifiers
//! (`NAME.EXT;1`) derived from real names. Each function takes plain
//! values and gives bytes; nothing here does I/O or reads the clock.
//!
//! Numbers are stored "both-byte order" (little-endian, then big-endian)
//! except in path tables, which come in one copy per byte order.

use std::collections::{BTreeMap, BTreeSet};

pub(super) use crate::output::iso::desc::short_date;

/// ISO 9660 logical sector (and block) size.
pub(super) const SECTOR: usize = 2048;
/// A directory record's fixed part, before the identifier.
pub(super) const RECORD_FIXED: usize = 33;
/// The longest directory record with an even length.
const RECORD_MAX: usize = 254;

/// One directory record's fixed fields.
pub(super) struct Record<'a> {
    /// `NAME.EXT;1`, `NAME` for a directory, or `[0]`/`[1]` for `.`/`..`.
    pub(super) ident: &'a [u8],
    pub(super) lba: u32,
    pub(super) size: u32,
    pub(super) dir: bool,
    pub(super) epoch: i64,
}

pub(super) fn both32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
    buf.extend_from_slice(&v.to_be_bytes());
}

fn both16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_le_bytes());
    buf.extend_from_slice(&v.to_be_bytes());
}

/// Room for the system use field of a record with identifier `ident`, so
/// that the whole record has an even length of at most 254 bytes.
pub(super) fn system_use_room(ident: &[u8]) -> usize {
    RECORD_MAX.saturating_sub(header_len(ident))
}

/// Bytes before the system use field: fixed part, identifier, pad byte.
fn header_len(ident: &[u8]) -> usize {
    RECORD_FIXED + ident.len() + (ident.len() + 1) % 2
}

/// A directory record with system use field `su` (at most
/// [`system_use_room`] bytes), padded to an even length.
pub(super) fn dir_record(r: &Record, su: &[u8]) -> Vec<u8> {
    let head = header_len(r.ident);
    let len = head + su.len() + su.len() % 2;
    let mut d = Vec::with_capacity(len);
    d.push(len as u8);
    d.push(0); // extended attribute record length
    both32(&mut d, r.lba);
    both32(&mut d, r.size);
    d.extend_from_slice(&short_date(r.epoch));
    d.push(if r.dir { 0x02 } else { 0 });
    d.extend_from_slice(&[0, 0]); // file unit size, interleave gap
    both16(&mut d, 1); // volume sequence number
    d.push(r.ident.len() as u8);
    d.extend_from_slice(r.ident);
    d.resize(head, 0);
    d.extend_from_slice(su);
    d.resize(len, 0);
    d
}

/// One path table record, little-endian (type L) or big-endian (type M).
pub(super) fn path_record(ident: &[u8], lba: u32, parent: u16, big_endian: bool) -> Vec<u8> {
    let mut t = vec![ident.len() as u8, 0];
    if big_endian {
        t.extend_from_slice(&lba.to_be_bytes());
        t.extend_from_slice(&parent.to_be_bytes());
    } else {
        t.extend_from_slice(&lba.to_le_bytes());
        t.extend_from_slice(&parent.to_le_bytes());
    }
    t.extend_from_slice(ident);
    if ident.len() % 2 == 1 {
        t.push(0);
    }
    t
}

/// A d-character for one character (as a code point): itself for
/// `A-Z 0-9 _`, `_` for anything else.
fn d_char(c: u32) -> u8 {
    match c {
        0x41..=0x5A | 0x30..=0x39 | 0x5F => c as u8,
        _ => b'_',
    }
}

/// Upper-cased d-characters for a name, at most `max` of them.
fn d_chars(name: &[u8], max: usize) -> Vec<u8> {
    name.iter()
        .take(max)
        .map(|b| d_char(u32::from(b.to_ascii_uppercase())))
        .collect()
}

/// Gives the children of one directory distinct level-1 identifiers: 8.3
/// for files (`NAME.EXT;1`), 8 characters for directories. A name that
/// clashes with an earlier one gets a decimal counter over its tail.
#[derive(Default)]
pub(super) struct Namer {
    /// (name part, extension) pairs taken, for files and directories alike.
    used: BTreeSet<(Vec<u8>, Vec<u8>)>,
    /// The next counter to try for a clashing (name, extension).
    next: BTreeMap<(Vec<u8>, Vec<u8>), u64>,
}

impl Namer {
    /// The identifier for a child called `name`. Call in a fixed order.
    pub(super) fn identifier(&mut self, name: &[u8], dir: bool) -> Vec<u8> {
        let split = name.iter().rposition(|&b| b == b'.').filter(|&i| i > 0);
        let (base, ext) = match split {
            Some(i) if !dir => (d_chars(&name[..i], 8), d_chars(&name[i + 1..], 3)),
            _ => (d_chars(name, 8), Vec::new()),
        };
        let mut key = (base, ext);
        if self.used.contains(&key) {
            let stem = key.clone();
            let mut n = self.next.get(&stem).copied().unwrap_or(1);
            loop {
                let digits = n.to_string().into_bytes();
                let keep = stem.0.len().min(8usize.saturating_sub(digits.len()));
                let mut base = stem.0[..keep].to_vec();
                base.extend_from_slice(&digits);
                n += 1;
                if !self.used.contains(&(base.clone(), stem.1.clone())) {
                    key = (base, stem.1.clone());
                    break;
                }
            }
            self.next.insert(stem, n);
        }
        self.used.insert(key.clone());
        let (mut ident, ext) = key;
        if !dir {
            ident.push(b'.');
            ident.extend_from_slice(&ext);
            ident.extend_from_slice(b";1");
        }
        ident
    }
}

/// The ISO 9660 sort key of an identifier: name part, then extension
/// (d-characters all sort above the space padding the standard compares
/// with, so plain byte order is the standard's order).
pub(super) fn sort_key(ident: &[u8]) -> (&[u8], &[u8]) {
    let ident = ident.strip_suffix(b";1").unwrap_or(ident);
    match ident.iter().position(|&b| b == b'.') {
        Some(i) => (&ident[..i], &ident[i + 1..]),
        None => (ident, &[]),
    }
}
