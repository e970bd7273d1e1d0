//! Writing layouts: deterministic bytes whatever the insertion order,
//! same-name replacement, atomic commit, and skopeo/umoci interoperation
//! (those tests fail, not skip, when a tool is missing).

use std::path::Path;

use kiln::oci::write::{ImageSpec, LayerSource, LayerSpec, LayoutWriter};
use kiln::oci::{Compression, Layout, OciError};

use super::{alpine, one_file_layer, resolve_ok};
use crate::support::*;

fn images_for_determinism() -> Vec<TestImage> {
    vec![
        alpine(),
        TestImage::new("b:1")
            .layer(one_file_layer("etc/b", "b"))
            .label("z", "1")
            .label("a", "2"),
        TestImage::new("a:1")
            .also_named("c:1")
            .layer_with(one_file_layer("etc/a", "a"), Compression::None),
    ]
}

fn tree_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["", "blobs/sha256"] {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(sub))
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            let p = dir.join(sub).join(&n);
            if p.is_file() {
                out.push((format!("{sub}/{n}"), std::fs::read(&p).expect("read")));
            }
        }
    }
    out
}

#[test]
fn writer_is_deterministic_regardless_of_order() {
    let (a, b) = (TestDir::new(), TestDir::new());
    let imgs = images_for_determinism();
    write_layout(a.path(), &imgs);
    let mut rev = imgs.clone();
    rev.reverse();
    for i in &rev {
        write_layout(b.path(), std::slice::from_ref(i));
    }
    let ta = tree_bytes(a.path());
    assert_eq!(ta, tree_bytes(b.path()));
    let names: Vec<_> = ta
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !n.starts_with("blobs"))
        .collect();
    // No temp files left; the writers' (empty) advisory lock files stay.
    assert_eq!(
        names,
        [
            "/.kiln-index-lock",
            "/.kiln-lock",
            "/index.json",
            "/oci-layout"
        ],
        "no temp files left"
    );
    let index = String::from_utf8(a.read("index.json")).expect("utf8");
    assert!(!index.contains(' ') && !index.contains('\n'), "{index}");
    let refs: Vec<_> = read_index_json(a.path())["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .expect("name")
                .to_string()
        })
        .collect();
    assert_eq!(refs, ["a:1", "b:1", "c:1", "docker.io/library/alpine:3.19"]);
}

#[test]
fn writer_replaces_same_name_and_keeps_others() {
    let t = TestDir::new();
    write_layout(
        t.path(),
        &[TestImage::new("keep"), TestImage::new("x").label("v", "1")],
    );
    let new = write_layout(t.path(), &[TestImage::new("x").label("v", "2")]);
    let layout = Layout::open(t.path()).expect("open");
    assert_eq!(layout.names(), ["keep", "x"]);
    assert_eq!(layout.manifests().len(), 2);
    assert_eq!(
        layout.resolve("x", "amd64").expect("x").manifest_digest,
        new[0].digest
    );
}

