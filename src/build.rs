//! The build driver: runs spec → resolve → unpack → assemble → output for
//! the CLI, writes `NAME.sha256`, and classifies errors into exit codes.
//!
//! Takes [`BuildOptions`] (everything a build depends on, read from the
//! environment once by the caller); gives the committed outputs. Never
//! reads the environment itself beyond what the options carry, and never
//! leaves a partial output under a final name (see [`crate::atomic`]).

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::Context;

mod disk;
mod modules;
mod ocivolume;
mod rootinitrd;

use crate::assemble::{self, Assembled, ImageDefaults, ImageInput, Inputs};
use crate::atomic::{AtomicFile, Written};
use crate::golden::{self, Sums};
use crate::oci::{Layout, ResolvedImage};
use crate::output::compress::{Compression as OutputCompression, Compressor};
use crate::output::cpio::write_cpio;
use crate::output::tar::{write_tar, write_tar_files, TarFile};
use crate::resolve::Plan;
use crate::spec::Spec;
use crate::tree::{ContentStore, Entry, Tree};
use crate::unpack::{Limits, Unpacked, Unpacker};

/// Output formats of this stage of the project (LinuxKit's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Format {
    /// NAME-kernel, NAME-initrd.img, NAME-cmdline
    #[value(name = "kernel+initrd")]
    KernelInitrd,
    /// NAME-initrd.tar holding kernel, initrd.img and cmdline
    #[value(name = "tar-kernel-initrd")]
    TarKernelInitrd,
    /// NAME.tar: the image filesystem as a tar
    #[value(name = "tar")]
    Tar,
    /// NAME.docker: the filesystem and a Dockerfile, a `docker build` context
    #[value(name = "docker")]
    Docker,
    /// NAME-kernel, NAME-cmdline and NAME-squashfs.img (the filesystem as squashfs)
    #[value(name = "kernel+squashfs")]
    KernelSquashfs,
    /// NAME-kernel, NAME-cmdline, NAME.iso (the filesystem as ISO 9660 + Rock Ridge) and NAME-root-initrd.img
    #[value(name = "kernel+iso")]
    KernelIso,
    /// NAME.efi: a Unified Kernel Image (systemd-stub + cmdline + initrd + kernel)
    #[value(name = "uki")]
    Uki,
    /// NAME.iso: ISO 9660 booting BIOS through ISOLINUX (CD, and disk via an isohybrid MBR)
    #[value(name = "iso-bios")]
    IsoBios,
    /// NAME-efi.iso: one ISO booting BIOS (ISOLINUX) and UEFI (ESP with the UKI), CD or disk
    #[value(name = "iso-efi")]
    IsoEfi,
    /// NAME-efi-initrd.iso: ISO 9660 booting UEFI only: El Torito EFI entry → ESP with the UKI
    #[value(name = "iso-efi-initrd")]
    IsoEfiInitrd,
    /// NAME-efi.img: GPT disk, FAT32 ESP with the UKI as \EFI\BOOT\BOOTX64.EFI
    #[value(name = "raw-efi")]
    RawEfi,
    /// NAME-bios.img: MBR disk, active FAT32 partition with SYSLINUX, kernel and initrd
    #[value(name = "raw-bios")]
    RawBios,
    /// NAME-efi.qcow2: the raw-efi disk as qcow2
    #[value(name = "qcow2-efi")]
    Qcow2Efi,
    /// NAME.qcow2: the raw-bios disk as qcow2
    #[value(name = "qcow2-bios")]
    Qcow2Bios,
    /// NAME.vhd: the raw-efi disk as a fixed VHD
    #[value(name = "vhd")]
    Vhd,
    /// NAME-dynamic.vhd: the raw-efi disk as a dynamic VHD
    #[value(name = "dynamic-vhd")]
    DynamicVhd,
    /// NAME.vmdk: the raw-efi disk as a stream-optimized VMDK
    #[value(name = "vmdk")]
    Vmdk,
    /// NAME.raw: the raw-efi disk, for AWS import
    #[value(name = "aws")]
    Aws,
    /// NAME.img.tar.gz: the raw-efi disk as disk.raw in a tar.gz, for GCE
    #[value(name = "gcp")]
    Gcp,
}

/// Everything a build depends on.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub files: Vec<PathBuf>,
    pub formats: Vec<Format>,
    pub out_dir: PathBuf,
    pub name: String,
    /// The layout images are read from; `more_layouts` are searched after
    /// it, in order (see [`Layout::open_search`]).
    pub layout: PathBuf,
    pub more_layouts: Vec<PathBuf>,
    pub arch: String,
    pub compression: OutputCompression,
    /// `SOURCE_DATE_EPOCH`, or [`crate::DEFAULT_EPOCH`].
    pub epoch: i64,
    /// Worker threads for compression; the bytes never depend on it.
    pub threads: usize,
    pub limits: Limits,
    /// Disk size for the disk formats; `None` = the smallest that fits.
    pub size: Option<u64>,
    /// Appended to the kernel command line.
    pub cmdline_append: Option<String>,
    /// `--verify-key`: every image needs a valid signature by one of these.
    pub verify_keys: Vec<PathBuf>,
    /// `--locked`: the lock file every image must match.
    pub locked: Option<PathBuf>,
    /// `--sbom`: where the document goes.
    pub sbom: Sbom,
    /// `--sbom-format`.
    pub sbom_format: crate::sbom::Format,
    /// `--sbom-files`: list every regular file of the image, not only the
    /// spec's `files:`.
    pub sbom_files: bool,
}

