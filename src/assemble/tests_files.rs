//! Tests for `files:`: default modes, parents created only where missing,
//! owners from the id map, sources, metadata, and every error case.

use serde_json::json;

use super::tests_layout::*;
use super::*;
use crate::spec::{FileEntry, FileSource, IdSpec, MetadataFormat};

fn file(path: &str, source: FileSource) -> FileEntry {
    FileEntry {
        path: path.into(),
        pos: pos(40),
        source,
        optional: false,
        mode: None,
        uid: None,
        gid: None,
    }
}

#[test]
fn files_modes_parents_owners() {
    let mut f = Fixture::new();
    f.image(
        "init",
        "docker.io/linuxkit/init",
        &[("etc/os-release", "x")],
    );
    f.spec.init = vec![r("init", 3)];
    f.spec.services = vec![];
    f.spec.onboot = vec![container("dhcpcd", "init", 8)];
    let mut owned = file("var/lib/app/conf", FileSource::Contents("hi".into()));
    owned.mode = Some(0o640);
    owned.uid = Some(IdSpec::Name("dhcpcd".into()));
    owned.gid = Some(IdSpec::Name("42".into()));
    let mut dir = file("etc", FileSource::Directory);
    dir.mode = Some(0o700);
    f.spec.files = vec![
        file("/etc/app/secret", FileSource::Contents("s".into())),
        owned,
        file("etc/empty", FileSource::Empty),
        file("etc/dirs/d", FileSource::Directory),
        file("etc/link", FileSource::Symlink("/etc/os-release".into())),
    ];
    let out = f.run().unwrap();
    let t = &out.tree;
    // Defaults 0600 / 0700; an existing dir (etc) keeps its mode.
    assert_eq!(mode(t, "etc"), 0o755);
    assert_eq!(mode(t, "etc/app"), 0o700);
    assert_eq!(mode(t, "etc/app/secret"), 0o600);
    assert_eq!(f.read(t, "etc/app/secret"), "s");
    assert_eq!(mode(t, "etc/dirs"), 0o700);
    assert!(t.get(b"etc/dirs/d").unwrap().is_dir());
    assert_eq!(f.read(t, "etc/empty"), "");
    assert_eq!(link(t, "etc/link"), "/etc/os-release");
    assert_eq!(mode(t, "etc/link"), 0o600);
    // Parents get mode + search bits and the file's owner.
    let e = t.get(b"var/lib/app/conf").unwrap();
    assert_eq!((e.mode, e.uid, e.gid, e.mtime), (0o640, 100, 42, EPOCH));
    let p = t.get(b"var/lib").unwrap();
    assert_eq!((p.mode, p.uid, p.gid), (0o750, 100, 42));
    // `directory: true` over an existing dir changes its mode, keeps children.
    f.spec.files = vec![dir];
    let out = f.run().unwrap();
    assert_eq!(mode(&out.tree, "etc"), 0o700);
    assert!(has(&out.tree, "etc/os-release"));
}

#[test]
fn files_dir_mode_adds_search_bits() {
    assert_eq!(files::dir_mode(0o600), 0o700);
    assert_eq!(files::dir_mode(0o644), 0o755);
    assert_eq!(files::dir_mode(0o640), 0o750);
    assert_eq!(files::dir_mode(0o4000), 0o4000);
}

#[test]
fn files_source_and_optional() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("motd");
    std::fs::write(&src, b"welcome").unwrap();
    let mut f = Fixture::new();
    let mut optional = file("etc/missing", FileSource::Source(dir.path().join("nope")));
    optional.optional = true;
    f.spec.files = vec![file("etc/motd", FileSource::Source(src)), optional];
    let out = f.run().unwrap();
    assert_eq!(f.read(&out.tree, "etc/motd"), "welcome");
    assert!(!has(&out.tree, "etc/missing"));
}

#[test]
fn files_metadata_json_and_yaml_expand_references() {
    let mut f = Fixture::new();
    f.image("alpine", "docker.io/library/alpine:latest", &[]);
    f.spec.services = vec![container("svc", "alpine", 10)];
    f.spec.raw = json!({"services": [{"name": "svc", "image": "alpine"}], "volumes": [{"name": "v", "image": "alpine"}]});
    f.spec.files = vec![
        file(
            "etc/linuxkit.json",
            FileSource::Metadata(MetadataFormat::Json),
        ),
        file(
            "etc/linuxkit.yml",
            FileSource::Metadata(MetadataFormat::Yaml),
        ),
    ];
    let out = f.run().unwrap();
    assert_eq!(
        f.read(&out.tree, "etc/linuxkit.json"),
        "{\n    \"services\": [\n        {\n            \"image\": \"docker.io/library/alpine:latest\",\n            \"name\": \"svc\"\n        }\n    ],\n    \"volumes\": [\n        {\n            \"image\": \"alpine\",\n            \"name\": \"v\"\n        }\n    ]\n}"
    );
    assert_eq!(
        f.read(&out.tree, "etc/linuxkit.yml"),
        "services:\n  - image: docker.io/library/alpine:latest\n    name: svc\nvolumes:\n  - image: alpine\n    name: v\n"
    );
}

fn file_err(f: &Fixture) -> String {
    let e = f.run().unwrap_err().to_string();
    assert!(e.starts_with("test.yml:40:3: files: "), "{e}");
    e
}

#[test]
fn error_files_cases_name_position() {
    let mut f = Fixture::new();
    f.image("init", "docker.io/linuxkit/init", &[("etc/passwd", "root")]);
    f.spec.init = vec![r("init", 3)];
    f.spec.files = vec![file("etc/passwd/x", FileSource::Contents("x".into()))];
    assert!(file_err(&f).contains("parent \"etc/passwd\" is not a directory"));
    f.spec.files = vec![file("etc/resolv.conf/x", FileSource::Empty)];
    assert!(file_err(&f).contains("parent \"etc/resolv.conf\" is not a directory"));
    f.spec.files = vec![file("etc", FileSource::Empty)];
    assert!(file_err(&f).contains("\"etc\" is a non-empty directory"));
    f.spec.files = vec![file("/", FileSource::Empty)];
    assert!(file_err(&f).contains("the path is empty"));
    f.spec.files = vec![file("a/../../b", FileSource::Empty)];
    assert!(file_err(&f).contains("`..`"));
    let mut owned = file("etc/x", FileSource::Empty);
    owned.uid = Some(IdSpec::Name("nobody".into()));
    f.spec.files = vec![owned];
    assert!(file_err(&f).contains("uid: cannot find id \"nobody\""));
    f.spec.files = vec![file(
        "etc/x",
        FileSource::Source("/nonexistent/kiln/source".into()),
    )];
    assert!(file_err(&f).contains("cannot read source /nonexistent/kiln/source"));
    let dir = tempfile::tempdir().unwrap();
    f.spec.files = vec![file("etc/x", FileSource::Source(dir.path().to_path_buf()))];
    assert!(file_err(&f).contains("is a directory"));
}

#[test]
fn assembly_is_deterministic() {
    let mut f = kernel_fixture();
    f.image(
        "alpine",
        "docker.io/library/alpine:latest",
        &[("bin/sh", "sh")],
    );
    f.spec.init = vec![r("alpine", 3)];
    f.spec.services = vec![container("a", "alpine", 10), container("b", "alpine", 12)];
    f.spec.files = vec![file("etc/x", FileSource::Contents("x".into()))];
    let a = f.run().unwrap();
    let b = f.run().unwrap();
    assert_eq!(a.tree, b.tree);
    assert!(a.tree.iter().all(|(_, e)| e.mtime == EPOCH || e.mtime == 5));
}