#[test]
fn failed_write_leaves_index_json_untouched() {
    let t = TestDir::new();
    write_layout(t.path(), &[alpine()]);
    let before = t.read("index.json");
    {
        let mut w = LayoutWriter::open_or_create(t.path()).expect("writer");
        w.add_image(&TestImage::new("new").layer(one_file_layer("a", "b")).spec())
            .expect("add");
        let missing = ImageSpec {
            names: vec!["broken".into()],
            layers: vec![LayerSpec::Tar {
                source: LayerSource::Path(t.join("no/such/layer.tar")),
                compression: Compression::Gzip,
            }],
            ..ImageSpec::default()
        };
        let err = w.add_image(&missing).expect_err("missing layer file");
        assert!(
            matches!(err, OciError::Io { .. }) && err.to_string().contains("no/such/layer.tar"),
            "{err}"
        );
        // Dropped without commit.
    }
    assert_eq!(t.read("index.json"), before);
    let leftovers: Vec<_> = std::fs::read_dir(t.join("blobs/sha256"))
        .expect("blobs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(
        Layout::open(t.path()).expect("open").names(),
        ["docker.io/library/alpine:3.19"]
    );
}
#[test]
fn skopeo_and_umoci_read_layouts_kiln_writes() {
    let t = TestDir::new();
    write_layout(
        t.path(),
        &[
            alpine(),
            TestImage::new("plain").layer_with(one_file_layer("a", "b"), Compression::None),
        ],
    );
    let dir = t.path().to_str().expect("utf8 path");
    let ls = stdout(&run_tool("umoci", &["ls", "--layout", dir]));
    assert_eq!(
        ls.lines().collect::<Vec<_>>(),
        ["docker.io/library/alpine:3.19", "plain"]
    );
    let out = stdout(&run_tool(
        "skopeo",
        &["inspect", &format!("oci:{dir}:plain")],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).expect("skopeo json");
    assert_eq!(v["Architecture"], "amd64");
    let out = stdout(&run_tool(
        "skopeo",
        &[
            "inspect",
            "--config",
            &format!("oci:{dir}:docker.io/library/alpine:3.19"),
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).expect("skopeo json");
    assert_eq!(v["config"]["Entrypoint"][0], "/bin/sh");
    // umoci unpacks (and so verifies) the gzip and zstd layers.
    let bundle = t.join("bundle");
    run_tool(
        "umoci",
        &[
            "raw",
            "unpack",
            "--rootless",
            "--image",
            &format!("{dir}:plain"),
            bundle.to_str().expect("utf8"),
        ],
    );
    assert_eq!(std::fs::read(bundle.join("a")).expect("unpacked"), b"b");
}

#[test]
fn layouts_from_umoci_and_skopeo_are_read() {
    let t = TestDir::new();
    let a = t.join("a");
    let (a_s, b_s) = (
        a.to_str().expect("utf8"),
        t.join("b").to_str().expect("utf8").to_string(),
    );
    run_tool("umoci", &["init", "--layout", a_s]);
    run_tool("umoci", &["new", "--image", &format!("{a_s}:x")]);
    run_tool(
        "umoci",
        &[
            "config",
            "--image",
            &format!("{a_s}:x"),
            "--config.entrypoint",
            "/hello",
            "--config.label",
            "k=v",
        ],
    );
    let layout = Layout::open(&a).expect("open umoci layout");
    let img = layout
        .resolve("x", std::env::consts::ARCH)
        .expect("umoci image");
    assert_eq!(img.config.entrypoint, Some(vec!["/hello".to_string()]));
    assert_eq!(img.config.labels["k"], "v");
    layout.fsck().expect("fsck umoci layout");

    run_tool(
        "skopeo",
        &["copy", &format!("oci:{a_s}:x"), &format!("oci:{b_s}:y")],
    );
    let img = resolve_ok(Path::new(&b_s), "y", std::env::consts::ARCH);
    assert_eq!(img.config.labels["k"], "v");
    // skopeo stores the short tag; a full name with that tag finds it too.
    assert_eq!(
        resolve_ok(
            Path::new(&b_s),
            "example.org/any/name:y",
            std::env::consts::ARCH
        )
        .manifest_digest,
        img.manifest_digest
    );
}

#[test]
fn precompressed_layers_are_stored_verbatim_with_their_diff_id() {
    let (a, b) = (TestDir::new(), TestDir::new());
    let tar = one_file_layer("etc/p", "pre");
    for c in [Compression::Gzip, Compression::Zstd] {
        let blob = compress(&tar, c);
        write_layout(a.path(), &[TestImage::new("p").layer_with(tar.clone(), c)]);
        let mut w = LayoutWriter::open_or_create(b.path()).expect("writer");
        w.add_image(&ImageSpec {
            names: vec!["p".into()],
            layers: vec![LayerSpec::precompressed(blob.clone(), c)],
            ..ImageSpec::default()
        })
        .expect("add");
        w.commit().expect("commit");
        let img = resolve_ok(b.path(), "p", "amd64");
        assert_eq!(
            std::fs::read(blob_path(b.path(), &img.layers[0].digest)).expect("blob"),
            blob
        );
        // Same bytes as letting the writer compress: same manifest.
        assert_eq!(
            img.manifest_digest,
            resolve_ok(a.path(), "p", "amd64").manifest_digest
        );
    }
}

#[test]
fn concurrent_writers_keep_each_others_names() {
    // Each commit re-reads index.json under the layout lock, so writers
    // running at once (two pulls, a pull and a pkg build) lose no entry.
    let t = TestDir::new();
    for round in 0..4 {
        let threads: Vec<_> = (0..3)
            .map(|i| {
                let dir = t.path().to_path_buf();
                std::thread::spawn(move || {
                    let name = format!("w{i}:{round}");
                    write_layout(
                        &dir,
                        &[TestImage::new(&name).layer(one_file_layer("etc/w", &name))],
                    );
                })
            })
            .collect();
        for th in threads {
            th.join().expect("writer thread");
        }
    }
    let layout = Layout::open(t.path()).expect("open");
    assert_eq!(layout.names().len(), 12, "{:?}", layout.names());
    layout.fsck().expect("fsck");
}