/// Where a build's SBOM goes (`--sbom`, `--no-sbom-in-image`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sbom {
    /// No SBOM (the default).
    #[default]
    None,
    /// `NAME.spdx.json` beside the outputs and `/sbom.spdx.json` in the image.
    FileAndImage,
    /// `NAME.spdx.json` only.
    FileOnly,
}

impl BuildOptions {
    /// Every layout the build reads, in search order.
    pub fn layouts(&self) -> Vec<PathBuf> {
        std::iter::once(self.layout.clone())
            .chain(self.more_layouts.iter().cloned())
            .collect()
    }
}

/// What a build wrote.
#[derive(Clone, Debug, Default)]
pub struct BuildReport {
    pub outputs: Vec<Written>,
    pub warnings: Vec<String>,
    /// What went in: every image of the spec, by reference as written, with
    /// the digests a lock file would pin.
    pub images: BTreeMap<String, crate::lock::Pinned>,
}

/// The images of `plan` as [`BuildReport::images`].
fn images_used(plan: &Plan, arch: &str) -> BTreeMap<String, crate::lock::Pinned> {
    crate::lock::from_plan(plan, arch, &BTreeMap::new()).images
}

impl BuildReport {
    /// The outputs as file name → sha256 (the `NAME.sha256` file excluded).
    pub fn sums(&self) -> Sums {
        self.outputs
            .iter()
            .filter(|w| w.path.extension().is_none_or(|e| e != "sha256"))
            .map(|w| (file_name(&w.path), w.sha256.clone()))
            .collect()
    }

    pub fn to_json(&self) -> String {
        let outputs: Vec<_> = self
            .outputs
            .iter()
            .map(|w| serde_json::json!({"path": w.path, "size": w.len, "sha256": w.sha256}))
            .collect();
        let images: Vec<_> = self
            .images
            .iter()
            .map(|(reference, i)| {
                serde_json::json!({
                    "reference": reference,
                    "name": i.name,
                    "manifest": i.manifest,
                    "config": i.config,
                    "layers": i.layers,
                })
            })
            .collect();
        serde_json::json!({"outputs": outputs, "warnings": self.warnings, "images": images})
            .to_string()
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Outputs differ from the golden file (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("{} output(s) differ from {}:\n  {}", .mismatches.len(), .golden.display(), .mismatches.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("\n  "))]
pub struct VerifyFailed {
    pub golden: PathBuf,
    pub mismatches: Vec<golden::Mismatch>,
}

/// A problem with what the user gave us (exit code 1), without a more
/// specific error type.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

/// A problem of the machine, not of the input (exit 2): a directory kiln
/// writes in is full, over a quota or a file-size limit, or unusable.
/// Names the directory.
#[derive(Debug, thiserror::Error)]
#[error("{doing} in {}: {source}", dir.display())]
pub struct EnvironmentError {
    pub doing: &'static str,
    pub dir: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// `e` while `doing` something in `dir`, as an [`EnvironmentError`].
pub(crate) fn environment(e: std::io::Error, doing: &'static str, dir: &Path) -> anyhow::Error {
    EnvironmentError {
        doing,
        dir: dir.to_owned(),
        source: e,
    }
    .into()
}

/// Whether `e` says the disk (or a quota or file-size limit) is full: the
/// machine's problem, whatever input was being read at the time.
pub fn is_out_of_space(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
    matches!(e.kind(), StorageFull | QuotaExceeded | FileTooLarge)
}

/// `err`, said to have happened in `dir` when it is a full disk (or a
/// quota or file-size limit) that no inner error already placed.
fn out_of_space_in(err: anyhow::Error, doing: &'static str, dir: &Path) -> anyhow::Error {
    let placed = err.chain().any(|c| {
        c.is::<EnvironmentError>()
            || c.downcast_ref::<crate::unpack::UnpackError>()
                .is_some_and(|e| e.is_environment())
    });
    let full = err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(is_out_of_space)
    });
    if full && !placed {
        err.context(format!("{doing} in {}", dir.display()))
    } else {
        err
    }
}

/// Compare `sums` with the golden file; `VerifyFailed` on any difference.
pub fn check_golden(sums: &Sums, golden_path: &Path) -> anyhow::Result<()> {
    let expected = golden::read(golden_path)?;
    let mismatches = golden::compare(sums, &expected);
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(VerifyFailed {
            golden: golden_path.to_owned(),
            mismatches,
        }
        .into())
    }
}

