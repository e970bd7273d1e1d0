//! Integration tests: content trust (cosign key-based signatures).
//!
//! Real cosign vectors (`tests/data/cosign/`, from sigstore-rs) verified from
//! a layout; a tampered payload, a wrong key, a signature of another digest
//! and a missing signature refused naming the image; `kiln sign` then
//! `kiln build --verify-key` end to end, deterministic signatures.

use std::path::{Path, PathBuf};

use kiln::oci::write::LayoutWriter;
use kiln::oci::{Descriptor, Layout};
use kiln::trust::{self, PublicKey, TrustError};

use crate::cli::fixture::{system_layout, write_case, CASE_BASIC};
use crate::support::*;

const VECTOR_DIGEST: &str =
    "sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b";
const VECTOR_REPO: &str = "registry-testing.svc.lan/busybox";

pub(crate) fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/cosign")
        .join(name)
}

fn vector_payload() -> Vec<u8> {
    std::fs::read(data("busybox.payload.json")).unwrap()
}

fn vector_signature() -> String {
    std::fs::read_to_string(data("busybox.sig.b64"))
        .unwrap()
        .trim()
        .to_string()
}

fn key(name: &str) -> PublicKey {
    PublicKey::load(&data(name)).unwrap()
}

/// Writes a signature image as cosign pushes it: one simple signing layer
/// per (payload, signature), tagged `tag`.
fn write_sig_image(dir: &Path, tag: &str, layers: &[(&[u8], &str)]) {
    let mut w = LayoutWriter::open_or_create(dir).unwrap();
    let mut descs = Vec::new();
    for (payload, sig) in layers {
        let mut d = Descriptor {
            media_type: trust::MT_SIMPLE_SIGNING.to_string(),
            ..w.add_blob(payload).unwrap()
        };
        d.annotations
            .insert(trust::ANNOTATION_SIGNATURE.to_string(), sig.to_string());
        descs.push(d);
    }
    let config = Descriptor {
        media_type: "application/vnd.oci.image.config.v1+json".to_string(),
        ..w.add_blob(b"{}").unwrap()
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": descs,
    });
    let m = Descriptor {
        media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
        ..w.add_blob(&serde_json::to_vec(&manifest).unwrap()).unwrap()
    };
    w.add_ref(tag, &m);
    w.commit().unwrap();
}

fn vector_tag(digest: &str) -> String {
    format!("{VECTOR_REPO}:{}", trust::signature_tag(digest))
}

fn verify_vector(
    dir: &Path,
    digest: &str,
    keys: &[PublicKey],
) -> Result<trust::SignatureInfo, TrustError> {
    let layout = Layout::open(dir).unwrap();
    trust::verify_digests(&layout, VECTOR_REPO, &[digest], keys)
}

#[test]
fn cosign_vector_verifies_as_a_payload() {
    let keys = [key("busybox.pub")];
    let (k, digest) = trust::verify_payload(&vector_payload(), &vector_signature(), &keys).unwrap();
    assert_eq!(digest, VECTOR_DIGEST);
    assert!(k.path.ends_with("busybox.pub"));
}

#[test]
fn cosign_vector_verifies_from_a_layout() {
    let t = TestDir::new();
    let sig = vector_signature();
    write_sig_image(
        t.path(),
        &vector_tag(VECTOR_DIGEST),
        &[(&vector_payload(), &sig)],
    );
    // Any of the keys may match.
    let info = verify_vector(
        t.path(),
        VECTOR_DIGEST,
        &[key("other.pub"), key("busybox.pub")],
    )
    .unwrap();
    assert_eq!(info.signed_digest, VECTOR_DIGEST);
    assert!(info.key.ends_with("busybox.pub"));
    // The bare tag skopeo writes for `oci:DIR:sha256-….sig` is found too.
    let t2 = TestDir::new();
    write_sig_image(
        t2.path(),
        &trust::signature_tag(VECTOR_DIGEST),
        &[(&vector_payload(), &sig)],
    );
    verify_vector(t2.path(), VECTOR_DIGEST, &[key("busybox.pub")]).unwrap();
}

