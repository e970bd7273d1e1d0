//! `cargo xtask bench`: kiln's build throughput and peak memory beside a
//! baseline measured in the same run on the same bytes.
//!
//! The synthetic image set is a pure function of a fixed seed: ≈300 MB in
//! ≈20,000 files over several images and layers, a third incompressible,
//! a third text-like, a third highly compressible. The baseline is
//! `gzip -n -6` on the uncompressed cpio that kiln itself writes for the
//! same YAML (`--compress none`), so both sides see the same bytes.
//! Timings are medians of several runs; ratios matter, not seconds.
//! Then the boot-media writers on the compressed initrd (a UKI stand-in):
//! raw-efi beside `mkfs.vfat` + `mcopy`, and iso-efi beside
//! `xorriso -as mkisofs` ([`iso`]). Last, `kiln pull` of the image set from
//! a loopback registry beside `skopeo copy` ([`pull`]), and the realistic
//! set — the Debian kernel with every module — beside `pigz`, `gzip` and
//! `zstd` ([`realistic`]; `--realistic` runs only that). Writers run as children of the release
//! xtask binary, so each is optimised and its peak RSS is its own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::synth::{write_images, SynthFile, SynthImage};

mod iso;
mod pull;
mod realistic;

/// A tiny deterministic PRNG (xorshift64*), so the data set never changes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "kernel",
    "init",
    "container",
    "service",
    "onboot",
    "runc",
    "mount",
    "overlay",
    "rootfs",
    "config",
    "the",
    "of",
    "and",
    "image",
    "layer",
    "digest",
    "sha256",
    "reproducible",
    "=",
    "{",
    "}",
    "0x1f",
    "\n",
    "    ",
    "return",
    "if",
];

fn file_bytes(rng: &mut Rng, class: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    match class {
        // incompressible
        0 => {
            while out.len() < len {
                out.extend_from_slice(&rng.next().to_le_bytes());
            }
        }
        // text-like
        1 => {
            while out.len() < len {
                out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
                out.push(b' ');
            }
        }
        // very compressible: runs of a few byte values
        _ => {
            while out.len() < len {
                let b = (rng.below(4) * 17) as u8;
                let run = 64 + rng.below(4096) as usize;
                out.extend(std::iter::repeat_n(b, run));
            }
        }
    }
    out.truncate(len);
    out
}

/// The synthetic image set: (images, total file bytes, file count).
fn synth(scale: f64) -> (Vec<SynthImage>, u64, usize) {
    let mut rng = Rng(0x6b69_6c6e_6265_6e63);
    let mut images = Vec::new();
    let mut total = 0u64;
    let mut count = 0usize;
    // The kernel image: a large, mostly incompressible "bzImage" and a modules tar.
    let kernel_len = (12.0 * 1024.0 * 1024.0 * scale) as usize;
    let kernel = file_bytes(&mut rng, 0, kernel_len);
    total += kernel.len() as u64;
    count += 1;
    images.push(SynthImage {
        name: "bench/kernel:1".into(),
        layers: vec![vec![SynthFile {
            path: "kernel".into(),
            mode: 0o644,
            bytes: kernel,
        }]],
        ..SynthImage::default()
    });
    let n_images = 8;
    let files_per_image = (2500.0 * scale) as usize;
    for i in 0..n_images {
        let mut layers = Vec::new();
        for l in 0..3 {
            let mut files = Vec::new();
            for f in 0..files_per_image / 3 {
                // Mostly small files (mean 5 KiB) and a 1-in-200 tail of
                // 1–3 MiB files: ≈ 15 KiB a file, ≈ 300 MB in all.
                let len = if rng.below(200) == 0 {
                    (1024 * 1024 + rng.below(2 * 1024 * 1024)) as usize
                } else {
                    rng.below(10 * 1024) as usize
                };
                let class = rng.below(3);
                let bytes = file_bytes(&mut rng, class, len);
                total += bytes.len() as u64;
                count += 1;
                files.push(SynthFile {
                    path: format!("usr/share/bench{i}/l{l}/d{}/f{f}.dat", f % 37),
                    mode: if f % 11 == 0 { 0o755 } else { 0o644 },
                    bytes,
                });
            }
            layers.push(files);
        }
        images.push(SynthImage {
            name: format!("bench/svc{i}:1"),
            layers,
            ..SynthImage::default()
        });
    }
    (images, total, count)
}

