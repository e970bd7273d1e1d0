//! The members of an untrusted tar archive, one at a time, bounded.
//!
//! Takes a seekable tar file (an oci-archive or a docker-archive); gives
//! each member's normalised path, type, size and a reader of its data, in
//! archive order. Extension members are read by kiln (the `tar` crate in
//! raw mode) and bounded: a PAX header or GNU long name of more than
//! [`MAX_EXTENSION`] bytes is refused, so is a PAX `size` record that
//! differs from the header. A path must be UTF-8, relative, and free of
//! `..` components; `./` prefixes and `.` components are dropped. Member
//! paths are only ever lookup keys: nothing here (or in `import`) opens a
//! host path made from one. Data the callback does not read is skipped by
//! seeking.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use tar::EntryType;

use super::LayoutError;

/// Largest PAX header or GNU long name/link member read into memory.
pub const MAX_EXTENSION: u64 = 64 << 10;
/// Most members an archive may have.
pub const MAX_MEMBERS: u64 = 1 << 20;

/// What kind of member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberKind {
    File,
    Dir,
    /// A symbolic link and its target as written.
    Symlink(String),
    /// A hard link to an earlier member (its normalised path).
    Hardlink(String),
    /// Devices, FIFOs, …: ignored.
    Other,
}

/// One member, before its data.
#[derive(Clone, Debug)]
pub struct Member {
    pub path: String,
    pub kind: MemberKind,
    pub size: u64,
}

