//! The kernel image's modules: its modules tar (`kernel.tar` unless the
//! spec's `kernel.tar:` names another) unpacked into the tree the initrd
//! gets under `lib/modules/`.
//!
//! With every module the tar is ~400 MB, and unpacking it after the kernel
//! image kept one core idle for seconds. So it is unpacked while the image
//! is: a [`ModulesTap`] sees the tar's bytes as the image's unpacker stores
//! them and feeds them through a pipe to a second unpacker on its own
//! thread. That result is used only when it unpacked without error and
//! the tar it read is the one the finished image holds (same sha256);
//! otherwise (a later layer replaced or removed the tar, or it is broken)
//! [`kernel_modules`] unpacks the tar again from the store, so messages and
//! bytes are those of a plain unpack. Either way the tree is the same.

use std::io::{self, BufReader, Read};
use std::thread::{Scope, ScopedJoinHandle};

use anyhow::Context as _;

use super::UserError;
use crate::assemble::{self, ImageInput};
use crate::spec::Spec;
use crate::tree::{self, Content, ContentStore, Kind, Tree};
use crate::unpack::{Compression, Limits, Tap, Unpacked, Unpacker};

/// The modules tar of an image as it was stored, unpacked.
pub(super) struct TappedModules {
    sha256: [u8; 32],
    unpacked: Unpacked,
}

/// Which image's which file to tap: the kernel image's reference (as
/// written) and its modules tar's name, when the spec has both.
pub(super) fn tap_target(spec: &Spec) -> Option<(&str, String)> {
    let image = spec.kernel.image.as_ref()?;
    let tar = assemble::kernel_file_names(&spec.kernel).tar?;
    Some((&image.reference, tar))
}

/// Unpacks each body of the modules tar on a thread of `scope` while the
/// kernel image's unpacker stores it; see the module doc.
pub(super) struct ModulesTap<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    path: Vec<u8>,
    /// The name of the tar in messages: `IMAGE:TAR`.
    name: String,
    store: &'env ContentStore,
    limits: &'env Limits,
    /// The last body begun: its unpacker, and its content once stored. A
    /// later body replaces an earlier one in the image, so only the last
    /// can be the tar the image ends with.
    run: Option<Run<'scope>>,
}

struct Run<'scope> {
    unpacker: ScopedJoinHandle<'scope, Option<Unpacked>>,
    stored: Option<[u8; 32]>,
}

impl<'scope, 'env> ModulesTap<'scope, 'env> {
    pub(super) fn new(
        scope: &'scope Scope<'scope, 'env>,
        image_name: &str,
        tar_name: &str,
        store: &'env ContentStore,
        limits: &'env Limits,
    ) -> Self {
        ModulesTap {
            scope,
            path: tree::normalize(tar_name.as_bytes()).0,
            name: format!("{image_name}:{tar_name}"),
            store,
            limits,
            run: None,
        }
    }

    /// Wait for the last unpacker; its result when its body was stored and
    /// unpacked without error.
    pub(super) fn finish(self) -> Option<TappedModules> {
        let run = self.run?;
        let unpacked = run.unpacker.join().ok().flatten();
        Some(TappedModules {
            sha256: run.stored?,
            unpacked: unpacked?,
        })
    }
}

impl Tap for ModulesTap<'_, '_> {
    fn path(&self) -> &[u8] {
        &self.path
    }

    fn begin(&mut self) -> Box<dyn io::Write + Send> {
        // The previous body's copy is closed, so its unpacker ends; its
        // result can no longer be used.
        if let Some(previous) = self.run.take() {
            let _ = previous.unpacker.join();
        }
        let (reader, writer) = match io::pipe() {
            Ok(pair) => pair,
            // No pipe: no copy; the tar is unpacked from the store later.
            Err(_) => return Box::new(Refused),
        };
        let (store, limits, name) = (self.store, self.limits, self.name.clone());
        let unpacker = self.scope.spawn(move || {
            let (compression, reader) = sniff(reader).ok()?;
            let mut unpacker = Unpacker::new(store, limits);
            unpacker.apply_layer(&name, compression, reader).ok()?;
            Some(unpacker.finish())
        });
        self.run = Some(Run {
            unpacker,
            stored: None,
        });
        Box::new(writer)
    }

    fn stored(&mut self, content: &Content) {
        if let Some(run) = &mut self.run {
            run.stored = Some(content.sha256());
        }
    }
}

/// A copy nobody reads.
struct Refused;