struct Measured {
    secs: f64,
    /// User plus system CPU time of the child and its waited-for children.
    cpu_secs: f64,
    peak_rss_kib: u64,
}

/// Run a command to completion, measuring wall time and the child's peak RSS.
fn measure(cmd: &mut Command) -> anyhow::Result<Measured> {
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("running {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = start.elapsed().as_secs_f64();
    if rc != pid {
        let _ = child.wait();
        bail!("wait4 failed for {cmd:?}");
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{cmd:?} failed (status {status})");
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Measured {
        secs,
        cpu_secs: tv(usage.ru_utime) + tv(usage.ru_stime),
        peak_rss_kib: usage.ru_maxrss as u64,
    })
}

/// Flush dirty pages before a measured run, so no writer pays for the
/// writeback of the one before it. Best effort: a failed `sync` only adds noise.
fn settle() {
    let _ = Command::new("sync").status();
}

fn median(mut xs: Vec<Measured>) -> Measured {
    xs.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let peak = xs.iter().map(|m| m.peak_rss_kib).max().unwrap_or(0);
    let mid = xs.swap_remove(xs.len() / 2);
    Measured {
        secs: mid.secs,
        cpu_secs: mid.cpu_secs,
        peak_rss_kib: peak,
    }
}

/// `xtask bench-generate SCALE DIR`: write the layout, YAML and a summary.
pub fn generate(args: &[String]) -> anyhow::Result<()> {
    let [scale, work] = args else {
        bail!("usage: bench-generate SCALE DIR")
    };
    let work = Path::new(work);
    let (images, total, count) = synth(scale.parse()?);
    write_images(&work.join("layout"), &images)?;
    let mut y = String::from(
        "kernel:\n  image: bench/kernel:1\n  cmdline: console=ttyS0\n  tar: none\nonboot:\n",
    );
    for img in images.iter().skip(1) {
        let name = img.name.trim_start_matches("bench/").trim_end_matches(":1");
        // A command, as every container needs one to start.
        y.push_str(&format!(
            "  - name: {name}\n    image: {}\n    command: [\"/bin/true\"]\n",
            img.name
        ));
    }
    fs::write(work.join("bench.yml"), y)?;
    fs::write(work.join("summary"), format!("{count} {total}\n"))?;
    Ok(())
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let xz = args.iter().any(|a| a == "--xz");
    let only_realistic = args.iter().any(|a| a == "--realistic");
    if let Some(bad) = args
        .iter()
        .find(|a| !matches!(a.as_str(), "--quick" | "--xz" | "--realistic"))
    {
        bail!("unknown argument {bad:?}; usage: cargo xtask bench [--quick] [--realistic] [--xz]");
    }
    let scale = if quick { 0.1 } else { 1.0 };
    let runs = if quick { 1 } else { 3 };

    let status = Command::new("cargo")
        .args(["build", "--release", "--quiet", "-p", "kiln", "-p", "xtask"])
        .status()?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    // `cargo xtask` runs a debug xtask; the writers run in the release one.
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| "target".into(), PathBuf::from);
    let kiln = target.join("release/kiln");
    let xtask = target.join("release/xtask");
    if only_realistic {
        return realistic::bench(&kiln, runs, xz);
    }
    let work = PathBuf::from("target/bench");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;

    // The data set is generated by a child process: a process's peak RSS
    // includes its parent's at fork, so the measuring parent stays small.
    eprintln!("bench: generating the synthetic image set (scale {scale})…");
    let layout = work.join("layout");
    let yml = work.join("bench.yml");
    let status = Command::new(&xtask)
        .args(["bench-generate", &scale.to_string()])
        .arg(&work)
        .status()?;
    if !status.success() {
        bail!("generating the benchmark data failed");
    }
    let summary = fs::read_to_string(work.join("summary"))?;
    let (count, total) = summary.trim().split_once(' ').context("bad summary")?;
    let (count, total): (usize, u64) = (count.parse()?, total.parse()?);

    let build = |out: &Path, compress: &str| {
        let mut c = Command::new(&kiln);
        c.args(["build", "--layout"])
            .arg(&layout)
            .args(["--compress", compress, "-o"])
            .arg(out)
            .arg(&yml);
        c.stdout(Stdio::null());
        c
    };
    let raw_dir = work.join("raw");
    fs::create_dir_all(&raw_dir)?;
    measure(&mut build(&raw_dir, "none"))?;
    let cpio = raw_dir.join("bench-initrd.img");
    let cpio_len = fs::metadata(&cpio)?.len();

    let gz_dir = work.join("gz");
    fs::create_dir_all(&gz_dir)?;
    let mut kiln_runs = Vec::new();
    let mut gzip_runs = Vec::new();
    for _ in 0..runs {
        kiln_runs.push(measure(&mut build(&gz_dir, "gzip"))?);
        gzip_runs.push(measure(
            Command::new("gzip")
                .args(["-n", "-6", "-c"])
                .stdin(fs::File::open(&cpio)?)
                .stdout(fs::File::create(work.join("baseline.gz"))?),
        )?);
    }
    let k = median(kiln_runs);
    let g = median(gzip_runs);
    let mb = cpio_len as f64 / 1e6;
    let kiln_gz = fs::metadata(gz_dir.join("bench-initrd.img"))?.len();
    let base_gz = fs::metadata(work.join("baseline.gz"))?.len();
    println!("synthetic set: {count} files, {:.1} MB of file data, cpio {mb:.1} MB, {runs} run(s), median", total as f64 / 1e6);
    println!(
        "{:<34} {:>8} {:>9} {:>10} {:>10}",
        "", "wall s", "MB/s", "peak MiB", "out MB"
    );
    println!(
        "{:<34} {:>8.2} {:>9.1} {:>10.1} {:>10.1}",
        "kiln build (unpack+cpio+gzip)",
        k.secs,
        mb / k.secs,
        k.peak_rss_kib as f64 / 1024.0,
        kiln_gz as f64 / 1e6
    );
    println!(
        "{:<34} {:>8.2} {:>9.1} {:>10.1} {:>10.1}",
        "gzip -n -6 on the same cpio",
        g.secs,
        mb / g.secs,
        g.peak_rss_kib as f64 / 1024.0,
        base_gz as f64 / 1e6
    );
    println!(
        "ratio kiln/gzip wall time: {:.2} (target < 1.00); kiln peak RSS {:.0} MiB (target < 400)",
        k.secs / g.secs,
        k.peak_rss_kib as f64 / 1024.0
    );
    // The writers take a fraction of a second each on a noisy machine:
    // more runs cost little and steady their medians.
    let payload = gz_dir.join("bench-initrd.img");
    let writer_runs = if quick { 3 } else { 5 };
    esp_bench(&xtask, &work, &payload, writer_runs)?;
    iso::bench(&xtask, &work, &payload, writer_runs)?;
    let names = kiln::oci::Layout::open(&layout)?.names();
    pull::bench(&kiln, &work, &layout, &names, runs)?;
    realistic::bench(&kiln, runs, xz)
}

