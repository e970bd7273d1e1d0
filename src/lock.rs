//! Lock files: what every image reference of a spec resolved to, pinned by digest.
//!
//! Takes a [`Plan`] (and the signatures that verified, if any); gives a
//! [`Lock`], written as `NAME.lock`: pretty-printed JSON with sorted keys,
//! one block per reference, so it diffs line by line (format in
//! `docs/lock.md`). [`check`] compares a later plan with a lock and
//! refuses a reference the lock lacks or whose content moved, naming the
//! reference and both digests. [`lock`] is `kiln lock`'s driver.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::resolve::Plan;
use crate::trust::SignatureInfo;

/// The version of the format this kiln writes and reads.
pub const VERSION: u32 = 1;

/// A lock file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// [`VERSION`].
    #[serde(rename = "kiln-lock")]
    pub version: u32,
    /// The architecture the platform manifests were chosen for.
    pub arch: String,
    /// By reference as written in the YAML.
    pub images: BTreeMap<String, Pinned>,
}

/// One image reference, pinned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pinned {
    /// The canonical name it was found under.
    pub name: String,
    /// The index the name pointed at (multi-arch images only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// The platform manifest.
    pub manifest: String,
    pub config: String,
    /// Bottom layer first.
    pub layers: Vec<String>,
    /// The `.sig` manifest whose signature verified, when the lock was made
    /// with `--verify-key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// A lock that cannot be read, or a plan it does not allow.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("{}: the lock was made for {locked}, this build is for {arch}", path.display())]
    Arch {
        path: PathBuf,
        locked: String,
        arch: String,
    },
    #[error("{}: image {reference:?} is not in the lock; run `kiln lock` again", path.display())]
    NotLocked { path: PathBuf, reference: String },
    #[error(
        "{}: image {reference:?} moved: the lock pins {what} {pinned}, the layout has {found}",
        path.display()
    )]
    Moved {
        path: PathBuf,
        reference: String,
        what: &'static str,
        pinned: String,
        found: String,
    },
}

impl LockError {
    /// A plan the lock refuses (exit 3), as opposed to an unreadable lock.
    pub fn is_verification_failure(&self) -> bool {
        matches!(self, LockError::NotLocked { .. } | LockError::Moved { .. })
    }
}

/// The lock of `plan`; `signatures` by reference, when they were verified.
pub fn from_plan(plan: &Plan, arch: &str, signatures: &BTreeMap<String, SignatureInfo>) -> Lock {
    let images = plan
        .images
        .iter()
        .map(|(reference, image)| {
            let pinned = Pinned {
                name: image.name.clone(),
                index: image.index_digest.clone(),
                manifest: image.manifest_digest.clone(),
                config: image.config_digest.clone(),
                layers: image.layers.iter().map(|l| l.digest.clone()).collect(),
                signature: signatures
                    .get(reference)
                    .map(|s| s.signature_manifest.clone()),
            };
            (reference.clone(), pinned)
        })
        .collect();
    Lock {
        version: VERSION,
        arch: crate::oci::normalize_arch(arch).to_string(),
        images,
    }
}

impl Lock {
    /// The file's bytes: pretty JSON, sorted keys, a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a lock serializes");
        v.push(b'\n');
        v
    }

    /// Reads and checks a lock file.
    pub fn read(path: &Path) -> Result<Lock, LockError> {
        let bad = |message: String| LockError::Read {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let lock: Lock =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a kiln lock: {e}")))?;
        if lock.version != VERSION {
            return Err(bad(format!(
                "lock format {} is not {VERSION}, the one this kiln reads",
                lock.version
            )));
        }
        Ok(lock)
    }
}

/// `NAME.lock` beside `first_yaml`.
pub fn path_for(first_yaml: &Path, name: &str) -> PathBuf {
    first_yaml
        .parent()
        .unwrap_or_else(|| Path::new(""))
        .join(format!("{name}.lock"))
}

