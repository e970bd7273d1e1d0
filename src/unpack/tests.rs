//! Unit tests of `unpack`: layers are built byte by byte (see `test_tar`),
//! so odd paths and broken streams are possible.

use std::io::{self, Read, Write};

use super::test_tar::{listing, unpack, unpack_limited, Meta, Tar, META};
use super::*;
use crate::tree::{Entry, Kind};

fn store() -> ContentStore {
    ContentStore::new().unwrap()
}

fn paths(u: &Unpacked) -> Vec<String> {
    u.tree.iter().map(|(p, _)| show(p)).collect()
}

#[test]
fn every_entry_type_keeps_its_metadata() {
    let s = store();
    let suid = Meta {
        mode: 0o104755,
        uid: 1000,
        gid: 50,
        mtime: 1_700_000_000,
    };
    let layer = Tar::new()
        .dir("bin/")
        .member(b'0', b"bin/su", b"", b"su!", suid)
        .symlink("bin/sh", "/bin/busybox")
        .member(
            b'3',
            b"dev/null",
            b"",
            b"",
            Meta {
                mode: 0o666,
                ..META
            },
        )
        .member(
            b'6',
            b"run/fifo",
            b"",
            b"",
            Meta {
                mode: 0o600,
                ..META
            },
        )
        .member(
            b'5',
            b"tmp",
            b"",
            b"",
            Meta {
                mode: 0o1777,
                ..META
            },
        )
        .finish();
    // Device numbers: set on a copy of the char header and a block one.
    let mut layer = layer;
    let mut dev = tar::Header::new_ustar();
    dev.set_path("dev/sda").unwrap();
    dev.set_entry_type(tar::EntryType::Block);
    dev.set_mode(0o660);
    dev.set_device_major(8).unwrap();
    dev.set_device_minor(1).unwrap();
    dev.set_mtime(5);
    dev.set_size(0);
    dev.set_uid(0);
    dev.set_gid(0);
    dev.set_cksum();
    let end = layer.len() - 1024;
    layer.splice(end..end, dev.as_bytes().iter().copied());

    let u = unpack(&[layer], &s).unwrap();
    assert_eq!(
        listing(&u, &s),
        [
            "bin dir 755 0:0 1600000000",
            "bin/sh symlink /bin/busybox 777 0:0 1600000000",
            "bin/su file \"su!\" 4755 1000:50 1700000000",
            "dev dir 755 0:0 0",
            "dev/null char 0,0 666 0:0 1600000000",
            "dev/sda block 8,1 660 0:0 5",
            "run dir 755 0:0 0",
            "run/fifo fifo 600 0:0 1600000000",
            "tmp dir 1777 0:0 1600000000",
        ]
    );
    assert!(u.warnings.is_empty(), "{:?}", u.warnings);
}

#[test]
fn pax_headers_override_the_ustar_fields() {
    let s = store();
    let long = format!("usr/{}/file", "d".repeat(150));
    let cap = b"\x01\x00\x00\x02\x0a\x20\n\x00".as_slice();
    let layer = Tar::new()
        .pax(&[
            ("path", long.as_bytes()),
            ("uid", b"70000"),
            ("gid", b"70001"),
            ("mtime", b"1234567890.987654321"),
            ("SCHILY.xattr.security.capability", cap),
            ("LIBARCHIVE.xattr.user.n%3Dx", b"dmFs"),
            ("atime", b"1.5"),
        ])
        .file("ignored-short-name", b"body")
        .pax(&[("linkpath", long.as_bytes())])
        .symlink("link", "ignored")
        .finish();
    let u = unpack(&[layer], &s).unwrap();
    let e = u.tree.get(long.as_bytes()).unwrap();
    assert_eq!((e.uid, e.gid, e.mtime), (70000, 70001, 1_234_567_890));
    assert_eq!(e.xattrs["security.capability"], cap);
    assert_eq!(e.xattrs["user.n=x"], b"val");
    assert!(u.tree.get(b"ignored-short-name").is_none());
    assert_eq!(
        u.tree.get(b"link").unwrap().kind,
        Kind::Symlink(long.into_bytes())
    );
}

