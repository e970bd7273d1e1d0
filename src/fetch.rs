//! `kiln pull`: registry → OCI image layout, once, so builds stay offline.
//!
//! Takes image references (`HOST[:PORT]/REPO[:TAG][@DIGEST]`, LinuxKit's
//! short forms too), platforms and connection options; gives the images in
//! the layout under the reference as written, the name skopeo's
//! `oci:DIR:REF` uses, so a YAML file naming them builds with the layout
//! reader and no network. A multi-arch index is kept with the manifests of
//! the chosen platforms (default `linux/amd64`). cosign's signature images
//! of what was pulled (`REPO:sha256-HEX.sig`) come along when the registry
//! has them, for [`crate::trust`] to check offline; [`pull_locked`] fetches
//! what a lock file pins, by digest, under the locked names.
//!
//! Every blob streams into a temp file in the layout, is checked against
//! its descriptor's size and digest, and only then renamed into `blobs/`
//! ([`crate::oci::write::BlobWriter::finish_expecting`]); the top-level
//! name enters `index.json` last, under the layout lock, through
//! [`LayoutWriter::commit`]. An interrupted pull leaves a valid layout (its
//! old `index.json`, some new unreferenced blobs) and the next pull fetches
//! only the blobs still missing. Registries are untrusted: manifests are
//! read to at most 4 MiB whatever their headers claim, a manifest asked for
//! by digest must hash to it, and a blob's size comes from its (verified)
//! manifest, never from `Content-Length`.
//!
//! The HTTP client is `ureq` 3 (blocking, rustls with ring, no async
//! runtime) rather than `oci-client`: `oci-client` brings tokio, hyper and
//! reqwest (hundreds of crates, minutes of build on CI's 2 cores) for what
//! is three GET requests and a token dance, and its blob API does not let
//! the layout writer own the temp-file-verify-rename step. The distribution
//! protocol part (`client.rs`, `auth.rs`) is small and tested against the
//! reference registry (Debian's `docker-registry`).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::PathBuf;

pub mod auth;
pub mod client;

pub use client::{ClientOptions, Repo};

use crate::oci::json::{self, Descriptor, Index, Kind, Manifest};
use crate::oci::name::Reference;
use crate::oci::write::LayoutWriter;
use crate::oci::{normalize_arch, Digest, Layout, OciError};
use client::Client;

/// What went wrong talking to a registry or storing what it sent.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{url}: the registry answered {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("authenticating to {host}: {message}")]
    Auth { host: String, message: String },
    #[error("{url}: the response is larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("credentials file {}: {message}", path.display())]
    Credentials { path: PathBuf, message: String },
    #[error("--ca-cert {}: {message}", path.display())]
    CaCert { path: PathBuf, message: String },
    #[error("{reference}: {message}")]
    Image { reference: String, message: String },
    #[error(
        "{reference}: the registry sent {what} {digest} ({url}) with {message}; nothing was stored"
    )]
    Corrupt {
        reference: String,
        what: &'static str,
        digest: String,
        url: String,
        message: String,
    },
    #[error("{reference}: no manifest for {wanted} in its index (it has {available})")]
    NoPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("--platform {0:?}: want OS/ARCH[/VARIANT], e.g. linux/amd64")]
    BadPlatform(String),
    #[error(transparent)]
    Oci(#[from] OciError),
}

