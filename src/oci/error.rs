//! The errors of reading and writing OCI image layouts.
//!
//! Every variant names what the user can look at: the layout directory, the
//! blob digest and its path, and the image being resolved. Messages are
//! lowercase and carry no trailing period.

use std::path::PathBuf;

use super::digest::DigestError;

/// Something wrong with an OCI layout, a blob in it, or a reference into it.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not an OCI image layout: {why}", dir.display())]
    NotALayout { dir: PathBuf, why: String },
    #[error("{}: unsupported imageLayoutVersion {found:?} (want 1.0.0)", path.display())]
    LayoutVersion { path: PathBuf, found: String },
    #[error("{}: malformed JSON: {message}", path.display())]
    LayoutJson { path: PathBuf, message: String },
    #[error("malformed digest in {context}: {source}")]
    BadDigest {
        context: String,
        #[source]
        source: DigestError,
    },
    #[error("image {reference:?} has a linux/{arch} manifest ({digest}) that is not in the layout: `kiln pull --platform linux/{arch} {reference}` or `kiln build --pull` fetches it")]
    PlatformNotPulled {
        reference: String,
        arch: String,
        digest: String,
    },
    #[error("blob {digest} of image {image:?} is missing: {} does not exist", path.display())]
    MissingBlob {
        digest: String,
        path: PathBuf,
        image: String,
    },
    #[error("blob {digest} ({}) of image {image:?} has {actual} bytes, its descriptor says {expected}", path.display())]
    SizeMismatch {
        digest: String,
        path: PathBuf,
        image: String,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest} ({}) of image {image:?} is longer than the {expected} bytes its descriptor says", path.display())]
    TooLong {
        digest: String,
        path: PathBuf,
        image: String,
        expected: u64,
    },
    #[error("blob {digest} ({}) of image {image:?} is corrupt: its content hashes to {actual}", path.display())]
    DigestMismatch {
        digest: String,
        path: PathBuf,
        image: String,
        actual: String,
    },
    #[error("blob {digest} ({}) of image {image:?} is {size} bytes, more than the {limit} allowed for a JSON document", path.display())]
    JsonTooLarge {
        digest: String,
        path: PathBuf,
        image: String,
        size: u64,
        limit: u64,
    },
    #[error("blob {digest} ({}) of image {image:?}: malformed {what}: {message}", path.display())]
    Json {
        digest: String,
        path: PathBuf,
        image: String,
        what: &'static str,
        message: String,
    },
    #[error("blob {digest} of image {image:?} has unsupported media type {media_type:?}{}", if expected.is_empty() { String::new() } else { format!(" (want {expected})") })]
    MediaType {
        digest: String,
        image: String,
        media_type: String,
        expected: String,
    },
    #[error("malformed image reference {reference:?}: {message}")]
    BadReference { reference: String, message: String },
    #[error("image {reference:?} is a LinuxKit package template; templates are not expanded: build the package with `kiln pkg build` and name its tag")]
    Template { reference: String },
    #[error("image {reference:?} not found in layout {}{}", dir.display(), closest_suffix(closest))]
    NotFound {
        reference: String,
        dir: PathBuf,
        closest: Vec<String>,
    },
    #[error("image {reference:?} is ambiguous in layout {}: it matches {}", dir.display(), candidates.join(", "))]
    Ambiguous {
        reference: String,
        dir: PathBuf,
        candidates: Vec<String>,
    },
    #[error("image {reference:?} is pinned to {pin} but layout {} holds {found} for it", dir.display())]
    PinMismatch {
        reference: String,
        dir: PathBuf,
        pin: String,
        found: String,
    },
    #[error("image {reference:?} has no linux/{arch} variant; available: {}", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    NoPlatform {
        reference: String,
        arch: String,
        available: Vec<String>,
    },
    #[error("image {reference:?} is for {found}, not linux/{arch}")]
    WrongPlatform {
        reference: String,
        arch: String,
        found: String,
    },
    #[error(
        "image {reference:?}: none of the platform manifests of its index {index} is in the layout"
    )]
    NoManifestPresent { reference: String, index: String },
    #[error("image {reference:?}: indexes nest deeper than {limit} levels")]
    TooDeep { reference: String, limit: usize },
}

fn closest_suffix(closest: &[String]) -> String {
    if closest.is_empty() {
        "; it holds no named images".to_string()
    } else {
        format!("; closest: {}", closest.join(", "))
    }
}

impl OciError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> OciError {
        OciError::Io {
            path: path.into(),
            source,
        }
    }
}