impl io::Write for Refused {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::other("no pipe for the modules tar"))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The compression of a modules tar, from its first bytes, and the whole
/// stream again.
fn sniff<R: Read>(mut r: R) -> io::Result<(Compression, impl Read)> {
    let mut magic = Vec::with_capacity(4);
    (&mut r).take(4).read_to_end(&mut magic)?;
    let compression = match &magic[..] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::None,
    };
    let stream = io::Cursor::new(magic).chain(BufReader::with_capacity(256 * 1024, r));
    Ok((compression, stream))
}

/// The kernel image's modules tar unpacked into a tree, if the spec has a
/// kernel and a tar: taken from `tapped` when that unpacked the tar the
/// image holds, else unpacked from the store now.
pub(super) fn kernel_modules(
    spec: &Spec,
    images: &std::collections::BTreeMap<String, ImageInput>,
    tapped: Option<TappedModules>,
    store: &ContentStore,
    limits: &Limits,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Option<Tree>> {
    let Some(image_ref) = &spec.kernel.image else {
        return Ok(None);
    };
    let Some(tar_name) = assemble::kernel_file_names(&spec.kernel).tar else {
        return Ok(None);
    };
    let Some(image) = images.get(&image_ref.reference) else {
        return Ok(None);
    };
    let key = tree::normalize(tar_name.as_bytes()).0;
    let content = match image.tree.get(&key).map(|e| &e.kind) {
        Some(Kind::File(c)) => c.clone(),
        _ => {
            return Err(UserError(format!(
                "{}: kernel image {} has no file `{tar_name}` (set `kernel.tar: none` if it has no modules)",
                image_ref.pos, image.canonical
            ))
            .into())
        }
    };
    if let Some(t) = tapped.filter(|t| t.sha256 == content.sha256()) {
        warnings.extend(t.unpacked.warnings);
        return Ok(Some(t.unpacked.tree));
    }
    // The tar streams out of the store; its first bytes say whether it is
    // compressed.
    let (compression, reader) = sniff(store.reader(&content))?;
    let mut unpacker = Unpacker::new(store, limits);
    unpacker
        .apply_layer(
            &format!("{}:{tar_name}", image.canonical),
            compression,
            reader,
        )
        .with_context(|| {
            format!(
                "{}: unpacking {tar_name} of kernel image {}",
                image_ref.pos, image.canonical
            )
        })?;
    let Unpacked { tree, warnings: w } = unpacker.finish();
    warnings.extend(w);
    Ok(Some(tree))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_path(path).unwrap();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// Unpack `layer` (uncompressed) as the kernel image, tapping
    /// `kernel.tar`: the image tree and the tapped result.
    fn unpack_tapped(store: &ContentStore, layer: &[u8]) -> (Tree, Option<TappedModules>) {
        let limits = Limits::default();
        let mut unpacker = Unpacker::new(store, &limits);
        let tapped = std::thread::scope(|s| {
            let mut tap = ModulesTap::new(s, "kiln.test/kernel:1", "kernel.tar", store, &limits);
            unpacker
                .apply_layer_tapped("layer", Compression::None, layer, Some(&mut tap))
                .unwrap();
            tap.finish()
        });
        (unpacker.finish().tree, tapped)
    }

    #[test]
    fn the_tap_unpacks_the_tar_as_the_image_stores_it() {
        let store = ContentStore::new().unwrap();
        let module = vec![7u8; 300_000];
        let modules = tar(&[("lib/modules/6.1/m.ko", &module)]);
        let layer = tar(&[("kernel", b"MZ"), ("kernel.tar", &modules)]);
        let (image, tapped) = unpack_tapped(&store, &layer);
        let Some(Kind::File(stored)) = image.get(b"kernel.tar").map(|e| &e.kind) else {
            panic!("kernel.tar not stored in the image tree");
        };
        assert_eq!(store.read(stored).unwrap(), modules);
        let tapped = tapped.expect("a result for the tar");
        assert_eq!(tapped.sha256, stored.sha256());
        let Some(Kind::File(m)) = tapped
            .unpacked
            .tree
            .get(b"lib/modules/6.1/m.ko")
            .map(|e| &e.kind)
        else {
            panic!("the module is not in the tapped tree");
        };
        assert_eq!(store.read(m).unwrap(), module);
    }

    #[test]
    fn only_the_last_body_counts_and_a_broken_one_gives_nothing() {
        let store = ContentStore::new().unwrap();
        let good = tar(&[("lib/modules/6.1/m.ko", &[1u8; 2000])]);
        let layer = tar(&[("kernel.tar", &good), ("kernel.tar", &good[..1000])]);
        let (_, tapped) = unpack_tapped(&store, &layer);
        assert!(tapped.is_none());
    }
}