#[test]
fn tampered_payload_is_refused_naming_the_image() {
    let t = TestDir::new();
    let tampered = String::from_utf8(vector_payload())
        .unwrap()
        .replace("registry-testing.svc.lan/busybox", "evil.example/busybox");
    write_sig_image(
        t.path(),
        &vector_tag(VECTOR_DIGEST),
        &[(tampered.as_bytes(), &vector_signature())],
    );
    let err = verify_vector(t.path(), VECTOR_DIGEST, &[key("busybox.pub")]).unwrap_err();
    let msg = err.to_string();
    assert!(err.is_verification_failure());
    assert!(
        msg.contains(VECTOR_REPO) && msg.contains(VECTOR_DIGEST),
        "{msg}"
    );
    assert!(msg.contains("does not verify with"), "{msg}");
}

#[test]
fn wrong_key_is_refused() {
    let t = TestDir::new();
    write_sig_image(
        t.path(),
        &vector_tag(VECTOR_DIGEST),
        &[(&vector_payload(), &vector_signature())],
    );
    let msg = verify_vector(t.path(), VECTOR_DIGEST, &[key("other.pub")])
        .unwrap_err()
        .to_string();
    assert!(msg.contains(VECTOR_REPO), "{msg}");
    assert!(
        msg.contains("does not verify with") && msg.contains("other.pub"),
        "{msg}"
    );
}

#[test]
fn signature_of_another_digest_is_refused() {
    // A valid cosign signature, but of f3cf…, stored as the signature of
    // another image.
    let other = format!("sha256:{}", "ab".repeat(32));
    let t = TestDir::new();
    write_sig_image(
        t.path(),
        &vector_tag(&other),
        &[(&vector_payload(), &vector_signature())],
    );
    let msg = verify_vector(t.path(), &other, &[key("busybox.pub")])
        .unwrap_err()
        .to_string();
    assert!(msg.contains(VECTOR_REPO) && msg.contains(&other), "{msg}");
    assert!(
        msg.contains(&format!("the payload signs {VECTOR_DIGEST}, not {other}")),
        "{msg}"
    );
}