/// The exit code for an error: 1 bad input, 3 verification failed, 2 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let environment = err.chain().any(|c| {
        c.is::<EnvironmentError>()
            || c.downcast_ref::<std::io::Error>()
                .is_some_and(is_out_of_space)
            || c.downcast_ref::<crate::unpack::UnpackError>()
                .is_some_and(|e| e.is_environment())
    });
    if environment {
        return 2;
    }
    for cause in err.chain() {
        if cause.is::<VerifyFailed>() {
            return 3;
        }
        if let Some(e) = cause.downcast_ref::<crate::trust::TrustError>() {
            return if e.is_verification_failure() { 3 } else { 1 };
        }
        if let Some(e) = cause.downcast_ref::<crate::lock::LockError>() {
            return if e.is_verification_failure() { 3 } else { 1 };
        }
        if let Some(e) = cause.downcast_ref::<crate::layout::LayoutError>() {
            return if e.is_verification_failure() { 3 } else { 1 };
        }
        if cause.is::<crate::spec::SpecError>()
            || cause.is::<UserError>()
            || cause.is::<crate::golden::GoldenError>()
            || cause.is::<crate::oci::OciError>()
            || cause.is::<crate::resolve::ResolveError>()
            || cause.is::<crate::resolve::ResolveErrors>()
            || cause.is::<crate::unpack::UnpackError>()
            || cause.is::<crate::assemble::AssembleError>()
            || cause.is::<crate::inspect::InspectError>()
            || cause.is::<crate::run::RunError>()
            || cause.is::<crate::fetch::FetchError>()
        {
            return 1;
        }
    }
    2
}

/// The one-line message for an error and its causes, `outer: cause: …`,
/// leaving out a cause whose text the message already ends with (many
/// errors quote their source in their own text).
pub fn error_message(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// `text` safe for a terminal: control characters (from tar headers, YAML
/// keys, file names) are shown as `\u{..}` escapes instead of being sent as
/// escape sequences; line breaks between messages stay.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Creates the output directory and checks that a file can be made in it: a
/// directory that cannot be used is bad input (exit 1) naming it.
fn output_dir_ready(dir: &Path) -> anyhow::Result<()> {
    let bad = |what: &str, e: std::io::Error| {
        UserError(format!("output directory {}: {what}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| bad("cannot create it", e))?;
    tempfile::tempfile_in(dir).map_err(|e| bad("cannot write in it", e))?;
    // Complete a commit a killed build left, remove its temp files.
    crate::atomic::recover(dir).map_err(|e| environment(e, "recovering", dir))?;
    Ok(())
}

/// `SOURCE_DATE_EPOCH` as seconds, or the fixed default when unset or empty.
pub fn source_date_epoch() -> anyhow::Result<i64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|&t| t >= 0)
            .ok_or_else(|| {
                UserError(format!(
                    "SOURCE_DATE_EPOCH={v:?} is not a non-negative integer"
                ))
                .into()
            }),
        _ => Ok(crate::DEFAULT_EPOCH),
    }
}

/// `KILN_THREADS`, or the number of CPUs.
pub fn threads_from_env() -> anyhow::Result<usize> {
    match std::env::var("KILN_THREADS") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| {
                UserError(format!("KILN_THREADS={v:?} is not a positive integer")).into()
            }),
        _ => Ok(std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)),
    }
}

/// Check the YAML and that every image it names resolves in the layout
/// (and, as for a build, matches `locked` and is signed by one of `verify_keys`).
/// `layouts` are searched in order (see [`Layout::open_search`]).
pub fn validate(
    files: &[PathBuf],
    layouts: &[PathBuf],
    arch: &str,
    verify_keys: &[PathBuf],
    locked: Option<&Path>,
) -> anyhow::Result<Vec<String>> {
    validate_report(files, layouts, arch, verify_keys, locked).map(|r| r.warnings)
}

/// What [`validate`] checks, as a report without outputs: its warnings and
/// every image the build would use, with digests (`kiln build --dry-run`).
pub fn validate_report(
    files: &[PathBuf],
    layouts: &[PathBuf],
    arch: &str,
    verify_keys: &[PathBuf],
    locked: Option<&Path>,
) -> anyhow::Result<BuildReport> {
    let spec = crate::spec::load(files)?;
    let layout = Layout::open_search(layouts)?;
    let plan = crate::resolve::resolve(&spec, &layout, arch)?;
    check_pins_and_signatures(&layout, &plan, arch, verify_keys, locked)?;
    let mut images = BTreeMap::new();
    for (reference, image) in &plan.images {
        let input = ImageInput {
            tree: Tree::new(),
            reference: reference.clone(),
            canonical: image.name.clone(),
            defaults: image_defaults(image)?,
        };
        images.insert(reference.clone(), input);
    }
    oci_volume_images(&spec, &layout, &plan)?;
    let store = ContentStore::new().context("creating the content store")?;
    let mut warnings = spec.warnings.clone();
    warnings.extend(plan.warnings.iter().cloned());
    warnings.extend(assemble::check(&Inputs {
        spec: &spec,
        images: &images,
        kernel_modules: None,
        oci_volumes: &BTreeMap::new(),
        store: &store,
        epoch: 0,
    })?);
    Ok(BuildReport {
        outputs: Vec::new(),
        warnings,
        images: images_used(&plan, arch),
    })
}

