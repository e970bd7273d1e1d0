//! Damaged layouts: corrupt, truncated and oversized blobs, malformed
//! digests, JSON and media types are refused with errors naming the blob,
//! its path and the image.

use std::io::Read;
use std::path::Path;

use kiln::oci::write::LayoutWriter;
use kiln::oci::Layout;

use super::{alpine, resolve_err, resolve_ok};
use crate::support::*;

#[test]
fn corrupted_blobs_are_refused_naming_digest_path_and_image() {
    let t = TestDir::new();
    write_layout(t.path(), &[alpine()]);
    let img = resolve_ok(t.path(), "alpine:3.19", "amd64");

    // A flipped byte in a layer: the stream fails at EOF, fsck fails.
    let layer = &img.layers[0];
    let path = blob_path(t.path(), &layer.digest);
    corrupt_byte(&path, 20);
    let layout = Layout::open(t.path()).expect("open");
    let mut r = layout.open_layer(&img, layer).expect("open layer");
    let err = r
        .read_to_end(&mut Vec::new())
        .expect_err("corrupt layer must fail");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    let msg = err.to_string();
    assert!(
        msg.contains(&layer.digest)
            && msg.contains(&path.display().to_string())
            && msg.contains("alpine:3.19"),
        "{msg}"
    );
    assert!(msg.contains("is corrupt"), "{msg}");
    let fsck = layout.fsck().expect_err("fsck must fail").to_string();
    assert!(fsck.contains(&layer.digest), "{fsck}");

    // A flipped byte in the config: resolve itself fails.
    let path = blob_path(t.path(), &img.config_digest);
    corrupt_byte(&path, 1);
    let err = resolve_err(t.path(), "alpine:3.19", "amd64");
    assert!(
        err.contains(&img.config_digest)
            && err.contains(&path.display().to_string())
            && err.contains(r#"image "alpine:3.19""#),
        "{err}"
    );
}

#[test]
fn truncated_and_oversized_blobs_are_refused() {
    let t = TestDir::new();
    write_layout(t.path(), &[alpine()]);
    let img = resolve_ok(t.path(), "alpine:3.19", "amd64");
    let layout = Layout::open(t.path()).expect("open");
    let layer = &img.layers[1];
    let path = blob_path(t.path(), &layer.digest);
    let orig = std::fs::read(&path).expect("read");

    std::fs::write(&path, &orig[..orig.len() - 3]).expect("truncate");
    let err = layout
        .open_layer(&img, layer)
        .err()
        .expect("truncated")
        .to_string();
    assert!(
        err.contains(&format!(
            "has {} bytes, its descriptor says {}",
            orig.len() - 3,
            orig.len()
        )),
        "{err}"
    );

    std::fs::write(&path, [&orig[..], b"junk"].concat()).expect("grow");
    assert!(layout.open_layer(&img, layer).is_err());

    // Growing while being read is caught by the stream itself.
    std::fs::write(&path, &orig).expect("restore");
    let mut r = layout.open_layer(&img, layer).expect("open");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"more"))
        .expect("append");
    let err = r
        .read_to_end(&mut Vec::new())
        .expect_err("longer than declared");
    assert!(err.to_string().contains("is longer than"), "{err}");

    // A truncated manifest.
    let path = blob_path(t.path(), &img.manifest_digest);
    let m = std::fs::read(&path).expect("manifest");
    std::fs::write(&path, &m[..10]).expect("truncate manifest");
    let err = resolve_err(t.path(), "alpine:3.19", "amd64");
    assert!(
        err.contains("has 10 bytes") && err.contains(&img.manifest_digest),
        "{err}"
    );
}

/// Adds `bytes` as a blob and tags it `name` with `media_type`.
pub(crate) fn tag_blob(dir: &Path, name: &str, media_type: &str, bytes: &[u8]) -> String {
    let mut w = LayoutWriter::open_or_create(dir).expect("writer");
    let mut d = w.add_blob(bytes).expect("blob");
    d.media_type = media_type.to_string();
    w.add_ref(name, &d);
    w.commit().expect("commit");
    d.digest
}

#[test]
fn malformed_digests_are_refused_without_touching_paths() {
    let t = TestDir::new();
    write_layout(t.path(), &[TestImage::new("ok")]);
    let mut index = read_index_json(t.path());
    let bad = [
        ("dots", "sha256:../../../../etc/passwd"),
        ("md5", "md5:d41d8cd98f00b204e9800998ecf8427e"),
        (
            "upper",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        ),
    ];
    for (name, digest) in bad {
        index["manifests"]
            .as_array_mut()
            .expect("manifests")
            .push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": 10,
                "annotations": {"org.opencontainers.image.ref.name": name},
            }));
    }
    t.write("index.json", serde_json::to_vec(&index).expect("json"));
    for (name, digest) in bad {
        let err = resolve_err(t.path(), name, "amd64");
        assert!(
            err.contains("malformed digest") && err.contains(digest),
            "{err}"
        );
    }
    // A layer digest inside a manifest, too.
    let cfg = LayoutWriter::open_or_create(t.path())
        .expect("w")
        .add_blob(b"{}")
        .expect("cfg");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg.digest, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:/etc/passwd", "size": 1}],
    });
    tag_blob(
        t.path(),
        "badlayer",
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).expect("json"),
    );
    let err = resolve_err(t.path(), "badlayer", "amd64");
    assert!(
        err.contains("malformed digest") && err.contains("sha256:/etc/passwd"),
        "{err}"
    );
}

#[test]
fn malformed_json_and_unsupported_media_types_are_named() {
    let t = TestDir::new();
    let d = tag_blob(
        t.path(),
        "broken",
        "application/vnd.oci.image.manifest.v1+json",
        b"{\"schemaVersion\": 2, ",
    );
    let err = resolve_err(t.path(), "broken", "amd64");
    assert!(
        err.contains(&d) && err.contains("malformed manifest") && err.contains("EOF"),
        "{err}"
    );

    tag_blob(
        t.path(),
        "v1",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        b"{}",
    );
    let err = resolve_err(t.path(), "v1", "amd64");
    assert!(
        err.contains(
            "unsupported media type \"application/vnd.docker.distribution.manifest.v1+prettyjws\""
        ),
        "{err}"
    );

    let layout_err = {
        t.write("index.json", b"[1,2");
        Layout::open(t.path())
            .expect_err("bad index.json")
            .to_string()
    };
    assert!(
        layout_err.contains("index.json: malformed JSON"),
        "{layout_err}"
    );
    t.write("oci-layout", br#"{"imageLayoutVersion":"2.0.0"}"#);
    let err = Layout::open(t.path()).expect_err("version").to_string();
    assert!(
        err.contains("unsupported imageLayoutVersion \"2.0.0\""),
        "{err}"
    );
    let empty = TestDir::new();
    let err = Layout::open(empty.path())
        .expect_err("not a layout")
        .to_string();
    assert!(err.contains("is not an OCI image layout"), "{err}");
}
