//! The `kiln` command line: parses arguments, runs a library stage, and
//! turns the outcome into an exit code (0 ok, 1 bad input, 2 internal
//! error, 3 verification failed). All work is done in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use kiln::build::{self, BuildOptions, Format};
use kiln::output::compress::Compression;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "Hermetic, bit-reproducible LinuxKit image builds"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build images from LinuxKit YAML files
    Build(BuildArgs),
    /// Check YAML files and that every image they name is in the layout
    Validate(ValidateArgs),
    /// Fetch images from registries into the layout (then build offline)
    Pull(PullArgs),
    /// List the entries of a built initrd or tar
    Inspect {
        /// An initrd (cpio, optionally compressed) or tar; with --sbom, an SBOM
        file: PathBuf,
        /// Print the listing as JSON
        #[arg(long)]
        json: bool,
        /// FILE is an SPDX or CycloneDX JSON SBOM: print its images, package counts and licences
        #[arg(long)]
        sbom: bool,
    },
    /// Boot a built image
    #[command(subcommand)]
    Run(RunCommand),
    /// Check outputs listed in a NAME.sha256 file against a golden file
    Verify {
        /// The NAME.sha256 file a build wrote
        file: PathBuf,
        /// The golden sha256 file to compare with
        #[arg(long)]
        golden: PathBuf,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions { shell: clap_complete::Shell },
    /// Write man pages (kiln.1 and one per subcommand) into a directory
    Man {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Pin every image of YAML files by digest in NAME.lock (docs/lock.md)
    Lock(LockArgs),
    /// Sign images in a layout the way `cosign sign --key` does
    Sign(SignArgs),
    /// Build images from package recipes (`build.yml`)
    Pkg {
        #[command(subcommand)]
        command: PkgCommand,
    },
    /// Manage an OCI image layout: list, remove, garbage-collect, check, import, export
    #[command(subcommand)]
    Layout(LayoutCommand),
}

#[derive(Subcommand)]
enum LayoutCommand {
    /// List the images of a layout: name, digest, platforms, size, signed
    Ls {
        #[command(flatten)]
        layout: LayoutDir,
        /// Also list cosign signature images (`REPO:sha256-HEX.sig`)
        #[arg(long)]
        all: bool,
        /// Print the list as JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove names (and their now unneeded signatures) from index.json; blobs stay until gc
    Rm {
        #[command(flatten)]
        layout: LayoutDir,
        /// Names as `kiln layout ls` shows them, or as a YAML file writes them
        #[arg(required = true, value_name = "REF")]
        refs: Vec<String>,
    },
    /// Delete the blobs no name reaches and temp files of killed writers (waits for writers and builds)
    Gc {
        #[command(flatten)]
        layout: LayoutDir,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Re-verify every blob's size and digest and every name; exit 3 on any problem
    Fsck {
        #[command(flatten)]
        layout: LayoutDir,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Add the images of an oci-archive tar, a docker-archive (`docker save`) tar or another layout
    Import {
        #[command(flatten)]
        layout: LayoutDir,
        /// FILE.tar (oci-archive or docker-archive, uncompressed) or a layout DIR
        #[arg(value_name = "SOURCE")]
        source: PathBuf,
    },
    /// Write images (with their signatures) as an oci-archive tar, byte-for-byte reproducible
    Export {
        #[command(flatten)]
        layout: LayoutDir,
        /// The archive to write
        #[arg(short = 'o', long = "output", value_name = "FILE", required = true)]
        output: PathBuf,
        /// Names in the layout
        #[arg(required = true, value_name = "REF")]
        refs: Vec<String>,
    },
}

#[derive(clap::Args)]
struct LayoutDir {
    /// OCI image layout [default: the first of $KILN_LAYOUT, else ./oci-layout]
    #[arg(long, value_name = "DIR")]
    layout: Option<PathBuf>,
}

impl LayoutDir {
    fn dir(self) -> PathBuf {
        layout_dir(&LayoutArgs {
            layout: self.layout.into_iter().collect(),
            arch: String::new(),
        })
    }
}

#[derive(Subcommand)]
enum PkgCommand {
    /// Build one OCI image per recipe directory into the layout
    Build {
        /// OCI image layout to add the images to [default: $KILN_LAYOUT, else ./oci-layout]
        #[arg(long, value_name = "DIR")]
        layout: Option<PathBuf>,
        /// Directory of the pinned .deb files [default: debs/ beside the pin file]
        #[arg(long, value_name = "DIR")]
        debs: Option<PathBuf>,
        /// The pin file [default: vendor-images/debs.yml above the recipe]
        #[arg(long, value_name = "FILE")]
        pins: Option<PathBuf>,
        /// Architecture of recipes that name none
        #[arg(long, default_value = "amd64", value_parser = ["amd64", "arm64"])]
        arch: String,
        /// Recipe directories, each holding a build.yml
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RunCommand {
    /// Boot under qemu (serial console on stdio); exits with the guest's verdict
    Qemu(QemuArgs),
}

#[derive(clap::Args)]
struct RegistryArgs {
    /// Speak plain HTTP to this registry (HOST[:PORT]); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure: Vec<String>,
    /// Also trust this PEM CA certificate; repeatable
    #[arg(long = "ca-cert", value_name = "FILE")]
    ca_certs: Vec<PathBuf>,
}

impl RegistryArgs {
    fn client(&self) -> kiln::fetch::ClientOptions {
        kiln::fetch::ClientOptions {
            insecure: self.insecure.clone(),
            ca_certs: self.ca_certs.clone(),
        }
    }
}

#[derive(clap::Args)]
struct PullArgs {
    /// OCI image layout to add the images to [default: $KILN_LAYOUT, else ./oci-layout]
    #[arg(long, value_name = "DIR")]
    layout: Option<PathBuf>,
    /// Platforms to keep from multi-arch images
    #[arg(
        long,
        value_name = "OS/ARCH[/VARIANT]",
        value_delimiter = ',',
        default_value = "linux/amd64"
    )]
    platform: Vec<String>,
    /// Then require a valid cosign signature of every image by one of these public keys; repeatable
    #[arg(long = "verify-key", value_name = "KEY.pub")]
    verify_keys: Vec<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Fetch exactly what this lock file pins, by digest (instead of REFs)
    #[arg(long, value_name = "NAME.lock", conflicts_with = "refs")]
    lock: Option<PathBuf>,
    /// Image references, stored in the layout under the name as written
    #[arg(required_unless_present = "lock", value_name = "REF")]
    refs: Vec<String>,
}

#[derive(clap::Args)]
struct QemuArgs {
    /// Memory
    #[arg(long, default_value = "1024M")]
    mem: String,
    /// Virtual CPUs
    #[arg(long, default_value_t = 1)]
    cpus: u32,
    /// kvm or tcg [default: kvm if a probe shows it works, else tcg]
    #[arg(long)]
    accel: Option<String>,
    /// Boot with UEFI firmware (OVMF) even for formats that boot under BIOS
    #[arg(long, conflicts_with = "bios")]
    uefi: bool,
    /// Boot a hybrid image (NAME-efi.iso, the GPT disks: NAME-efi.img, .vhd, .vmdk, …) with BIOS firmware (SeaBIOS) instead of UEFI
    #[arg(long)]
    bios: bool,
    /// Attach a bootable ISO as a disk (as written to a USB stick), not a CD
    #[arg(long)]
    iso_as_disk: bool,
    /// Extra disk: FILE[,format=raw|qcow2][,size=N]; size= creates FILE if it is missing; repeatable
    #[arg(long = "disk", value_name = "FILE[,format=F][,size=N]")]
    disks: Vec<String>,
    /// Forward a host port to the guest (user networking); repeatable
    #[arg(long, value_name = "HOST:GUEST[/udp]")]
    publish: Vec<String>,
    /// Metadata file attached as a read-only disk
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
    /// Kill the guest after this many seconds (exit 124)
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Also copy the serial console to this file
    #[arg(long, value_name = "FILE")]
    console_log: Option<PathBuf>,
    /// Append to the kernel command line (direct kernel boot)
    #[arg(long)]
    cmdline: Option<String>,
    /// Print the qemu command line
    #[arg(long, short = 'v')]
    verbose: bool,
    /// After the run, print the verdict as JSON (`{"exit": N, "timed_out": B}`)
    #[arg(long)]
    json: bool,
    /// A build name (DIR/NAME) or an image file
    target: PathBuf,
}

#[derive(clap::Args)]
struct LayoutArgs {
    /// OCI image layout to read images from; repeat to search several in order, the first
    /// holding a name wins and `--pull` writes to the first [default: $KILN_LAYOUT, a
    /// colon-separated list, else ./oci-layout]
    #[arg(long, value_name = "DIR")]
    layout: Vec<PathBuf>,
    /// Architecture to pick from multi-platform images
    #[arg(long, default_value = "amd64", value_parser = ["amd64", "arm64"])]
    arch: String,
}

#[derive(clap::Args)]
struct BuildArgs {
    /// Output format; repeat or separate with commas for several [default: kernel+initrd]
    #[arg(
        short = 'f',
        long = "format",
        value_name = "FORMAT",
        value_delimiter = ','
    )]
    formats: Vec<Format>,
    /// Output directory
    #[arg(short = 'o', long = "dir", value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Run every check and print the images with their digests, but write nothing
    #[arg(long)]
    dry_run: bool,
    /// Base name of the outputs [default: the first file's stem]
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    layout: LayoutArgs,
    /// Initrd compression
    #[arg(long, default_value = "gzip", value_name = "gzip|zstd|xz|none")]
    compress: Compression,
    /// Compare the outputs with this sha256sum file; exit 3 on any difference
    #[arg(long, value_name = "FILE")]
    golden: Option<PathBuf>,
    /// Print the result as JSON on stdout
    #[arg(long)]
    json: bool,
    /// First pull the images the layout lacks (see `kiln pull`)
    #[arg(long)]
    pull: bool,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Disk size for disk formats (e.g. 512M, 2G) [default: the smallest that fits]
    #[arg(long, value_parser = parse_size)]
    size: Option<u64>,
    /// Extra kernel command line arguments, appended to the YAML's
    #[arg(long, value_name = "ARGS")]
    cmdline: Option<String>,
    /// Refuse an image whose layers unpack to more than this many bytes
    #[arg(long, value_name = "BYTES", default_value_t = kiln::unpack::Limits::default().max_total_bytes)]
    max_image_bytes: u64,
    /// Require a valid cosign signature of every image by one of these public keys; repeatable
    #[arg(long = "verify-key", value_name = "KEY.pub")]
    verify_keys: Vec<PathBuf>,
    /// Refuse images that are not pinned, or pinned differently, in NAME.lock beside the first file
    #[arg(long)]
    locked: bool,
    /// Write a reproducible SPDX 2.3 SBOM: NAME.spdx.json beside the outputs and /sbom.spdx.json in the image
    #[arg(long)]
    sbom: bool,
    /// With --sbom: write NAME.spdx.json only, not /sbom.spdx.json into the image
    #[arg(long, requires = "sbom")]
    no_sbom_in_image: bool,
    /// With --sbom: spdx (SPDX 2.3, NAME.spdx.json) or cyclonedx (CycloneDX 1.5, NAME.cdx.json)
    #[arg(long, requires = "sbom", default_value = "spdx")]
    sbom_format: kiln::sbom::Format,
    /// With --sbom: list every regular file of the image with its checksums, not only the YAML's files:
    #[arg(long, requires = "sbom")]
    sbom_files: bool,
    /// LinuxKit YAML files, merged in order
    #[arg(required = true, value_name = "FILE.yml")]
    files: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct LockArgs {
    #[command(flatten)]
    layout: LayoutArgs,
    /// Base name of the lock file [default: the first file's stem]
    #[arg(long)]
    name: Option<String>,
    /// Require and record a valid cosign signature of every image; repeatable
    #[arg(long = "verify-key", value_name = "KEY.pub")]
    verify_keys: Vec<PathBuf>,
    #[arg(required = true, value_name = "FILE.yml")]
    files: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct SignArgs {
    /// Private key, ECDSA P-256: PEM PKCS#8 or SEC1, or cosign's encrypted cosign.key ($COSIGN_PASSWORD)
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// OCI image layout holding the images [default: $KILN_LAYOUT, else ./oci-layout]
    #[arg(long, value_name = "DIR")]
    layout: Option<PathBuf>,
    /// Image names (or NAME@DIGEST) in the layout
    #[arg(required = true, value_name = "REF")]
    refs: Vec<String>,
}

#[derive(clap::Args)]
struct ValidateArgs {
    #[command(flatten)]
    layout: LayoutArgs,
    /// Base name of the lock file for --locked [default: the first file's stem]
    #[arg(long)]
    name: Option<String>,
    /// Require a valid cosign signature of every image by one of these public keys; repeatable
    #[arg(long = "verify-key", value_name = "KEY.pub")]
    verify_keys: Vec<PathBuf>,
    /// Refuse images that are not pinned, or pinned differently, in NAME.lock beside the first file
    #[arg(long)]
    locked: bool,
    /// Print the result (and warnings) as JSON
    #[arg(long)]
    json: bool,
    #[arg(required = true, value_name = "FILE.yml")]
    files: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print and succeed; usage errors are bad input.
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!(
                "kiln: error: {}",
                build::printable(&build::error_message(err.as_ref()))
            );
            ExitCode::from(build::exit_code(&err))
        }
    }
}

/// `kiln build --size`: [`kiln::run::parse_size`] with a message.
fn parse_size(s: &str) -> Result<u64, String> {
    kiln::run::parse_size(s).ok_or_else(|| format!("{s:?} is not a size (e.g. 512M, 2G, or bytes)"))
}

/// Neither `--layout` nor `$KILN_LAYOUT` was given: the layout is the
/// default `./oci-layout`.
fn layout_defaulted(flag: &Option<PathBuf>) -> bool {
    flag.is_none() && std::env::var_os("KILN_LAYOUT").is_none_or(|v| v.is_empty())
}

/// The layouts to search, in order: every `--layout`, else `$KILN_LAYOUT`
/// split at `:`, else `./oci-layout`. Never empty.
fn layout_dirs(args: &LayoutArgs) -> Vec<PathBuf> {
    if !args.layout.is_empty() {
        return args.layout.clone();
    }
    let from_env: Vec<PathBuf> = std::env::var_os("KILN_LAYOUT")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if from_env.is_empty() {
        vec![PathBuf::from("oci-layout")]
    } else {
        from_env
    }
}

/// The first layout of [`layout_dirs`]: the one pulls and signatures write to.
fn layout_dir(args: &LayoutArgs) -> PathBuf {
    layout_dirs(args).swap_remove(0)
}

/// [`layout_dirs`], refusing with a message that says why when the default
/// `./oci-layout` is missing: the usual mistake is running kiln from another
/// directory.
fn checked_layout_dirs(args: &LayoutArgs) -> anyhow::Result<Vec<PathBuf>> {
    let dirs = layout_dirs(args);
    let defaulted = args.layout.is_empty() && layout_defaulted(&None);
    if defaulted && !dirs[0].exists() {
        let cwd = std::env::current_dir().unwrap_or_default();
        return Err(build::UserError(format!(
            "no --layout was given, $KILN_LAYOUT is unset, and {} has no oci-layout directory; \
             run kiln where the layout is or pass --layout DIR",
            cwd.display()
        ))
        .into());
    }
    Ok(dirs)
}

/// [`checked_layout_dirs`] split into the first layout and the rest.
fn checked_layouts(args: &LayoutArgs) -> anyhow::Result<(PathBuf, Vec<PathBuf>)> {
    let mut dirs = checked_layout_dirs(args)?;
    let first = dirs.remove(0);
    Ok((first, dirs))
}

/// `--name`, else the first file's stem.
fn output_name(name: Option<String>, files: &[PathBuf]) -> anyhow::Result<String> {
    match name {
        // Outputs are NAME-kernel, NAME.iso, … inside -o: one path component.
        Some(n) if n.is_empty() || n == "." || n == ".." || n.contains(['/', '\0']) => {
            Err(build::UserError(format!(
                "--name {n:?}: a name is one path component (no `/`, not `.` or `..`)"
            ))
            .into())
        }
        Some(n) => Ok(n),
        None => Ok(files[0]
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                build::UserError(format!(
                    "cannot derive an output name from {} (not UTF-8); use --name",
                    files[0].display()
                ))
            })?),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Build(args) => {
            let name = output_name(args.name, &args.files)?;
            let locked = args
                .locked
                .then(|| kiln::lock::path_for(&args.files[0], &name));
            let formats = if args.formats.is_empty() {
                vec![Format::KernelInitrd]
            } else {
                args.formats
            };
            if args.pull {
                let mut dirs = layout_dirs(&args.layout);
                let opts = kiln::fetch::PullOptions {
                    layout: dirs.remove(0),
                    platforms: Vec::new(),
                    client: args.registry.client(),
                };
                for p in kiln::fetch::pull_missing(&args.files, &args.layout.arch, &dirs, &opts)? {
                    eprintln!("kiln: pulled {} {}", p.reference, p.digest);
                }
            }
            let (layout, more_layouts) = checked_layouts(&args.layout)?;
            let opts = BuildOptions {
                files: args.files,
                formats,
                out_dir: args.dir,
                name,
                layout,
                more_layouts,
                arch: args.layout.arch,
                compression: args.compress,
                epoch: build::source_date_epoch()?,
                threads: build::threads_from_env()?,
                size: args.size,
                cmdline_append: args.cmdline,
                verify_keys: args.verify_keys,
                locked,
                sbom: match (args.sbom, args.no_sbom_in_image) {
                    (false, _) => build::Sbom::None,
                    (true, false) => build::Sbom::FileAndImage,
                    (true, true) => build::Sbom::FileOnly,
                },
                sbom_files: args.sbom_files,
                sbom_format: args.sbom_format,
                limits: kiln::unpack::Limits {
                    max_total_bytes: args.max_image_bytes,
                    max_file_bytes: args.max_image_bytes,
                    ..Default::default()
                },
            };
            if args.dry_run {
                let report = build::validate_report(
                    &opts.files,
                    &opts.layouts(),
                    &opts.arch,
                    &opts.verify_keys,
                    opts.locked.as_deref(),
                )?;
                for w in &report.warnings {
                    eprintln!("kiln: warning: {}", build::printable(w));
                }
                if args.json {
                    println!("{}", report.to_json());
                    return Ok(ExitCode::SUCCESS);
                }
                let formats: Vec<String> = opts
                    .formats
                    .iter()
                    .filter_map(clap::ValueEnum::to_possible_value)
                    .map(|v| v.get_name().to_string())
                    .collect();
                println!(
                    "would build {} into {} as {}",
                    opts.name,
                    opts.out_dir.display(),
                    formats.join(", ")
                );
                for (reference, i) in &report.images {
                    println!(
                        "  {reference} = {}@{} (config {})",
                        i.name, i.manifest, i.config
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            let report = build::build(&opts)?;
            for w in &report.warnings {
                eprintln!("kiln: warning: {}", build::printable(w));
            }
            for (reference, i) in &report.images {
                eprintln!(
                    "kiln: image {reference} = {}@{} (config {})",
                    i.name, i.manifest, i.config
                );
            }
            if args.json {
                println!("{}", report.to_json());
            } else {
                for a in &report.outputs {
                    println!("{}  {}", a.sha256, a.path.display());
                }
            }
            if let Some(golden) = args.golden {
                build::check_golden(&report.sums(), &golden)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate(args) => {
            let name = output_name(args.name, &args.files)?;
            let locked = args
                .locked
                .then(|| kiln::lock::path_for(&args.files[0], &name));
            let warnings = build::validate(
                &args.files,
                &checked_layout_dirs(&args.layout)?,
                &args.layout.arch,
                &args.verify_keys,
                locked.as_deref(),
            )?;
            for w in &warnings {
                eprintln!("kiln: warning: {}", build::printable(w));
            }
            if args.json {
                println!("{}", serde_json::json!({"ok": true, "warnings": warnings}));
            } else {
                println!("ok");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Lock(args) => {
            let opts = kiln::lock::LockOptions {
                name: output_name(args.name, &args.files)?,
                layouts: checked_layout_dirs(&args.layout)?,
                arch: args.layout.arch,
                verify_keys: args.verify_keys,
                files: args.files,
            };
            let (path, lock) = kiln::lock::lock(&opts)?;
            println!("{} images pinned in {}", lock.images.len(), path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Sign(args) => {
            let password = std::env::var("COSIGN_PASSWORD").ok();
            let key = kiln::trust::PrivateKey::load(&args.key, password.as_deref())?;
            let layout = layout_dir(&LayoutArgs {
                layout: args.layout.into_iter().collect(),
                arch: String::new(),
            });
            for s in kiln::trust::sign(&layout, &args.refs, &key)? {
                println!("{}  {}  {}", s.digest, s.reference, s.tag);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect {
            file,
            json,
            sbom: true,
        } => {
            let summary = kiln::sbom::summarize(&file).map_err(build::UserError)?;
            if json {
                println!("{}", summary.to_json());
            } else {
                for line in summary.to_text().lines() {
                    println!("{}", build::printable(line));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { file, json, .. } => {
            let rows = kiln::inspect::inspect(&file)?;
            if json {
                println!("{}", kiln::inspect::listing_json(&rows));
            } else {
                print!("{}", kiln::inspect::format_listing(&rows));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "kiln", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            use clap::CommandFactory;
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(RunCommand::Qemu(q)) => {
            let opts = kiln::run::QemuOptions {
                mem: q.mem,
                cpus: q.cpus,
                accel: q.accel,
                uefi: q.uefi,
                bios: q.bios,
                iso_as_disk: q.iso_as_disk,
                disks: q.disks,
                publish: q.publish,
                data: q.data,
                timeout: q.timeout.map(std::time::Duration::from_secs),
                console_log: q.console_log,
                cmdline_append: q.cmdline,
                esp_dir: None,
                verbose: q.verbose,
            };
            let warning = kiln::run::publish_warning(&q.target, &opts);
            if let Some(w) = &warning {
                eprintln!("kiln: warning: {w}");
            }
            let verdict = kiln::run::run(&q.target, &opts)?;
            if verdict.is_none() {
                eprintln!("kiln: guest timed out");
            }
            let code = verdict.map_or(124, |c| u8::try_from(c).unwrap_or(2));
            if q.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "exit": code,
                        "timed_out": verdict.is_none(),
                        "warnings": warning.into_iter().collect::<Vec<_>>(),
                    })
                );
            }
            Ok(ExitCode::from(code))
        }
        Command::Pkg {
            command:
                PkgCommand::Build {
                    layout,
                    debs,
                    pins,
                    arch,
                    dirs,
                },
        } => {
            let epoch = build::source_date_epoch()?;
            // Writing is explicit: the default ./oci-layout of a checkout is
            // the committed one, which `cargo xtask vendor --check` compares.
            if layout_defaulted(&layout) {
                return Err(build::UserError(
                    "kiln pkg build writes images into a layout: name it with --layout DIR \
                     (or $KILN_LAYOUT); it does not default to ./oci-layout, which in a kiln \
                     checkout holds the committed system images"
                        .into(),
                )
                .into());
            }
            let opts = kiln::pkg::PkgOptions {
                layout: layout_dir(&LayoutArgs {
                    layout: layout.into_iter().collect(),
                    arch: arch.clone(),
                }),
                debs,
                pins,
                arch,
                epoch,
            };
            // Bad inputs exit 1 like other user errors; the message keeps
            // the whole chain of causes.
            let building = kiln::progress::Progress::spinner(&format!(
                "building {}",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let built =
                kiln::pkg::build(&dirs, &opts, &kiln::pkg::Cargo { epoch }).map_err(|e| {
                    if e.is_user_error() {
                        anyhow::Error::new(build::UserError(build::error_message(&e)))
                    } else {
                        anyhow::Error::new(e)
                    }
                })?;
            drop(building);
            for b in &built {
                for w in &b.warnings {
                    eprintln!("kiln: warning: {}", build::printable(w));
                }
                println!("{}  {}  {}", b.digest, b.name, b.hash_name);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Layout(cmd) => layout_command(cmd),
        Command::Verify { file, golden, json } => {
            kiln::atomic::recover_beside(&file)?;
            let now = kiln::golden::rehash(&file)?;
            build::check_golden(&now, &golden)?;
            if json {
                println!("{}", serde_json::json!({"ok": true, "outputs": now}));
            } else {
                println!("ok");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Pull(args) => {
            let platforms = args
                .platform
                .iter()
                .map(|p| kiln::fetch::Platform::parse(p))
                .collect::<Result<Vec<_>, _>>()?;
            let opts = kiln::fetch::PullOptions {
                layout: layout_dir(&LayoutArgs {
                    layout: args.layout.into_iter().collect(),
                    arch: String::new(),
                }),
                platforms,
                client: args.registry.client(),
            };
            // Keys are read before anything is fetched: a bad key file fails fast.
            let keys = if args.verify_keys.is_empty() {
                Vec::new()
            } else {
                kiln::trust::load_keys(&args.verify_keys)?
            };
            let (pulled, refs, archs) = match &args.lock {
                Some(path) => {
                    let lock = kiln::lock::Lock::read(path)?;
                    let refs = lock.images.keys().cloned().collect::<Vec<_>>();
                    let pulled = kiln::fetch::pull_locked(&lock, &opts)?;
                    (pulled, refs, vec![lock.arch])
                }
                None => {
                    let archs = opts.platforms.iter().map(|p| p.arch.clone()).collect();
                    (
                        kiln::fetch::pull(&args.refs, &opts)?,
                        args.refs.clone(),
                        archs,
                    )
                }
            };
            for p in pulled {
                println!(
                    "{}  {}  (fetched {} blobs, {} bytes; {} already present)",
                    p.digest, p.reference, p.fetched, p.fetched_bytes, p.present
                );
            }
            if !keys.is_empty() {
                // The signature images were pulled beside the images.
                let layout = kiln::oci::Layout::open(&opts.layout)?;
                for r in &refs {
                    for arch in &archs {
                        let image = layout.resolve(r, arch)?;
                        let sig = kiln::trust::verify(&layout, &image, &keys)?;
                        println!(
                            "{}  {}  verified with {}",
                            sig.signed_digest,
                            r,
                            sig.key.display()
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `kiln layout …`.
fn layout_command(cmd: LayoutCommand) -> anyhow::Result<ExitCode> {
    use kiln::layout;
    match cmd {
        LayoutCommand::Ls {
            layout: dir,
            all,
            json,
        } => {
            let entries = layout::ls(&dir.dir(), all)?;
            if json {
                println!("{}", serde_json::to_string(&entries)?);
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<[String; 5]> = entries
                .iter()
                .map(|e| {
                    [
                        e.reference.clone(),
                        e.digest.clone(),
                        if e.platforms.is_empty() {
                            "-".to_string()
                        } else {
                            e.platforms.join(",")
                        },
                        layout::human_size(e.size),
                        match (&e.signature_of, &e.problem, e.signed) {
                            (Some(_), _, _) => "signature".to_string(),
                            (None, Some(_), _) => "damaged (kiln layout fsck)".to_string(),
                            (None, None, true) => "signed".to_string(),
                            (None, None, false) => "-".to_string(),
                        },
                    ]
                })
                .collect();
            let header =
                ["REFERENCE", "DIGEST", "PLATFORMS", "SIZE", "SIGNATURE"].map(String::from);
            let mut widths = [0usize; 5];
            for r in std::iter::once(&header).chain(&rows) {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.chars().count());
                }
            }
            for r in std::iter::once(&header).chain(&rows) {
                let line: Vec<String> = r
                    .iter()
                    .zip(widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                println!("{}", build::printable(line.join("  ").trim_end()));
            }
            Ok(ExitCode::SUCCESS)
        }
        LayoutCommand::Rm { layout: dir, refs } => {
            for n in layout::rm(&dir.dir(), &refs)? {
                println!("removed {}", build::printable(&n));
            }
            Ok(ExitCode::SUCCESS)
        }
        LayoutCommand::Gc { layout: dir, json } => {
            let r = layout::gc(&dir.dir())?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "removed {} blobs ({}) and {} temp files; kept {} blobs ({})",
                    r.removed,
                    layout::human_size(r.removed_bytes),
                    r.temp_files,
                    r.kept,
                    layout::human_size(r.kept_bytes)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        LayoutCommand::Fsck { layout: dir, json } => {
            let dir = dir.dir();
            let r = layout::fsck(&dir)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "ok": r.problems.is_empty(),
                        "names": r.names,
                        "blobs": r.blobs,
                        "bytes": r.bytes,
                        "absent_manifests": r.absent_manifests,
                        "unreferenced": r.unreferenced,
                        "unreferenced_bytes": r.unreferenced_bytes,
                        "temp_files": r.temp_files,
                        "problems": r.problems.iter().map(|p| serde_json::json!({
                            "name": p.name, "missing": p.missing, "message": p.message,
                        })).collect::<Vec<_>>(),
                    })
                );
            } else {
                println!(
                    "{} names, {} blobs ({}) verified; {} unreferenced ({}, kiln layout gc removes them); {} temp files",
                    r.names,
                    r.blobs,
                    layout::human_size(r.bytes),
                    r.unreferenced,
                    layout::human_size(r.unreferenced_bytes),
                    r.temp_files
                );
            }
            for p in &r.problems {
                eprintln!(
                    "kiln: {}: {}",
                    if p.missing { "missing" } else { "corrupt" },
                    build::printable(&p.message)
                );
            }
            if !r.problems.is_empty() {
                return Err(layout::LayoutError::FsckFailed {
                    dir,
                    count: r.problems.len(),
                }
                .into());
            }
            Ok(ExitCode::SUCCESS)
        }
        LayoutCommand::Import {
            layout: dir,
            source,
        } => {
            let r = layout::import::import(&dir.dir(), &source)?;
            for w in &r.warnings {
                eprintln!("kiln: warning: {}", build::printable(w));
            }
            for (name, digest) in &r.images {
                println!("{digest}  {}", build::printable(name));
            }
            eprintln!(
                "kiln: imported {} names from {} ({}): {} blobs written ({}), {} already present",
                r.images.len(),
                source.display(),
                r.format,
                r.written,
                layout::human_size(r.written_bytes),
                r.present
            );
            Ok(ExitCode::SUCCESS)
        }
        LayoutCommand::Export {
            layout: dir,
            output,
            refs,
        } => {
            let r =
                layout::export::export(&dir.dir(), &refs, &output, build::source_date_epoch()?)?;
            println!("{}  {}", r.sha256, r.path.display());
            eprintln!(
                "kiln: exported {} names, {} blobs ({})",
                r.names.len(),
                r.blobs,
                layout::human_size(r.len)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