/// A platform to keep from a multi-arch index.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/amd64`, `linux/arm64/v8`.
    pub fn parse(s: &str) -> Result<Platform, FetchError> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                arch: normalize_arch(arch).to_string(),
                variant: parts
                    .get(2)
                    .map(|v| v.to_string())
                    .filter(|v| !v.is_empty()),
            }),
            _ => Err(FetchError::BadPlatform(s.to_string())),
        }
    }

    /// `linux/<arch>`.
    pub fn linux(arch: &str) -> Platform {
        Platform {
            os: "linux".to_string(),
            arch: normalize_arch(arch).to_string(),
            variant: None,
        }
    }

    fn matches(&self, p: &json::Platform) -> bool {
        p.os == self.os
            && normalize_arch(&p.architecture) == self.arch
            && self
                .variant
                .as_ref()
                .is_none_or(|v| p.variant.as_deref() == Some(v.as_str()))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Settings of a pull.
#[derive(Clone, Debug)]
pub struct PullOptions {
    pub layout: PathBuf,
    /// Kept from multi-arch indexes; empty means `linux/amd64`.
    pub platforms: Vec<Platform>,
    pub client: ClientOptions,
}

/// What one reference's pull did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pulled {
    pub reference: String,
    /// The digest now named by the reference (an index or a manifest).
    pub digest: String,
    /// Blobs downloaded, and their bytes.
    pub fetched: usize,
    pub fetched_bytes: u64,
    /// Blobs the layout already had.
    pub present: usize,
}

/// Pulls every reference into the layout (created if missing); the names
/// enter `index.json` together, after all blobs of all references arrived.
pub fn pull(refs: &[String], opts: &PullOptions) -> Result<Vec<Pulled>, FetchError> {
    let named: Vec<(String, String)> = refs.iter().map(|r| (r.clone(), r.clone())).collect();
    pull_named(&named, opts)
}

/// `kiln pull --lock`: fetches exactly what a lock file pins, each image by
/// its pinned digest, and names it as the lock's reference (so a tag that
/// moved in the registry since is not followed).
pub fn pull_locked(
    lock: &crate::lock::Lock,
    opts: &PullOptions,
) -> Result<Vec<Pulled>, FetchError> {
    let named: Vec<(String, String)> = lock
        .images
        .iter()
        .map(|(reference, pin)| {
            let digest = pin.index.as_deref().unwrap_or(&pin.manifest);
            let fetch = format!("{}@{digest}", repository_as_written(reference));
            (reference.clone(), fetch)
        })
        .collect();
    let opts = PullOptions {
        platforms: vec![Platform::linux(&lock.arch)],
        ..opts.clone()
    };
    pull_named(&named, &opts)
}

/// Pulls each `(name, reference)`: fetches `reference`, stores it as `name`.
fn pull_named(named: &[(String, String)], opts: &PullOptions) -> Result<Vec<Pulled>, FetchError> {
    let client = Client::new(&opts.client)?;
    let platforms = if opts.platforms.is_empty() {
        vec![Platform::linux("amd64")]
    } else {
        opts.platforms.clone()
    };
    let mut writer = LayoutWriter::open_or_create(&opts.layout)?;
    let mut out = Vec::new();
    let progress = crate::progress::Progress::byte_counter("pulling");
    for (name, r) in named {
        progress.set_message(&format!("pulling {name}"));
        let mut p = Puller {
            client: &client,
            writer: &writer,
            progress: &progress,
            reference: r,
            repo: Repo::from_repository(&Reference::parse(r)?.repository),
            stats: Pulled {
                reference: name.clone(),
                ..Pulled::default()
            },
            platform_manifests: Vec::new(),
        };
        let top = p.pull(&platforms)?;
        // cosign's signatures of what was pulled (`REPO:sha256-HEX.sig`),
        // when the registry has them, so `--verify-key` works offline.
        let mut signed = vec![top.digest.clone()];
        signed.append(&mut p.platform_manifests);
        let mut sigs = Vec::new();
        for d in signed {
            let tag = format!("{}:{}", repository_as_written(r), signature_tag(&d));
            if let Some(sig) = p.pull_signature(&tag)? {
                sigs.push((tag, sig));
            }
        }
        let stats = p.stats;
        for (tag, sig) in sigs {
            writer.add_ref(&tag, &sig);
        }
        writer.add_ref(name, &top);
        out.push(Pulled {
            digest: top.digest,
            ..stats
        });
    }
    writer.commit()?;
    Ok(out)
}