#[test]
fn missing_and_malformed_signatures_are_refused() {
    let t = TestDir::new();
    write_sig_image(
        t.path(),
        &vector_tag(VECTOR_DIGEST),
        &[(&vector_payload(), &vector_signature())],
    );
    let other = format!("sha256:{}", "cd".repeat(32));
    let err = verify_vector(t.path(), &other, &[key("busybox.pub")]).unwrap_err();
    assert!(matches!(err, TrustError::Missing { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(VECTOR_REPO) && msg.contains("no signature"),
        "{msg}"
    );
    assert!(msg.contains(&trust::signature_tag(&other)), "{msg}");

    let t = TestDir::new();
    write_sig_image(
        t.path(),
        &vector_tag(VECTOR_DIGEST),
        &[
            (&vector_payload(), "not base64!"),
            (&vector_payload(), "AAAA"),
        ],
    );
    let msg = verify_vector(t.path(), VECTOR_DIGEST, &[key("busybox.pub")])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("layer 0: the signature is not base64"),
        "{msg}"
    );
    assert!(
        msg.contains("layer 1: the signature is not an ASN.1 DER"),
        "{msg}"
    );
}

#[test]
fn bad_key_files_are_named() {
    let t = TestDir::new();
    let p = t.write(
        "k.pub",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    );
    let msg = PublicKey::load(&p).unwrap_err().to_string();
    assert!(msg.contains("k.pub") && msg.contains("public key"), "{msg}");
    let p = t.write(
        "cosign.key",
        "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
    );
    let msg = trust::PrivateKey::load(&p, None).unwrap_err().to_string();
    assert!(
        msg.contains("cosign.key") && msg.contains("not a cosign encrypted key"),
        "{msg}"
    );
}

#[test]
fn cosign_encrypted_keys_sign_with_cosign_password() {
    let path = data("cosign-generated-empty-password.key");
    let msg = trust::PrivateKey::load(&path, Some("wrong"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("wrong password"), "{msg}");
    let k = trust::PrivateKey::load(&path, None).unwrap();

    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    let key = path.to_str().unwrap();
    let mut args = vec!["sign", "--key", key];
    args.extend_from_slice(&REFS[..1]);
    let out = kiln_env(t.path(), &args, &[("COSIGN_PASSWORD", "")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let layout = Layout::open(&t.join("oci-layout")).unwrap();
    let img = layout.resolve(REFS[0], "amd64").unwrap();
    trust::verify(&layout, &img, &[k.public_key()]).unwrap();
    let out = kiln_env(t.path(), &args, &[("COSIGN_PASSWORD", "nope")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("wrong password"), "{}", stderr(&out));
}

const REFS: [&str; 6] = [
    "kiln.test/kernel:1",
    "kiln.test/init:1",
    "kiln.test/runc:1",
    "kiln.test/sysctl:1",
    "kiln.test/busybox:1",
    "kiln.test/web:1",
];

fn sign(t: &TestDir, key: &str, refs: &[&str]) -> std::process::Output {
    let key = data(key);
    let mut args = vec![
        "sign",
        "--key",
        key.to_str().unwrap(),
        "--layout",
        "oci-layout",
    ];
    args.extend_from_slice(refs);
    t.kiln(&args)
}

#[test]
fn kiln_sign_then_build_verify_key_round_trip() {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    write_case(&t, "basic.yml", CASE_BASIC);
    let plain = t.kiln(&["build", "-o", "plain", "basic.yml"]);
    assert!(plain.status.success(), "{}", stderr(&plain));

    // Unsigned: refused, exit 3, naming the first image.
    let pubkey = data("kiln-test.pub");
    let pubkey = pubkey.to_str().unwrap();
    let out = t.kiln(&["build", "-o", "out", "--verify-key", pubkey, "basic.yml"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has no signature"),
        "{}",
        stderr(&out)
    );

    // All but one signed: refused naming that one.
    let out = sign(&t, "kiln-test.key", &REFS[..5]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 5);
    let out = t.kiln(&["build", "-o", "out", "--verify-key", pubkey, "basic.yml"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("\"kiln.test/web:1\""),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("has no signature"),
        "{}",
        stderr(&out)
    );

    // All signed (the SEC1 form of the same key signs the same bytes).
    let before = t.read("oci-layout/index.json");
    let out = sign(&t, "kiln-test-sec1.key", &REFS[..5]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        t.read("oci-layout/index.json"),
        before,
        "signing is deterministic"
    );
    let out = sign(&t, "kiln-test.key", &REFS[5..]);
    assert!(out.status.success(), "{}", stderr(&out));
    let other = data("other.pub");
    let out = t.kiln(&[
        "build",
        "-o",
        "out",
        "--verify-key",
        other.to_str().unwrap(),
        "--verify-key",
        pubkey,
        "basic.yml",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(t.read("out/basic.sha256"), t.read("plain/basic.sha256"));

    // The wrong key alone: refused naming an image.
    let out = t.kiln(&[
        "build",
        "-o",
        "out",
        "--verify-key",
        other.to_str().unwrap(),
        "basic.yml",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.contains("kiln.test/") && err.contains("does not verify with"),
        "{err}"
    );

    // The signature images are ordinary layout entries: fsck walks them.
    Layout::open(&t.join("oci-layout")).unwrap().fsck().unwrap();
}

#[test]
fn multi_arch_images_are_signed_by_index_and_verify_for_each_platform() {
    let t = TestDir::new();
    let dir = t.join("oci-layout");
    let layer = LayerBuilder::new().file("a", "a", 0o644).build();
    let idx = write_multiarch_layout(
        &dir,
        &[MultiArchImage::new(
            "kiln.test/multi:1",
            vec![
                TestImage::new("x").layer(layer.clone()).arch("amd64"),
                TestImage::new("x").layer(layer).arch("arm64"),
            ],
        )],
    );
    let out = sign(&t, "kiln-test.key", &["kiln.test/multi:1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with(&idx[0].digest), "{}", stdout(&out));
    let layout = Layout::open(&dir).unwrap();
    for arch in ["amd64", "arm64"] {
        let img = layout.resolve("kiln.test/multi:1", arch).unwrap();
        assert_eq!(img.index_digest.as_deref(), Some(idx[0].digest.as_str()));
        let info = trust::verify(&layout, &img, &[key("kiln-test.pub")]).unwrap();
        assert_eq!(info.signed_digest, idx[0].digest);
    }
}

#[test]
fn a_signed_platform_manifest_verifies_and_unknown_references_are_named() {
    let t = TestDir::new();
    let dir = t.join("oci-layout");
    let layer = LayerBuilder::new().file("a", "a", 0o644).build();
    write_multiarch_layout(
        &dir,
        &[MultiArchImage::new(
            "kiln.test/multi:1",
            vec![
                TestImage::new("x").layer(layer.clone()).arch("amd64"),
                TestImage::new("x").layer(layer).arch("arm64"),
            ],
        )],
    );
    let amd64 = Layout::open(&dir)
        .unwrap()
        .resolve("kiln.test/multi:1", "amd64")
        .unwrap();
    // As `cosign sign NAME@sha256:<platform manifest>` (or --recursive) does.
    let pinned = format!("kiln.test/multi@{}", amd64.manifest_digest);
    let out = sign(&t, "kiln-test.key", &[&pinned]);
    assert!(out.status.success(), "{}", stderr(&out));
    let layout = Layout::open(&dir).unwrap();
    let keys = [key("kiln-test.pub")];
    let info = trust::verify(&layout, &amd64, &keys).unwrap();
    assert_eq!(info.signed_digest, amd64.manifest_digest);
    // The arm64 manifest is not signed, nor is the index.
    let arm64 = layout.resolve("kiln.test/multi:1", "arm64").unwrap();
    let msg = trust::verify(&layout, &arm64, &keys)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("kiln.test/multi:1") && msg.contains("has no signature"),
        "{msg}"
    );

    for bad in [
        "kiln.test/nope:1",
        "kiln.test/multi@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let out = sign(&t, "kiln-test.key", &[bad]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("signing {bad:?}")),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn a_damaged_signature_layer_does_not_hide_a_valid_one() {
    let t = TestDir::new();
    let junk: &[u8] = b"{\"junk\":1}";
    write_sig_image(
        t.path(),
        &vector_tag(VECTOR_DIGEST),
        &[(junk, "AAAA"), (&vector_payload(), &vector_signature())],
    );
    let junk_digest = {
        use sha2::Digest as _;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(junk)))
    };
    std::fs::remove_file(blob_path(t.path(), &junk_digest)).unwrap();
    verify_vector(t.path(), VECTOR_DIGEST, &[key("busybox.pub")]).unwrap();

    let t = TestDir::new();
    write_sig_image(t.path(), &vector_tag(VECTOR_DIGEST), &[(junk, "AAAA")]);
    std::fs::remove_file(blob_path(t.path(), &junk_digest)).unwrap();
    let err = verify_vector(t.path(), VECTOR_DIGEST, &[key("busybox.pub")]).unwrap_err();
    assert!(err.is_verification_failure());
    let msg = err.to_string();
    assert!(
        msg.contains(VECTOR_REPO) && msg.contains("layer 0"),
        "{msg}"
    );
    assert!(msg.contains(&junk_digest), "{msg}");
}