/// `--locked` and `--verify-key`: the plan must match the lock, and every
/// image must carry a valid signature.
fn check_pins_and_signatures(
    layout: &Layout,
    plan: &Plan,
    arch: &str,
    verify_keys: &[PathBuf],
    locked: Option<&Path>,
) -> anyhow::Result<()> {
    if let Some(path) = locked {
        let lock = crate::lock::Lock::read(path)?;
        crate::lock::check(&lock, path, plan, arch)?;
    }
    if !verify_keys.is_empty() {
        let keys = crate::trust::load_keys(verify_keys)?;
        crate::trust::verify_plan(layout, plan, &keys)?;
    }
    Ok(())
}

/// Run the whole pipeline and write the requested outputs.
///
/// Every output is written to a temp file first; all of them are renamed
/// into place only after every one was written, so a failed build leaves
/// the previous outputs untouched.
pub fn build(opts: &BuildOptions) -> anyhow::Result<BuildReport> {
    let spec = crate::spec::load(&opts.files)?;
    // Shared with writers, so a `kiln layout gc` waits until the build has
    // read every blob it resolved (in every layout it searches).
    let layouts = opts.layouts();
    let _reading: Vec<_> = layouts
        .iter()
        .filter_map(|d| crate::oci::write::LayoutLock::for_reading(d))
        .collect();
    let layout = Layout::open_search(&layouts)?;
    let plan = crate::resolve::resolve(&spec, &layout, &opts.arch)?;
    check_pins_and_signatures(
        &layout,
        &plan,
        &opts.arch,
        &opts.verify_keys,
        opts.locked.as_deref(),
    )?;
    let store = ContentStore::new()
        .map_err(|e| environment(e, "creating the content store", &std::env::temp_dir()))?;
    let mut warnings = spec.warnings.clone();
    warnings.extend(plan.warnings.iter().cloned());

    let (images, unpack_warnings, tapped) = unpack_images(&spec, &layout, &plan, &store, opts)?;
    warnings.extend(unpack_warnings);
    let kernel_modules =
        modules::kernel_modules(&spec, &images, tapped, &store, &opts.limits, &mut warnings)?;
    let mut oci_volumes = BTreeMap::new();
    for (name, images) in oci_volume_images(&spec, &layout, &plan)? {
        let tree = ocivolume::layout_tree(&layout, &images, &store, opts.epoch)
            .with_context(|| format!("volume {name:?}: writing its image as an OCI layout"))?;
        oci_volumes.insert(name, tree);
    }
    let mut assembled = assemble::assemble(&Inputs {
        spec: &spec,
        images: &images,
        kernel_modules,
        oci_volumes: &oci_volumes,
        store: &store,
        epoch: opts.epoch,
    })?;
    warnings.extend(assembled.warnings.iter().cloned());
    if let Some(extra) = opts
        .cmdline_append
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        assembled.cmdline = format!("{} {}", assembled.cmdline, extra.trim())
            .trim()
            .to_owned();
    }
    let sbom = sbom_document(opts, &spec, &plan, &images, &assembled.tree, &store)?;
    if let Some(s) = &sbom {
        warnings.extend(s.warnings.iter().cloned());
    }
    drop(images);
    if let (Some(s), Sbom::FileAndImage) = (&sbom, opts.sbom) {
        let c = store
            .add(&s.bytes)
            .map_err(|e| environment(e, "storing the SBOM", &std::env::temp_dir()))?;
        assembled.tree.insert(
            crate::sbom::in_image(opts.sbom_format).into_bytes(),
            crate::tree::Entry::file(c, 0o644, opts.epoch),
        );
    }

    output_dir_ready(&opts.out_dir)?;
    let names: Vec<String> = opts
        .formats
        .iter()
        .filter_map(|f| clap::ValueEnum::to_possible_value(f).map(|v| v.get_name().to_owned()))
        .collect();
    let writing = crate::progress::Progress::spinner(&format!("writing {}", names.join(", ")));
    let mut pending = write_outputs(opts, &assembled, &store, &layout)
        .map_err(|e| out_of_space_in(e, "writing the outputs", &opts.out_dir))?;
    if let Some(s) = &sbom {
        let in_dir = |e| environment(e, "writing the outputs", &opts.out_dir);
        let file = format!("{}.{}", opts.name, opts.sbom_format.extension());
        let mut f = AtomicFile::create(&opts.out_dir, &file).map_err(in_dir)?;
        f.write_all(&s.bytes).map_err(in_dir)?;
        pending.push(f);
    }
    drop(writing);
    let outputs = commit_outputs(opts, pending)?;
    Ok(BuildReport {
        outputs,
        warnings,
        images: images_used(&plan, &opts.arch),
    })
}

