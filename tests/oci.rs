//! Integration tests: oci (reading; damaged layouts in `oci/damage.rs`, writing in `oci/write.rs`).
//!
//! Reading layouts (names, pins, platforms, nested indexes, Docker media
//! types), refusing damaged ones (corrupt, truncated, oversized blobs,
//! malformed digests and JSON), writing them deterministically and
//! atomically, and interoperating with skopeo and umoci.

use std::io::Read;
use std::path::Path;

use kiln::oci::write::{ImageSpec, IndexSpec, LayerSpec, LayoutWriter};
use kiln::oci::{Compression, Layout, ResolvedImage};
use kiln::resolve::{resolve, Plan};
use kiln::spec::{ImageRef, Pos, Spec};

use crate::support::*;

mod damage;
mod write;

use damage::tag_blob;

pub(crate) fn one_file_layer(name: &str, body: &str) -> Vec<u8> {
    LayerBuilder::new()
        .dir("etc/", 0o755)
        .file(name, body, 0o644)
        .build()
}

pub(crate) fn alpine() -> TestImage {
    TestImage::new("docker.io/library/alpine:3.19")
        .layer(one_file_layer("etc/alpine-release", "3.19.1\n"))
        .layer_with(one_file_layer("etc/motd", "hi\n"), Compression::Zstd)
        .label("org.mobyproject.config", "{}")
        .entrypoint(&["/bin/sh"])
        .cmd(&["-c", "true"])
        .env(&["PATH=/bin"])
        .working_dir("/root")
        .user("1:2")
}

pub(crate) fn resolve_ok(dir: &Path, reference: &str, arch: &str) -> ResolvedImage {
    let layout = Layout::open(dir).expect("open layout");
    layout
        .resolve(reference, arch)
        .unwrap_or_else(|e| panic!("resolve {reference}: {e}"))
}

pub(crate) fn resolve_err(dir: &Path, reference: &str, arch: &str) -> String {
    let layout = Layout::open(dir).expect("open layout");
    match layout.resolve(reference, arch) {
        Ok(img) => panic!(
            "resolve {reference} unexpectedly gave {}",
            img.manifest_digest
        ),
        Err(e) => e.to_string(),
    }
}
#[test]
fn resolve_by_full_name_gives_config_and_layers() {
    let t = TestDir::new();
    let descs = write_layout(t.path(), &[alpine()]);
    let img = resolve_ok(t.path(), "docker.io/library/alpine:3.19", "amd64");
    assert_eq!(img.reference, "docker.io/library/alpine:3.19");
    assert_eq!(img.name, "docker.io/library/alpine:3.19");
    assert_eq!(img.manifest_digest, descs[0].digest);
    assert_eq!(
        img.config.entrypoint.as_deref(),
        Some(&["/bin/sh".to_string()][..])
    );
    assert_eq!(
        img.config.cmd,
        Some(vec!["-c".to_string(), "true".to_string()])
    );
    assert_eq!(img.config.env, Some(vec!["PATH=/bin".to_string()]));
    assert_eq!(img.config.working_dir.as_deref(), Some("/root"));
    assert_eq!(img.config.user.as_deref(), Some("1:2"));
    assert_eq!(img.config.labels["org.mobyproject.config"], "{}");
    assert_eq!(
        (img.config.architecture.as_str(), img.config.os.as_str()),
        ("amd64", "linux")
    );
    let kinds: Vec<_> = img
        .layers
        .iter()
        .map(|l| (l.compression, l.media_type.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (
                Compression::Gzip,
                "application/vnd.oci.image.layer.v1.tar+gzip"
            ),
            (
                Compression::Zstd,
                "application/vnd.oci.image.layer.v1.tar+zstd"
            ),
        ]
    );
}

#[test]
fn layers_stream_back_as_the_tars_written() {
    let t = TestDir::new();
    let tars: Vec<Vec<u8>> = (0..3)
        .map(|i| one_file_layer("etc/n", &i.to_string()))
        .collect();
    let img = TestImage::new("x")
        .layer_with(tars[0].clone(), Compression::None)
        .layer_with(tars[1].clone(), Compression::Gzip)
        .layer_with(tars[2].clone(), Compression::Zstd);
    write_layout(t.path(), &[img]);
    let layout = Layout::open(t.path()).expect("open");
    let img = layout.resolve("x", "amd64").expect("resolve");
    for (layer, tar) in img.layers.iter().zip(&tars) {
        let mut r = layout.open_layer_tar(&img, layer).expect("open layer");
        let mut got = Vec::new();
        r.read_to_end(&mut got).expect("read layer");
        r.finish().expect("verify layer");
        assert_eq!(&got, tar, "{}", layer.digest);
    }
    assert_eq!(layout.fsck().expect("fsck").blobs, 5);
}