#[test]
fn gnu_long_names_and_links() {
    let s = store();
    let long = format!("opt/{}", "n".repeat(200));
    let target = format!("/target/{}", "t".repeat(180));
    let mut tar = Tar::new();
    tar.member(
        b'L',
        b"././@LongLink",
        b"",
        format!("{long}\0").as_bytes(),
        META,
    )
    .file("short", b"x")
    .member(b'K', b"././@LongLink", b"", target.as_bytes(), META)
    .symlink("sym", "short-target");
    let u = unpack(&[tar.finish()], &s).unwrap();
    assert!(matches!(
        u.tree.get(long.as_bytes()).unwrap().kind,
        Kind::File(_)
    ));
    assert_eq!(
        u.tree.get(b"sym").unwrap().kind,
        Kind::Symlink(target.into_bytes())
    );
}

#[test]
fn whiteouts_remove_lower_entries_and_never_appear() {
    let s = store();
    let lower = Tar::new()
        .dir("etc")
        .file("etc/a", b"a")
        .dir("etc/d")
        .file("etc/d/x", b"x")
        .file("etc/keep", b"k")
        .finish();
    let upper = Tar::new()
        .file("etc/.wh.a", b"")
        .file("etc/.wh.d", b"")
        .file("etc/.wh.missing", b"")
        .finish();
    let u = unpack(&[lower, upper], &s).unwrap();
    assert_eq!(paths(&u), ["etc", "etc/keep"]);
}

#[test]
fn whiteout_hides_only_lower_layers_whatever_the_order() {
    let s = store();
    let lower = Tar::new().file("a", b"old").finish();
    // The layer re-adds `a` before whiting it out: the whiteout only hides
    // the lower `a`, the layer's own `a` stays.
    let upper = Tar::new().file("a", b"new").file(".wh.a", b"").finish();
    let u = unpack(&[lower, upper], &s).unwrap();
    assert_eq!(listing(&u, &s), ["a file \"new\" 644 0:0 1600000000"]);
}

#[test]
fn opaque_marker_keeps_same_layer_entries_in_any_order() {
    let s = store();
    let lower = Tar::new()
        .dir("d")
        .file("d/old", b"o")
        .dir("d/sub")
        .file("d/sub/deep", b"x")
        .file("other", b"y")
        .finish();
    for marker_first in [true, false] {
        let mut upper = Tar::new();
        upper.dir("d");
        if marker_first {
            upper.file("d/.wh..wh..opq", b"");
        }
        upper.file("d/new", b"n").file("d/sub/fresh", b"f");
        if !marker_first {
            upper.file("d/.wh..wh..opq", b"");
        }
        let u = unpack(&[lower.clone(), upper.finish()], &s).unwrap();
        assert_eq!(paths(&u), ["d", "d/new", "d/sub", "d/sub/fresh", "other"]);
    }
}

#[test]
fn opaque_marker_at_the_root_clears_lower_layers() {
    let s = store();
    let lower = Tar::new()
        .file("a", b"a")
        .dir("b")
        .file("b/c", b"c")
        .finish();
    let upper = Tar::new()
        .file("z", b"z")
        .file(".wh..wh..opq", b"")
        .finish();
    let u = unpack(&[lower, upper], &s).unwrap();
    assert_eq!(paths(&u), ["z"]);
}

#[test]
fn escaping_paths_stay_inside_the_root_with_a_warning() {
    let s = store();
    let layer = Tar::new()
        .file("../../etc/passwd", b"p")
        .file("/abs/file", b"a")
        .dir("./")
        .dir("/")
        .file("./fine", b"f")
        .finish();
    let u = unpack(&[layer], &s).unwrap();
    assert_eq!(paths(&u), ["abs", "abs/file", "etc", "etc/passwd", "fine"]);
    assert_eq!(u.warnings.len(), 2, "{:?}", u.warnings);
    assert!(u.warnings[0].contains("layer0") && u.warnings[0].contains("../../etc/passwd"));
    assert!(u.warnings[1].contains("/abs/file"));
}

