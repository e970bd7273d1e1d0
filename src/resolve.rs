//! Spec + layout → [`Plan`]: every image the YAML names, resolved to digests.
//!
//! Takes a [`Spec`], an opened [`Layout`] and a target architecture; gives a
//! [`Plan`] mapping each image reference (as written) to its
//! [`ResolvedImage`]: manifest, config and layer descriptors. Errors carry
//! the YAML position of the reference (`file:line:col: image "x" not found
//! in layout DIR; closest: …`); every reference that fails is reported, not
//! only the first. A reference that matched only a layout entry named by its
//! bare tag (skopeo's `oci:DIR:TAG` form) gives a warning: nothing in such a
//! name says which repository it came from. Never reads layer contents.

use std::collections::BTreeMap;

use crate::oci::{Layout, OciError, ResolvedImage};
use crate::spec::{ImageRef, Pos, Spec};

/// The images of a build, by reference as written in the YAML.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub images: BTreeMap<String, ResolvedImage>,
    /// `file:line:col: …` for each reference that matched by bare tag only.
    pub warnings: Vec<String>,
}

impl Plan {
    /// The resolved image for a reference of the spec.
    pub fn get(&self, r: &ImageRef) -> Option<&ResolvedImage> {
        self.images.get(&r.reference)
    }
}

/// Every image reference of the YAML that the layout cannot satisfy, one
/// per line, in YAML order.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ResolveErrors(pub Vec<ResolveError>);

/// An image reference of the YAML that the layout cannot satisfy.
#[derive(Debug, thiserror::Error)]
#[error("{pos}: {source}")]
pub struct ResolveError {
    pub pos: Pos,
    #[source]
    pub source: Box<OciError>,
}

/// Every image reference in `spec`, in YAML order (kernel, init, onboot,
/// onshutdown, services, volumes), duplicates included.
pub fn image_refs(spec: &Spec) -> Vec<&ImageRef> {
    let mut refs: Vec<&ImageRef> = Vec::new();
    refs.extend(spec.kernel.image.as_ref());
    refs.extend(spec.init.iter());
    for list in [&spec.onboot, &spec.onshutdown, &spec.services] {
        refs.extend(list.iter().map(|i| &i.image));
    }
    refs.extend(spec.volumes.iter().filter_map(|v| v.image.as_ref()));
    refs
}

/// Resolves every image of `spec` for `linux/<arch>`; every failure (in YAML
/// order, each reference once) is returned.
pub fn resolve(spec: &Spec, layout: &Layout, arch: &str) -> Result<Plan, ResolveErrors> {
    let mut plan = Plan::default();
    let mut errors = Vec::new();
    let mut failed = std::collections::BTreeSet::new();
    for r in image_refs(spec) {
        if plan.images.contains_key(&r.reference) || failed.contains(&r.reference) {
            continue;
        }
        match layout.resolve(&r.reference, arch) {
            Ok(image) => {
                if let Some(short) = &image.short_tag_match {
                    plan.warnings.push(format!(
                        "{}: image {:?} matched the layout entry named only {short:?} \
                         (skopeo's `oci:DIR:TAG` form), which does not say which repository \
                         it holds; copy it as `oci:DIR:{}` to name it fully",
                        r.pos, r.reference, image.name
                    ));
                }
                plan.images.insert(r.reference.clone(), image);
            }
            Err(source) => {
                failed.insert(r.reference.clone());
                errors.push(ResolveError {
                    pos: r.pos.clone(),
                    source: Box::new(source),
                });
            }
        }
    }
    if errors.is_empty() {
        Ok(plan)
    } else {
        Err(ResolveErrors(errors))
    }
}
