//! Hard-link tests of `unpack`: links resolve to files, and stay sane when
//! their target is replaced or removed by a later entry or layer.

use super::test_tar::{listing, unpack, Tar, META};
use super::*;
use crate::tree::Kind;

fn store() -> ContentStore {
    ContentStore::new().unwrap()
}

fn kind(u: &Unpacked, path: &str) -> Option<Kind> {
    u.tree.get(path.as_bytes()).map(|e| e.kind.clone())
}

#[test]
fn link_to_a_file_of_the_same_or_a_lower_layer() {
    let s = store();
    let lower = Tar::new().file("bin/busybox", b"bb").finish();
    let upper = Tar::new()
        .hardlink("bin/ls", "bin/busybox")
        .hardlink("bin/cat", "./bin/busybox")
        .finish();
    let u = unpack(&[lower, upper], &s).unwrap();
    assert_eq!(
        kind(&u, "bin/ls"),
        Some(Kind::Hardlink(b"bin/busybox".to_vec()))
    );
    assert_eq!(
        kind(&u, "bin/cat"),
        Some(Kind::Hardlink(b"bin/busybox".to_vec()))
    );
}

#[test]
fn link_to_a_link_points_at_the_file() {
    let s = store();
    let layer = Tar::new()
        .file("f", b"x")
        .hardlink("g", "f")
        .hardlink("h", "g")
        .finish();
    let u = unpack(&[layer], &s).unwrap();
    assert_eq!(kind(&u, "h"), Some(Kind::Hardlink(b"f".to_vec())));
}

#[test]
fn bad_link_targets_are_errors_naming_layer_and_path() {
    let s = store();
    let layer = Tar::new().hardlink("usr/x", "usr/missing").finish();
    let err = unpack(&[layer], &s).unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer layer0: usr/x: hard link to usr/missing: the target does not exist"
    );
    let layer = Tar::new().dir("d").hardlink("l", "d").finish();
    let err = unpack(&[layer], &s).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("the target is not a regular file"),
        "{err}"
    );
    let layer = Tar::new().file("s", b"s").hardlink("s", "s").finish();
    let err = unpack(&[layer], &s).unwrap_err();
    assert!(err.to_string().ends_with("it links to itself"), "{err}");
    let layer = Tar::new().member(b'1', b"e", b"", b"", META).finish();
    let err = unpack(&[layer], &s).unwrap_err();
    assert!(err.to_string().ends_with("link without a target"), "{err}");
}

#[test]
fn removed_target_hands_its_content_to_the_first_link() {
    let s = store();
    let lower = Tar::new()
        .file("a", b"shared")
        .hardlink("b", "a")
        .hardlink("c", "a")
        .finish();
    let upper = Tar::new().file(".wh.a", b"").finish();
    let u = unpack(&[lower, upper], &s).unwrap();
    assert_eq!(
        listing(&u, &s),
        [
            "b file \"shared\" 644 0:0 1600000000",
            "c hardlink b 644 0:0 1600000000"
        ]
    );
}

#[test]
fn replaced_target_keeps_old_content_in_its_links() {
    let s = store();
    let lower = Tar::new().file("a", b"old").hardlink("b", "a").finish();
    let upper = Tar::new().file("a", b"new").finish();
    let u = unpack(&[lower, upper], &s).unwrap();
    assert_eq!(
        listing(&u, &s),
        [
            "a file \"new\" 644 0:0 1600000000",
            "b file \"old\" 644 0:0 1600000000"
        ]
    );
}

#[test]
fn target_removed_with_its_directory() {
    let s = store();
    let lower = Tar::new()
        .dir("d")
        .file("d/f", b"f")
        .hardlink("d/g", "d/f")
        .hardlink("out", "d/f")
        .finish();
    let upper = Tar::new().file("d/.wh..wh..opq", b"").finish();
    let u = unpack(&[lower, upper], &s).unwrap();
    assert_eq!(
        listing(&u, &s),
        [
            "d dir 755 0:0 1600000000",
            "out file \"f\" 644 0:0 1600000000"
        ]
    );
}

#[test]
fn removed_link_then_removed_target() {
    let s = store();
    let l0 = Tar::new().file("a", b"a").hardlink("b", "a").finish();
    let l1 = Tar::new().file(".wh.b", b"").finish();
    let l2 = Tar::new().file(".wh.a", b"").file("z", b"z").finish();
    let u = unpack(&[l0, l1, l2], &s).unwrap();
    assert_eq!(listing(&u, &s), ["z file \"z\" 644 0:0 1600000000"]);
}

#[test]
fn target_relinked_to_its_own_link() {
    let s = store();
    // `a` is replaced by a link to `b`, which was a link to `a`: as on a
    // filesystem, `b` keeps the content and `a` now points at it.
    let layer = Tar::new()
        .file("a", b"data")
        .hardlink("b", "a")
        .hardlink("a", "b")
        .finish();
    let u = unpack(&[layer], &s).unwrap();
    assert_eq!(
        listing(&u, &s),
        [
            "a hardlink b 644 0:0 1600000000",
            "b file \"data\" 644 0:0 1600000000"
        ]
    );
}

#[test]
fn replacing_a_link_detaches_it() {
    let s = store();
    let lower = Tar::new().file("a", b"a").hardlink("b", "a").finish();
    let upper = Tar::new().symlink("b", "a").file(".wh.x", b"").finish();
    let third = Tar::new().file(".wh.a", b"").finish();
    let u = unpack(&[lower, upper, third], &s).unwrap();
    assert_eq!(listing(&u, &s), ["b symlink a 777 0:0 1600000000"]);
}
