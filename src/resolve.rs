//! Spec + layout → [`Plan`]: every image the YAML names, resolved to digests.
//!
//! Takes a [`Spec`], an opened [`Layout`] and a target architecture; gives a
//! [`Plan`] mapping each image reference (as written) to its
//! [`ResolvedImage`]: manifest, config and layer descriptors. Errors carry
//! the YAML position of the reference (`file:line:col: image "x" not found
//! in layout DIR; closest: …`). Never reads layer contents.

use std::collections::BTreeMap;

use crate::oci::{Layout, OciError, ResolvedImage};
use crate::spec::{ImageRef, Pos, Spec};

/// The images of a build, by reference as written in the YAML.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub images: BTreeMap<String, ResolvedImage>,
}

impl Plan {
    /// The resolved image for a reference of the spec.
    pub fn get(&self, r: &ImageRef) -> Option<&ResolvedImage> {
        self.images.get(&r.reference)
    }
}

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

/// Resolves every image of `spec` for `linux/<arch>`; the first failure
/// (in YAML order) is returned.
pub fn resolve(spec: &Spec, layout: &Layout, arch: &str) -> Result<Plan, ResolveError> {
    let mut plan = Plan::default();
    for r in image_refs(spec) {
        if plan.images.contains_key(&r.reference) {
            continue;
        }
        let image = layout
            .resolve(&r.reference, arch)
            .map_err(|source| ResolveError {
                pos: r.pos.clone(),
                source: Box::new(source),
            })?;
        plan.images.insert(r.reference.clone(), image);
    }
    Ok(plan)
}
