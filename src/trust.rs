//! Content trust: cosign's key-based image signatures, checked and made offline.
//!
//! Takes an opened [`Layout`], the digest an image's name points at and
//! PEM public keys; gives a [`SignatureInfo`] naming the signature that
//! verified, or a [`TrustError`] naming the image. The format is cosign's:
//! the signature of the image with digest `sha256:HEX` is an image tagged
//! `REPO:sha256-HEX.sig` whose layers are "simple signing" JSON payloads
//! (`application/vnd.dev.cosign.simplesigning.v1+json`), each carrying in
//! its descriptor's `dev.cosignproject.cosign/signature` annotation a
//! base64 ASN.1 DER ECDSA P-256 / SHA-256 signature over the payload bytes;
//! the payload's `critical.image.docker-manifest-digest` names the image.
//!
//! A signature counts when it verifies with any of the keys *and* its
//! payload names the digest the image's name points at (the index, for a
//! multi-arch image, which is what `cosign sign` signs) or the platform
//! manifest used (what `cosign sign --recursive` or a signature of
//! `NAME@sha256:<manifest>` adds). A missing, malformed or wrong signature
//! is an error, never a warning. Tags are never trusted: only digests and
//! the signatures over them.
//!
//! [`sign`] writes signatures the same way, through the layout writer.
//! ECDSA nonces are derived from the key and the message (RFC 6979), so
//! signing the same image with the same key gives the same bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};
use serde::{Deserialize, Serialize};

use crate::oci::json::{self, Manifest};
use crate::oci::name::Reference;
use crate::oci::write::LayoutWriter;
use crate::oci::{Descriptor, Digest, Layout, OciError, ResolvedImage};
use crate::resolve::Plan;

pub mod cosign_key;

/// The layer annotation holding the base64 signature.
pub const ANNOTATION_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// The media type of a signature payload layer.
pub const MT_SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// `critical.type` of a cosign image signature payload.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";

/// A public key to verify with (PEM SubjectPublicKeyInfo, ECDSA P-256).
#[derive(Clone, Debug)]
pub struct PublicKey {
    pub path: PathBuf,
    key: VerifyingKey,
}

/// A private key to sign with (ECDSA P-256: PEM PKCS#8 or SEC1, or cosign's encrypted key).
#[derive(Clone, Debug)]
pub struct PrivateKey {
    pub path: PathBuf,
    key: SigningKey,
}

/// The signature that verified an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureInfo {
    /// The image reference as written in the YAML.
    pub image: String,
    /// The digest the payload names (index or manifest).
    pub signed_digest: String,
    /// The digest of the `.sig` manifest holding the signature.
    pub signature_manifest: String,
    /// The key file that verified it.
    pub key: PathBuf,
}

/// Why a key could not be read or an image's signature is not valid.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    #[error(
        "image {image:?} ({digest}) has no signature in layout {}: no image tagged {tag:?}",
        dir.display()
    )]
    Missing {
        image: String,
        digest: String,
        dir: PathBuf,
        tag: String,
    },
    #[error("image {image:?} ({digest}) has no valid signature: {}", reasons.join("; "))]
    Invalid {
        image: String,
        digest: String,
        reasons: Vec<String>,
    },
    #[error("image {image:?}: reading its signature: {source}")]
    Read {
        image: String,
        #[source]
        source: Box<OciError>,
    },
    #[error("signing {image:?}: {message}")]
    Sign { image: String, message: String },
    #[error(transparent)]
    Layout(#[from] Box<OciError>),
}

impl TrustError {
    /// A signature that is missing or does not verify (exit 3), as
    /// opposed to unusable input (a key file, a reference; exit 1).
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            TrustError::Missing { .. } | TrustError::Invalid { .. } | TrustError::Read { .. }
        )
    }
}

impl PublicKey {
    /// Reads a PEM `PUBLIC KEY` (what `cosign generate-key-pair` writes as
    /// `cosign.pub`).
    pub fn load(path: &Path) -> Result<PublicKey, TrustError> {
        let text = read_key_file(path)?;
        let key = VerifyingKey::from_public_key_pem(text.trim()).map_err(|e| TrustError::Key {
            path: path.to_path_buf(),
            message: format!("not a PEM ECDSA P-256 public key (SubjectPublicKeyInfo): {e}"),
        })?;
        Ok(PublicKey {
            path: path.to_path_buf(),
            key,
        })
    }
}