/// `kiln build --pull`: pulls the images of the YAML files that the layout
/// cannot resolve for `linux/<arch>` (all of them if it does not exist);
/// gives what was pulled (nothing when the layout has everything, and then
/// no connection is opened). An image found in one of `more_layouts` (the
/// build's later `--layout`s) counts as present; pulls go to `opts.layout`.
pub fn pull_missing(
    files: &[PathBuf],
    arch: &str,
    more_layouts: &[PathBuf],
    opts: &PullOptions,
) -> anyhow::Result<Vec<Pulled>> {
    let spec = crate::spec::load(files)?;
    let existing: Vec<PathBuf> = std::iter::once(&opts.layout)
        .chain(more_layouts)
        .filter(|d| d.join("oci-layout").exists())
        .cloned()
        .collect();
    let layout = Layout::open_search(&existing).ok();
    let mut missing = Vec::new();
    let mut seen = BTreeSet::new();
    for r in crate::resolve::image_refs(&spec) {
        if !seen.insert(r.reference.clone()) || Reference::parse(&r.reference).is_err() {
            continue;
        }
        let present = layout
            .as_ref()
            .is_some_and(|l| l.resolve(&r.reference, arch).is_ok());
        if !present {
            missing.push(r.reference.clone());
        }
    }
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let opts = PullOptions {
        platforms: vec![Platform::linux(arch)],
        ..opts.clone()
    };
    Ok(pull(&missing, &opts)?)
}

/// One reference being pulled.
struct Puller<'a> {
    client: &'a Client,
    writer: &'a LayoutWriter,
    progress: &'a crate::progress::Progress,
    reference: &'a str,
    repo: Repo,
    stats: Pulled,
    /// The platform manifests chosen from an index.
    platform_manifests: Vec<String>,
}