/// Stages every output and `NAME.sha256` (listing them), then commits them
/// as one set ([`crate::atomic::commit_set`]).
fn commit_outputs(opts: &BuildOptions, pending: Vec<AtomicFile>) -> anyhow::Result<Vec<Written>> {
    let dir = &opts.out_dir;
    let in_dir = |e: std::io::Error| environment(e, "writing the outputs", dir);
    let mut staged = Vec::with_capacity(pending.len() + 1);
    for file in pending {
        staged.push(file.finish().map_err(in_dir)?);
    }
    let sums: Sums = staged
        .iter()
        .map(|s| (file_name(&s.written().path), s.written().sha256.clone()))
        .collect();
    let mut f = AtomicFile::create(dir, &format!("{}.sha256", opts.name)).map_err(in_dir)?;
    f.write_all(golden::render(&sums).as_bytes())
        .map_err(in_dir)?;
    staged.push(f.finish().map_err(in_dir)?);
    crate::atomic::commit_set(dir, &opts.name, staged)
        .map_err(|e| environment(e, "committing the outputs", dir))
}

/// The SBOM of the build when `--sbom` asks for one (see [`crate::sbom`]).
fn sbom_document(
    opts: &BuildOptions,
    spec: &Spec,
    plan: &Plan,
    images: &BTreeMap<String, ImageInput>,
    image: &Tree,
    store: &ContentStore,
) -> anyhow::Result<Option<crate::sbom::Sbom>> {
    if opts.sbom == Sbom::None {
        return Ok(None);
    }
    let pinned = images_used(plan, &opts.arch);
    let facts: Vec<crate::sbom::ImageFacts> = pinned
        .iter()
        .filter_map(|(reference, p)| {
            Some(crate::sbom::ImageFacts {
                reference,
                pinned: p,
                tree: &images.get(reference)?.tree,
                labels: &plan.images.get(reference)?.config.labels,
            })
        })
        .collect();
    // The spec's `files:`, or every regular file of the image.
    let paths: Vec<Vec<u8>> = if opts.sbom_files {
        image.iter().map(|(p, _)| p.clone()).collect()
    } else {
        spec.files
            .iter()
            .map(|f| crate::tree::normalize(f.path.as_bytes()).0)
            .collect()
    };
    let files = crate::sbom::file_facts(image, store, paths.into_iter()).map_err(|e| {
        environment(
            e,
            "reading the image's files for the SBOM",
            &std::env::temp_dir(),
        )
    })?;
    Ok(Some(crate::sbom::document(
        opts.sbom_format,
        &opts.name,
        &spec.sources,
        &facts,
        &files,
        store,
        opts.epoch,
    )))
}

/// Unpack every image of the plan, in parallel, into trees keyed by the
/// reference as written, and the kernel image's modules tar with its image
/// (see [`modules`]). Work is shared by index, results are keyed, so
/// nothing depends on which thread did what.
fn unpack_images(
    spec: &Spec,
    layout: &Layout,
    plan: &Plan,
    store: &ContentStore,
    opts: &BuildOptions,
) -> anyhow::Result<UnpackedImages> {
    let modules_tar = modules::tap_target(spec);
    let jobs: Vec<(&String, &ResolvedImage)> = plan.images.iter().collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<BTreeMap<usize, anyhow::Result<UnpackedImage>>> = Mutex::default();
    let workers = opts.threads.clamp(1, jobs.len().max(1));
    let total = jobs
        .iter()
        .flat_map(|(_, image)| image.layers.iter().map(|l| l.size))
        .sum();
    let progress =
        crate::progress::Progress::bytes(&format!("unpacking {} images", jobs.len()), total);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(reference, image)) = jobs.get(i) else {
                    break;
                };
                let tap = modules_tar
                    .as_ref()
                    .filter(|(kernel, _)| *kernel == reference.as_str())
                    .map(|(_, tar)| tar.as_str());
                let r = unpack_one(
                    layout,
                    reference,
                    image,
                    store,
                    &opts.limits,
                    &progress,
                    tap,
                );
                let failed = r.is_err();
                results.lock().expect("results lock").insert(i, r);
                if failed {
                    // Stop handing out work; the first error (by plan order) is reported.
                    next.store(jobs.len(), Ordering::Relaxed);
                }
            });
        }
    });
    let mut images = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut tapped = None;
    for (i, r) in results.into_inner().expect("results lock") {
        let (input, w, t) = r?;
        warnings.extend(w);
        tapped = tapped.or(t);
        images.insert(jobs[i].0.clone(), input);
    }
    Ok((images, warnings, tapped))
}