impl PrivateKey {
    /// Reads a PEM private key: unencrypted `PRIVATE KEY` (PKCS#8) or
    /// `EC PRIVATE KEY` (SEC1, what `openssl ecparam -genkey` writes), or
    /// cosign's `ENCRYPTED SIGSTORE PRIVATE KEY` decrypted with `password`
    /// (cosign reads it from `$COSIGN_PASSWORD`; `None` is the empty one).
    pub fn load(path: &Path, password: Option<&str>) -> Result<PrivateKey, TrustError> {
        let text = read_key_file(path)?;
        let text = text.trim();
        let bad = |message: String| TrustError::Key {
            path: path.to_path_buf(),
            message,
        };
        let key = if cosign_key::is_encrypted_key(text) {
            let der = cosign_key::decrypt(text, password.unwrap_or("").as_bytes()).map_err(bad)?;
            SigningKey::from_pkcs8_der(&der)
                .map_err(|e| bad(format!("the decrypted key is not ECDSA P-256 PKCS#8: {e}")))?
        } else if text.contains("BEGIN EC PRIVATE KEY") {
            p256::SecretKey::from_sec1_pem(text)
                .map(SigningKey::from)
                .map_err(|e| bad(format!("not a PEM SEC1 ECDSA P-256 private key: {e}")))?
        } else {
            SigningKey::from_pkcs8_pem(text)
                .map_err(|e| bad(format!("not a PEM PKCS#8 ECDSA P-256 private key: {e}")))?
        };
        Ok(PrivateKey {
            path: path.to_path_buf(),
            key,
        })
    }

    /// Its public key (named by the private key's path).
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            path: self.path.clone(),
            key: *self.key.verifying_key(),
        }
    }
}

