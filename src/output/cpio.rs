//! The `newc` cpio writer (magic `070701`), the format of Linux initramfs.
//!
//! It takes a [`Tree`] and its [`ContentStore`] and writes one archive:
//! entries in tree order (path bytes), names without a leading `/`, inode
//! numbers 1, 2, … in that order, device numbers 0, and a `TRAILER!!!`
//! record. It never pads the archive to a block size and never reads the
//! host: every byte is a function of the tree.
//!
//! Hard links follow GNU cpio's newc convention: all members of a group
//! share one inode number, carry the group's link count, and only the last
//! member (in tree order) carries the data; the others have size 0. The
//! kernel's unpacker (`init/initramfs.c`) creates the first member, links
//! the later ones to it by (major, minor, ino, mode) and writes whatever
//! data arrives, so it extracts this correctly; GNU `cpio -i` defers
//! size-0 members until the data arrives. Group members therefore share the
//! metadata (mode, owner, mtime) of the file they link to.
//!
//! Limits of the format, applied rather than failed on: extended
//! attributes are dropped (newc has no field for them, and the kernel's
//! unpacker has no way to apply them); mtimes are clamped to
//! `0..=u32::MAX` (the kernel applies them only with
//! `CONFIG_INITRAMFS_PRESERVE_MTIME`). A hard link to something other than
//! a regular file is written as a copy of it with its own inode.
//! A file larger than 4 GiB − 1 cannot be represented and is an error.

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::{invalid, resolve, show, Counter, Links, ZEROS};
use crate::tree::{ContentStore, Entry, Kind, Tree};

/// Write `tree` as a newc cpio archive to `w`; returns the bytes written.
///
/// Fails on any write error, on a hard link whose target is missing, and
/// on a file or name too large for the format.
pub fn write_cpio(tree: &Tree, store: &ContentStore, w: &mut dyn Write) -> io::Result<u64> {
    let links = Links::new(tree)?;
    let subdirs = subdir_counts(tree);
    let mut out = Counter { inner: w, count: 0 };
    let mut next_ino: u32 = 1;
    let mut group_ino: BTreeMap<&[u8], u32> = BTreeMap::new();

    for (path, _) in tree.iter() {
        let path = path.as_slice();
        // The entry whose metadata and data this path carries.
        let (_, inode) = resolve(tree, path)?;
        let (ino, nlink, carries_data) = match links.group_of(path) {
            Some(members) => {
                let first = members[0];
                let ino = match group_ino.get(first) {
                    Some(&ino) => ino,
                    None => {
                        let ino = take_ino(&mut next_ino, path)?;
                        group_ino.insert(first, ino);
                        ino
                    }
                };
                let last = members[members.len() - 1];
                (ino, members.len() as u32, last == path)
            }
            None => {
                let nlink = match inode.kind {
                    Kind::Dir => 2 + subdirs.get(path).copied().unwrap_or(0),
                    _ => 1,
                };
                (take_ino(&mut next_ino, path)?, nlink, true)
            }
        };
        write_member(&mut out, store, path, inode, ino, nlink, carries_data)?;
    }

    let trailer = Header {
        ino: 0,
        mode: 0,
        uid: 0,
        gid: 0,
        nlink: 1,
        mtime: 0,
        size: 0,
        rdev: (0, 0),
    };
    write_header(&mut out, &trailer, b"TRAILER!!!")?;
    Ok(out.count)
}

/// The next inode number, failing if the tree has more than `u32` entries.
fn take_ino(next: &mut u32, path: &[u8]) -> io::Result<u32> {
    let ino = *next;
    *next = next
        .checked_add(1)
        .ok_or_else(|| invalid(format!("{}: too many entries for cpio", show(path))))?;
    Ok(ino)
}

