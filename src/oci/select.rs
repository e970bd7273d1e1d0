//! Walking a layout: name lookup, platform choice and pins.
//!
//! Takes an opened [`Layout`] and a reference; follows index → (nested
//! index →) manifest → config, verifying each JSON blob, and gives a
//! [`ResolvedImage`] for `linux/<arch>`. Reads no layer contents.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use super::json::{self, ConfigFile, Descriptor, Index, Kind, Manifest, Platform};
use super::name::{self, Reference};
use super::{
    normalize_arch, parse_digest, parse_json, reference_keys, Digest, ImageConfig, LayerDesc,
    Layout, OciError, ResolvedImage, MAX_DEPTH,
};

/// A manifest chosen for a platform, with its parsed config.
struct Chosen {
    manifest: Descriptor,
    body: Manifest,
    config: ConfigFile,
}

pub(super) fn resolve(
    layout: &Layout,
    reference: &str,
    arch: &str,
) -> Result<ResolvedImage, OciError> {
    let arch = normalize_arch(arch);
    if let Ok(d) = Digest::parse(reference) {
        return resolve_digest(layout, reference, &d, arch);
    }
    let r = Reference::parse(reference)?;
    let Lookup {
        descriptors: matches,
        short_tag_match,
    } = match lookup(layout, reference, &r)? {
        Some(m) => m,
        None => {
            // Pinned to a blob of the layout that no name points at.
            let pin = r.pin.as_ref().expect("lookup gives None only for pins");
            let mut img = resolve_digest(layout, reference, pin, arch)?;
            img.name = r.canonical();
            return Ok(img);
        }
    };
    let top = if matches.len() == 1 {
        matches[0].clone()
    } else {
        choose(layout, &matches, arch, reference)?
    };
    let chosen = follow(layout, &top, arch, reference, 0)?;
    if let Some(pin) = &r.pin {
        let pin = pin.to_string();
        if top.digest != pin && chosen.manifest.digest != pin {
            return Err(OciError::PinMismatch {
                reference: reference.to_string(),
                dir: layout.root.clone(),
                pin,
                found: top.digest,
            });
        }
    }
    let mut image = finish(reference, r.canonical(), &top, chosen)?;
    image.short_tag_match = short_tag_match;
    Ok(image)
}

/// The descriptors `index.json` (or an unnamed nested index) tags with the
/// name `r` (several when a layout keeps one same-named entry per
/// platform), narrowed to a pin when one matches. `None`: no name matches
/// but the pin is a blob of the layout.
pub(super) fn lookup(
    layout: &Layout,
    reference: &str,
    r: &Reference,
) -> Result<Option<Lookup>, OciError> {
    let keys = reference_keys(r);
    let mut matches: Vec<&Descriptor> = layout
        .named
        .iter()
        .filter(|n| n.matches(&keys))
        .map(|n| &n.desc)
        .collect();
    let mut short_tag_match = None;
    if matches.is_empty() {
        // `skopeo copy … oci:DIR:TAG` stores just the tag.
        let short = r.short_tag();
        matches = layout
            .named
            .iter()
            .filter(|n| n.name == short)
            .map(|n| &n.desc)
            .collect();
        dedup_by_digest(&mut matches);
        if matches.len() > 1 {
            return Err(OciError::Ambiguous {
                reference: reference.to_string(),
                dir: layout.root.clone(),
                candidates: matches
                    .iter()
                    .map(|d| format!("{short} ({})", d.digest))
                    .collect(),
            });
        }
        if !matches.is_empty() {
            short_tag_match = Some(short.to_string());
        }
    }
    dedup_by_digest(&mut matches);
    if matches.is_empty() {
        if let Some(pin) = &r.pin {
            if layout.root.join(pin.blob_path()).is_file() {
                return Ok(None);
            }
        }
        return Err(OciError::NotFound {
            reference: reference.to_string(),
            dir: layout.root.clone(),
            closest: name::closest(r, layout.named.iter().map(|n| n.name.as_str()), 5),
        });
    }
    if let Some(pin) = &r.pin {
        let pinned: Vec<&Descriptor> = matches
            .iter()
            .copied()
            .filter(|d| d.digest == pin.to_string())
            .collect();
        if !pinned.is_empty() {
            matches = pinned;
        }
    }
    Ok(Some(Lookup {
        descriptors: matches.into_iter().cloned().collect(),
        short_tag_match,
    }))
}

/// What [`lookup`] found for a name.
pub(super) struct Lookup {
    pub descriptors: Vec<Descriptor>,
    /// The bare tag that matched, when no entry has the full name.
    pub short_tag_match: Option<String>,
}

fn dedup_by_digest(v: &mut Vec<&Descriptor>) {
    v.sort_by(|a, b| a.digest.cmp(&b.digest));
    v.dedup_by(|a, b| a.digest == b.digest);
}