fn read_key_file(path: &Path) -> Result<String, TrustError> {
    let bytes = std::fs::read(path).map_err(|e| TrustError::Key {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if bytes.len() > 64 * 1024 {
        return Err(TrustError::Key {
            path: path.to_path_buf(),
            message: "larger than 64 KiB: not a key".to_string(),
        });
    }
    String::from_utf8(bytes).map_err(|_| TrustError::Key {
        path: path.to_path_buf(),
        message: "not PEM text".to_string(),
    })
}

/// Reads every key of `paths` (`--verify-key`, repeatable).
pub fn load_keys(paths: &[PathBuf]) -> Result<Vec<PublicKey>, TrustError> {
    paths.iter().map(|p| PublicKey::load(p)).collect()
}

/// The simple signing payload, in cosign's field order.
#[derive(Serialize, Deserialize)]
struct Payload {
    critical: Critical,
    #[serde(default)]
    optional: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct Critical {
    identity: Identity,
    image: PayloadImage,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Serialize, Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Serialize, Deserialize)]
struct PayloadImage {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The tag cosign gives the signature of `digest`: `sha256-HEX.sig`.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// Checks one payload + base64 signature against `keys`; gives the key
/// that verified and the digest the payload names.
pub fn verify_payload<'k>(
    payload: &[u8],
    signature_b64: &str,
    keys: &'k [PublicKey],
) -> Result<(&'k PublicKey, String), String> {
    let der = base64::engine::general_purpose::STANDARD
        .decode(signature_b64.trim())
        .map_err(|e| format!("the signature is not base64: {e}"))?;
    let sig = Signature::from_der(&der)
        .map_err(|_| "the signature is not an ASN.1 DER ECDSA signature".to_string())?;
    let key = keys
        .iter()
        .find(|k| k.key.verify(payload, &sig).is_ok())
        .ok_or_else(|| {
            let names: Vec<String> = keys.iter().map(|k| k.path.display().to_string()).collect();
            format!("the signature does not verify with {}", names.join(", "))
        })?;
    let p: Payload = serde_json::from_slice(payload)
        .map_err(|e| format!("the payload is not a simple signing document: {e}"))?;
    if p.critical.kind != PAYLOAD_TYPE {
        return Err(format!(
            "the payload's type is {:?}, not {PAYLOAD_TYPE:?}",
            p.critical.kind
        ));
    }
    Ok((key, p.critical.image.docker_manifest_digest))
}

/// Requires a valid signature of `image` in the layout (see the module doc
/// for which digests count).
pub fn verify(
    layout: &Layout,
    image: &ResolvedImage,
    keys: &[PublicKey],
) -> Result<SignatureInfo, TrustError> {
    let mut digests: Vec<&str> = image.index_digest.iter().map(String::as_str).collect();
    digests.push(&image.manifest_digest);
    verify_digests(layout, &image.reference, &digests, keys)
}

/// Requires a valid signature of every image of `plan`; gives them by
/// reference.
pub fn verify_plan(
    layout: &Layout,
    plan: &Plan,
    keys: &[PublicKey],
) -> Result<BTreeMap<String, SignatureInfo>, TrustError> {
    let mut out = BTreeMap::new();
    for (reference, image) in &plan.images {
        out.insert(reference.clone(), verify(layout, image, keys)?);
    }
    Ok(out)
}

/// Requires a valid signature naming one of `digests` (the first is the
/// one an error names).
pub fn verify_digests(
    layout: &Layout,
    image: &str,
    digests: &[&str],
    keys: &[PublicKey],
) -> Result<SignatureInfo, TrustError> {
    let first = digests.first().copied().unwrap_or_default().to_string();
    if keys.is_empty() {
        return Err(TrustError::Invalid {
            image: image.to_string(),
            digest: first,
            reasons: vec!["no public key was given".to_string()],
        });
    }
    let mut reasons = Vec::new();
    let mut any = false;
    for digest in digests {
        let tag = signature_tag(digest);
        for (name, desc) in signature_images(layout, &tag) {
            any = true;
            // A damaged signature image is one more reason, not the end:
            // another layer or image may still hold a valid signature.
            let bytes = match layout.read_small_blob(&desc, image) {
                Ok(b) => b,
                Err(e) => {
                    reasons.push(format!("{name}: {e}"));
                    continue;
                }
            };
            let manifest: Manifest = match serde_json::from_slice(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    reasons.push(format!("{name}: not an image manifest: {e}"));
                    continue;
                }
            };
            for (i, layer) in manifest.layers.iter().enumerate() {
                let Some(sig) = layer.annotations.get(ANNOTATION_SIGNATURE) else {
                    reasons.push(format!(
                        "{name} layer {i}: no {ANNOTATION_SIGNATURE} annotation"
                    ));
                    continue;
                };
                let payload = match layout.read_small_blob(layer, image) {
                    Ok(p) => p,
                    Err(e) => {
                        reasons.push(format!("{name} layer {i}: {e}"));
                        continue;
                    }
                };
                match verify_payload(&payload, sig, keys) {
                    Ok((key, signed)) if signed == *digest => {
                        return Ok(SignatureInfo {
                            image: image.to_string(),
                            signed_digest: signed,
                            signature_manifest: desc.digest.clone(),
                            key: key.path.clone(),
                        })
                    }
                    Ok((_, signed)) => reasons.push(format!(
                        "{name} layer {i}: the payload signs {signed}, not {digest}"
                    )),
                    Err(why) => reasons.push(format!("{name} layer {i}: {why}")),
                }
            }
            if manifest.layers.is_empty() {
                reasons.push(format!("{name}: no layers"));
            }
        }
    }
    if !any {
        return Err(TrustError::Missing {
            image: image.to_string(),
            digest: first.clone(),
            dir: layout.root().to_path_buf(),
            tag: signature_tag(&first),
        });
    }
    Err(TrustError::Invalid {
        image: image.to_string(),
        digest: first,
        reasons,
    })
}

/// The images tagged `tag` (`REPO:tag`, or the bare tag skopeo writes),
/// each digest once, by name.
fn signature_images(layout: &Layout, tag: &str) -> Vec<(String, Descriptor)> {
    let suffix = format!(":{tag}");
    let mut out: Vec<(String, Descriptor)> = Vec::new();
    for (name, desc) in layout.named() {
        if (name == tag || name.ends_with(&suffix))
            && !out.iter().any(|(_, d)| d.digest == desc.digest)
        {
            out.push((name.to_string(), desc.clone()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// One signature [`sign`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    pub reference: String,
    /// The digest signed (what the name points at).
    pub digest: String,
    /// The `.sig` image's name in the layout.
    pub tag: String,
    /// Its manifest digest.
    pub signature_manifest: String,
}

/// Signs what each reference points at (the index of a multi-arch image,
/// like `cosign sign`; each manifest when the layout tags one per
/// platform), adding the signature layer to `REPO:sha256-HEX.sig` (kept
/// layers of an existing signature image stay; an identical layer is not
/// added twice). The layout's `index.json` is rewritten once, at the end.
pub fn sign(
    layout_dir: &Path,
    references: &[String],
    key: &PrivateKey,
) -> Result<Vec<Signed>, TrustError> {
    let layout = Layout::open(layout_dir).map_err(Box::new)?;
    let mut writer = LayoutWriter::open_or_create(layout_dir).map_err(Box::new)?;
    let mut done = Vec::new();
    for reference in references {
        let bad = |message: String| TrustError::Sign {
            image: reference.clone(),
            message,
        };
        if Digest::parse(reference).is_ok() {
            return Err(bad(
                "a bare digest has no repository to tag the signature under; \
                 write NAME@DIGEST"
                    .to_string(),
            ));
        }
        let r = Reference::parse(reference).map_err(|e| bad(e.to_string()))?;
        let digests: Vec<String> = match &r.pin {
            Some(pin) if layout.root().join(pin.blob_path()).is_file() => vec![pin.to_string()],
            Some(pin) => {
                return Err(bad(format!(
                    "{pin} is not in layout {}",
                    layout.root().display()
                )))
            }
            None => layout
                .lookup(reference)
                .map_err(|e| bad(e.to_string()))?
                .into_iter()
                .map(|d| d.digest)
                .collect(),
        };
        for digest in digests {
            let tag = format!("{}:{}", r.repository, signature_tag(&digest));
            let existing = existing_layers(&layout, &tag, reference)?;
            let desc = write_signature(&mut writer, &r.repository, &digest, key, existing)
                .map_err(Box::new)?;
            writer.add_ref(&tag, &desc);
            done.push(Signed {
                reference: reference.clone(),
                digest,
                tag,
                signature_manifest: desc.digest,
            });
        }
    }
    writer.commit().map_err(Box::new)?;
    Ok(done)
}

/// The layers of the signature image already tagged `tag`, if any.
fn existing_layers(layout: &Layout, tag: &str, image: &str) -> Result<Vec<Descriptor>, TrustError> {
    let Some((_, desc)) = layout.named().find(|(n, _)| *n == tag) else {
        return Ok(Vec::new());
    };
    let bytes = layout
        .read_small_blob(desc, image)
        .map_err(|e| TrustError::Read {
            image: image.to_string(),
            source: Box::new(e),
        })?;
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| TrustError::Sign {
        image: image.to_string(),
        message: format!("the existing signature image {tag:?} is not a manifest: {e}"),
    })?;
    Ok(m.layers)
}

/// The payload cosign signs for `digest`, byte for byte as cosign writes it.
pub fn payload(repository: &str, digest: &str) -> Vec<u8> {
    let p = Payload {
        critical: Critical {
            identity: Identity {
                docker_reference: repository.to_string(),
            },
            image: PayloadImage {
                docker_manifest_digest: digest.to_string(),
            },
            kind: PAYLOAD_TYPE.to_string(),
        },
        optional: None,
    };
    serde_json::to_vec(&p).expect("a payload serializes")
}

/// Writes the payload, the signature image's config and manifest; gives
/// the manifest's descriptor.
fn write_signature(
    writer: &mut LayoutWriter,
    repository: &str,
    digest: &str,
    key: &PrivateKey,
    mut layers: Vec<Descriptor>,
) -> Result<Descriptor, OciError> {
    let payload = payload(repository, digest);
    let sig: DerSignature = {
        let s: Signature = key.key.sign(&payload);
        s.to_der()
    };
    let sig_b64 = base64::engine::general_purpose::STANDARD.encode(sig.as_bytes());
    let mut layer = Descriptor {
        media_type: MT_SIMPLE_SIGNING.to_string(),
        ..writer.add_blob(&payload)?
    };
    layer
        .annotations
        .insert(ANNOTATION_SIGNATURE.to_string(), sig_b64);
    if !layers.contains(&layer) {
        layers.push(layer);
    }
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
    // As cosign writes it: no platform, zero times, one diff id per payload.
    let history: Vec<serde_json::Value> = layers
        .iter()
        .map(|_| serde_json::json!({"created": "0001-01-01T00:00:00Z"}))
        .collect();
    let config = serde_json::json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": history,
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = Descriptor {
        media_type: json::MT_OCI_CONFIG.to_string(),
        ..writer.add_blob(&serde_json::to_vec(&config).expect("config serializes"))?
    };
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(json::MT_OCI_MANIFEST.to_string()),
        config,
        layers,
        annotations: BTreeMap::new(),
    };
    Ok(Descriptor {
        media_type: json::MT_OCI_MANIFEST.to_string(),
        ..writer.add_blob(&serde_json::to_vec(&manifest).expect("manifest serializes"))?
    })
}