/// The unpacked images by reference, their warnings, and the kernel
/// image's modules tar when it was tapped.
type UnpackedImages = (
    BTreeMap<String, ImageInput>,
    Vec<String>,
    Option<modules::TappedModules>,
);

/// One unpacked image, its warnings, and its modules tar when it was tapped.
type UnpackedImage = (ImageInput, Vec<String>, Option<modules::TappedModules>);

fn unpack_one(
    layout: &Layout,
    reference: &str,
    image: &ResolvedImage,
    store: &ContentStore,
    limits: &Limits,
    progress: &crate::progress::Progress,
    modules_tar: Option<&str>,
) -> anyhow::Result<UnpackedImage> {
    let mut unpacker = Unpacker::new(store, limits);
    let tapped = std::thread::scope(|s| {
        let mut tap =
            modules_tar.map(|tar| modules::ModulesTap::new(s, &image.name, tar, store, limits));
        for layer in &image.layers {
            let reader = progress.reader(layout.open_layer(image, layer)?);
            unpacker
                .apply_layer_tapped(
                    &layer.digest,
                    layer.compression,
                    reader,
                    tap.as_mut().map(|t| t as &mut dyn crate::unpack::Tap),
                )
                .with_context(|| format!("unpacking image {}", image.name))?;
        }
        anyhow::Ok(tap.and_then(modules::ModulesTap::finish))
    })?;
    let Unpacked { tree, warnings } = unpacker.finish();
    let defaults = image_defaults(image)?;
    let warnings = warnings
        .into_iter()
        .map(|w| format!("image {}: {w}", image.name))
        .collect();
    Ok((
        ImageInput {
            tree,
            reference: reference.to_owned(),
            canonical: image.name.clone(),
            defaults,
        },
        warnings,
        tapped,
    ))
}

/// Each `format: oci` volume with an image, by name: its image resolved for
/// every platform of `platforms:` (`linux/ARCH`, in the order given), or for
/// the build's architecture when there is none.
fn oci_volume_images(
    spec: &Spec,
    layout: &Layout,
    plan: &Plan,
) -> anyhow::Result<BTreeMap<String, Vec<ResolvedImage>>> {
    let mut out = BTreeMap::new();
    for vol in &spec.volumes {
        let Some(r) = vol
            .image
            .as_ref()
            .filter(|_| vol.format.as_deref() == Some("oci"))
        else {
            continue;
        };
        let mut images = Vec::new();
        if vol.platforms.is_empty() {
            let image = plan
                .get(r)
                .with_context(|| format!("{}: image {:?} was not resolved", r.pos, r.reference))?;
            images.push(image.clone());
        }
        for p in &vol.platforms {
            let mut parts = p.split('/');
            let (os, platform_arch) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if os != "linux" || platform_arch.is_empty() {
                return Err(UserError(format!(
                    "{}: volume {:?}: platform {p:?} is not `linux/ARCH[/VARIANT]`",
                    vol.pos, vol.name
                ))
                .into());
            }
            let image = layout
                .resolve(&r.reference, platform_arch)
                .map_err(|source| crate::resolve::ResolveError {
                    pos: r.pos.clone(),
                    source: Box::new(source),
                })?;
            if !images
                .iter()
                .any(|i: &ResolvedImage| i.manifest_digest == image.manifest_digest)
            {
                images.push(image);
            }
        }
        out.insert(vol.name.clone(), images);
    }
    Ok(out)
}

/// What an image's config says about running it: its label, parsed, and
/// its entrypoint, cmd, env and working directory.
fn image_defaults(image: &ResolvedImage) -> anyhow::Result<ImageDefaults> {
    let label = match image.config.labels.get(LABEL) {
        Some(text) => Some(crate::spec::label(text, &image.name)?),
        None => None,
    };
    Ok(ImageDefaults {
        label,
        entrypoint: image.config.entrypoint.clone(),
        cmd: image.config.cmd.clone(),
        env: image.config.env.clone(),
        working_dir: image.config.working_dir.clone(),
    })
}

/// The label holding an image's LinuxKit defaults.
const LABEL: &str = "org.mobyproject.config";