/// Calls `f` for every member of the tar file at `path`, in order; stops at
/// the first error. `f` may read the member's data (or not).
pub fn each_member(
    path: &Path,
    mut f: impl FnMut(&Member, &mut dyn Read) -> Result<(), LayoutError>,
) -> Result<(), LayoutError> {
    let file = crate::hostfile::open_regular(path).map_err(|e| LayoutError::io(path, e))?;
    let mut archive = tar::Archive::new(file);
    let bad = |member: &str, message: String| LayoutError::Member {
        archive: path.to_path_buf(),
        member: member.to_string(),
        message,
    };
    let read_err = |last: &str, e: io::Error| LayoutError::Archive {
        archive: path.to_path_buf(),
        message: if last.is_empty() {
            format!("not a readable tar archive: {e}")
        } else {
            format!("after member {last:?}: not a readable tar archive: {e}")
        },
    };
    let entries = archive
        .entries_with_seek()
        .map_err(|e| read_err("", e))?
        .raw(true);
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link: Option<Vec<u8>> = None;
    let mut pax: Option<crate::unpack::pax::Pax> = None;
    let mut last = String::new();
    let mut count = 0u64;
    for entry in entries {
        let mut entry = entry.map_err(|e| read_err(&last, e))?;
        count += 1;
        if count > MAX_MEMBERS {
            return Err(LayoutError::Archive {
                archive: path.to_path_buf(),
                message: format!("more than {MAX_MEMBERS} members"),
            });
        }
        let header_path = String::from_utf8_lossy(&entry.header().path_bytes()).into_owned();
        let entry_type = entry.header().entry_type();
        let small = |entry: &mut tar::Entry<'_, File>| -> Result<Vec<u8>, LayoutError> {
            let size = entry.size();
            if size > MAX_EXTENSION {
                return Err(bad(
                    &header_path,
                    format!("extension header of {size} bytes (at most {MAX_EXTENSION})"),
                ));
            }
            let mut data = Vec::with_capacity(size as usize);
            entry
                .read_to_end(&mut data)
                .map_err(|e| bad(&header_path, e.to_string()))?;
            Ok(data)
        };
        match entry_type {
            EntryType::XHeader => {
                let data = small(&mut entry)?;
                pax =
                    Some(crate::unpack::pax::parse(&data).map_err(|why| {
                        bad(&header_path, format!("malformed pax header: {why}"))
                    })?);
                continue;
            }
            EntryType::XGlobalHeader => {
                small(&mut entry)?;
                continue;
            }
            EntryType::GNULongName => {
                long_name = Some(trim_nul(small(&mut entry)?));
                continue;
            }
            EntryType::GNULongLink => {
                long_link = Some(trim_nul(small(&mut entry)?));
                continue;
            }
            _ => {}
        }
        let ext = pax.take();
        if ext
            .as_ref()
            .and_then(|p| p.size)
            .is_some_and(|s| s != entry.size())
        {
            return Err(bad(
                &header_path,
                "a pax size record differing from the header size is not supported".into(),
            ));
        }
        let raw_path = long_name
            .take()
            .or_else(|| ext.as_ref().and_then(|p| p.path.clone()))
            .unwrap_or_else(|| entry.header().path_bytes().into_owned());
        let raw_link = long_link
            .take()
            .or_else(|| ext.as_ref().and_then(|p| p.linkpath.clone()))
            .or_else(|| entry.header().link_name_bytes().map(|l| l.into_owned()));
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let member_path = normalise(&raw_path).map_err(|why| bad(&shown, why))?;
        let kind = match entry_type {
            EntryType::Regular | EntryType::Continuous => MemberKind::File,
            EntryType::Directory => MemberKind::Dir,
            EntryType::Symlink => MemberKind::Symlink(
                String::from_utf8(raw_link.unwrap_or_default())
                    .map_err(|_| bad(&shown, "a link target that is not UTF-8".into()))?,
            ),
            EntryType::Link => MemberKind::Hardlink(
                normalise(&raw_link.unwrap_or_default()).map_err(|why| bad(&shown, why))?,
            ),
            _ => MemberKind::Other,
        };
        let member = Member {
            size: entry.size(),
            path: member_path,
            kind,
        };
        f(&member, &mut entry)?;
        last = member.path;
    }
    if long_name.is_some() || long_link.is_some() || pax.is_some() {
        return Err(LayoutError::Archive {
            archive: path.to_path_buf(),
            message: format!("after member {last:?}: an extension header describes no member"),
        });
    }
    Ok(())
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// `./blobs//sha256/x` → `blobs/sha256/x`; refuses absolute paths, `..`
/// and names that are not UTF-8 or hold NUL.
pub fn normalise(raw: &[u8]) -> Result<String, String> {
    let s = std::str::from_utf8(raw).map_err(|_| "a name that is not UTF-8".to_string())?;
    if s.starts_with('/') {
        return Err("an absolute path".into());
    }
    if s.contains('\0') {
        return Err("a name holding a NUL byte".into());
    }
    let mut parts = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("a path with a `..` component".into()),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// Resolves a member path through the archive's symlinks (relative to the
/// link's directory, inside the archive), at most 16 hops; `links` maps a
/// symlink's path to its target.
pub fn resolve_links(
    path: &str,
    links: &std::collections::BTreeMap<String, String>,
) -> Result<String, String> {
    let mut p = normalise(path.as_bytes())?;
    for _ in 0..16 {
        let Some(target) = links.get(&p) else {
            return Ok(p);
        };
        let joined = if target.starts_with('/') {
            return Err(format!("{p} links to an absolute path {target:?}"));
        } else {
            match p.rsplit_once('/') {
                Some((dir, _)) => format!("{dir}/{target}"),
                None => target.clone(),
            }
        };
        p = collapse(&joined).ok_or_else(|| format!("{p} links outside the archive"))?;
    }
    Err(format!("{path}: too many levels of symbolic links"))
}

/// Collapses `a/b/../c` to `a/c`; `None` if it climbs above the root.
fn collapse(path: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_escapes_refused() {
        assert_eq!(normalise(b"./blobs//sha256/ab").unwrap(), "blobs/sha256/ab");
        assert_eq!(normalise(b"index.json").unwrap(), "index.json");
        for bad in [&b"../x"[..], b"a/../../x", b"/etc/passwd", b"a\xff"] {
            assert!(normalise(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn links_resolve_inside_the_archive_only() {
        let mut links = std::collections::BTreeMap::new();
        links.insert("id/layer.tar".to_string(), "../ab.tar".to_string());
        links.insert("up".to_string(), "../x".to_string());
        links.insert("loop".to_string(), "loop".to_string());
        assert_eq!(resolve_links("id/layer.tar", &links).unwrap(), "ab.tar");
        assert_eq!(resolve_links("ab.tar", &links).unwrap(), "ab.tar");
        assert!(resolve_links("up", &links).is_err());
        assert!(resolve_links("loop", &links).is_err());
    }
}
