//! `format: oci` volumes end to end: the volume's `lower/` directory in the
//! built image is an OCI image layout of the image, blob for blob, that
//! kiln's own reader and skopeo open.

use std::path::Path;

use kiln::oci::Layout;

use super::fixture::system_layout;
use crate::oci::two_arch;
use crate::support::{run_tool, stderr, write_multiarch_layout, TestDir};

const YAML: &str = "kernel:
  image: kiln.test/kernel:1
init:
  - kiln.test/init:1
volumes:
  - name: here
    image: kiln.test/data:1
    format: oci
  - name: both
    image: kiln.test/data:1
    format: oci
    platforms: [linux/arm64, linux/amd64]
  - name: plain
    image: kiln.test/data:1
";

/// Builds YAML as `tar` and unpacks it into `root`.
fn build_and_unpack(t: &TestDir, yaml: &str, root: &Path) {
    t.write("v.yml", yaml);
    let out = t.kiln(&["build", "-f", "tar", "-o", "out", "v.yml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::create_dir_all(root).unwrap();
    let f = std::fs::File::open(t.join("out/v.tar")).unwrap();
    tar::Archive::new(f).unpack(root).unwrap();
}

#[test]
fn oci_volume_is_an_oci_layout_of_the_image() {
    let t = TestDir::new();
    let layout = t.join("oci-layout");
    system_layout(&layout);
    write_multiarch_layout(&layout, &[two_arch("kiln.test/data:1")]);
    let root = t.join("root");
    build_and_unpack(&t, YAML, &root);

    // One platform (the build's), readable by kiln and skopeo.
    let here = root.join("containers/volumes/here/lower");
    let l = Layout::open(&here).unwrap();
    assert_eq!(l.manifests().len(), 1);
    l.fsck().unwrap();
    let amd64 = l.resolve("kiln.test/data:1", "amd64").unwrap();
    let source = Layout::open(&layout).unwrap();
    let want = source.resolve("kiln.test/data:1", "amd64").unwrap();
    assert_eq!(amd64.manifest_digest, want.manifest_digest);
    assert!(l.resolve("kiln.test/data:1", "arm64").is_err());
    // Every blob is byte for byte the source layout's.
    for entry in std::fs::read_dir(here.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let copy = std::fs::read(entry.path()).unwrap();
        let orig = std::fs::read(layout.join("blobs/sha256").join(entry.file_name())).unwrap();
        assert!(copy == orig, "{:?}", entry.file_name());
    }
    let dir = format!("oci:{}:kiln.test/data:1", here.display());
    let out = run_tool("skopeo", &["inspect", "--raw", &dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(raw["layers"].as_array().unwrap().len(), 1, "{raw}");

    // platforms: both, in the order given.
    let both = Layout::open(&root.join("containers/volumes/both/lower")).unwrap();
    both.fsck().unwrap();
    let archs: Vec<_> = both
        .manifests()
        .iter()
        .map(|d| d.platform.as_ref().unwrap().architecture.clone())
        .collect();
    assert_eq!(archs, ["arm64", "amd64"]);
    assert_eq!(
        both.resolve("kiln.test/data:1", "arm64")
            .unwrap()
            .manifest_digest,
        source
            .resolve("kiln.test/data:1", "arm64")
            .unwrap()
            .manifest_digest
    );

    // Without `format: oci` the volume holds the unpacked image.
    let plain = root.join("containers/volumes/plain/lower");
    assert_eq!(
        std::fs::read_to_string(plain.join("etc/arch")).unwrap(),
        "amd64"
    );
    assert!(!plain.join("index.json").exists());
}

#[test]
fn oci_volume_platform_errors_name_the_volume() {
    let t = TestDir::new();
    let layout = t.join("oci-layout");
    system_layout(&layout);
    write_multiarch_layout(&layout, &[two_arch("kiln.test/data:1")]);
    let head = "kernel:\n  image: kiln.test/kernel:1\ninit:\n  - kiln.test/init:1\n";
    for (platforms, words) in [
        ("[linux/s390x]", "s390x"),
        (
            "[windows/amd64]",
            "platform \"windows/amd64\" is not `linux/ARCH[/VARIANT]`",
        ),
    ] {
        t.write(
            "p.yml",
            format!("{head}volumes:\n  - name: v\n    image: kiln.test/data:1\n    format: oci\n    platforms: {platforms}\n"),
        );
        for cmd in ["validate", "build"] {
            let out = t.kiln(&[cmd, "p.yml"]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
            assert!(
                err.contains("p.yml:") && err.contains(words),
                "{cmd}: {err}"
            );
        }
    }
}