/// Write every requested format to temp files; nothing is committed here.
fn write_outputs(
    opts: &BuildOptions,
    a: &Assembled,
    store: &ContentStore,
    layout: &Layout,
) -> anyhow::Result<Vec<AtomicFile>> {
    let dir = &opts.out_dir;
    let name = &opts.name;
    let mut pending = Vec::new();
    let mut formats = opts.formats.clone();
    formats.sort();
    formats.dedup();

    if formats.contains(&Format::KernelIso) && formats.contains(&Format::IsoBios) {
        return Err(UserError(format!(
            "formats kernel+iso and iso-bios both write {name}.iso: build them in separate runs \
             or under different --name"
        ))
        .into());
    }
    // The initrd is compressed once, straight into NAME-initrd.img when
    // kernel+initrd is asked for, and into a temp file when other formats
    // read it too.
    let needs_initrd_file = formats
        .iter()
        .any(|f| *f == Format::TarKernelInitrd || disk::is_disk(*f));
    let mut initrd_image = None;
    if formats.contains(&Format::KernelInitrd) {
        let mut f = AtomicFile::create(dir, &format!("{name}-initrd.img"))?;
        if let Some(ucode) = &a.ucode {
            store.copy_to(ucode, &mut f)?;
        }
        initrd_image = Some(f);
    }
    let mut initrd = if needs_initrd_file || initrd_image.is_some() {
        let (file, image) = initrd(a, store, opts, needs_initrd_file, initrd_image)?;
        initrd_image = image;
        file
    } else {
        None
    };

    for &format in &formats {
        match format {
            Format::KernelInitrd => {
                if let Some(kernel) = &a.kernel {
                    let mut f = AtomicFile::create(dir, &format!("{name}-kernel"))?;
                    store.copy_to(kernel, &mut f)?;
                    pending.push(f);
                }
                pending.push(initrd_image.take().expect("initrd written for this format"));
                let mut f = AtomicFile::create(dir, &format!("{name}-cmdline"))?;
                f.write_all(a.cmdline.as_bytes())?;
                pending.push(f);
            }
            Format::TarKernelInitrd => {
                let file = initrd.as_mut().expect("initrd written for this format");
                file.seek(SeekFrom::Start(0))?;
                let initrd = &store.add_reader(file, None)?;
                let cmdline = store.add(a.cmdline.as_bytes())?;
                let mut files = vec![
                    TarFile {
                        name: b"cmdline",
                        mode: 0o644,
                        mtime: opts.epoch,
                        content: &cmdline,
                    },
                    TarFile {
                        name: b"initrd.img",
                        mode: 0o644,
                        mtime: opts.epoch,
                        content: initrd,
                    },
                ];
                if let Some(kernel) = &a.kernel {
                    files.push(TarFile {
                        name: b"kernel",
                        mode: 0o644,
                        mtime: opts.epoch,
                        content: kernel,
                    });
                }
                if let Some(ucode) = &a.ucode {
                    files.push(TarFile {
                        name: b"ucode.cpio",
                        mode: 0o644,
                        mtime: opts.epoch,
                        content: ucode,
                    });
                }
                let mut f = AtomicFile::create(dir, &format!("{name}-initrd.tar"))?;
                write_tar_files(&files, store, &mut f)?;
                pending.push(f);
            }
            Format::Tar => {
                let mut f = AtomicFile::create(dir, &format!("{name}.tar"))?;
                write_tar(&a.tree, store, &mut f)?;
                pending.push(f);
            }
            Format::Docker => {
                let mut tree = a.tree.clone();
                let dockerfile = store.add(DOCKERFILE.as_bytes())?;
                tree.insert(
                    b"Dockerfile".to_vec(),
                    Entry::file(dockerfile, 0o644, opts.epoch),
                );
                let mut f = AtomicFile::create(dir, &format!("{name}.docker"))?;
                write_tar(&tree, store, &mut f)?;
                pending.push(f);
            }
            Format::KernelSquashfs => {
                if let Some(kernel) = &a.kernel {
                    if !formats.contains(&Format::KernelInitrd) {
                        let mut f = AtomicFile::create(dir, &format!("{name}-kernel"))?;
                        store.copy_to(kernel, &mut f)?;
                        pending.push(f);
                    }
                }
                if !formats.contains(&Format::KernelInitrd) {
                    let mut f = AtomicFile::create(dir, &format!("{name}-cmdline"))?;
                    f.write_all(a.cmdline.as_bytes())?;
                    pending.push(f);
                }
                // The root filesystem without the boot files beside it; the
                // writer seeks back to its superblock, so stage it first.
                let mut tree = a.tree.clone();
                tree.remove_children(b"boot");
                let mut tmp = tempfile::tempfile_in(dir)?;
                crate::output::squashfs::write_squashfs(&tree, store, opts.epoch, &mut tmp)?;
                tmp.seek(SeekFrom::Start(0))?;
                let mut f = AtomicFile::create(dir, &format!("{name}-squashfs.img"))?;
                std::io::copy(&mut tmp, &mut f)?;
                pending.push(f);
                pending.push(root_initrd(a, store, opts)?);
            }
            Format::KernelIso => {
                let beside = [Format::KernelInitrd, Format::KernelSquashfs];
                if !beside.iter().any(|f| formats.contains(f)) {
                    if let Some(kernel) = &a.kernel {
                        let mut f = AtomicFile::create(dir, &format!("{name}-kernel"))?;
                        store.copy_to(kernel, &mut f)?;
                        pending.push(f);
                    }
                    let mut f = AtomicFile::create(dir, &format!("{name}-cmdline"))?;
                    f.write_all(a.cmdline.as_bytes())?;
                    pending.push(f);
                }
                let mut tree = a.tree.clone();
                tree.remove_children(b"boot");
                let mut f = AtomicFile::create(dir, &format!("{name}.iso"))?;
                let mut buf = std::io::BufWriter::with_capacity(1 << 20, &mut f);
                crate::output::rockridge::write_rootfs_iso(
                    &tree, store, opts.epoch, name, &mut buf,
                )
                .map_err(|e| writer_error(e, "writing the root filesystem ISO"))?;
                buf.flush()?;
                drop(buf);
                pending.push(f);
                if !formats.contains(&Format::KernelSquashfs) {
                    pending.push(root_initrd(a, store, opts)?);
                }
            }
            _ => {} // disk formats: below
        }
    }
    let disk_formats: Vec<Format> = formats
        .iter()
        .copied()
        .filter(|f| disk::is_disk(*f))
        .collect();
    if !disk_formats.is_empty() {
        let initrd = initrd
            .as_mut()
            .expect("initrd written for the disk formats");
        disk::write(opts, &disk_formats, layout, a, initrd, store, &mut pending)?;
    }
    Ok(pending)
}