/// raw-efi writing: kiln's GPT + FAT32 writer against `mkfs.vfat` + `mcopy`
/// on the same file (the compressed bench initrd standing in for a UKI).
fn esp_bench(xtask: &Path, work: &Path, payload: &Path, runs: usize) -> anyhow::Result<()> {
    let mb = fs::metadata(payload)?.len() as f64 / 1e6;
    let mut kiln_runs = Vec::new();
    let mut writer_runs = Vec::new();
    let mut tool_runs = Vec::new();
    let img = work.join("esp-kiln.img");
    let tool_img = work.join("esp-tools.img");
    for _ in 0..runs {
        let _ = fs::remove_file(&img);
        settle();
        kiln_runs.push(measure(
            Command::new(xtask)
                .arg("bench-raw-efi")
                .arg(payload)
                .arg(&img)
                .stdout(Stdio::null()),
        )?);
        let secs: f64 = fs::read_to_string(work.join("esp-kiln.img.secs"))?
            .trim()
            .parse()
            .context("the raw-efi writer's time")?;
        writer_runs.push(Measured {
            secs,
            cpu_secs: 0.0,
            peak_rss_kib: 0,
        });
        let size_kib = (fs::metadata(payload)?.len() / 1024 + 34 * 1024).to_string();
        let _ = fs::remove_file(&tool_img);
        settle();
        let script = format!(
            "mkfs.vfat -F 32 -C {img} {size_kib} >/dev/null && mmd -i {img} ::EFI ::EFI/BOOT && mcopy -i {img} {payload} ::EFI/BOOT/BOOTX64.EFI",
            img = tool_img.display(),
            payload = payload.display()
        );
        tool_runs.push(measure(Command::new("sh").arg("-c").arg(script))?);
    }
    let (k, t) = (median(kiln_runs), median(tool_runs));
    let wr = median(writer_runs);
    println!();
    println!("raw-efi: one {mb:.1} MB file on a FAT32 ESP, {runs} run(s), median");
    println!(
        "{:<34} {:>8} {:>9} {:>10}",
        "", "wall s", "MB/s", "peak MiB"
    );
    println!(
        "{:<34} {:>8.2} {:>9.1} {:>10.1}",
        "kiln process (load + GPT + FAT32)",
        k.secs,
        mb / k.secs,
        k.peak_rss_kib as f64 / 1024.0
    );
    println!(
        "{:<34} {:>8.2} {:>9.1} {:>10}",
        "  of which the disk writer",
        wr.secs,
        mb / wr.secs,
        "-"
    );
    println!(
        "{:<34} {:>8.2} {:>9.1} {:>10.1}",
        "mkfs.vfat + mcopy (ESP only)",
        t.secs,
        mb / t.secs,
        t.peak_rss_kib as f64 / 1024.0
    );
    // The whole kiln process also copies the payload into its content
    // store and hashes it (0.1 s here): in a build the UKI is already
    // there, hashed when it was made, so the writer's line is the one to
    // hold against the tools, which only copy the file in.
    println!(
        "ratio kiln writer/tools wall time: {:.2} (target <= 1.00); whole kiln process/tools: {:.2}",
        wr.secs / t.secs,
        k.secs / t.secs
    );
    Ok(())
}

/// `xtask bench-raw-efi PAYLOAD OUT`: write a raw-efi disk holding PAYLOAD;
/// `xtask bench-raw-efi --iso PAYLOAD OUT`: an iso-efi image instead.
pub fn raw_efi(args: &[String]) -> anyhow::Result<()> {
    if let Some(rest) = args.strip_prefix(&["--iso".to_string()]) {
        return iso::write(rest);
    }
    let [payload, out] = args else {
        bail!("usage: bench-raw-efi PAYLOAD OUT")
    };
    let store = kiln::tree::ContentStore::new()?;
    let content = store.add_reader(&mut fs::File::open(payload)?, None)?;
    // Time the disk writing alone: in a build the UKI is already in the
    // content store (hashed as it was added), so loading it is not counted.
    let start = Instant::now();
    let mut f = std::io::BufWriter::new(fs::File::create(out)?);
    kiln::output::disk::write_raw_efi(&content, None, &store, kiln::DEFAULT_EPOCH, None, &mut f)?;
    std::io::Write::flush(&mut f)?;
    drop(f);
    // The writer's own time, for the parent to report beside the process's.
    fs::write(
        format!("{out}.secs"),
        start.elapsed().as_secs_f64().to_string(),
    )?;
    Ok(())
}
