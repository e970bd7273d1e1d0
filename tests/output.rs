//! Integration tests: output writers and `inspect`, through the public API
//! only (a tree is written, compressed to a file and listed back).

use std::io::Write;

use kiln::inspect::{format_listing, inspect};
use kiln::output::compress::{Compression, Compressor};
use kiln::output::{cpio::write_cpio, tar::write_tar};
use kiln::tree::{ContentStore, Entry, Kind, Tree};

fn tree(store: &ContentStore) -> Tree {
    let mut t = Tree::new();
    let init = store.add(b"#!/bin/sh\nexec /sbin/getty\n").unwrap();
    t.insert_with_parents(b"init".to_vec(), Entry::file(init, 0o755, 0), 0o755, 0);
    t.insert_with_parents(
        b"sbin/init".to_vec(),
        Entry::new(Kind::Hardlink(b"init".to_vec()), 0o755, 0),
        0o755,
        0,
    );
    t.insert_with_parents(
        b"dev/null".to_vec(),
        Entry::new(Kind::Char { major: 1, minor: 3 }, 0o666, 0),
        0o755,
        0,
    );
    t
}

const EXPECTED: &str = "\
d0755 0 0 0 - dev
c0666 0 0 1,3 - dev/null
-0755 0 0 27 33aeae5a3787ff0a1c9def48ff17a0997b69bee583dc4558b4ea3449e54ee5c8 init
d0755 0 0 0 - sbin
h0755 0 0 27 33aeae5a3787ff0a1c9def48ff17a0997b69bee583dc4558b4ea3449e54ee5c8 sbin/init => init
";

#[test]
fn compressed_archives_list_back() {
    let store = ContentStore::new().unwrap();
    let t = tree(&store);
    let dir = tempfile::tempdir().unwrap();
    let mut listings = Vec::new();
    for (name, c) in [
        ("initrd.img", Compression::Gzip),
        ("rootfs.tar.xz", Compression::Xz),
    ] {
        let path = dir.path().join(name);
        let file = std::fs::File::create(&path).unwrap();
        let mut z = Compressor::new(c, file, 2).unwrap();
        if name.contains("tar") {
            write_tar(&t, &store, &mut z).unwrap();
        } else {
            write_cpio(&t, &store, &mut z).unwrap();
        }
        z.finish().unwrap().flush().unwrap();
        listings.push(format_listing(&inspect(&path).unwrap()));
    }
    assert_eq!(listings[0], EXPECTED);
    assert_eq!(listings[1], EXPECTED);
}