/// Requires every image of `plan` to be in `lock` with the same index,
/// manifest, config and layers; the first difference (in reference order)
/// is the error.
pub fn check(lock: &Lock, lock_path: &Path, plan: &Plan, arch: &str) -> Result<(), LockError> {
    let arch = crate::oci::normalize_arch(arch);
    if lock.arch != arch {
        return Err(LockError::Arch {
            path: lock_path.to_path_buf(),
            locked: lock.arch.clone(),
            arch: arch.to_string(),
        });
    }
    for (reference, image) in &plan.images {
        let Some(pinned) = lock.images.get(reference) else {
            return Err(LockError::NotLocked {
                path: lock_path.to_path_buf(),
                reference: reference.clone(),
            });
        };
        let moved = |what, pinned: &str, found: &str| LockError::Moved {
            path: lock_path.to_path_buf(),
            reference: reference.clone(),
            what,
            pinned: pinned.to_string(),
            found: found.to_string(),
        };
        let none = "(none)";
        if pinned.index != image.index_digest {
            return Err(moved(
                "index",
                pinned.index.as_deref().unwrap_or(none),
                image.index_digest.as_deref().unwrap_or(none),
            ));
        }
        if pinned.manifest != image.manifest_digest {
            return Err(moved("manifest", &pinned.manifest, &image.manifest_digest));
        }
        if pinned.config != image.config_digest {
            return Err(moved("config", &pinned.config, &image.config_digest));
        }
        let layers: Vec<&str> = image.layers.iter().map(|l| l.digest.as_str()).collect();
        if pinned.layers != layers {
            return Err(moved(
                "layer list",
                &pinned.layers.join(","),
                &layers.join(","),
            ));
        }
    }
    Ok(())
}

/// What [`lock`] needs.
#[derive(Clone, Debug)]
pub struct LockOptions {
    pub files: Vec<PathBuf>,
    /// The layouts images are resolved in, in search order.
    pub layouts: Vec<PathBuf>,
    pub arch: String,
    /// The lock is `NAME.lock` beside the first file.
    pub name: String,
    /// Public keys; when given, every image must have a valid signature
    /// and the lock records which one verified.
    pub verify_keys: Vec<PathBuf>,
}

/// `kiln lock`: resolves the spec's images, checks their signatures when
/// keys are given, and writes `NAME.lock` atomically; gives its path.
pub fn lock(opts: &LockOptions) -> anyhow::Result<(PathBuf, Lock)> {
    let spec = crate::spec::load(&opts.files)?;
    let layout = crate::oci::Layout::open_search(&opts.layouts)?;
    let plan = crate::resolve::resolve(&spec, &layout, &opts.arch)?;
    let keys = crate::trust::load_keys(&opts.verify_keys)?;
    let signatures = if keys.is_empty() {
        BTreeMap::new()
    } else {
        crate::trust::verify_plan(&layout, &plan, &keys)?
    };
    let lock = from_plan(&plan, &opts.arch, &signatures);
    let path = path_for(&opts.files[0], &opts.name);
    let dir = path.parent().unwrap_or_else(|| Path::new(""));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let file_name = format!("{}.lock", opts.name);
    crate::atomic::write_file(dir, &file_name, &lock.to_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((path, lock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_fixed_pretty_json_with_a_final_newline() {
        let mut images = BTreeMap::new();
        images.insert(
            "b:1".to_string(),
            Pinned {
                name: "docker.io/library/b:1".to_string(),
                index: Some("sha256:i".to_string()),
                manifest: "sha256:m".to_string(),
                config: "sha256:c".to_string(),
                layers: vec!["sha256:l1".to_string(), "sha256:l2".to_string()],
                signature: None,
            },
        );
        let lock = Lock {
            version: VERSION,
            arch: "amd64".to_string(),
            images,
        };
        let text = String::from_utf8(lock.to_bytes()).unwrap();
        assert_eq!(
            text,
            r#"{
  "kiln-lock": 1,
  "arch": "amd64",
  "images": {
    "b:1": {
      "name": "docker.io/library/b:1",
      "index": "sha256:i",
      "manifest": "sha256:m",
      "config": "sha256:c",
      "layers": [
        "sha256:l1",
        "sha256:l2"
      ]
    }
  }
}
"#
        );
        let back: Lock = serde_json::from_str(&text).unwrap();
        assert_eq!(back, lock);
        assert!(serde_json::from_str::<Lock>(&text.replace("\"arch\"", "\"archh\"")).is_err());
    }

    #[test]
    fn the_lock_lives_beside_the_first_file() {
        assert_eq!(
            path_for(Path::new("examples/linuxkit.yml"), "linuxkit"),
            Path::new("examples/linuxkit.lock")
        );
        assert_eq!(path_for(Path::new("a.yml"), "x"), Path::new("x.lock"));
    }
}
