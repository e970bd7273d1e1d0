//! (temporary stub until the assemble stage lands)
use std::collections::BTreeMap;

use crate::spec::{self, Spec};
use crate::tree::{Content, ContentStore, Tree};

pub struct ImageDefaults {
    pub label: Option<spec::Image>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub working_dir: Option<String>,
}
pub struct ImageInput {
    pub tree: Tree,
    pub reference: String,
    pub canonical: String,
    pub defaults: ImageDefaults,
}
pub struct Inputs<'a> {
    pub spec: &'a Spec,
    pub images: &'a BTreeMap<String, ImageInput>,
    pub kernel_modules: Option<Tree>,
    pub store: &'a ContentStore,
    pub epoch: i64,
}
pub struct Assembled {
    pub tree: Tree,
    pub kernel: Option<Content>,
    pub cmdline: String,
    pub ucode: Option<Content>,
    pub warnings: Vec<String>,
}
pub struct KernelFiles {
    pub binary: String,
    pub tar: Option<String>,
    pub ucode: Option<String>,
}
#[derive(Debug, thiserror::Error)]
#[error("assemble")]
pub struct AssembleError;
pub fn kernel_file_names(k: &spec::Kernel) -> KernelFiles {
    KernelFiles {
        binary: k.binary.clone().unwrap_or("kernel".into()),
        tar: match k.tar.as_deref() {
            None => Some("kernel.tar".into()),
            Some("none") | Some("") => None,
            Some(t) => Some(t.into()),
        },
        ucode: k.ucode.clone(),
    }
}
pub fn assemble(inputs: &Inputs) -> Result<Assembled, AssembleError> {
    let mut tree = inputs.kernel_modules.clone().unwrap_or_default();
    for i in &inputs.spec.init {
        tree.graft(b"", inputs.images[&i.reference].tree.clone());
    }
    let kernel = inputs.spec.kernel.image.as_ref().and_then(|k| {
        match &inputs.images[&k.reference].tree.get(b"kernel")?.kind {
            crate::tree::Kind::File(c) => Some(c.clone()),
            _ => None,
        }
    });
    Ok(Assembled {
        tree,
        kernel,
        cmdline: inputs.spec.kernel.cmdline.clone().unwrap_or_default(),
        ucode: None,
        warnings: vec![],
    })
}