#[test]
fn short_names_expand_like_linuxkit() {
    let t = TestDir::new();
    write_layout(
        t.path(),
        &[
            TestImage::new("docker.io/linuxkit/init:v1"),
            TestImage::new("localhost:5000/x:latest"),
            // A layout may itself hold short names; they expand too.
            TestImage::new("busybox"),
        ],
    );
    assert_eq!(
        resolve_ok(t.path(), "linuxkit/init:v1", "amd64").name,
        "docker.io/linuxkit/init:v1"
    );
    assert_eq!(
        resolve_ok(t.path(), "localhost:5000/x", "amd64").name,
        "localhost:5000/x:latest"
    );
    let b = resolve_ok(t.path(), "docker.io/library/busybox:latest", "amd64");
    assert_eq!(b.name, "docker.io/library/busybox:latest");
    assert_eq!(
        resolve_ok(t.path(), "busybox:latest", "amd64"),
        ResolvedImage {
            reference: "busybox:latest".to_string(),
            ..b
        }
    );
    // Expansion does not invent registries: localhost:5000/x is not docker.io/x.
    assert!(resolve_err(t.path(), "x", "amd64").contains("not found"));
}

#[test]
fn skopeo_short_tag_matches_and_ambiguity_is_an_error() {
    let t = TestDir::new();
    write_layout(
        t.path(),
        &[TestImage::new("3.19").layer(one_file_layer("etc/v", "1"))],
    );
    let img = resolve_ok(t.path(), "alpine:3.19", "amd64");
    assert_eq!(img.name, "docker.io/library/alpine:3.19");

    // Two entries carrying the same short tag but different images.
    let other = write_layout(
        t.path(),
        &[TestImage::new("other").layer(one_file_layer("etc/v", "2"))],
    );
    let mut index = read_index_json(t.path());
    let mut dup = other[0].clone();
    dup.annotations.insert(
        "org.opencontainers.image.ref.name".to_string(),
        "3.19".to_string(),
    );
    index["manifests"]
        .as_array_mut()
        .expect("manifests")
        .push(serde_json::to_value(&dup).expect("descriptor"));
    t.write("index.json", serde_json::to_vec(&index).expect("json"));
    let err = resolve_err(t.path(), "alpine:3.19", "amd64");
    assert!(err.contains("is ambiguous"), "{err}");
    assert!(err.contains(&other[0].digest), "{err}");
}

#[test]
fn digest_pins_are_honoured() {
    let t = TestDir::new();
    let d = write_layout(t.path(), &[alpine()])[0].digest.clone();
    for r in [
        format!("alpine:3.19@{d}"),
        format!("docker.io/library/alpine:3.19@{d}"),
    ] {
        let img = resolve_ok(t.path(), &r, "amd64");
        assert_eq!(img.manifest_digest, d);
        assert_eq!(img.reference, r);
    }
    // A bare digest of a blob in the layout.
    let img = resolve_ok(t.path(), &d, "amd64");
    assert_eq!(
        (img.manifest_digest.as_str(), img.name.as_str()),
        (d.as_str(), "docker.io/library/alpine:3.19")
    );
    // A pin the layout does not hold under that name.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let err = resolve_err(t.path(), &format!("alpine:3.19@{wrong}"), "amd64");
    assert!(
        err.contains("is pinned to") && err.contains(&wrong) && err.contains(&d),
        "{err}"
    );
    let err = resolve_err(t.path(), &wrong, "amd64");
    assert!(
        err.contains("is missing") && err.contains(&"0".repeat(64)),
        "{err}"
    );
}

pub(crate) fn two_arch(name: &str) -> MultiArchImage {
    MultiArchImage::new(
        name,
        vec![
            TestImage::untagged()
                .arch("amd64")
                .layer(one_file_layer("etc/arch", "amd64")),
            TestImage::untagged()
                .arch("arm64")
                .variant("v8")
                .layer(one_file_layer("etc/arch", "arm64")),
        ],
    )
}

#[test]
fn multi_arch_index_picks_the_platform() {
    let t = TestDir::new();
    let index = write_multiarch_layout(t.path(), &[two_arch("linuxkit/multi:1")])[0]
        .digest
        .clone();
    let amd = resolve_ok(t.path(), "linuxkit/multi:1", "amd64");
    let arm = resolve_ok(t.path(), "linuxkit/multi:1", "arm64");
    assert_eq!(amd.config.architecture, "amd64");
    assert_eq!(arm.config.architecture, "arm64");
    assert_ne!(amd.manifest_digest, arm.manifest_digest);
    assert_eq!(
        resolve_ok(t.path(), "linuxkit/multi:1", "aarch64").manifest_digest,
        arm.manifest_digest
    );
    // A pin may name the index as well as the platform manifest.
    let pinned = resolve_ok(t.path(), &format!("linuxkit/multi:1@{index}"), "arm64");
    assert_eq!(pinned.manifest_digest, arm.manifest_digest);
    let pinned = resolve_ok(
        t.path(),
        &format!("linuxkit/multi:1@{}", amd.manifest_digest),
        "amd64",
    );
    assert_eq!(pinned.manifest_digest, amd.manifest_digest);
}

