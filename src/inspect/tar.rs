//! Reading a tar archive (ustar, PAX, GNU or old v7): headers through the
//! `tar` crate, PAX and GNU long-name members through unpack's bounded
//! reader ([`crate::unpack::extension`]), so a huge long name costs at most
//! its bound.
//!
//! It takes the (decompressed) input and appends one [`Listing`] per
//! member; PAX global headers are skipped. Contents are hashed while
//! streamed. A hard link takes the size and digest of the earlier member
//! it names.

use std::collections::BTreeMap;
use std::io::{self, Read};

use sha2::{Digest, Sha256};

use super::input::Input;
use super::{Listing, MemberType, ReadError, MAX_NAME};
use crate::unpack::extension::{Absorbed, Pending};

/// Whether a 512-byte block is a tar header: the ustar magic, or an old
/// header whose checksum is right.
pub(crate) fn looks_like_tar(block: &[u8]) -> bool {
    if block.len() < 512 {
        return false;
    }
    if &block[257..262] == b"ustar" {
        return true;
    }
    let stored = std::str::from_utf8(&block[148..156])
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
        .and_then(|s| u32::from_str_radix(s, 8).ok());
    block[0] != 0 && stored == Some(crate::output::ustar::header_checksum(block))
}

pub(crate) fn read_tar<R: Read>(
    input: &mut Input<R>,
    rows: &mut Vec<Listing>,
) -> Result<(), ReadError> {
    let bad = |e: io::Error| ReadError::Bad(format!("bad tar archive: {e}"));
    let mut archive = tar::Archive::new(input);
    // Digest and size of every file seen, for hard links.
    let mut files: BTreeMap<Vec<u8>, (u64, [u8; 32])> = BTreeMap::new();
    // Raw members: extension members are read by unpack's bounded reader,
    // never by the tar crate (which reads a long name whole).
    let mut pending = Pending::default();
    for entry in archive.entries().map_err(bad)?.raw(true) {
        let mut entry = entry.map_err(bad)?;
        let absorbed = pending
            .absorb(&mut entry)
            .map_err(|e| ReadError::Bad(format!("bad tar archive: {e}")))?;
        if !matches!(absorbed, Absorbed::Member) {
            continue;
        }
        let ext = std::mem::take(&mut pending);
        let header = entry.header().clone();
        let etype = header.entry_type();
        let kind = match etype {
            tar::EntryType::Regular | tar::EntryType::Continuous => MemberType::File,
            tar::EntryType::Directory => MemberType::Dir,
            tar::EntryType::Symlink => MemberType::Symlink,
            tar::EntryType::Link => MemberType::Hardlink,
            tar::EntryType::Char => MemberType::Char,
            tar::EntryType::Block => MemberType::Block,
            tar::EntryType::Fifo => MemberType::Fifo,
            other => {
                return Err(ReadError::Bad(format!(
                    "unsupported tar entry type {:?}",
                    other.as_byte() as char
                )))
            }
        };
        let path = ext.path(header.path_bytes().into_owned());
        let target = ext.link(&entry);
        let too_long =
            |what: &str| ReadError::Bad(format!("tar member {what} longer than {MAX_NAME} bytes"));
        if path.len() > MAX_NAME {
            return Err(too_long("name"));
        }
        if target.as_ref().is_some_and(|t| t.len() > MAX_NAME) {
            return Err(too_long("link target"));
        }
        let pax = ext.pax.unwrap_or_default();
        if pax.size.is_some_and(|s| s != entry.size()) {
            return Err(ReadError::Bad(
                "a pax size record differing from the header size".to_string(),
            ));
        }
        let path = path.strip_suffix(b"/").map(<[u8]>::to_vec).unwrap_or(path);
        let uid = match pax.uid {
            Some(uid) => uid,
            None => header.uid().map_err(bad)?,
        };
        let gid = match pax.gid {
            Some(gid) => gid,
            None => header.gid().map_err(bad)?,
        };
        let mut row = Listing {
            kind,
            perm: header.mode().map_err(bad)? & 0o7777,
            uid,
            gid,
            size: 0,
            rdev: None,
            sha256: None,
            path,
            target: None,
        };
        match kind {
            MemberType::File => {
                let mut hasher = Sha256::new();
                row.size = io::copy(&mut entry, &mut hasher)?;
                let sha: [u8; 32] = hasher.finalize().into();
                row.sha256 = Some(sha);
                files.insert(row.path.clone(), (row.size, sha));
            }
            MemberType::Symlink | MemberType::Hardlink => {
                let t = target.unwrap_or_default();
                if kind == MemberType::Symlink {
                    row.size = t.len() as u64;
                } else if let Some(&(size, sha)) = files.get(&t) {
                    row.size = size;
                    row.sha256 = Some(sha);
                }
                row.target = Some(t);
            }
            MemberType::Char | MemberType::Block => {
                let major = header.device_major().map_err(bad)?.unwrap_or(0);
                let minor = header.device_minor().map_err(bad)?.unwrap_or(0);
                row.rdev = Some((major, minor));
            }
            _ => {}
        }
        rows.push(row);
    }
    if !pending.is_empty() {
        return Err(ReadError::Bad(
            "bad tar archive: the last extension header describes no member".to_string(),
        ));
    }
    Ok(())
}
