//! The boot initrd of `kernel+squashfs` (`NAME-root-initrd.img`): just
//! enough of the image to mount the squashfs as `/`.
//!
//! Takes the assembled [`Tree`] (its `/init`, which is kiln-init from the
//! spec's init images, and its `lib/modules/<release>/` from the kernel
//! image's modules tar) and gives a much smaller tree holding `/init` and,
//! for every release with a `modules.dep`, that `modules.dep`, its
//! `modules.builtin` if present and the `.ko` files of [`MODULES`] with
//! their dependency closure as `modules.dep` lists it. That is the
//! contract of kiln-init's `rootfs` module: booted with
//! `root=/dev/vda rootfstype=squashfs` and `/` still the initramfs, it loads
//! those modules, mounts the device read-only under a tmpfs overlay and
//! executes the root's own `/init`. Entries keep the metadata they have in
//! the assembled tree (directories missing there get the build epoch), so
//! the initrd is a function of the image like every other output. Never
//! reads the host; a kernel without `modules.dep` (drivers built in, as
//! LinuxKit's) gives an initrd with `/init` alone.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use anyhow::Context;

use super::UserError;
use crate::output::compress::{Compression, Compressor};
use crate::output::cpio::write_cpio;
use crate::tree::{self, Content, ContentStore, Entry, Kind, Tree};

/// The modules kiln-init loads for the roots kiln builds, by name: the
/// drivers of `/dev/vd*` and `/dev/sr*` (its `rootfs::device_modules`),
/// the filesystems `squashfs` and `iso9660` (`isofs`), and `overlay`.
pub const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_mmio",
    "virtio_blk",
    "ata_piix",
    "ahci",
    "virtio_scsi",
    "sr_mod",
    "squashfs",
    "isofs",
    "overlay",
];

/// The modules a squashfs on a virtio disk cannot boot without. When the
/// kernel ships `modules.builtin`, each must be a module or built in.
const REQUIRED: &[&str] = &["virtio_blk", "squashfs", "overlay"];

const MODULES_DIR: &[u8] = b"lib/modules";

/// The boot initrd's tree, taken from the assembled `root`.
pub fn tree(root: &Tree, store: &ContentStore, epoch: i64) -> anyhow::Result<Tree> {
    let mut out = Tree::new();
    let init = regular_file(root, b"init").ok_or_else(|| {
        UserError(
            "kernel+squashfs: the image has no regular file /init \
             (the init images must provide kiln-init at /init)"
                .to_owned(),
        )
    })?;
    out.insert(b"init".to_vec(), init);

    for release in releases(root) {
        let dir = tree::join(MODULES_DIR, &release);
        let show = String::from_utf8_lossy(&dir).into_owned();
        let dep_path = tree::join(&dir, b"modules.dep");
        let builtin_path = tree::join(&dir, b"modules.builtin");
        let dep = read_text(root, store, &dep_path)?.unwrap_or_default();
        let builtin = read_text(root, store, &builtin_path)?;
        let deps = Deps::parse(&dep).with_context(|| format!("reading /{show}/modules.dep"))?;
        if let Some(builtin) = &builtin {
            let built_in = builtin_names(builtin);
            for name in REQUIRED {
                if !deps.by_name.contains_key(*name) && !built_in.contains(*name) {
                    return Err(UserError(format!(
                        "kernel+squashfs: module {name} is neither in /{show}/modules.dep \
                         nor in modules.builtin; the kernel cannot mount a squashfs root"
                    ))
                    .into());
                }
            }
        }
        let mut files = vec![dep_path];
        if builtin.is_some() {
            files.push(builtin_path);
        }
        files.extend(
            deps.closure(MODULES)
                .iter()
                .map(|p| tree::join(&dir, p.as_bytes())),
        );
        for path in files {
            let entry = regular_file(root, &path).ok_or_else(|| {
                UserError(format!(
                    "kernel+squashfs: /{} is listed in /{show}/modules.dep but is not a \
                     regular file of the image",
                    String::from_utf8_lossy(&path)
                ))
            })?;
            copy_parents(root, &mut out, &path, epoch);
            out.insert(path, entry);
        }
    }
    Ok(out)
}

