//! Integration tests: unpack, through the public API only, with layers
//! written by the `tar` crate's own `Builder` (as other tar writers do).

use std::io::{self, Write};

use kiln::tree::{ContentStore, Kind};
use kiln::unpack::{unpack_layers, Compression, Limits, Unpacker};

fn header(ty: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(ty);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// A layer built with `tar::Builder`: a file, a long-named file, a symlink.
fn base_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut h, "etc/", io::empty()).unwrap();
    let mut h = header(tar::EntryType::Regular, 0o644, 6);
    b.append_data(&mut h, "etc/motd", &b"hello\n"[..]).unwrap();
    let long = format!("usr/share/{}/file.txt", "x".repeat(120));
    let mut h = header(tar::EntryType::Regular, 0o600, 4);
    b.append_data(&mut h, &long, &b"long"[..]).unwrap();
    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, "etc/issue", "motd").unwrap();
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn builder_layers_unpack_through_the_public_api() {
    let store = ContentStore::new().unwrap();
    let base = gzip(&base_layer());
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(tar::EntryType::Regular, 0o644, 0);
    b.append_data(&mut h, "etc/.wh.issue", io::empty()).unwrap();
    let top = b.into_inner().unwrap();
    let layers = [
        ("sha256:base".to_owned(), Compression::Gzip, &base[..]),
        ("sha256:top".to_owned(), Compression::None, &top[..]),
    ]
    .map(Ok::<_, io::Error>);
    let unpacked = unpack_layers(layers, &store, &Limits::default()).unwrap();
    let paths: Vec<String> = unpacked
        .tree
        .iter()
        .map(|(p, _)| String::from_utf8_lossy(p).into_owned())
        .collect();
    let dir = format!("usr/share/{}", "x".repeat(120));
    let long = format!("{dir}/file.txt");
    assert_eq!(paths, ["etc", "etc/motd", "usr", "usr/share", &dir, &long]);
    // Parents the layer did not list are created 0755, root-owned, mtime 0.
    let parent = unpacked.tree.get(dir.as_bytes()).unwrap();
    assert_eq!((parent.mode, parent.uid, parent.mtime), (0o755, 0, 0));
    let motd = unpacked.tree.get(b"etc/motd").unwrap();
    let Kind::File(content) = &motd.kind else {
        panic!("etc/motd is not a file: {motd:?}");
    };
    assert_eq!(store.read(content).unwrap(), b"hello\n");
    assert_eq!(motd.mtime, 1_700_000_000);
    assert!(unpacked.warnings.is_empty(), "{:?}", unpacked.warnings);
}

#[test]
fn unpacker_applies_layers_one_at_a_time() {
    let store = ContentStore::new().unwrap();
    let mut unpacker = Unpacker::new(&store, &Limits::default());
    unpacker
        .apply_layer("sha256:one", Compression::None, &base_layer()[..])
        .unwrap();
    let err = unpacker
        .apply_layer("sha256:two", Compression::Gzip, &b"not gzip"[..])
        .unwrap_err();
    assert!(err.to_string().starts_with("layer sha256:two: "), "{err}");
}