#[test]
fn symlink_parent_is_replaced_by_a_directory() {
    let s = store();
    let lower = Tar::new().symlink("a", "/etc").file("etc/x", b"x").finish();
    let upper = Tar::new().file("a/b", b"b").finish();
    let u = unpack(&[lower, upper], &s).unwrap();
    assert_eq!(paths(&u), ["a", "a/b", "etc", "etc/x"]);
    assert!(u.tree.get(b"a").unwrap().is_dir());
    assert_eq!(u.warnings.len(), 1);
    assert!(u.warnings[0].contains("layer1") && u.warnings[0].contains("symlink"));
}

#[test]
fn replacing_directories() {
    let s = store();
    let lower = Tar::new()
        .dir("d")
        .file("d/x", b"x")
        .dir("e")
        .file("e/y", b"y")
        .finish();
    let upper = Tar::new()
        .file("d", b"now a file")
        .member(
            b'5',
            b"e",
            b"",
            b"",
            Meta {
                mode: 0o700,
                uid: 7,
                ..META
            },
        )
        .finish();
    let u = unpack(&[lower, upper], &s).unwrap();
    assert_eq!(
        listing(&u, &s),
        [
            "d file \"now a file\" 644 0:0 1600000000",
            "e dir 700 7:0 1600000000",
            "e/y file \"y\" 644 0:0 1600000000",
        ]
    );
}

#[test]
fn old_style_directory_is_a_regular_entry_ending_in_slash() {
    let s = store();
    let layer = Tar::new()
        .member(b'\0', b"olddir/", b"", b"", META)
        .finish();
    let u = unpack(&[layer], &s).unwrap();
    assert!(u.tree.get(b"olddir").unwrap().is_dir());
}

#[test]
fn truncated_layer_names_the_layer_and_entry() {
    let s = store();
    let mut layer = Tar::new().file("big", &[7; 2000]).finish();
    layer.truncate(512 + 700);
    let err = unpack(&[layer], &s).unwrap_err();
    assert!(matches!(
        err,
        UnpackError::Truncated {
            declared: 2000,
            found: 700,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "layer layer0: big: the header declares 2000 bytes but the stream ends after 700"
    );
}

#[test]
fn declared_size_beyond_the_stream_is_an_error_for_any_entry() {
    let s = store();
    // A directory that claims data the stream does not have: the skip fails.
    let mut h = tar::Header::new_ustar();
    h.set_path("d").unwrap();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(1 << 40);
    h.set_cksum();
    let mut layer = h.as_bytes().to_vec();
    layer.extend_from_slice(&[0; 1024]);
    let err = unpack(&[layer], &s).unwrap_err();
    assert!(matches!(err, UnpackError::Read { .. }), "{err:?}");
    assert!(err
        .to_string()
        .starts_with("layer layer0: cannot read the tar stream after entry d"));
}

#[test]
fn garbage_is_an_error_naming_the_layer() {
    let s = store();
    let err = unpack(&[b"not a tar".repeat(100)], &s).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("layer layer0: cannot read the tar stream at its start"));
    let good = Tar::new().file("a", b"a").finish();
    let mut bad = Tar::new().file("b", b"b").finish();
    bad[700] ^= 0xff; // corrupt the second header's checksum area
    bad.truncate(1024);
    bad.extend_from_slice(&[1; 512]);
    let err = unpack(&[good, bad], &s).unwrap_err();
    assert!(err.to_string().contains("layer layer1"), "{err}");
}

#[test]
fn size_and_count_limits() {
    let s = store();
    let layer = Tar::new().file("a", &[1; 5000]).file("b", b"b").finish();
    let total = Limits {
        max_total_bytes: 4096,
        ..Limits::default()
    };
    let err = unpack_limited(std::slice::from_ref(&layer), &s, &total).unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer layer0: the layers hold more than 4096 bytes of tar data"
    );
    // The budget is shared by all layers.
    let small = Tar::new().file("c", b"c").finish();
    let total = Limits {
        max_total_bytes: layer.len() as u64 + 100,
        ..Limits::default()
    };
    let err = unpack_limited(&[layer.clone(), small], &s, &total).unwrap_err();
    assert!(matches!(err, UnpackError::TotalSize { ref layer, .. } if layer == "layer1"));

    let one = Limits {
        max_file_bytes: 4999,
        ..Limits::default()
    };
    let err = unpack_limited(std::slice::from_ref(&layer), &s, &one).unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer layer0: a: 5000 bytes is more than the limit of 4999 for one file"
    );
    let count = Limits {
        max_entries: 1,
        ..Limits::default()
    };
    let err = unpack_limited(&[layer], &s, &count).unwrap_err();
    assert!(matches!(err, UnpackError::TooManyEntries { limit: 1, .. }));
}

