//! `format: oci` volumes: an image as an OCI image layout in the volume.
//!
//! Takes a volume's image, resolved for one or more platforms, and the
//! layout it came from; gives the tree of an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/ALG/HEX`) for `containers/volumes/NAME/lower/`, as
//! LinuxKit writes for such volumes. Every blob is copied into the content
//! store through its size and digest check; `index.json` lists each
//! platform's manifest with its platform and the image's canonical name, in
//! the order the platforms were given, so the bytes depend only on the blobs
//! and the YAML. Never unpacks a layer and never writes to the host.

use std::collections::BTreeSet;

use anyhow::Context;
use serde_json::json;

use crate::oci::json::{ANNOTATION_REF_NAME, MT_OCI_INDEX, OCI_LAYOUT_VERSION};
use crate::oci::{Layout, ResolvedImage};
use crate::tree::{ContentStore, Entry, Tree};

/// The layout tree for `images` (one per platform, same reference).
pub fn layout_tree(
    layout: &Layout,
    images: &[ResolvedImage],
    store: &ContentStore,
    epoch: i64,
) -> anyhow::Result<Tree> {
    let mut tree = Tree::new();
    tree.insert(b"blobs".to_vec(), Entry::dir(0o755, epoch));
    let mut seen = BTreeSet::new();
    let mut manifests = Vec::new();
    for image in images {
        let blobs = std::iter::once((&image.manifest_digest, image.manifest_size))
            .chain(std::iter::once((&image.config_digest, image.config_size)))
            .chain(image.layers.iter().map(|l| (&l.digest, l.size)));
        for (digest, size) in blobs {
            if !seen.insert(digest.clone()) {
                continue;
            }
            // Opening checks that the digest is well formed before it names a path.
            let mut reader = layout.open_blob(image, digest, size)?;
            let (alg, hex) = digest
                .split_once(':')
                .with_context(|| format!("blob digest {digest:?} of image {}", image.name))?;
            let content = store
                .add_reader(&mut reader, Some(size))
                .with_context(|| format!("copying blob {digest} of image {}", image.name))?;
            reader
                .finish()
                .with_context(|| format!("verifying blob {digest} of image {}", image.name))?;
            let dir = format!("blobs/{alg}");
            tree.insert(dir.clone().into_bytes(), Entry::dir(0o755, epoch));
            tree.insert(
                format!("{dir}/{hex}").into_bytes(),
                Entry::file(content, 0o644, epoch),
            );
        }
        manifests.push(json!({
            "mediaType": image.manifest_media_type,
            "digest": image.manifest_digest,
            "size": image.manifest_size,
            "platform": {
                "architecture": image.config.architecture,
                "os": image.config.os,
            },
            "annotations": { ANNOTATION_REF_NAME: image.name },
        }));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_INDEX,
        "manifests": manifests,
    });
    let marker = json!({ "imageLayoutVersion": OCI_LAYOUT_VERSION });
    for (name, value) in [("index.json", index), ("oci-layout", marker)] {
        let bytes = serde_json::to_vec(&value).context("serialising the volume's layout")?;
        let content = store.add(&bytes).context("storing the volume's layout")?;
        tree.insert(name.as_bytes().to_vec(), Entry::file(content, 0o644, epoch));
    }
    Ok(tree)
}
