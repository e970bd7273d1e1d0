//! The deterministic tar writer: POSIX ustar headers, with a PAX extended
//! header in front of an entry only when ustar cannot hold it.
//!
//! It takes a [`Tree`] and its [`ContentStore`] and writes entries in tree
//! order: directories with a trailing `/`, symlinks, devices, fifos, and
//! hard links as tar hard links to the first member of their group (which
//! carries the data and the group's metadata). `uname`/`gname` are empty;
//! the archive ends with two zero blocks and is not padded to a record
//! size. It never reads the host: every byte is a function of the tree.
//!
//! A PAX header (type `x`, always named `././@PaxHeader`, mode 0644, owner
//! 0, mtime the entry's) is written when a name does not fit ustar's
//! `prefix`/`name` split or a link target exceeds 100 bytes (`path`,
//! `linkpath`), when the entry has extended attributes
//! (`SCHILY.xattr.NAME`, as GNU tar and libarchive read them), or when
//! uid, gid, size or mtime exceed their octal fields (the field then holds
//! 0). Device numbers above 2097151 use `SCHILY.devmajor`/`devminor`.
//! Negative mtimes are clamped to 0.

use std::io::{self, Write};

use super::{invalid, resolve, show, Counter, Links, ZEROS};
use crate::tree::{Content, ContentStore, Entry, Kind, Tree};

/// Options for [`write_tar_with`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TarOptions {
    /// A directory (normalised, no leading or trailing `/`) prepended to
    /// every path and hard-link target; empty for none. The directory
    /// itself is not added as an entry.
    pub prefix: Vec<u8>,
}

/// One file for [`write_tar_files`].
#[derive(Clone, Debug)]
pub struct TarFile<'a> {
    /// Path in the archive (normalised, no leading `/`).
    pub name: &'a [u8],
    pub mode: u32,
    pub mtime: i64,
    pub content: &'a Content,
}

/// Write `tree` as a tar archive to `w`; returns the bytes written.
pub fn write_tar(tree: &Tree, store: &ContentStore, w: &mut dyn Write) -> io::Result<u64> {
    write_tar_with(tree, store, &TarOptions::default(), w)
}

/// Write a tar of just `files` (root-owned regular files, no parent
/// directories), in path order, e.g. a kernel and initrd side by side.
pub fn write_tar_files(
    files: &[TarFile<'_>],
    store: &ContentStore,
    w: &mut dyn Write,
) -> io::Result<u64> {
    let mut tree = Tree::new();
    for f in files {
        tree.insert(f.name.to_vec(), Entry::file(f.content.clone(), f.mode, f.mtime));
    }
    write_tar(&tree, store, w)
}

/// [`write_tar`] with options.
pub fn write_tar_with(
    tree: &Tree,
    store: &ContentStore,
    opts: &TarOptions,
    w: &mut dyn Write,
) -> io::Result<u64> {
    let links = Links::new(tree)?;
    let mut out = Counter { inner: w, count: 0 };
    for (path, _) in tree.iter() {
        let path = path.as_slice();
        let (_, inode) = resolve(tree, path)?;
        let name = |p: &[u8], dir: bool| {
            let mut n = crate::tree::join(&opts.prefix, p);
            if dir {
                n.push(b'/');
            }
            n
        };
        // A later member of a hard-link group becomes a tar hard link.
        let link_to = links
            .group_of(path)
            .map(|members| members[0])
            .filter(|first| *first != path);
        let member = Member {
            name: name(path, inode.is_dir()),
            entry: inode,
            hardlink: link_to.map(|first| name(first, false)),
        };
        write_member(&mut out, store, &member)?;
    }
    out.write_all(&ZEROS[..1024])?;
    Ok(out.count)
}

struct Member<'a> {
    name: Vec<u8>,
    entry: &'a Entry,
    hardlink: Option<Vec<u8>>,
}

const MAX_OCTAL_7: u64 = 0o7777777;
const MAX_OCTAL_11: u64 = 0o77777777777;

