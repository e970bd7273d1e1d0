//! Integration tests: the squashfs writer, checked with `unsquashfs` from
//! squashfs-tools (listing and extraction) and for determinism. The tests
//! fail, not skip, when `unsquashfs` is missing.

use std::fs;
use std::io::{Cursor, Seek, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use kiln::output::squashfs::write_squashfs;
use kiln::tree::{ContentStore, Entry, Kind, Tree};

use crate::support::{stdout, TestDir};

const EPOCH: i64 = 1_700_000_000;

/// Bytes that do not compress well, so the big file has raw and
/// compressed blocks alike.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i % 3 == 0 {
                b'a'
            } else {
                x as u8
            }
        })
        .collect()
}

fn big() -> Vec<u8> {
    let mut b = noise(300 * 1024 + 17);
    // A compressible stretch in the middle.
    b[140_000..260_000].fill(b'z');
    b
}

/// A tree with every kind of entry.
fn tree(store: &ContentStore) -> Tree {
    let mut t = Tree::new();
    let mut add = |path: &str, e: Entry| {
        t.insert_with_parents(path.as_bytes().to_vec(), e, 0o755, EPOCH);
    };
    let busybox = store.add(b"#!busybox\n").unwrap();
    add("bin/busybox", Entry::file(busybox, 0o755, EPOCH));
    add(
        "bin/ash",
        Entry::new(Kind::Hardlink(b"bin/busybox".to_vec()), 0o755, EPOCH),
    );
    add("bin/sh", Entry::symlink("busybox", EPOCH));
    add(
        "data/big.bin",
        Entry::file(store.add(&big()).unwrap(), 0o644, EPOCH + 1),
    );
    add(
        "data/empty",
        Entry::file(store.add(b"").unwrap(), 0o600, EPOCH),
    );
    let mut console = Entry::new(Kind::Char { major: 5, minor: 1 }, 0o600, EPOCH);
    console.gid = 5;
    add("dev/console", console);
    add(
        "dev/sda",
        Entry::new(Kind::Block { major: 8, minor: 0 }, 0o660, EPOCH),
    );
    add("dev/initctl", Entry::new(Kind::Fifo, 0o600, EPOCH));
    let mut sudo = Entry::file(store.add(b"sudo binary").unwrap(), 0o4755, EPOCH);
    sudo.gid = 1000;
    add("usr/bin/sudo", sudo);
    let mut home = Entry::dir(0o700, EPOCH);
    home.uid = 1000;
    home.gid = 1000;
    add("home/user", home);
    let mut notes = Entry::file(store.add(b"hello\n").unwrap(), 0o640, EPOCH);
    notes.uid = 1000;
    notes.gid = 1000;
    notes
        .xattrs
        .insert("user.kiln".to_string(), b"value".to_vec());
    add("home/user/notes.txt", notes);
    add("tmp", Entry::dir(0o1777, EPOCH));
    t
}

fn image(tree: &Tree, store: &ContentStore) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    let n = write_squashfs(tree, store, EPOCH, &mut out).unwrap();
    let bytes = out.into_inner();
    assert_eq!(n, bytes.len() as u64);
    bytes
}