/// A bare `sha256:…` reference: the blob must be in the layout.
fn resolve_digest(
    layout: &Layout,
    reference: &str,
    d: &Digest,
    arch: &str,
) -> Result<ResolvedImage, OciError> {
    let want = d.to_string();
    let mut known = None;
    let mut seen = BTreeSet::new();
    walk_descriptors(layout, &layout.index.manifests, 0, &mut seen, &mut |desc| {
        if known.is_none() && desc.digest == want {
            known = Some(desc.clone());
        }
    })?;
    let desc = match known {
        Some(desc) => desc,
        None => {
            let path = layout.root.join(d.blob_path());
            let meta = std::fs::metadata(&path).map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    OciError::MissingBlob {
                        digest: want.clone(),
                        path: path.clone(),
                        image: reference.to_string(),
                    }
                } else {
                    OciError::io(&path, e)
                }
            })?;
            Descriptor {
                digest: want.clone(),
                size: meta.len(),
                ..Descriptor::default()
            }
        }
    };
    let name = layout
        .named
        .iter()
        .find(|n| n.desc.digest == want)
        .map_or_else(
            || want.clone(),
            |n| n.canonical.clone().unwrap_or_else(|| n.name.clone()),
        );
    let chosen = follow(layout, &desc, arch, reference, 0)?;
    finish(reference, name, &desc, chosen)
}

/// Calls `f` on every descriptor reachable through indexes (not
/// manifests), reading each index once.
fn walk_descriptors(
    layout: &Layout,
    descs: &[Descriptor],
    depth: usize,
    seen: &mut BTreeSet<String>,
    f: &mut dyn FnMut(&Descriptor),
) -> Result<(), OciError> {
    for d in descs {
        f(d);
        if depth < MAX_DEPTH
            && json::kind_of(&d.media_type) == Some(Kind::Index)
            && seen.insert(d.digest.clone())
        {
            let idx: Index = layout.read_json(d, "index.json", "index")?;
            walk_descriptors(layout, &idx.manifests, depth + 1, seen, f)?;
        }
    }
    Ok(())
}

fn kind(layout: &Layout, desc: &Descriptor, bytes: &[u8], image: &str) -> Result<Kind, OciError> {
    if desc.media_type.is_empty() {
        if let Some(k) = json::sniff_kind(bytes) {
            return Ok(k);
        }
    }
    json::kind_of(&desc.media_type).ok_or_else(|| OciError::MediaType {
        digest: desc.digest.clone(),
        image: image.to_string(),
        media_type: desc.media_type.clone(),
        expected: format!(
            "an image index or manifest, under {}",
            layout.root.display()
        ),
    })
}

/// Follows `desc` (index or manifest) down to one manifest for `arch`.
fn follow(
    layout: &Layout,
    desc: &Descriptor,
    arch: &str,
    image: &str,
    depth: usize,
) -> Result<Chosen, OciError> {
    if depth > MAX_DEPTH {
        return Err(OciError::TooDeep {
            reference: image.to_string(),
            limit: MAX_DEPTH,
        });
    }
    let blob = layout.blob_ref(desc, image)?;
    let bytes = blob.read_verified()?;
    match kind(layout, desc, &bytes, image)? {
        Kind::Index => {
            let idx: Index = parse_json(&blob, &bytes, "index")?;
            let child = choose(layout, &idx.manifests, arch, image)?;
            let kept = layout
                .blob_ref(&child, image)
                .map_or(true, |b| b.path.exists());
            if !kept && json::kind_of(&child.media_type) == Some(Kind::Manifest) {
                // An index pulled for other platforms only.
                return Err(OciError::PlatformNotPulled {
                    reference: image.to_string(),
                    arch: arch.to_string(),
                    digest: child.digest,
                });
            }
            follow(layout, &child, arch, image, depth + 1)
        }
        Kind::Manifest => {
            let body: Manifest = parse_json(&blob, &bytes, "manifest")?;
            let config = read_config(layout, &body, image)?;
            let found = Platform {
                architecture: config.architecture.clone(),
                os: config.os.clone(),
                os_version: None,
                variant: config.variant.clone(),
            };
            let os_ok = config.os.is_empty() || config.os == "linux";
            let arch_ok =
                config.architecture.is_empty() || normalize_arch(&config.architecture) == arch;
            if !(os_ok && arch_ok) {
                return Err(OciError::WrongPlatform {
                    reference: image.to_string(),
                    arch: arch.to_string(),
                    found: found.to_string(),
                });
            }
            let mut manifest = desc.clone();
            if manifest.media_type.is_empty() {
                manifest.media_type = json::MT_OCI_MANIFEST.to_string();
            }
            Ok(Chosen {
                manifest,
                body,
                config,
            })
        }
    }
}

fn read_config(layout: &Layout, m: &Manifest, image: &str) -> Result<ConfigFile, OciError> {
    if !json::is_config_type(&m.config.media_type) {
        return Err(OciError::MediaType {
            digest: m.config.digest.clone(),
            image: image.to_string(),
            media_type: m.config.media_type.clone(),
            expected: json::MT_OCI_CONFIG.to_string(),
        });
    }
    layout.read_json(&m.config, image, "image config")
}