#[test]
fn gzip_and_zstd_layers() {
    let s = store();
    let base = Tar::new().file("a", b"from gzip").finish();
    let top = Tar::new().file("b", b"from zstd").finish();
    let third = Tar::new().file("c", b"plain").finish();
    // Two gzip members in one stream (a multi-member file) decode as one.
    let mut gz = Vec::new();
    for half in [&base[..512], &base[512..]] {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(half).unwrap();
        gz.extend(enc.finish().unwrap());
    }
    let zst = zstd::encode_all(&top[..], 3).unwrap();
    let layers = vec![
        Ok::<_, io::Error>(("gz".to_owned(), Compression::Gzip, &gz[..])),
        Ok(("zst".to_owned(), Compression::Zstd, &zst[..])),
        Ok(("plain".to_owned(), Compression::None, &third[..])),
    ];
    let u = unpack_layers(layers, &s, &Limits::default()).unwrap();
    let l = listing(&u, &s);
    assert_eq!(l.len(), 3);
    assert!(l[0].contains("from gzip") && l[1].contains("from zstd") && l[2].contains("plain"));
    // A corrupt compressed stream names its layer.
    let mut broken = zst.clone();
    let n = broken.len();
    broken[n / 2] ^= 0x55;
    broken.truncate(n - 2);
    let layers = vec![Ok::<_, io::Error>((
        "bad-zst".to_owned(),
        Compression::Zstd,
        &broken[..],
    ))];
    let err = unpack_layers(layers, &s, &Limits::default()).unwrap_err();
    assert!(err.to_string().starts_with("layer bad-zst:"), "{err}");
}

/// A reader that remembers how much was read and whether EOF was seen.
struct Watch<'a> {
    data: &'a [u8],
    read: usize,
    eof: &'a std::sync::atomic::AtomicBool,
}

impl Read for Watch<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (&self.data[self.read..]).read(buf)?;
        self.read += n;
        if n == 0 && !buf.is_empty() {
            self.eof.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(n)
    }
}

#[test]
fn trailing_data_after_the_end_marker_is_drained() {
    let s = store();
    let mut layer = Tar::new().file("a", b"a").finish();
    layer.extend_from_slice(&[0; 8192]); // record padding
    layer.extend_from_slice(b"trailing bytes the digest covers");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer).unwrap();
    let gz = gz.finish().unwrap();
    for (compression, bytes) in [(Compression::None, &layer), (Compression::Gzip, &gz)] {
        let eof = std::sync::atomic::AtomicBool::new(false);
        let reader = Watch {
            data: bytes,
            read: 0,
            eof: &eof,
        };
        let mut unpacker = Unpacker::new(&s, &Limits::default());
        unpacker.apply_layer("l", compression, reader).unwrap();
        assert!(
            eof.load(std::sync::atomic::Ordering::SeqCst),
            "{compression:?} layer not read to its end"
        );
        assert_eq!(paths(&unpacker.finish()), ["a"]);
    }
}

#[test]
fn missing_end_marker_is_a_warning() {
    let s = store();
    let mut layer = Tar::new().file("a", b"a").finish();
    layer.truncate(1024);
    let u = unpack(&[layer], &s).unwrap();
    assert_eq!(paths(&u), ["a"]);
    assert_eq!(
        u.warnings,
        ["layer layer0: the tar stream has no end-of-archive marker"]
    );
}