/// `unsquashfs ARGS`, in UTC so listed times do not depend on the host.
fn unsquashfs(args: &[&str]) -> String {
    let out = std::process::Command::new("unsquashfs")
        .args(args)
        .env("TZ", "UTC")
        .env("LANG", "C")
        .output()
        .unwrap_or_else(|e| panic!("cannot run unsquashfs (install squashfs-tools): {e}"));
    assert!(
        out.status.success(),
        "unsquashfs {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

const LISTING: &str = "\
drwxr-xr-x 0/0 83 2023-11-14 22:13 squashfs-root
drwxr-xr-x 0/0 51 2023-11-14 22:13 squashfs-root/bin
-rwxr-xr-x 0/0 10 2023-11-14 22:13 squashfs-root/bin/ash
-rwxr-xr-x 0/0 10 2023-11-14 22:13 squashfs-root/bin/busybox
lrwxrwxrwx 0/0 7 2023-11-14 22:13 squashfs-root/bin/sh -> busybox
drwxr-xr-x 0/0 43 2023-11-14 22:13 squashfs-root/data
-rw-r--r-- 0/0 307217 2023-11-14 22:13 squashfs-root/data/big.bin
-rw------- 0/0 0 2023-11-14 22:13 squashfs-root/data/empty
drwxr-xr-x 0/0 56 2023-11-14 22:13 squashfs-root/dev
crw------- 0/5 5, 1 2023-11-14 22:13 squashfs-root/dev/console
prw------- 0/0 0 2023-11-14 22:13 squashfs-root/dev/initctl
brw-rw---- 0/0 8, 0 2023-11-14 22:13 squashfs-root/dev/sda
drwxr-xr-x 0/0 27 2023-11-14 22:13 squashfs-root/home
drwx------ 1000/1000 32 2023-11-14 22:13 squashfs-root/home/user
-rw-r----- 1000/1000 6 2023-11-14 22:13 squashfs-root/home/user/notes.txt
drwxrwxrwt 0/0 3 2023-11-14 22:13 squashfs-root/tmp
drwxr-xr-x 0/0 26 2023-11-14 22:13 squashfs-root/usr
drwxr-xr-x 0/0 27 2023-11-14 22:13 squashfs-root/usr/bin
-rwsr-xr-x 0/1000 11 2023-11-14 22:13 squashfs-root/usr/bin/sudo
";

#[test]
fn unsquashfs_lists_every_kind_with_its_metadata() {
    let store = ContentStore::new().unwrap();
    let dir = TestDir::new();
    let img = dir.write("a.img", image(&tree(&store), &store));
    let listing = unsquashfs(&["-lln", img.to_str().unwrap()]);
    // Collapse unsquashfs's column padding.
    let listing: String = listing
        .lines()
        .filter(|l| l.contains("squashfs-root"))
        .map(|l| {
            l.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .replace(", ", ",")
                + "\n"
        })
        .collect();
    assert_eq!(listing, LISTING.replace(", ", ","));

    let summary = unsquashfs(&["-s", img.to_str().unwrap()]);
    for line in [
        "Creation or last append time Tue Nov 14 22:13:20 2023",
        "Compression gzip",
        "Block size 131072",
        "Number of inodes 18",
        "Number of ids 3",
        "Number of xattr ids 1",
        "Duplicates are removed",
        "Fragments are not stored",
    ] {
        assert!(summary.contains(line), "{line:?} not in\n{summary}");
    }
}

#[test]
fn unsquashfs_extracts_identical_contents_and_metadata() {
    let store = ContentStore::new().unwrap();
    let tree = tree(&store);
    let dir = TestDir::new();
    let img = dir.write("a.img", image(&tree, &store));
    let root = dir.join("root");
    unsquashfs(&["-d", root.to_str().unwrap(), img.to_str().unwrap()]);

    for (path, entry) in tree.iter() {
        let on_disk = root.join(String::from_utf8(path.clone()).unwrap());
        let meta = fs::symlink_metadata(&on_disk).unwrap();
        let (_, resolved) = match &entry.kind {
            Kind::Hardlink(target) => (target.clone(), tree.get(target).unwrap()),
            _ => (path.clone(), entry),
        };
        let ft = meta.file_type();
        match &resolved.kind {
            Kind::File(c) => {
                assert!(ft.is_file(), "{on_disk:?}");
                assert_eq!(fs::read(&on_disk).unwrap(), store.read(c).unwrap());
            }
            Kind::Dir => assert!(ft.is_dir(), "{on_disk:?}"),
            Kind::Symlink(t) => {
                assert_eq!(
                    fs::read_link(&on_disk)
                        .unwrap()
                        .as_os_str()
                        .as_encoded_bytes(),
                    t.as_slice()
                );
                continue;
            }
            Kind::Char { major, minor } | Kind::Block { major, minor } => {
                assert!(ft.is_char_device() || ft.is_block_device(), "{on_disk:?}");
                let rdev = meta.rdev();
                let got_major = ((rdev >> 8) & 0xfff) as u32;
                let got_minor = ((rdev & 0xff) | ((rdev >> 12) & 0xfff00)) as u32;
                assert_eq!((got_major, got_minor), (*major, *minor), "{on_disk:?}");
            }
            Kind::Fifo => assert!(ft.is_fifo(), "{on_disk:?}"),
            Kind::Hardlink(_) => unreachable!(),
        }
        assert_eq!(meta.mode() & 0o7777, resolved.mode, "{on_disk:?}");
        assert_eq!(
            (meta.uid(), meta.gid()),
            (resolved.uid, resolved.gid),
            "{on_disk:?}"
        );
        assert_eq!(meta.mtime(), resolved.mtime, "{on_disk:?}");
    }
    let ash = fs::metadata(root.join("bin/ash")).unwrap();
    let busybox = fs::metadata(root.join("bin/busybox")).unwrap();
    assert_eq!(ash.ino(), busybox.ino());
    assert_eq!(busybox.nlink(), 2);
}

#[test]
fn same_tree_gives_same_bytes_whatever_the_store_layout() {
    let store = ContentStore::new().unwrap();
    let first = image(&tree(&store), &store);
    assert_eq!(image(&tree(&store), &store), first);
    // A store that holds other bytes first puts the contents elsewhere.
    let other = ContentStore::new().unwrap();
    other.add(&noise(5000)).unwrap();
    other.add(b"sudo binary").unwrap();
    assert_eq!(image(&tree(&other), &other), first);

    // Written after a prefix, the image is the same bytes.
    let mut out = Cursor::new(Vec::new());
    out.write_all(b"prefix").unwrap();
    let n = write_squashfs(&tree(&store), &store, EPOCH, &mut out).unwrap();
    assert_eq!(n, first.len() as u64);
    assert_eq!(&out.get_ref()[6..], &first[..]);
    assert_eq!(out.stream_position().unwrap(), 6 + n);
    assert_eq!(&first[8..12], &(EPOCH as u32).to_le_bytes(), "mkfs_time");
}

#[test]
fn large_directories_span_headers_and_metadata_blocks() {
    let store = ContentStore::new().unwrap();
    let mut t = Tree::new();
    let mut names = Vec::new();
    for i in 0..700 {
        let name = format!("{i:04}-{}", "n".repeat(95));
        let c = store.add(name.as_bytes()).unwrap();
        t.insert_with_parents(
            format!("many/{name}").into_bytes(),
            Entry::file(c, 0o644, EPOCH),
            0o755,
            EPOCH,
        );
        names.push(name);
    }
    let dir = TestDir::new();
    let img = dir.write("many.img", image(&t, &store));
    let listing = unsquashfs(&["-ls", img.to_str().unwrap()]);
    let listed: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.strip_prefix("squashfs-root/many/"))
        .collect();
    assert_eq!(listed, names);
    let root = dir.join("root");
    unsquashfs(&["-d", root.to_str().unwrap(), img.to_str().unwrap()]);
    for name in [&names[0], &names[350], &names[699]] {
        assert_eq!(
            fs::read(root.join("many").join(name)).unwrap(),
            name.as_bytes()
        );
    }
}

#[test]
fn unstorable_trees_are_errors_naming_the_path() {
    let store = ContentStore::new().unwrap();
    let err = |t: &Tree| {
        write_squashfs(t, &store, EPOCH, &mut Cursor::new(Vec::new()))
            .unwrap_err()
            .to_string()
    };
    let mut t = Tree::new();
    t.insert(b"d".to_vec(), Entry::dir(0o755, 0));
    t.insert(
        b"l".to_vec(),
        Entry::new(Kind::Hardlink(b"d".to_vec()), 0o755, 0),
    );
    assert_eq!(err(&t), "l: hard link to directory d");

    let mut t = Tree::new();
    let mut e = Entry::file(store.add(b"x").unwrap(), 0o644, 0);
    e.xattrs.insert("system.posix_acl_access".into(), vec![1]);
    t.insert(b"f".to_vec(), e);
    assert!(err(&t).starts_with("f: xattr system.posix_acl_access is not in a namespace"));

    let mut t = Tree::new();
    let long = "x".repeat(257);
    t.insert(long.clone().into_bytes(), Entry::dir(0o755, 0));
    assert_eq!(err(&t), format!("{long}: name longer than 256 bytes"));

    let mut t = Tree::new();
    t.insert(b"a".to_vec(), Entry::dir(0o755, 0));
    t.insert(b"a/..".to_vec(), Entry::dir(0o755, 0));
    assert_eq!(err(&t), "a/..: not a normalised path");
}