/// Number of immediate subdirectories of every directory, for `nlink`.
fn subdir_counts(tree: &Tree) -> BTreeMap<&[u8], u32> {
    let mut counts = BTreeMap::new();
    for (path, entry) in tree.iter() {
        if entry.is_dir() {
            if let Some(parent) = crate::tree::parent(path) {
                *counts.entry(parent).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// The numeric fields of one newc header.
struct Header {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    size: u32,
    rdev: (u32, u32),
}

fn write_member(
    out: &mut Counter<'_>,
    store: &ContentStore,
    path: &[u8],
    inode: &Entry,
    ino: u32,
    nlink: u32,
    carries_data: bool,
) -> io::Result<()> {
    let too_big = || invalid(format!("{}: larger than newc's 4 GiB limit", show(path)));
    let (size, rdev) = match &inode.kind {
        Kind::File(c) if carries_data => (u32::try_from(c.len()).map_err(|_| too_big())?, (0, 0)),
        Kind::Symlink(target) => (u32::try_from(target.len()).map_err(|_| too_big())?, (0, 0)),
        Kind::Char { major, minor } | Kind::Block { major, minor } => (0, (*major, *minor)),
        _ => (0, (0, 0)),
    };
    let header = Header {
        ino,
        mode: inode.file_type_bits() | (inode.mode & 0o7777),
        uid: inode.uid,
        gid: inode.gid,
        nlink,
        mtime: inode.mtime.clamp(0, i64::from(u32::MAX)) as u32,
        size,
        rdev,
    };
    write_header(out, &header, path)?;
    match &inode.kind {
        Kind::File(c) if carries_data => {
            let before = out.count;
            store.copy_to(c, out)?;
            if out.count - before != c.len() {
                return Err(invalid(format!(
                    "{}: content store gave a short read",
                    show(path)
                )));
            }
        }
        Kind::Symlink(target) => out.write_all(target)?,
        _ => {}
    }
    pad4(out, u64::from(size))
}

fn write_header(out: &mut Counter<'_>, h: &Header, name: &[u8]) -> io::Result<()> {
    if name.contains(&0) {
        return Err(invalid(format!("{}: name contains a NUL byte", show(name))));
    }
    let namesize = u32::try_from(name.len() + 1)
        .map_err(|_| invalid(format!("{}: name too long for cpio", show(name))))?;
    let fields = [
        h.ino, h.mode, h.uid, h.gid, h.nlink, h.mtime, h.size, 0, 0, h.rdev.0, h.rdev.1, namesize,
        0,
    ];
    let mut buf = Vec::with_capacity(110 + name.len() + 4);
    buf.extend_from_slice(b"070701");
    for f in fields {
        write!(buf, "{f:08X}")?;
    }
    buf.extend_from_slice(name);
    buf.push(0);
    let pad = (4 - buf.len() % 4) % 4;
    buf.extend_from_slice(&ZEROS[..pad]);
    out.write_all(&buf)
}

fn pad4(out: &mut Counter<'_>, len: u64) -> io::Result<()> {
    let pad = ((4 - len % 4) % 4) as usize;
    out.write_all(&ZEROS[..pad])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::process::Command;

    use super::*;
    use crate::output::sample;

    fn archive() -> Vec<u8> {
        let store = ContentStore::new().unwrap();
        let tree = sample::tree(&store);
        let mut out = Vec::new();
        let n = write_cpio(&tree, &store, &mut out).unwrap();
        assert_eq!(n, out.len() as u64);
        out
    }

    /// (name, mode, nlink, size, ino) of every header, parsed by hand.
    fn headers(a: &[u8]) -> Vec<(String, u32, u32, u32, u32)> {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let field = |i: usize| {
                let s = std::str::from_utf8(&a[pos + 6 + 8 * i..pos + 14 + 8 * i]).unwrap();
                u32::from_str_radix(s, 16).unwrap()
            };
            assert_eq!(&a[pos..pos + 6], b"070701");
            let (ino, mode, nlink, size, namesize) =
                (field(0), field(1), field(4), field(6), field(11));
            let name = String::from_utf8(a[pos + 110..pos + 110 + namesize as usize - 1].to_vec())
                .unwrap();
            pos += 110 + namesize as usize;
            pos += (4 - pos % 4) % 4;
            pos += size as usize;
            pos += (4 - pos % 4) % 4;
            if name == "TRAILER!!!" {
                assert_eq!(pos, a.len(), "nothing after the trailer");
                return out;
            }
            out.push((name, mode, nlink, size, ino));
        }
    }

    #[test]
    fn members_are_in_tree_order_with_inodes_and_link_counts() {
        let h = headers(&archive());
        let names: Vec<&str> = h.iter().map(|m| m.0.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert!(names.iter().all(|n| !n.starts_with('/')));
        let by_name: BTreeMap<&str, _> = h.iter().map(|m| (m.0.as_str(), m)).collect();
        // The group: bin/ash, bin/busybox, bin/zsh share an inode; only the
        // last carries the data.
        let (ash, bb, zsh) = (
            by_name["bin/ash"],
            by_name["bin/busybox"],
            by_name["bin/zsh"],
        );
        assert_eq!((ash.4, ash.2, ash.3), (bb.4, 3, 0));
        assert_eq!((bb.2, bb.3), (3, 0));
        assert_eq!((zsh.4, zsh.2, zsh.3), (bb.4, 3, 32));
        assert_eq!(ash.1, 0o100755);
        // Inodes count up from 1 in order, links reusing theirs.
        let mut inos: Vec<u32> = Vec::new();
        for m in &h {
            if !inos.contains(&m.4) {
                inos.push(m.4);
            }
        }
        assert_eq!(inos, (1..=inos.len() as u32).collect::<Vec<_>>());
        assert_eq!(by_name["usr/bin/sudo"].1, 0o104755);
        assert_eq!(by_name["tmp"].1, 0o041777);
        assert_eq!(by_name["dev/console"].1, 0o020600);
        assert_eq!(by_name["bin"].2, 2);
        assert_eq!(by_name["usr"].2, 3);
    }

    #[test]
    fn output_is_a_function_of_the_tree() {
        assert_eq!(archive(), archive());
    }

    #[test]
    fn empty_tree_is_just_a_trailer() {
        let store = ContentStore::new().unwrap();
        let mut out = Vec::new();
        write_cpio(&Tree::new(), &store, &mut out).unwrap();
        assert_eq!(out.len(), 124);
        assert!(out.starts_with(b"07070100000000"));
        assert_eq!(&out[110..120], b"TRAILER!!!");
    }

    struct FailAfter(usize);
    impl Write for FailAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Ok(0);
            }
            let n = buf.len().min(self.0);
            self.0 -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn short_writes_are_errors() {
        let store = ContentStore::new().unwrap();
        let tree = sample::tree(&store);
        let len = archive().len();
        for limit in [0, 1, 111, 500, len - 1] {
            let err = write_cpio(&tree, &store, &mut FailAfter(limit)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::WriteZero, "limit {limit}");
        }
        write_cpio(&tree, &store, &mut FailAfter(len)).unwrap();
    }

    #[test]
    fn dangling_hard_link_is_an_error() {
        let store = ContentStore::new().unwrap();
        let mut tree = Tree::new();
        tree.insert(
            b"a".to_vec(),
            Entry::new(Kind::Hardlink(b"missing".to_vec()), 0o644, 0),
        );
        let err = write_cpio(&tree, &store, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("a: hard link target missing"),
            "{err}"
        );
    }

    fn gnu_cpio(args: &[&str], dir: &std::path::Path, input: &[u8]) -> String {
        use std::io::Write as _;
        let mut child = Command::new("cpio")
            .args(args)
            .current_dir(dir)
            .env("LC_ALL", "C")
            .env("TZ", "UTC")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("GNU cpio must be installed (apt-get install cpio)");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "cpio {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn gnu_cpio_lists_every_member() {
        let dir = tempfile::tempdir().unwrap();
        let listing = gnu_cpio(&["-t", "-v", "-n", "-H", "newc"], dir.path(), &archive());
        let mut rows = BTreeMap::new();
        for line in listing.lines() {
            let t: Vec<&str> = line.split_whitespace().collect();
            // mode nlink uid gid size|major, minor  month day year  name...
            let name_at = if t[4].ends_with(',') { 9 } else { 8 };
            rows.insert(
                t[name_at..].join(" "),
                (
                    t[0].to_string(),
                    t[1].to_string(),
                    t[2..name_at - 3].join(" "),
                ),
            );
        }
        let row = |n: &str| {
            rows.get(n)
                .cloned()
                .unwrap_or_else(|| panic!("{n} missing: {listing}"))
        };
        assert_eq!(
            row("bin/busybox"),
            ("-rwxr-xr-x".into(), "3".into(), "0 0 0".into())
        );
        assert_eq!(
            row("bin/zsh"),
            ("-rwxr-xr-x".into(), "3".into(), "0 0 32".into())
        );
        assert_eq!(row("bin/sh -> busybox").0, "lrwxrwxrwx");
        assert_eq!(
            row("dev/console"),
            ("crw-------".into(), "1".into(), "0 5 5, 1".into())
        );
        assert_eq!(row("dev/sda").0, "brw-rw----");
        assert_eq!(row("dev/initctl").0, "prw-------");
        assert_eq!(
            row("usr/bin/sudo"),
            ("-rwsr-xr-x".into(), "1".into(), "0 1000 4".into())
        );
        assert_eq!(
            row("tmp"),
            ("drwxrwxrwt".into(), "2".into(), "1000 1000 0".into())
        );
        assert_eq!(row("etc/empty").2, "0 0 0");
        assert!(rows.contains_key(std::str::from_utf8(&sample::long_path()).unwrap()));
        assert_eq!(rows.len(), headers(&archive()).len());
    }

    #[test]
    fn gnu_cpio_extracts_contents_and_hard_links() {
        let dir = tempfile::tempdir().unwrap();
        // Device nodes need privileges; everything else is extracted.
        gnu_cpio(
            &["-i", "-d", "-H", "newc", "-f", "dev/*"],
            dir.path(),
            &archive(),
        );
        let root = dir.path();
        let read = |p: &str| std::fs::read(root.join(p)).unwrap();
        assert_eq!(read("bin/ash"), b"#!busybox\nthe multi-call binary\n");
        let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
        assert_eq!(meta("bin/ash").ino(), meta("bin/busybox").ino());
        assert_eq!(meta("bin/zsh").ino(), meta("bin/busybox").ino());
        assert_eq!(meta("bin/busybox").nlink(), 3);
        assert_eq!(
            std::fs::read_link(root.join("bin/sh")).unwrap().as_os_str(),
            "busybox"
        );
        assert_eq!(read("etc/empty"), b"");
        assert_eq!(meta("usr/bin/sudo").permissions().mode() & 0o7777, 0o4755);
        let long = String::from_utf8(sample::long_path()).unwrap();
        assert_eq!(read(&long), b"deep file");
        assert!(!root.join("dev/console").exists());
    }
}