impl Puller<'_> {
    fn image_err(&self, message: String) -> FetchError {
        FetchError::Image {
            reference: self.reference.to_string(),
            message,
        }
    }

    /// Fetches the reference's manifest (or index and chosen manifests)
    /// and their blobs; gives the descriptor to name.
    fn pull(&mut self, platforms: &[Platform]) -> Result<Descriptor, FetchError> {
        let r = Reference::parse(self.reference)?;
        let target = match (&r.pin, &r.tag) {
            (Some(pin), _) => pin.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_string(),
        };
        let (bytes, content_type) = self.client.manifest(&self.repo, &target)?;
        let digest = match &r.pin {
            Some(pin) => {
                self.check_json(&bytes, pin, None, "manifest", &target)?;
                pin.clone()
            }
            None => Digest::sha256_of(&bytes),
        };
        let media_type = client::manifest_media_type(&bytes, &content_type).ok_or_else(|| {
            self.image_err(format!(
                "{target} is neither an image manifest nor an index (Content-Type {content_type:?})"
            ))
        })?;
        let desc = Descriptor {
            media_type: media_type.clone(),
            digest: digest.to_string(),
            size: bytes.len() as u64,
            ..Descriptor::default()
        };
        match json::kind_of(&media_type) {
            Some(Kind::Index) => self.pull_index(&bytes, platforms)?,
            Some(Kind::Manifest) => self.pull_manifest_blobs(&bytes)?,
            None => {
                return Err(self.image_err(format!(
                    "unsupported manifest media type {media_type:?} (schema 1 and artifacts are not images kiln builds)"
                )))
            }
        }
        self.store_json(&bytes, &digest)?;
        Ok(desc)
    }

    /// Fetches the signature image tagged `tag` in this repository, if the
    /// registry has one (404 means unsigned, which only `--verify-key` minds).
    fn pull_signature(&mut self, tag: &str) -> Result<Option<Descriptor>, FetchError> {
        let target = tag.rsplit(':').next().unwrap_or(tag).to_string();
        let (bytes, content_type) = match self.client.manifest(&self.repo, &target) {
            Ok(m) => m,
            Err(FetchError::Status { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if json::kind_of(&client::manifest_media_type(&bytes, &content_type).unwrap_or_default())
            != Some(Kind::Manifest)
        {
            return Ok(None);
        }
        let digest = Digest::sha256_of(&bytes);
        self.pull_manifest_blobs(&bytes)?;
        self.store_json(&bytes, &digest)?;
        Ok(Some(Descriptor {
            media_type: json::MT_OCI_MANIFEST.to_string(),
            digest: digest.to_string(),
            size: bytes.len() as u64,
            ..Descriptor::default()
        }))
    }

    fn pull_index(&mut self, bytes: &[u8], platforms: &[Platform]) -> Result<(), FetchError> {
        let idx: Index = serde_json::from_slice(bytes)
            .map_err(|e| self.image_err(format!("malformed index: {e}")))?;
        for want in platforms {
            let chosen = idx
                .manifests
                .iter()
                .find(|d| {
                    json::kind_of(&d.media_type) == Some(Kind::Manifest)
                        && d.platform.as_ref().is_some_and(|p| want.matches(p))
                })
                .ok_or_else(|| FetchError::NoPlatform {
                    reference: self.reference.to_string(),
                    wanted: want.to_string(),
                    available: available(&idx),
                })?;
            let digest = Digest::parse(&chosen.digest).map_err(|e| OciError::BadDigest {
                context: format!("the index of {}", self.reference),
                source: e,
            })?;
            if chosen.size > client::MAX_MANIFEST {
                return Err(self.image_err(format!(
                    "manifest {digest} claims {} bytes, more than the {} allowed",
                    chosen.size,
                    client::MAX_MANIFEST
                )));
            }
            let (m, _) = self.client.manifest(&self.repo, &digest.to_string())?;
            self.check_json(
                &m,
                &digest,
                Some(chosen.size),
                "manifest",
                &digest.to_string(),
            )?;
            self.pull_manifest_blobs(&m)?;
            self.store_json(&m, &digest)?;
            self.platform_manifests.push(digest.to_string());
        }
        Ok(())
    }

    /// Fetches a manifest's config and layers.
    fn pull_manifest_blobs(&mut self, bytes: &[u8]) -> Result<(), FetchError> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| self.image_err(format!("malformed manifest: {e}")))?;
        for d in std::iter::once(&m.config).chain(&m.layers) {
            self.fetch_blob(d)?;
        }
        Ok(())
    }

    /// A manifest or index: it must hash to `digest` (and have `size` bytes).
    fn check_json(
        &self,
        bytes: &[u8],
        digest: &Digest,
        size: Option<u64>,
        what: &'static str,
        target: &str,
    ) -> Result<(), FetchError> {
        let mut h = crate::oci::digest::Hasher::new(digest.algorithm());
        h.update(bytes);
        let actual = h.finish();
        let message = if actual != *digest {
            format!("content hashing to {actual}")
        } else if size.is_some_and(|s| s != bytes.len() as u64) {
            format!(
                "{} bytes, not the {} its index says",
                bytes.len(),
                size.unwrap_or(0)
            )
        } else {
            return Ok(());
        };
        Err(FetchError::Corrupt {
            reference: self.reference.to_string(),
            what,
            digest: digest.to_string(),
            url: format!("{}/manifests/{target}", self.repo.host),
            message,
        })
    }

    /// Stores verified manifest or index bytes unless present.
    fn store_json(&mut self, bytes: &[u8], digest: &Digest) -> Result<(), FetchError> {
        if self.writer.has_blob(digest, bytes.len() as u64) {
            self.stats.present += 1;
            return Ok(());
        }
        let mut w = self.writer.blob_writer_for(digest)?;
        w.write_all(bytes)
            .map_err(|e| OciError::io(self.writer.root(), e))?;
        w.finish_expecting(digest, bytes.len() as u64, self.reference)?;
        self.stats.fetched += 1;
        self.stats.fetched_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Streams one blob into the layout unless it is there; checked before
    /// it is renamed in.
    fn fetch_blob(&mut self, d: &Descriptor) -> Result<(), FetchError> {
        let digest = Digest::parse(&d.digest).map_err(|e| OciError::BadDigest {
            context: format!("a manifest of {}", self.reference),
            source: e,
        })?;
        if self.writer.has_blob(&digest, d.size) {
            self.stats.present += 1;
            return Ok(());
        }
        let limit = crate::unpack::Limits::default().max_total_bytes;
        if d.size > limit {
            return Err(self.image_err(format!(
                "blob {digest} claims {} bytes, more than the {limit} allowed",
                d.size
            )));
        }
        let (url, body) = self.client.blob(&self.repo, &digest.to_string())?;
        let mut w = self.writer.blob_writer_for(&digest)?;
        let mut body = body.take(d.size + 1);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = body.read(&mut buf).map_err(|e| FetchError::Http {
                url: url.clone(),
                message: e.to_string(),
            })?;
            if n == 0 {
                break;
            }
            self.progress.inc(n as u64);
            w.write_all(&buf[..n])
                .map_err(|e| OciError::io(self.writer.root(), e))?;
        }
        let got = w.len();
        w.finish_expecting(&digest, d.size, self.reference)
            .map_err(|e| match e {
                OciError::DigestMismatch { actual, .. } => FetchError::Corrupt {
                    reference: self.reference.to_string(),
                    what: "blob",
                    digest: digest.to_string(),
                    url: url.clone(),
                    message: format!("content hashing to {actual}"),
                },
                OciError::SizeMismatch { expected, .. } => FetchError::Corrupt {
                    reference: self.reference.to_string(),
                    what: "blob",
                    digest: digest.to_string(),
                    url: url.clone(),
                    message: if got > expected {
                        format!("more than the {expected} bytes its manifest says")
                    } else {
                        format!("{got} bytes, not the {expected} its manifest says")
                    },
                },
                e => FetchError::Oci(e),
            })?;
        self.stats.fetched += 1;
        self.stats.fetched_bytes += d.size;
        Ok(())
    }
}

