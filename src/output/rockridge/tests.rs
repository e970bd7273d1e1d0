//! Tests of the Rock Ridge writer against `isoinfo` (genisoimage) and
//! `xorriso`, which read the image independently of this code.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use super::*;
use crate::tree::{ContentStore, Entry, Kind, Tree};

/// A name longer than 100 bytes.
fn long_name() -> String {
    format!("a-rather-long-file-name-{}.conf", "x".repeat(100))
}

/// A symlink target with `..`, `.` and long components.
fn long_target() -> String {
    format!(
        "../../usr/./lib/{}/../{}/libc.so.6",
        "d".repeat(180),
        "e".repeat(300)
    )
}

/// A target of nearly 1000 bytes, about libisofs's limit (1024): its SL
/// entries overflow into a continuation area of their own.
fn huge_target() -> String {
    "0123456789/".repeat(90) + "end"
}

/// Three MiB of non-repeating bytes.
fn big() -> Vec<u8> {
    (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn sample(store: &ContentStore) -> Tree {
    let mut t = Tree::new();
    let mut add = |path: &str, e: Entry| {
        t.insert_with_parents(path.as_bytes().to_vec(), e, 0o755, 1_000);
    };
    let file = |bytes: &[u8], mode| Entry::file(store.add(bytes).unwrap(), mode, 1_700_000_000);
    add("bin/busybox", file(b"#!busybox\n", 0o755));
    add("bin/sh", Entry::symlink("busybox", 1_600_000_000));
    add(
        "bin/ash",
        Entry::new(Kind::Hardlink(b"bin/busybox".to_vec()), 0o755, 5),
    );
    let mut sudo = file(b"sudo", 0o4755);
    sudo.gid = 1000;
    add("usr/bin/sudo", sudo);
    let mut console = Entry::new(Kind::Char { major: 5, minor: 1 }, 0o600, 1_000);
    console.gid = 5;
    add("dev/console", console);
    add(
        "dev/sda",
        Entry::new(Kind::Block { major: 8, minor: 0 }, 0o660, 1_000),
    );
    add("dev/initctl", Entry::new(Kind::Fifo, 0o600, 1_000));
    add("etc/empty", file(b"", 0o644));
    add(&format!("etc/{}", long_name()), file(b"long\n", 0o644));
    add("etc/link", Entry::symlink(long_target(), 1_000));
    add("etc/abs", Entry::symlink("/usr/bin/sudo", 1_000));
    // Names that mangle to the same 8.3 identifier.
    for n in ["config.json", "config.jsonc", "Config.JSON", "config-json"] {
        add(&format!("etc/{n}"), file(n.as_bytes(), 0o600));
    }
    add("var/empty", Entry::dir(0o700, 1_000));
    let mut tmp = Entry::dir(0o1777, 1_000);
    tmp.uid = 1000;
    add("tmp", tmp);
    add("opt/big.bin", file(&big(), 0o644));
    add("opt/same.bin", file(&big(), 0o644));
    add("a/b/c/d/e/f/g/h/i/j/deep.txt", file(b"deep\n", 0o644));
    add("etc/huge", Entry::symlink(huge_target(), 1_000));
    // A directory whose records fill several sectors.
    for i in 0..150 {
        add(
            &format!("many/file-number-{i:03}.txt"),
            file(format!("{i}").as_bytes(), 0o644),
        );
    }
    t
}

fn write(tree: &Tree, store: &ContentStore) -> Vec<u8> {
    let mut out = Vec::new();
    let n = write_rootfs_iso(tree, store, 1_700_000_000, "kiln-rootfs", &mut out).unwrap();
    assert_eq!(n, out.len() as u64);
    assert_eq!(n % 2048, 0);
    out
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Write the sample to a fresh temp dir: (dir, image path, tree, store).
fn sample_image() -> (tempfile::TempDir, std::path::PathBuf, Tree, ContentStore) {
    let store = ContentStore::new().unwrap();
    let tree = sample(&store);
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("rootfs.iso");
    std::fs::write(&iso, write(&tree, &store)).unwrap();
    (dir, iso, tree, store)
}

/// `isoinfo -R -l` lines of one directory listing, by name.
fn isoinfo_listing(iso: &Path, dir: &str) -> Vec<String> {
    let out = run(Command::new("isoinfo")
        .arg("-R")
        .arg("-l")
        .arg("-i")
        .arg(iso));
    let head = format!("Directory listing of {dir}");
    let start = out
        .find(&head)
        .unwrap_or_else(|| panic!("no {head} in\n{out}"));
    out[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The record of `name` in an isoinfo listing: (mode, nlink, extent, rest).
fn isoinfo_entry(listing: &[String], name: &str) -> (String, String, String, String) {
    let line = listing
        .iter()
        .find(|l| {
            let rest = l.split("]  ").nth(1).unwrap_or("");
            rest.trim_end() == name || rest.starts_with(&format!("{name} -> "))
        })
        .unwrap_or_else(|| panic!("no {name} in {listing:#?}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    let extent = line[line.find('[').unwrap() + 1..]
        .split_whitespace()
        .next()
        .unwrap();
    let rest = line.split("]  ").nth(1).unwrap().trim_end().to_string();
    (f[0].to_string(), f[1].to_string(), extent.to_string(), rest)
}

#[test]
fn isoinfo_reads_rock_ridge_names_modes_and_links() {
    let (_dir, iso, _, _) = sample_image();
    let info = run(Command::new("isoinfo").arg("-d").arg("-i").arg(&iso));
    assert!(
        info.contains("Rock Ridge signatures version 1 found"),
        "{info}"
    );
    assert!(info.contains("Volume id: KILN_ROOTFS"), "{info}");

    let bin = isoinfo_listing(&iso, "/bin/");
    let (mode, nlink, extent, _) = isoinfo_entry(&bin, "busybox");
    let (mode2, nlink2, extent2, _) = isoinfo_entry(&bin, "ash");
    assert_eq!((mode.as_str(), nlink.as_str()), ("-rwxr-xr-x", "2"));
    assert_eq!((mode2, nlink2, extent2), (mode, nlink, extent));
    assert_eq!(isoinfo_entry(&bin, "sh").3, "sh -> busybox");

    let etc = isoinfo_listing(&iso, "/etc/");
    assert_eq!(isoinfo_entry(&etc, &long_name()).0, "-rw-r--r--");
    assert_eq!(
        isoinfo_entry(&etc, "link").3,
        format!("link -> {}", long_target())
    );
    assert_eq!(isoinfo_entry(&etc, "abs").3, "abs -> /usr/bin/sudo");
    assert_eq!(
        isoinfo_entry(&etc, "huge").3,
        format!("huge -> {}", huge_target())
    );
    for n in [
        "config.json",
        "config.jsonc",
        "Config.JSON",
        "config-json",
        "empty",
    ] {
        isoinfo_entry(&etc, n);
    }
    let dev = isoinfo_listing(&iso, "/dev/");
    assert_eq!(isoinfo_entry(&dev, "console").0, "crw-------");
    assert_eq!(isoinfo_entry(&dev, "sda").0, "brw-rw----");
    // Identical contents share one extent.
    let opt = isoinfo_listing(&iso, "/opt/");
    assert_eq!(
        isoinfo_entry(&opt, "big.bin").2,
        isoinfo_entry(&opt, "same.bin").2
    );
    assert_eq!(isoinfo_listing(&iso, "/many/").len(), 152);
}

#[test]
fn path_tables_list_every_directory_in_iso_order() {
    let (_dir, iso, tree, _) = sample_image();
    let out = run(Command::new("isoinfo").arg("-p").arg("-i").arg(&iso));
    // "   N:    PARENT EXTENT NAME", one line per directory.
    let rows: Vec<(usize, String)> = out
        .lines()
        .filter(|l| l.contains(':') && !l.starts_with("Path table"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1].parse().unwrap(), f.get(3).unwrap_or(&"").to_string())
        })
        .collect();
    let dirs = tree.iter().filter(|(_, e)| e.is_dir()).count();
    assert_eq!(rows.len(), dirs + 1, "{out}");
    assert_eq!(rows[0], (1, String::new()));
    assert_eq!(rows[1], (1, "A".to_string()));
    // Sorted by parent number, and every parent precedes its children.
    assert!(rows.windows(2).all(|w| w[0].0 <= w[1].0), "{out}");
    assert!(rows.iter().enumerate().all(|(i, r)| r.0 <= i + 1));
    assert!(rows.iter().any(|r| r.1 == "J"));
}

#[test]
fn xorriso_reads_devices_setuid_sticky_owners_and_times() {
    let (_dir, iso, _, _) = sample_image();
    let out = run(Command::new("xorriso")
        .arg("-indev")
        .arg(&iso)
        .args(["-find", "/", "-exec", "lsdl", "--"]));
    let line = |path: &str| -> Vec<String> {
        out.lines()
            .find(|l| {
                let name = l.find('\'').map_or("", |i| &l[i..]);
                let quoted = format!("'{path}'");
                name == quoted || name.starts_with(&format!("{quoted} -> "))
            })
            .unwrap_or_else(|| panic!("no {path} in\n{out}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let console = line("/dev/console");
    assert_eq!(
        (
            console[0].as_str(),
            console[3].as_str(),
            console[4].as_str()
        ),
        ("crw-------", "5", "5,1")
    );
    assert_eq!(line("/dev/sda")[4], "8,0");
    assert_eq!(line("/dev/initctl")[0], "prw-------");
    let sudo = line("/usr/bin/sudo");
    assert_eq!((sudo[0].as_str(), sudo[3].as_str()), ("-rwsr-xr-x", "1000"));
    let tmp = line("/tmp");
    assert_eq!((tmp[0].as_str(), tmp[2].as_str()), ("drwxrwxrwt", "1000"));
    assert_eq!(line("/var/empty")[0], "drwx------");
    // TF carries each entry's own mtime, not the epoch.
    assert_eq!(&line("/bin/sh")[5..8], ["Sep", "13", "2020"]);
    assert_eq!(&line("/etc")[5..8], ["Jan", "1", "1970"]);
}

#[test]
fn extraction_gives_back_the_tree_byte_for_byte() {
    let (dir, iso, tree, store) = sample_image();
    let root = dir.path().join("x");
    run(Command::new("xorriso")
        .args(["-osirrox", "on", "-hardlinks", "on", "-indev"])
        .arg(&iso)
        .args(["-extract", "/"])
        .arg(&root));
    let mut checked = 0;
    for (path, entry) in tree.iter() {
        let (_, inode) = resolve(&tree, path).unwrap();
        if matches!(inode.kind, Kind::Char { .. } | Kind::Block { .. }) {
            continue; // xorriso makes no device nodes; lsdl checks them
        }
        let host = root.join(String::from_utf8(path.clone()).unwrap());
        let meta = std::fs::symlink_metadata(&host).unwrap_or_else(|e| panic!("{host:?}: {e}"));
        match &inode.kind {
            Kind::File(c) => {
                assert_eq!(
                    std::fs::read(&host).unwrap(),
                    store.read(c).unwrap(),
                    "{host:?}"
                );
                assert_eq!(meta.permissions().mode() & 0o7777, inode.mode, "{host:?}");
            }
            Kind::Dir => {
                assert!(meta.is_dir(), "{host:?}");
                assert_eq!(meta.permissions().mode() & 0o7777, entry.mode, "{host:?}");
            }
            Kind::Symlink(target) => {
                assert_eq!(
                    std::fs::read_link(&host)
                        .unwrap()
                        .as_os_str()
                        .as_encoded_bytes(),
                    target
                );
            }
            Kind::Fifo => assert!(meta.file_type().is_fifo(), "{host:?}"),
            _ => unreachable!("links resolved, devices skipped"),
        }
        checked += 1;
    }
    assert!(checked > 170, "{checked}");
    let ino = |p: &str| std::fs::metadata(root.join(p)).unwrap().ino();
    assert_eq!(ino("bin/ash"), ino("bin/busybox"));
    assert_ne!(ino("opt/big.bin"), ino("opt/same.bin"));
    assert_eq!(
        std::fs::read_dir(root.join("var/empty")).unwrap().count(),
        0
    );
}

#[test]
fn writes_are_deterministic() {
    let one = ContentStore::new().unwrap();
    let two = ContentStore::new().unwrap();
    // The second store holds other contents first, so offsets differ.
    two.add(b"unrelated").unwrap();
    let a = write(&sample(&one), &one);
    let b = write(&sample(&two), &two);
    assert!(a == b, "two writes differ");
    let mut other = Vec::new();
    write_rootfs_iso(
        &sample(&one),
        &one,
        1_700_000_001,
        "kiln-rootfs",
        &mut other,
    )
    .unwrap();
    assert!(a != other, "the epoch must reach the image");
}

#[test]
fn an_empty_tree_is_a_valid_volume() {
    let store = ContentStore::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("empty.iso");
    std::fs::write(&iso, write(&Tree::new(), &store)).unwrap();
    let out = run(Command::new("isoinfo")
        .arg("-R")
        .arg("-l")
        .arg("-i")
        .arg(&iso));
    assert_eq!(isoinfo_listing(&iso, "/").len(), 2, "{out}");
}

#[test]
fn files_of_four_gib_are_refused() {
    assert_eq!(file_size(b"big", u64::from(u32::MAX)).unwrap(), u32::MAX);
    let err = file_size(b"srv/disk.img", 1 << 32).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(
        err.to_string()
            .starts_with("srv/disk.img: 4294967296 bytes"),
        "{err}"
    );
}

#[test]
fn trees_this_format_cannot_hold_are_errors() {
    let store = ContentStore::new().unwrap();
    let attempt = |t: &Tree| write_rootfs_iso(t, &store, 0, "x", &mut Vec::new()).unwrap_err();

    let mut t = Tree::new();
    t.insert(b"d".to_vec(), Entry::dir(0o755, 0));
    t.insert(
        b"l".to_vec(),
        Entry::new(Kind::Hardlink(b"d".to_vec()), 0o755, 0),
    );
    assert_eq!(attempt(&t).to_string(), "l: hard link to directory d");

    let mut t = Tree::new();
    t.insert(
        b"f".to_vec(),
        Entry::file(store.add(b"x").unwrap(), 0o644, 0),
    );
    t.insert(
        b"f/g".to_vec(),
        Entry::file(store.add(b"y").unwrap(), 0o644, 0),
    );
    assert_eq!(attempt(&t).to_string(), "f/g: parent f is not a directory");

    let mut t = Tree::new();
    t.insert(
        b"dev/x".to_vec(),
        Entry::new(
            Kind::Char {
                major: 0,
                minor: 300,
            },
            0o600,
            0,
        ),
    );
    t.insert(b"dev".to_vec(), Entry::dir(0o755, 0));
    let err = attempt(&t);
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().starts_with("dev/x: device 0:300"), "{err}");

    let mut t = Tree::new();
    t.insert(b"".to_vec(), Entry::file(store.add(b"").unwrap(), 0o644, 0));
    assert_eq!(attempt(&t).to_string(), "the root entry is not a directory");
}

#[test]
fn clashing_names_get_distinct_level_one_identifiers() {
    let mut namer = base::Namer::default();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..2000 {
        let ident = namer.identifier(format!("libsomething-{i}.so.1").as_bytes(), false);
        let (name, ext) = base::sort_key(&ident);
        assert!(name.len() <= 8 && ext.len() <= 3, "{}", show(&ident));
        let ok = |b: &u8| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_';
        assert!(
            name.iter().all(ok) && ext.iter().all(ok),
            "{}",
            show(&ident)
        );
        assert!(ident.ends_with(b";1"));
        assert!(seen.insert(ident));
    }
    // A directory and a file may not share name and extension either.
    let mut namer = base::Namer::default();
    assert_eq!(namer.identifier(b"etc", true), b"ETC");
    assert_eq!(namer.identifier(b"ETC", false), b"ETC1.;1");
}
