//! The build driver: runs spec → resolve → unpack → assemble → output for
//! the CLI, writes `NAME.sha256`, and classifies errors into exit codes.
//!
//! Takes [`BuildOptions`] (everything a build depends on, read from the
//! environment once by the caller); gives the committed outputs. Never
//! reads the environment itself beyond what the options carry, and never
//! leaves a partial output under a final name (see [`crate::atomic`]).

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::atomic::Written;
use crate::golden::{self, Sums};
use crate::output::compress::Compression;
use crate::unpack::Limits;

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
    /// NAME.tar: the filesystem as a tar for `docker import`
    #[value(name = "docker")]
    Docker,
}

/// Everything a build depends on.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub files: Vec<PathBuf>,
    pub formats: Vec<Format>,
    pub out_dir: PathBuf,
    pub name: String,
    pub layout: PathBuf,
    pub arch: String,
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`, or [`crate::DEFAULT_EPOCH`].
    pub epoch: i64,
    /// Worker threads for compression; the bytes never depend on it.
    pub threads: usize,
    pub limits: Limits,
}

/// What a build wrote.
#[derive(Clone, Debug, Default)]
pub struct BuildReport {
    pub outputs: Vec<Written>,
    pub warnings: Vec<String>,
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
        serde_json::json!({"outputs": outputs, "warnings": self.warnings}).to_string()
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
    for cause in err.chain() {
        if cause.is::<VerifyFailed>() {
            return 3;
        }
        if cause.is::<crate::spec::SpecError>()
            || cause.is::<UserError>()
            || cause.is::<crate::golden::GoldenError>()
            || cause.is::<crate::oci::OciError>()
            || cause.is::<crate::resolve::ResolveError>()
            || cause.is::<crate::unpack::UnpackError>()
            || cause.is::<crate::assemble::AssembleError>()
            || cause.is::<crate::inspect::InspectError>()
        {
            return 1;
        }
    }
    2
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

/// Check the YAML and that every image it names resolves in the layout.
pub fn validate(files: &[PathBuf], layout_dir: &Path, arch: &str) -> anyhow::Result<Vec<String>> {
    let spec = crate::spec::load(files)?;
    let layout = crate::oci::Layout::open(layout_dir)?;
    crate::resolve::resolve(&spec, &layout, arch)?;
    Ok(spec.warnings.clone())
}

/// Run the whole pipeline and write the requested outputs.
pub fn build(opts: &BuildOptions) -> anyhow::Result<BuildReport> {
    let _ = (opts, Context::context::<&str>);
    anyhow::bail!("not yet wired")
}