/// cosign's tag for the signature of `digest`: `sha256-HEX.sig`.
fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// The reference as written without its tag and digest
/// (`127.0.0.1:5000/a/b:1@sha256:…` → `127.0.0.1:5000/a/b`).
fn repository_as_written(written: &str) -> &str {
    let bare = written.split('@').next().unwrap_or(written);
    let last_slash = bare.rfind('/').map_or(0, |i| i + 1);
    match bare[last_slash..].rfind(':') {
        Some(i) => &bare[..last_slash + i],
        None => bare,
    }
}

fn available(idx: &Index) -> String {
    let v: Vec<String> = idx
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| {
            let mut s = format!("{}/{}", p.os, p.architecture);
            if let Some(v) = &p.variant {
                s.push('/');
                s.push_str(v);
            }
            s
        })
        .collect();
    if v.is_empty() {
        "no platforms".to_string()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap(),
            Platform::linux("amd64")
        );
        for bad in ["linux", "/amd64", "linux/", "a/b/c/d"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        let arm = json::Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            os_version: None,
            variant: Some("v8".into()),
        };
        assert!(Platform::linux("arm64").matches(&arm));
        assert!(!Platform::parse("linux/arm64/v9").unwrap().matches(&arm));
    }

    #[test]
    fn signature_names() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(signature_tag(&d), format!("sha256-{}.sig", "a".repeat(64)));
        assert_eq!(
            repository_as_written("localhost:5000/a/b:1"),
            "localhost:5000/a/b"
        );
        assert_eq!(repository_as_written(&format!("h:1/a@{d}")), "h:1/a");
        assert_eq!(repository_as_written("alpine"), "alpine");
    }
}