/// Picks the child of an index (or the same-named entries of index.json)
/// that runs on `linux/<arch>`.
fn choose(
    layout: &Layout,
    children: &[Descriptor],
    arch: &str,
    image: &str,
) -> Result<Descriptor, OciError> {
    let mut available = BTreeSet::new();
    let mut fits: Vec<(Option<String>, &Descriptor)> = Vec::new();
    let mut nested: Vec<&Descriptor> = Vec::new();
    // The platform of each manifest read (None: an artifact), by digest:
    // an index naming one manifest many times costs one read.
    let mut read: BTreeMap<&str, Option<Platform>> = BTreeMap::new();
    for c in children {
        let platform = match (&c.platform, json::kind_of(&c.media_type)) {
            (Some(p), _) => p.clone(),
            (None, Some(Kind::Manifest)) => {
                if !read.contains_key(c.digest.as_str()) {
                    let m: Manifest = layout.read_json(c, image, "manifest")?;
                    let platform = if json::is_config_type(&m.config.media_type) {
                        let cfg = read_config(layout, &m, image)?;
                        Some(Platform {
                            architecture: cfg.architecture,
                            os: cfg.os,
                            os_version: None,
                            variant: cfg.variant,
                        })
                    } else {
                        None
                    };
                    read.insert(&c.digest, platform);
                }
                match &read[c.digest.as_str()] {
                    Some(p) => p.clone(),
                    // An artifact (signature, SBOM), not an image.
                    None => continue,
                }
            }
            (None, Some(Kind::Index)) => {
                nested.push(c);
                continue;
            }
            // Artifacts (signatures, SBOMs) live in indexes too.
            (None, None) => continue,
        };
        if platform.os == "unknown" {
            continue;
        }
        available.insert(platform.to_string());
        if platform.os == "linux" && normalize_arch(&platform.architecture) == arch {
            fits.push((platform.variant.clone().filter(|v| !v.is_empty()), c));
        }
    }
    if fits.is_empty() && nested.len() == 1 {
        return Ok(nested[0].clone());
    }
    if fits.len() > 1 {
        let preferred = match arch {
            "arm64" => Some("v8"),
            _ => None,
        };
        let best: Vec<_> = fits
            .iter()
            .filter(|(v, _)| v.is_none() || v.as_deref() == preferred)
            .cloned()
            .collect();
        if !best.is_empty() {
            fits = best;
        }
        let mut digests: Vec<&str> = fits.iter().map(|(_, d)| d.digest.as_str()).collect();
        digests.sort();
        digests.dedup();
        if digests.len() > 1 {
            return Err(OciError::Ambiguous {
                reference: image.to_string(),
                dir: layout.root.clone(),
                candidates: digests
                    .iter()
                    .map(|d| format!("linux/{arch} {d}"))
                    .collect(),
            });
        }
    }
    match fits.first() {
        Some((_, d)) => Ok((*d).clone()),
        None => Err(OciError::NoPlatform {
            reference: image.to_string(),
            arch: arch.to_string(),
            available: available.into_iter().collect(),
        }),
    }
}

/// `top` is the descriptor the name points at (an index or the manifest).
fn finish(
    reference: &str,
    name: String,
    top: &Descriptor,
    chosen: Chosen,
) -> Result<ResolvedImage, OciError> {
    let Chosen {
        manifest,
        body,
        config,
    } = chosen;
    let mut layers = Vec::with_capacity(body.layers.len());
    for l in &body.layers {
        parse_digest(&l.digest, reference)?;
        let compression =
            json::layer_compression(&l.media_type).ok_or_else(|| OciError::MediaType {
                digest: l.digest.clone(),
                image: reference.to_string(),
                media_type: l.media_type.clone(),
                expected: "a tar layer (plain, gzip or zstd)".to_string(),
            })?;
        layers.push(LayerDesc {
            digest: l.digest.clone(),
            size: l.size,
            media_type: l.media_type.clone(),
            compression,
        });
    }
    let rc = config.config;
    Ok(ResolvedImage {
        reference: reference.to_string(),
        name,
        index_digest: (top.digest != manifest.digest).then(|| top.digest.clone()),
        manifest_media_type: if manifest.media_type.is_empty() {
            body.media_type
                .clone()
                .unwrap_or_else(|| json::MT_OCI_MANIFEST.to_string())
        } else {
            manifest.media_type
        },
        manifest_digest: manifest.digest,
        manifest_size: manifest.size,
        config_digest: body.config.digest,
        config_size: body.config.size,
        config: ImageConfig {
            labels: rc.labels.unwrap_or_default(),
            entrypoint: rc.entrypoint,
            cmd: rc.cmd,
            env: rc.env,
            working_dir: rc.working_dir.filter(|w| !w.is_empty()),
            user: rc.user.filter(|u| !u.is_empty()),
            architecture: config.architecture,
            os: config.os,
        },
        layers,
        short_tag_match: None,
    })
}