#[test]
fn unsupported_members_are_errors() {
    let s = store();
    for (ty, what) in [(b'S', "sparse file"), (b'V', "tar entry type 'V'")] {
        let layer = Tar::new().member(ty, b"odd", b"", b"", META).finish();
        let err = unpack(&[layer], &s).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("layer layer0: odd: unsupported {what}")
        );
    }
    let layer = Tar::new().pax(&[("size", b"99")]).file("f", b"x").finish();
    let err = unpack(&[layer], &s).unwrap_err();
    assert!(matches!(err, UnpackError::Unsupported { .. }), "{err:?}");
    let layer = Tar::new().pax(&[("path", b"dangling")]).finish();
    let err = unpack(&[layer], &s).unwrap_err();
    assert!(err.to_string().contains("describes no member"), "{err}");
}

#[test]
fn failing_layer_source_is_reported() {
    let s = store();
    let layer = Tar::new().file("a", b"a").finish();
    let items = vec![
        Ok(("ok".to_owned(), Compression::None, &layer[..])),
        Err(io::Error::other("blob sha256:ab is missing")),
    ];
    let err = unpack_layers(items, &s, &Limits::default()).unwrap_err();
    assert_eq!(err.to_string(), "cannot open layer 1");
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "blob sha256:ab is missing"
    );
}

#[test]
fn same_layers_give_the_same_tree() {
    let layers = [
        Tar::new()
            .dir("a")
            .file("a/1", b"1")
            .symlink("a/l", "1")
            .hardlink("a/h", "a/1")
            .finish(),
        Tar::new()
            .file("a/.wh.1", b"")
            .file("b/../c", b"c")
            .file("a/2", b"2")
            .finish(),
    ];
    let s1 = store();
    let s2 = store();
    let one = unpack(&layers, &s1).unwrap();
    let two = unpack(&layers, &s2).unwrap();
    assert_eq!(one.tree, two.tree);
    assert_eq!(one.warnings, two.warnings);
    assert_eq!(listing(&one, &s1), listing(&two, &s2));
    let _: &Entry = one.tree.get(b"a/h").unwrap();
}

/// A path of a million components (a few hundred bytes gzipped) is refused
/// at once, naming the layer and the start of the path; so is a long link
/// target. Linux cannot use a path over PATH_MAX anyway.
#[test]
fn paths_and_link_targets_longer_than_path_max_are_refused_quickly() {
    let s = store();
    let deep = "a/".repeat(500_000);
    let layer = Tar::new()
        .pax(&[("path", deep.as_bytes())])
        .file("x", b"")
        .finish();
    let start = std::time::Instant::now();
    let e = unpack(&[layer], &s).unwrap_err().to_string();
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        e.contains("path longer than 4096 bytes") && e.contains("(1000000 bytes)"),
        "{e}"
    );
    assert!(e.len() < 600, "the message is short: {e}");
    let ok = "b/".repeat(2000) + "f";
    let layer = Tar::new()
        .pax(&[("path", ok.as_bytes())])
        .file("x", b"")
        .finish();
    unpack(&[layer], &s).unwrap();
    let layer = Tar::new()
        .pax(&[("linkpath", "t/".repeat(3000).as_bytes())])
        .symlink("l", "ignored")
        .finish();
    let e = unpack(&[layer], &s).unwrap_err().to_string();
    assert!(e.contains("link target longer than 4096 bytes"), "{e}");
}

/// Names no Linux filesystem holds are refused at unpack, for every format:
/// a NUL byte, a component over NAME_MAX.
#[test]
fn nul_bytes_and_names_over_name_max_are_refused() {
    let s = store();
    let layer = Tar::new()
        .pax(&[("path", b"etc/a\0b".as_slice())])
        .file("x", b"")
        .finish();
    let e = unpack(&[layer], &s).unwrap_err().to_string();
    assert!(e.contains("a NUL byte in the file name"), "{e}");
    let long = format!("etc/{}", "n".repeat(256));
    let layer = Tar::new()
        .pax(&[("path", long.as_bytes())])
        .file("x", b"")
        .finish();
    let e = unpack(&[layer], &s).unwrap_err().to_string();
    assert!(e.contains("a name longer than 255 bytes"), "{e}");
    let ok = format!("etc/{}", "n".repeat(255));
    let layer = Tar::new()
        .pax(&[("path", ok.as_bytes())])
        .file("x", b"")
        .finish();
    unpack(&[layer], &s).unwrap();
}
