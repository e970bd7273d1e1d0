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

use super::ustar::{pax_records, split_name, ustar_header, UstarFields, MAX_OCTAL_11, MAX_OCTAL_7};
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
        tree.insert(
            f.name.to_vec(),
            Entry::file(f.content.clone(), f.mode, f.mtime),
        );
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
        return Err(invalid(format!(
            "{}: name contains a NUL byte",
            show(&m.name)
        )));
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
            return Err(invalid(format!(
                "{}: content store gave a short read",
                show(&m.name)
            )));
        }
        pad512(out, c.len())?;
    }
    Ok(())
}

fn pad512(out: &mut Counter<'_>, len: u64) -> io::Result<()> {
    let pad = ((512 - len % 512) % 512) as usize;
    out.write_all(&ZEROS[..pad])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::process::Command;

    use super::*;
    use crate::output::sample;

    fn archive_with(opts: &TarOptions) -> Vec<u8> {
        let store = ContentStore::new().unwrap();
        let tree = sample::tree(&store);
        let mut out = Vec::new();
        let n = write_tar_with(&tree, &store, opts, &mut out).unwrap();
        assert_eq!(n, out.len() as u64);
        assert_eq!(out.len() % 512, 0);
        out
    }

    fn archive() -> Vec<u8> {
        archive_with(&TarOptions::default())
    }

    struct Member {
        kind: ::tar::EntryType,
        mode: u32,
        owner: (u64, u64),
        link: Option<Vec<u8>>,
        data: Vec<u8>,
        dev: (u32, u32),
        xattrs: BTreeMap<String, Vec<u8>>,
    }

    /// Read back with the `tar` crate.
    fn members(a: &[u8]) -> Vec<(Vec<u8>, Member)> {
        let mut ar = ::tar::Archive::new(a);
        let mut out = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let mut xattrs = BTreeMap::new();
            if let Some(exts) = e.pax_extensions().unwrap() {
                for x in exts {
                    let x = x.unwrap();
                    if let Some(k) = x.key().unwrap().strip_prefix("SCHILY.xattr.") {
                        xattrs.insert(k.to_string(), x.value_bytes().to_vec());
                    }
                }
            }
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            let m = Member {
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                owner: (h.uid().unwrap(), h.gid().unwrap()),
                link: e.link_name_bytes().map(|l| l.into_owned()),
                data,
                dev: (
                    h.device_major().unwrap().unwrap_or(0),
                    h.device_minor().unwrap().unwrap_or(0),
                ),
                xattrs,
            };
            out.push((e.path_bytes().into_owned(), m));
        }
        out
    }

    #[test]
    fn tar_crate_reads_every_kind() {
        let a = archive();
        let mut raw = ::tar::Archive::new(&a[..]);
        for e in raw.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().username_bytes(), Some(&b""[..]));
            assert_eq!(e.header().groupname_bytes(), Some(&b""[..]));
        }
        let ms = members(&a);
        let names: Vec<&[u8]> = ms.iter().map(|m| m.0.as_slice()).collect();
        let by: BTreeMap<&[u8], &Member> = ms.iter().map(|(n, m)| (n.as_slice(), m)).collect();
        use ::tar::EntryType as T;
        assert_eq!(by[&b"bin/"[..]].kind, T::Directory);
        // The first member of the group carries the data; the rest link to it.
        assert_eq!(by[&b"bin/ash"[..]].kind, T::Regular);
        assert_eq!(
            by[&b"bin/ash"[..]].data,
            b"#!busybox\nthe multi-call binary\n"
        );
        for l in [&b"bin/busybox"[..], b"bin/zsh"] {
            assert_eq!(by[l].kind, T::Link);
            assert_eq!(by[l].link.as_deref(), Some(&b"bin/ash"[..]));
            assert!(by[l].data.is_empty());
        }
        assert_eq!(by[&b"bin/sh"[..]].link.as_deref(), Some(&b"busybox"[..]));
        let console = by[&b"dev/console"[..]];
        assert_eq!(
            (console.kind, console.dev, console.owner, console.mode),
            (T::Char, (5, 1), (0, 5), 0o600)
        );
        assert_eq!(
            (by[&b"dev/sda"[..]].kind, by[&b"dev/sda"[..]].dev),
            (T::Block, (8, 0))
        );
        assert_eq!(by[&b"dev/initctl"[..]].kind, T::Fifo);
        assert_eq!(by[&b"usr/bin/sudo"[..]].mode, 0o4755);
        assert_eq!(by[&b"tmp/"[..]].owner, (1000, 1000));
        assert_eq!(by[&b"tmp/"[..]].mode, 0o1777);
        assert_eq!(by[sample::long_path().as_slice()].data, b"deep file");
        let passwd = by[&b"etc/passwd"[..]];
        assert_eq!(
            passwd.xattrs.get("user.kiln").map(Vec::as_slice),
            Some(&b"value\0with nul"[..])
        );
        assert!(names.len() > 20);
    }

    #[test]
    fn pax_headers_only_when_needed() {
        let store = ContentStore::new().unwrap();
        let tree = sample::tree(&store);
        let mut a = Vec::new();
        write_tar(&tree, &store, &mut a).unwrap();
        let headers: Vec<&[u8]> = a.chunks(512).filter(|b| &b[257..262] == b"ustar").collect();
        let pax: Vec<&[u8]> = headers.iter().copied().filter(|b| b[156] == b'x').collect();
        // One per path too long for ustar (the deep file and its deep
        // parents) and one for the xattr of etc/passwd.
        let too_long = tree
            .iter()
            .filter(|(p, e)| {
                split_name(&[p.as_slice(), if e.is_dir() { b"/" } else { b"" }].concat()).is_none()
            })
            .count();
        assert!(too_long >= 2);
        assert_eq!(pax.len(), too_long + 1);
        assert!(pax.iter().all(|h| h.starts_with(b"././@PaxHeader\0")));
    }

    #[test]
    fn long_names_split_into_prefix_when_they_fit() {
        let store = ContentStore::new().unwrap();
        let mut tree = Tree::new();
        let name = format!("{}/{}", "p".repeat(150), "n".repeat(99));
        tree.insert(
            name.clone().into_bytes(),
            Entry::file(store.add(b"x").unwrap(), 0o644, 0),
        );
        let mut out = Vec::new();
        write_tar(&tree, &store, &mut out).unwrap();
        assert_eq!(out[156], b'0', "no PAX header");
        assert_eq!(members(&out)[0].0, name.as_bytes());
    }

    #[test]
    fn large_values_go_to_pax() {
        let store = ContentStore::new().unwrap();
        let mut tree = Tree::new();
        let mut e = Entry::file(store.add(b"x").unwrap(), 0o644, 0o100000000000);
        e.uid = 0o10000000;
        tree.insert(b"f".to_vec(), e);
        let mut out = Vec::new();
        write_tar(&tree, &store, &mut out).unwrap();
        let body = String::from_utf8_lossy(&out[512..1024]).into_owned();
        assert!(
            body.starts_with("20 mtime=8589934592\n15 uid=2097152\n"),
            "{body}"
        );
        assert_eq!(members(&out)[0].1.data, b"x");
    }

    #[test]
    fn prefix_option_roots_every_path_and_link() {
        let ms = members(&archive_with(&TarOptions {
            prefix: b"rootfs".to_vec(),
        }));
        assert!(ms.iter().all(|m| m.0.starts_with(b"rootfs/")));
        let zsh = ms.iter().find(|m| m.0 == b"rootfs/bin/zsh").unwrap();
        assert_eq!(zsh.1.link.as_deref(), Some(&b"rootfs/bin/ash"[..]));
    }

    #[test]
    fn tar_files_writes_just_the_files() {
        let store = ContentStore::new().unwrap();
        let (k, i) = (store.add(b"kernel").unwrap(), store.add(b"initrd").unwrap());
        let files = [
            TarFile {
                name: b"kernel",
                mode: 0o644,
                mtime: 7,
                content: &k,
            },
            TarFile {
                name: b"boot/initrd.img",
                mode: 0o600,
                mtime: 7,
                content: &i,
            },
        ];
        let mut out = Vec::new();
        write_tar_files(&files, &store, &mut out).unwrap();
        let ms = members(&out);
        let names: Vec<&[u8]> = ms.iter().map(|m| m.0.as_slice()).collect();
        assert_eq!(names, [&b"boot/initrd.img"[..], b"kernel"]);
        assert_eq!(out.len(), 512 * 6);
    }

    #[test]
    fn output_is_a_function_of_the_tree() {
        assert_eq!(archive(), archive());
    }

    fn gnu_tar(args: &[&str], archive: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        std::fs::write(&path, archive).unwrap();
        let out = Command::new("tar")
            .args(args)
            .arg("-f")
            .arg(&path)
            .env("LC_ALL", "C")
            .env("TZ", "UTC")
            .output()
            .expect("GNU tar must be installed");
        assert!(
            out.status.success(),
            "tar {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn gnu_tar_lists_every_member() {
        let listing = gnu_tar(&["--numeric-owner", "--xattrs", "-tvv"], &archive());
        let listing: String = listing
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") + "\n")
            .collect();
        let has = |s: &str| {
            assert!(
                listing.lines().any(|l| l.starts_with(s) || l.ends_with(s)),
                "{s:?} not in\n{listing}"
            )
        };
        has("drwxr-xr-x 0/0 0 1970-01-01 00:16 bin/");
        has("-rwxr-xr-x 0/0 32 1970-01-01 00:16 bin/ash");
        has("bin/zsh link to bin/ash");
        has("bin/sh -> busybox");
        has("crw------- 0/5 5,1 1970-01-01 00:16 dev/console");
        has("brw-rw---- 0/0 8,0 1970-01-01 00:16 dev/sda");
        has("prw------- 0/0 0 1970-01-01 00:16 dev/initctl");
        has("-rwsr-xr-x 0/1000 4 1970-01-01 00:16 usr/bin/sudo");
        has("drwxrwxrwt 1000/1000 0 1970-01-01 00:16 tmp/");
        has("-rw-r--r-- 0/0 0 1970-01-01 00:00 etc/empty");
        has("x: 14 user.kiln");
        has(std::str::from_utf8(&sample::long_path()).unwrap());
    }

    #[test]
    fn gnu_tar_extracts_contents_links_and_xattrs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("x");
        std::fs::create_dir(&root).unwrap();
        let root_s = root.to_str().unwrap();
        gnu_tar(
            &[
                "-x",
                "--xattrs",
                "--xattrs-include=*",
                "--exclude=dev/*",
                "-C",
                root_s,
            ],
            &archive(),
        );
        let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
        assert_eq!(meta("bin/zsh").ino(), meta("bin/ash").ino());
        assert_eq!(meta("bin/busybox").nlink(), 3);
        assert_eq!(
            std::fs::read(root.join("bin/busybox")).unwrap(),
            b"#!busybox\nthe multi-call binary\n"
        );
        assert_eq!(meta("usr/bin/sudo").permissions().mode() & 0o7777, 0o4755);
        let long = String::from_utf8(sample::long_path()).unwrap();
        assert_eq!(std::fs::read(root.join(long)).unwrap(), b"deep file");
        // The xattr survived extraction (read back with GNU tar from a new archive).
        let again = Command::new("tar")
            .args([
                "--xattrs",
                "--xattrs-include=*",
                "-cf",
                "-",
                "-C",
                root_s,
                "etc/passwd",
            ])
            .output()
            .unwrap();
        assert!(again.status.success());
        let ms = members(&again.stdout);
        assert_eq!(
            ms[0].1.xattrs.get("user.kiln").map(Vec::as_slice),
            Some(&b"value\0with nul"[..])
        );
    }
}