#[test]
fn missing_arch_lists_available_platforms() {
    let t = TestDir::new();
    write_multiarch_layout(t.path(), &[two_arch("m")]);
    let err = resolve_err(t.path(), "m", "riscv64");
    assert!(
        err.contains(
            r#"image "m" has no linux/riscv64 variant; available: linux/amd64, linux/arm64/v8"#
        ),
        "{err}"
    );
    // A single-platform image of the wrong arch says what it is.
    write_layout(t.path(), &[TestImage::new("armonly").arch("arm64")]);
    let err = resolve_err(t.path(), "armonly", "amd64");
    assert!(err.contains("is for linux/arm64, not linux/amd64"), "{err}");
}

#[test]
fn nested_index_is_followed() {
    let t = TestDir::new();
    let mut w = LayoutWriter::open_or_create(t.path()).expect("writer");
    let amd = w
        .add_image(&ImageSpec {
            layers: vec![LayerSpec::tar(one_file_layer("a", "1"), Compression::Gzip)],
            ..ImageSpec::default()
        })
        .expect("amd64");
    let arm = w
        .add_image(&ImageSpec {
            arch: "arm64".into(),
            ..ImageSpec::default()
        })
        .expect("arm64");
    let inner = w
        .add_index(&IndexSpec {
            manifests: vec![amd.clone(), arm],
            ..IndexSpec::default()
        })
        .expect("inner");
    w.add_index(&IndexSpec {
        names: vec!["nested".into()],
        manifests: vec![inner],
        ..IndexSpec::default()
    })
    .expect("outer");
    w.commit().expect("commit");
    assert_eq!(
        resolve_ok(t.path(), "nested", "amd64").manifest_digest,
        amd.digest
    );
    Layout::open(t.path()).expect("open").fsck().expect("fsck");
}

#[test]
fn missing_image_names_layout_and_closest_names() {
    let t = TestDir::new();
    let names = [
        "alpine:3.18",
        "alpine:3.19",
        "busybox:1",
        "linuxkit/init:v1",
        "linuxkit/runc:v1",
        "nginx",
        "zzz/far:away",
    ];
    let imgs: Vec<_> = names.iter().map(|n| TestImage::new(n)).collect();
    write_layout(t.path(), &imgs);
    let err = resolve_err(t.path(), "alpine:3.20", "amd64");
    let want = format!(
        r#"image "alpine:3.20" not found in layout {}; closest: alpine:3.18, alpine:3.19, "#,
        t.path().display()
    );
    assert!(err.starts_with(&want), "{err}");
    assert_eq!(err.matches(", ").count(), 4, "at most five names: {err}");
    let mut sorted = names.to_vec();
    sorted.sort();
    assert_eq!(Layout::open(t.path()).expect("open").names(), sorted);
}
#[test]
fn docker_v2_media_types_are_read() {
    let t = TestDir::new();
    let w = LayoutWriter::open_or_create(t.path()).expect("w");
    let tar = one_file_layer("etc/d", "docker");
    let gz = compress(&tar, Compression::Gzip);
    let layer = w.add_blob(&gz).expect("layer");
    let config = serde_json::json!({
        "architecture": "arm64", "os": "linux",
        "config": {"Env": null, "Labels": null, "Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [kiln::oci::Digest::sha256_of(&tar).to_string()]},
    });
    let config = serde_json::to_vec(&config).expect("json");
    let cfg = w.add_blob(&config).expect("config");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cfg.digest, "size": cfg.size},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer.digest, "size": layer.size}],
    });
    let m = w
        .add_blob(&serde_json::to_vec(&manifest).expect("json"))
        .expect("manifest");
    let list = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": m.digest, "size": m.size,
                       "platform": {"architecture": "arm64", "os": "linux"}}],
    });
    drop(w);
    tag_blob(
        t.path(),
        "docker.io/library/dock:1",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        &serde_json::to_vec(&list).expect("json"),
    );
    let img = resolve_ok(t.path(), "dock:1", "arm64");
    assert_eq!(img.manifest_digest, m.digest);
    assert_eq!(img.config.cmd, Some(vec!["/bin/true".to_string()]));
    assert_eq!(img.config.env, None);
    assert_eq!(img.layers[0].compression, Compression::Gzip);
    let layout = Layout::open(t.path()).expect("open");
    let mut r = layout.open_layer_tar(&img, &img.layers[0]).expect("layer");
    let mut got = Vec::new();
    r.read_to_end(&mut got).expect("read");
    assert_eq!(got, tar);
}
fn spec_with(refs: &[(&str, usize)]) -> Spec {
    let pos = |line| Pos {
        file: "linuxkit.yml".into(),
        line,
        col: 3,
    };
    let mut spec = Spec::default();
    for (i, (r, line)) in refs.iter().enumerate() {
        let image = ImageRef {
            reference: r.to_string(),
            pos: pos(*line),
        };
        if i == 0 {
            spec.kernel.image = Some(image);
        } else {
            spec.init.push(image);
        }
    }
    spec
}