/// A writer's error: `InvalidInput` is the user's (a size too small, an
/// input the format cannot hold), anything else is kiln's or the system's.
pub(crate) fn writer_error(e: std::io::Error, doing: &'static str) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::InvalidInput {
        anyhow::Error::new(UserError(e.to_string()))
    } else {
        anyhow::Error::new(e).context(doing)
    }
}

/// `NAME-root-initrd.img`: the boot initrd that mounts `NAME-squashfs.img`
/// (see [`rootinitrd`]), compressed like the normal initrd.
fn root_initrd(
    a: &Assembled,
    store: &ContentStore,
    opts: &BuildOptions,
) -> anyhow::Result<AtomicFile> {
    let tree = rootinitrd::tree(&a.tree, store, opts.epoch)?;
    let mut f = AtomicFile::create(&opts.out_dir, &format!("{}-root-initrd.img", opts.name))?;
    rootinitrd::write(
        &tree,
        a.ucode.as_ref(),
        store,
        opts.compression,
        opts.threads,
        &mut f,
    )?;
    Ok(f)
}

/// The build context LinuxKit's `docker` output carries, so that
/// `docker build - < NAME.docker` gives an image that runs the init.
const DOCKERFILE: &str = "\nFROM scratch\n\nCOPY . ./\n\nENTRYPOINT [\"/bin/rc.init\"]\n";

/// The compressed initrd (without microcode): the assembled tree minus the
/// files under `boot/`, which travel beside it. It goes into `image` (the
/// `NAME-initrd.img` being written, after its microcode) and, when `file`
/// is set, into an unnamed temp file in the output directory for the
/// formats that read it again; both are given back.
fn initrd(
    a: &Assembled,
    store: &ContentStore,
    opts: &BuildOptions,
    file: bool,
    image: Option<AtomicFile>,
) -> anyhow::Result<(Option<std::fs::File>, Option<AtomicFile>)> {
    let mut tree = a.tree.clone();
    tree.remove_children(b"boot");
    let file = if file {
        let tmp = tempfile::tempfile_in(&opts.out_dir)
            .with_context(|| format!("creating a temp file in {}", opts.out_dir.display()))?;
        Some(tmp)
    } else {
        None
    };
    let both = Both {
        file: file.map(|f| std::io::BufWriter::with_capacity(1 << 20, f)),
        image,
    };
    let mut c = Compressor::new(opts.compression, both, opts.threads)?;
    write_cpio(&tree, store, &mut c)?;
    let both = c.finish()?;
    let file = match both.file {
        Some(f) => Some(f.into_inner().map_err(|e| e.into_error())?),
        None => None,
    };
    Ok((file, both.image))
}

/// Writes everything to each writer it holds.
struct Both {
    file: Option<std::io::BufWriter<std::fs::File>>,
    image: Option<AtomicFile>,
}

impl Write for Both {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(f) = &mut self.file {
            f.write_all(buf)?;
        }
        if let Some(f) = &mut self.image {
            f.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(f) = &mut self.file {
            f.flush()?;
        }
        if let Some(f) = &mut self.image {
            f.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod error_message_tests {
    use super::error_message;

    #[test]
    fn control_characters_are_escaped_for_the_terminal() {
        assert_eq!(
            super::printable("a\u{1b}[31mred\u{7}\nnext\u{9b}"),
            "a\\u{1b}[31mred\\u{7}\nnext\\u{9b}"
        );
    }

    #[test]
    fn a_cause_quoted_by_its_parent_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let quoted = crate::oci::OciError::Io {
            path: "/x".into(),
            source: io,
        };
        assert_eq!(error_message(&quoted), "/x: gone");
        let e = anyhow::Error::new(quoted).context("reading the layout");
        assert_eq!(error_message(e.as_ref()), "reading the layout: /x: gone");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = anyhow::Error::new(io).context("reading /y");
        assert_eq!(error_message(e.as_ref()), "reading /y: gone");
    }
}