/// Write `tree` as a newc cpio compressed with `compression` into `w`,
/// after the microcode cpio `ucode` if there is one (as the kernel wants
/// it: uncompressed, first).
pub fn write(
    tree: &Tree,
    ucode: Option<&Content>,
    store: &ContentStore,
    compression: Compression,
    threads: usize,
    mut w: impl Write,
) -> anyhow::Result<()> {
    if let Some(ucode) = ucode {
        store
            .copy_to(ucode, &mut w)
            .context("writing the microcode cpio")?;
    }
    let mut c = Compressor::new(compression, w, threads)?;
    write_cpio(tree, store, &mut c).context("writing the root initrd cpio")?;
    c.finish()?;
    Ok(())
}

/// The releases under `lib/modules` that have a `modules.dep`, sorted.
fn releases(root: &Tree) -> Vec<Vec<u8>> {
    root.children_of(MODULES_DIR)
        .filter_map(|(path, _)| {
            let rest = path.strip_prefix(MODULES_DIR)?.strip_prefix(b"/")?;
            let release = rest.strip_suffix(b"/modules.dep")?;
            (!release.contains(&b'/')).then(|| release.to_vec())
        })
        .collect()
}

/// The bytes of a regular file (following a hard link), if `path` is one.
fn file_content(root: &Tree, path: &[u8]) -> Option<Content> {
    match &root.get(path)?.kind {
        Kind::File(c) => Some(c.clone()),
        Kind::Hardlink(target) => match &root.get(target)?.kind {
            Kind::File(c) => Some(c.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The entry at `path` if it is a regular file, a hard link resolved to
/// its bytes (the initrd holds one member of the group).
fn regular_file(root: &Tree, path: &[u8]) -> Option<Entry> {
    let mut entry = root.get(path)?.clone();
    entry.kind = Kind::File(file_content(root, path)?);
    Some(entry)
}

/// The most bytes of `modules.dep` or `modules.builtin` read into memory.
const MAX_TEXT: u64 = 16 << 20;

/// The text of a regular file, `None` if there is none at `path`; files
/// over [`MAX_TEXT`] are refused rather than read.
fn read_text(root: &Tree, store: &ContentStore, path: &[u8]) -> anyhow::Result<Option<String>> {
    let Some(content) = file_content(root, path) else {
        return Ok(None);
    };
    if content.len() > MAX_TEXT {
        return Err(UserError(format!(
            "/{} is {} bytes; kiln reads at most {MAX_TEXT} bytes of a module list              (Debian's modules.dep for every module is under 1 MB)",
            String::from_utf8_lossy(path),
            content.len()
        ))
        .into());
    }
    let bytes = store
        .read(&content)
        .with_context(|| format!("reading /{}", String::from_utf8_lossy(path)))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Add every ancestor directory of `path` to `out`, with the metadata it
/// has in `root` (a directory there) or mode 0755 at `epoch`.
fn copy_parents(root: &Tree, out: &mut Tree, path: &[u8], epoch: i64) {
    let mut dir = tree::parent(path);
    let mut missing = Vec::new();
    while let Some(d) = dir {
        if out.get(d).is_some() {
            break;
        }
        missing.push(d);
        dir = tree::parent(d);
    }
    for d in missing.into_iter().rev() {
        let entry = match root.get(d) {
            Some(e) if e.is_dir() => e.clone(),
            _ => Entry::dir(0o755, epoch),
        };
        out.insert(d.to_vec(), entry);
    }
}

/// A module's name as the kernel compares it: the base name without
/// `.ko*`, `-` as `_`.
fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.split(".ko").next().unwrap_or(base).replace('-', "_")
}

/// The names listed in `modules.builtin`.
fn builtin_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(module_name)
        .collect()
}

/// `modules.dep`: module name → (path, the paths it depends on).
#[derive(Debug, Default)]
struct Deps {
    by_name: BTreeMap<String, (String, Vec<String>)>,
}

impl Deps {
    /// Parse `modules.dep`; every path must be relative and stay inside the
    /// release directory. Lines without a `:` are skipped, as depmod's
    /// readers do.
    fn parse(text: &str) -> anyhow::Result<Deps> {
        let mut by_name = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let Some((path, deps)) = line.split_once(':') else {
                continue;
            };
            let path = path.trim();
            if path.is_empty() {
                continue;
            }
            let check = |p: &str| -> anyhow::Result<String> {
                let (norm, suspicious) = tree::normalize(p.as_bytes());
                if suspicious || p.starts_with('/') || norm.is_empty() {
                    return Err(UserError(format!(
                        "line {}: module path {p:?} is not relative to the release directory",
                        i + 1
                    ))
                    .into());
                }
                Ok(String::from_utf8_lossy(&norm).into_owned())
            };
            let deps = deps
                .split_whitespace()
                .map(check)
                .collect::<anyhow::Result<Vec<_>>>()?;
            by_name.insert(module_name(path), (check(path)?, deps));
        }
        Ok(Deps { by_name })
    }

    /// The module files `names` need: each one's path and its dependencies'
    /// (recursively), sorted. Names `modules.dep` does not know (built in,
    /// or absent from this kernel) contribute nothing.
    fn closure(&self, names: &[&str]) -> BTreeSet<String> {
        let mut paths = BTreeSet::new();
        let mut todo: Vec<String> = names.iter().map(|n| module_name(n)).collect();
        let mut seen = BTreeSet::new();
        while let Some(name) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some((path, deps)) = self.by_name.get(&name) else {
                continue;
            };
            paths.insert(path.clone());
            for dep in deps {
                paths.insert(dep.clone());
                todo.push(module_name(dep));
            }
        }
        paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/squashfs/squashfs.ko:
kernel/fs/overlayfs/overlay.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko
kernel/fs/isofs/isofs.ko: kernel/drivers/cdrom/cdrom.ko
kernel/drivers/cdrom/cdrom.ko:
";

    struct Fixture {
        store: ContentStore,
        tree: Tree,
    }

    impl Fixture {
        fn new() -> Fixture {
            let store = ContentStore::new().expect("store");
            let mut f = Fixture {
                store,
                tree: Tree::new(),
            };
            f.file("init", "KILN-INIT", 0o755);
            f.file("bin/sh", "SHELL", 0o755);
            f.file("containers/services/getty/rootfs/bin/getty", "G", 0o755);
            f
        }

        fn file(&mut self, path: &str, text: &str, mode: u32) {
            let c = self.store.add(text.as_bytes()).expect("add");
            self.tree.insert_with_parents(
                path.as_bytes().to_vec(),
                Entry::file(c, mode, 7),
                0o755,
                7,
            );
        }

        fn kernel(&mut self, dep: &str, builtin: Option<&str>) {
            let dir = "lib/modules/6.1.0-test";
            self.file(&format!("{dir}/modules.dep"), dep, 0o644);
            self.file(&format!("{dir}/modules.order"), "", 0o644);
            if let Some(b) = builtin {
                self.file(&format!("{dir}/modules.builtin"), b, 0o644);
            }
            for line in dep.lines() {
                let path = line.split(':').next().unwrap_or("");
                self.file(&format!("{dir}/{path}"), path, 0o644);
            }
        }

        fn paths(&self) -> anyhow::Result<Vec<String>> {
            let t = tree(&self.tree, &self.store, 1)?;
            Ok(t.iter()
                .filter(|(_, e)| !e.is_dir())
                .map(|(p, _)| String::from_utf8_lossy(p).into_owned())
                .collect())
        }
    }

    #[test]
    fn takes_init_and_the_closure_of_the_root_modules_only() {
        let mut f = Fixture::new();
        f.kernel(DEP, Some("kernel/drivers/virtio/virtio_pci.ko\n"));
        let r = "lib/modules/6.1.0-test";
        assert_eq!(
            f.paths().expect("tree"),
            [
                "init".to_owned(),
                format!("{r}/kernel/drivers/block/virtio_blk.ko"),
                format!("{r}/kernel/drivers/cdrom/cdrom.ko"),
                format!("{r}/kernel/drivers/virtio/virtio.ko"),
                format!("{r}/kernel/drivers/virtio/virtio_ring.ko"),
                format!("{r}/kernel/fs/isofs/isofs.ko"),
                format!("{r}/kernel/fs/overlayfs/overlay.ko"),
                format!("{r}/kernel/fs/squashfs/squashfs.ko"),
                format!("{r}/modules.builtin"),
                format!("{r}/modules.dep"),
            ]
        );
    }

    #[test]
    fn keeps_metadata_and_creates_every_parent() {
        let mut f = Fixture::new();
        f.kernel(DEP, None);
        let t = tree(&f.tree, &f.store, 1).expect("tree");
        assert_eq!(t.get(b"init").map(|e| (e.mode, e.mtime)), Some((0o755, 7)));
        for (path, _) in t.iter() {
            if let Some(p) = tree::parent(path) {
                assert!(
                    t.get(p).is_some_and(Entry::is_dir),
                    "no parent for {path:?}"
                );
            }
        }
    }

    #[test]
    fn a_kernel_without_modules_gives_init_alone() {
        let f = Fixture::new();
        assert_eq!(f.paths().expect("tree"), ["init"]);
    }

    #[test]
    fn missing_init_is_an_error() {
        let mut f = Fixture::new();
        f.tree.remove_subtree(b"init");
        let err = f.paths().expect_err("no init");
        assert!(
            format!("{err:#}").contains("no regular file /init"),
            "{err:#}"
        );
    }

    #[test]
    fn a_listed_module_missing_from_the_image_is_an_error() {
        let mut f = Fixture::new();
        f.kernel(DEP, None);
        f.tree
            .remove_subtree(b"lib/modules/6.1.0-test/kernel/drivers/cdrom/cdrom.ko");
        let err = f.paths().expect_err("missing module");
        assert!(format!("{err:#}").contains("cdrom.ko is listed"), "{err:#}");
    }

    #[test]
    fn a_kernel_that_cannot_mount_squashfs_is_an_error() {
        let mut f = Fixture::new();
        let dep: String = DEP
            .lines()
            .filter(|l| !l.contains("squashfs"))
            .map(|l| format!("{l}\n"))
            .collect();
        f.kernel(&dep, Some("kernel/fs/ext4/ext4.ko\n"));
        let err = f.paths().expect_err("no squashfs");
        assert!(format!("{err:#}").contains("module squashfs"), "{err:#}");
        // Built in is as good as a module.
        let mut f = Fixture::new();
        f.kernel(&dep, Some("kernel/fs/squashfs/squashfs.ko\n"));
        assert!(f.paths().is_ok());
    }

    #[test]
    fn module_paths_must_stay_in_the_release_directory() {
        let mut f = Fixture::new();
        f.kernel(
            "kernel/fs/overlayfs/overlay.ko: ../../../etc/shadow\n",
            None,
        );
        let err = f.paths().expect_err("escape");
        assert!(format!("{err:#}").contains("line 1"), "{err:#}");
    }

    #[test]
    fn names_compare_with_dashes_as_underscores() {
        let d = Deps::parse("kernel/crypto/crc32c-intel.ko:\n").expect("parse");
        assert_eq!(
            d.closure(&["crc32c_intel"]).into_iter().collect::<Vec<_>>(),
            ["kernel/crypto/crc32c-intel.ko"]
        );
    }

    #[test]
    fn modules_cover_what_kiln_init_loads_for_our_roots() {
        use kiln_init::rootfs::{device_modules, fs_module};
        let mut wanted: Vec<&str> = device_modules("/dev/vda").to_vec();
        wanted.extend(device_modules("/dev/sr0"));
        wanted.extend([fs_module("squashfs"), fs_module("iso9660"), "overlay"]);
        for m in wanted {
            assert!(
                MODULES.contains(&m),
                "{m} is loaded by kiln-init but not shipped"
            );
        }
    }
}
