//! Reading one newc (`070701`) or newc-with-checksum (`070702`) cpio
//! archive, up to and including its `TRAILER!!!`.
//!
//! It takes the input positioned at a header and appends one
//! [`Listing`] per member. Names and symlink targets are bounded by
//! [`MAX_NAME`]; file contents are hashed while streamed. Hard-link
//! groups (regular files sharing device and inode numbers, `nlink` > 1)
//! are resolved when the archive ends, as the kernel forgets its link
//! table at the trailer.

use std::collections::BTreeMap;
use std::io::{self, Read};

use sha2::{Digest, Sha256};

use super::input::Input;
use super::{Listing, MemberType, ReadError, MAX_NAME};

const HEADER_LEN: usize = 110;

pub(crate) fn read_archive<R: Read>(
    input: &mut Input<R>,
    rows: &mut Vec<Listing>,
) -> Result<(), ReadError> {
    let start = rows.len();
    // (dev major, dev minor, ino) to the indices of its members.
    let mut groups: BTreeMap<(u32, u32, u32), Vec<usize>> = BTreeMap::new();
    loop {
        let offset = input.offset();
        let mut header = [0u8; HEADER_LEN];
        input.read_exact(&mut header)?;
        let f = parse_fields(&header)
            .ok_or_else(|| ReadError::Bad(format!("bad cpio header at offset {offset}")))?;
        let [ino, mode, uid, gid, nlink, _mtime, size, dev_major, dev_minor, rdev_major, rdev_minor, namesize, _check] =
            f;
        let namesize = namesize as usize;
        if namesize == 0 || namesize > MAX_NAME + 1 {
            return Err(ReadError::Bad(format!(
                "cpio name size {namesize} out of range at offset {offset}"
            )));
        }
        let mut name = vec![0u8; namesize];
        input.read_exact(&mut name)?;
        if name.pop() != Some(0) || name.contains(&0) {
            return Err(ReadError::Bad(format!(
                "cpio name not NUL-terminated at offset {offset}"
            )));
        }
        input.skip(pad4(HEADER_LEN + namesize))?;
        if name == b"TRAILER!!!" {
            break;
        }
        let size = u64::from(size);
        let kind = match mode & 0o170000 {
            0o100000 => MemberType::File,
            0o040000 => MemberType::Dir,
            0o120000 => MemberType::Symlink,
            0o020000 => MemberType::Char,
            0o060000 => MemberType::Block,
            0o010000 => MemberType::Fifo,
            0o140000 => MemberType::Socket,
            other => {
                return Err(ReadError::Bad(format!(
                    "{}: unknown file type {other:o} in cpio",
                    String::from_utf8_lossy(&name)
                )))
            }
        };
        let mut row = Listing {
            kind,
            perm: mode & 0o7777,
            uid: uid.into(),
            gid: gid.into(),
            size: 0,
            rdev: None,
            sha256: None,
            path: name,
            target: None,
        };
        match kind {
            MemberType::File => {
                row.size = size;
                row.sha256 = Some(hash(input, size)?);
                if nlink > 1 {
                    groups
                        .entry((dev_major, dev_minor, ino))
                        .or_default()
                        .push(rows.len());
                }
            }
            MemberType::Symlink => {
                if size as usize > MAX_NAME {
                    return Err(ReadError::Bad(format!(
                        "{}: symlink target longer than {MAX_NAME} bytes",
                        String::from_utf8_lossy(&row.path)
                    )));
                }
                let mut target = vec![0u8; size as usize];
                input.read_exact(&mut target)?;
                row.size = size;
                row.target = Some(target);
            }
            _ => input.skip(size)?,
        }
        if matches!(kind, MemberType::Char | MemberType::Block) {
            row.rdev = Some((rdev_major, rdev_minor));
        }
        input.skip(pad4(size as usize))?;
        rows.push(row);
    }
    for members in groups.values() {
        resolve_group(&mut rows[start..], members, start);
    }
    Ok(())
}

/// Show the first member as the file (with the data, wherever it was
/// stored) and the others as hard links to it.
fn resolve_group(rows: &mut [Listing], members: &[usize], start: usize) {
    if members.len() < 2 {
        return;
    }
    let idx = |i: usize| i - start;
    let data = members
        .iter()
        .rev()
        .find(|&&i| rows[idx(i)].size > 0)
        .unwrap_or(&members[0]);
    let (size, sha256) = (rows[idx(*data)].size, rows[idx(*data)].sha256);
    let first = rows[idx(members[0])].path.clone();
    for (n, &i) in members.iter().enumerate() {
        let row = &mut rows[idx(i)];
        row.size = size;
        row.sha256 = sha256;
        if n > 0 {
            row.kind = MemberType::Hardlink;
            row.target = Some(first.clone());
        }
    }
}

/// The 13 hex fields after the magic, or `None` if any is not hex.
fn parse_fields(header: &[u8; HEADER_LEN]) -> Option<[u32; 13]> {
    if !(header.starts_with(b"070701") || header.starts_with(b"070702")) {
        return None;
    }
    let mut out = [0u32; 13];
    for (i, field) in header[6..].chunks_exact(8).enumerate() {
        let s = std::str::from_utf8(field).ok()?;
        out[i] = u32::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

fn pad4(len: usize) -> u64 {
    ((4 - len % 4) % 4) as u64
}

/// SHA-256 of the next `len` bytes, streamed.
fn hash<R: Read>(input: &mut Input<R>, len: u64) -> Result<[u8; 32], ReadError> {
    let mut hasher = Sha256::new();
    let copied = io::copy(&mut input.by_ref().take(len), &mut hasher)?;
    if copied < len {
        return Err(ReadError::Bad("archive is truncated".to_string()));
    }
    Ok(hasher.finalize().into())
}