fn write_member(out: &mut Counter<'_>, store: &ContentStore, m: &Member<'_>) -> io::Result<()> {
    let e = m.entry;
    let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let (typeflag, size, linkname, dev) = match (&m.hardlink, &e.kind) {
        (Some(first), _) => (b'1', 0, first.as_slice(), (0, 0)),
        (None, Kind::File(c)) => (b'0', c.len(), &b""[..], (0, 0)),
        (None, Kind::Dir) => (b'5', 0, &b""[..], (0, 0)),
        (None, Kind::Symlink(t)) => (b'2', 0, t.as_slice(), (0, 0)),
        (None, Kind::Char { major, minor }) => (b'3', 0, &b""[..], (*major, *minor)),
        (None, Kind::Block { major, minor }) => (b'4', 0, &b""[..], (*major, *minor)),
        (None, Kind::Fifo) => (b'6', 0, &b""[..], (0, 0)),
        // `resolve` never yields a link; keep the match total without panicking.
        (None, Kind::Hardlink(_)) => {
            return Err(invalid(format!("{}: unresolved hard link", show(&m.name))))
        }
    };
    if linkname.contains(&0) || m.name.contains(&0) {
        return Err(invalid(format!("{}: name contains a NUL byte", show(&m.name))));
    }

    let split = split_name(&m.name);
    if split.is_none() {
        pax.push((b"path".to_vec(), m.name.clone()));
    }
    if linkname.len() > 100 {
        pax.push((b"linkpath".to_vec(), linkname.to_vec()));
    }
    let mtime = e.mtime.max(0) as u64;
    let mut numeric = |key: &str, value: u64, max: u64| -> u64 {
        if value > max {
            pax.push((key.as_bytes().to_vec(), value.to_string().into_bytes()));
            0
        } else {
            value
        }
    };
    let uid = numeric("uid", e.uid.into(), MAX_OCTAL_7);
    let gid = numeric("gid", e.gid.into(), MAX_OCTAL_7);
    let size_field = numeric("size", size, MAX_OCTAL_11);
    let mtime_field = numeric("mtime", mtime, MAX_OCTAL_11);
    let major = numeric("SCHILY.devmajor", dev.0.into(), MAX_OCTAL_7);
    let minor = numeric("SCHILY.devminor", dev.1.into(), MAX_OCTAL_7);
    for (k, v) in &e.xattrs {
        pax.push((format!("SCHILY.xattr.{k}").into_bytes(), v.clone()));
    }
    pax.sort();

    if !pax.is_empty() {
        let body = pax_records(&pax);
        let h = ustar_header(&UstarFields {
            name: (b"", b"././@PaxHeader"),
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: body.len() as u64,
            mtime: mtime.min(MAX_OCTAL_11),
            typeflag: b'x',
            linkname: b"",
            dev: (0, 0),
        });
        out.write_all(&h)?;
        out.write_all(&body)?;
        pad512(out, body.len() as u64)?;
    }

    let (prefix, name): (&[u8], &[u8]) = match split {
        Some(s) => s,
        // The PAX `path` wins; keep a truncated name for old readers.
        None => (b"", &m.name[m.name.len().saturating_sub(100)..]),
    };
    let h = ustar_header(&UstarFields {
        name: (prefix, name),
        mode: e.mode & 0o7777,
        uid,
        gid,
        size: size_field,
        mtime: mtime_field,
        typeflag,
        linkname: &linkname[..linkname.len().min(100)],
        dev: (major, minor),
    });
    out.write_all(&h)?;
    if let (None, Kind::File(c)) = (&m.hardlink, &e.kind) {
        let before = out.count;
        store.copy_to(c, out)?;
        if out.count - before != c.len() {
            return Err(invalid(format!("{}: content store gave a short read", show(&m.name))));
        }
        pad512(out, c.len())?;
    }
    Ok(())
}

/// Split a name into ustar's (prefix ≤ 155, name ≤ 100) at a `/`, or
/// `None` if it cannot be split.
fn split_name(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= 100 {
        return Some((b"", name));
    }
    // Prefer the longest prefix that fits, so the name part is shortest.
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    (1..trimmed.len())
        .rev()
        .filter(|&i| trimmed[i] == b'/')
        .find(|&i| i <= 155 && name.len() - i - 1 <= 100)
        .map(|i| (&name[..i], &name[i + 1..]))
}

/// PAX records `"<len> <key>=<value>\n"`, where len counts the whole record.
fn pax_records(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        let rest = k.len() + v.len() + 3; // space, '=', newline
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

struct UstarFields<'a> {
    name: (&'a [u8], &'a [u8]),
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
    linkname: &'a [u8],
    dev: (u64, u64),
}

fn ustar_header(f: &UstarFields<'_>) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[0..f.name.1.len()].copy_from_slice(f.name.1);
    octal(&mut h[100..108], f.mode.into());
    octal(&mut h[108..116], f.uid);
    octal(&mut h[116..124], f.gid);
    octal(&mut h[124..136], f.size);
    octal(&mut h[136..148], f.mtime);
    h[156] = f.typeflag;
    h[157..157 + f.linkname.len()].copy_from_slice(f.linkname);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], f.dev.0);
    octal(&mut h[337..345], f.dev.1);
    h[345..345 + f.name.0.len()].copy_from_slice(f.name.0);
    // The checksum is computed with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    octal(&mut h[148..155], sum.into());
    h[155] = b' ';
    h
}

/// Zero-padded octal filling all but the last byte of `field`, then NUL.
/// Callers keep values within the field (see `MAX_OCTAL_*`).
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    let s = s.as_bytes();
    field[..digits].copy_from_slice(&s[s.len() - digits..]);
    field[digits] = 0;
}

fn pad512(out: &mut Counter<'_>, len: u64) -> io::Result<()> {
    let pad = ((512 - len % 512) % 512) as usize;
    out.write_all(&ZEROS[..pad])
}