#[test]
fn resolve_plan_collects_images_and_reports_yaml_positions() {
    let t = TestDir::new();
    write_layout(t.path(), &[alpine(), TestImage::new("linuxkit/kernel:6.6")]);
    let layout = Layout::open(t.path()).expect("open");
    let plan: Plan = resolve(
        &spec_with(&[
            ("linuxkit/kernel:6.6", 2),
            ("alpine:3.19", 5),
            ("alpine:3.19", 6),
        ]),
        &layout,
        "amd64",
    )
    .expect("plan");
    assert_eq!(
        plan.images.keys().collect::<Vec<_>>(),
        ["alpine:3.19", "linuxkit/kernel:6.6"]
    );
    let err = resolve(
        &spec_with(&[("linuxkit/kernel:6.6", 2), ("alpine:3.91", 7)]),
        &layout,
        "amd64",
    )
    .expect_err("missing");
    let want = format!(
        r#"linuxkit.yml:7:3: image "alpine:3.91" not found in layout {}; closest: docker.io/library/alpine:3.19"#,
        t.path().display()
    );
    assert!(err.to_string().starts_with(&want), "{err}");
}

#[test]
fn names_inside_an_unnamed_nested_index_are_found() {
    let t = TestDir::new();
    let mut w = LayoutWriter::open_or_create(t.path()).expect("writer");
    let mut m = w.add_image(&ImageSpec::default()).expect("image");
    m.annotations.insert(
        "org.opencontainers.image.ref.name".to_string(),
        "inner:1".to_string(),
    );
    let idx = w
        .add_index(&IndexSpec {
            manifests: vec![m.clone()],
            ..IndexSpec::default()
        })
        .expect("index");
    drop(w);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": idx.media_type, "digest": idx.digest, "size": idx.size}],
    });
    t.write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    t.write("index.json", serde_json::to_vec(&index).expect("json"));
    let layout = Layout::open(t.path()).expect("open");
    assert_eq!(layout.names(), ["inner:1"]);
    assert_eq!(
        resolve_ok(t.path(), "inner:1", "amd64").manifest_digest,
        m.digest
    );
}

#[test]
fn pinned_reference_to_an_untagged_image_resolves_by_digest() {
    let t = TestDir::new();
    let d = write_layout(t.path(), &[TestImage::new("tagged")])[0]
        .digest
        .clone();
    let img = resolve_ok(t.path(), &format!("example.org/other@{d}"), "amd64");
    assert_eq!(img.manifest_digest, d);
    assert_eq!(img.name, format!("example.org/other@{d}"));
}

#[test]
fn attestations_and_artifacts_in_an_index_are_skipped() {
    let t = TestDir::new();
    let mut w = LayoutWriter::open_or_create(t.path()).expect("writer");
    let amd = w.add_image(&ImageSpec::default()).expect("image");
    // A buildx-style attestation manifest, and a platformless artifact.
    let attestation = w
        .add_image(&ImageSpec {
            arch: "unknown".into(),
            os: "unknown".into(),
            ..ImageSpec::default()
        })
        .expect("attestation");
    assert_ne!(attestation.digest, amd.digest);
    let cfg = w.add_blob(b"{}").expect("cfg");
    let artifact = serde_json::json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.dev.cosign.artifact.sig.v1+json", "digest": cfg.digest, "size": cfg.size},
        "layers": [],
    });
    let mut artifact = w
        .add_blob(&serde_json::to_vec(&artifact).expect("json"))
        .expect("artifact");
    artifact.media_type = "application/vnd.oci.image.manifest.v1+json".into();
    w.add_index(&IndexSpec {
        names: vec!["withsig".into()],
        manifests: vec![artifact, attestation, amd.clone()],
        ..IndexSpec::default()
    })
    .expect("index");
    w.commit().expect("commit");
    assert_eq!(
        resolve_ok(t.path(), "withsig", "amd64").manifest_digest,
        amd.digest
    );
    let err = resolve_err(t.path(), "withsig", "arm64");
    assert!(err.ends_with("available: linux/amd64"), "{err}");
}
