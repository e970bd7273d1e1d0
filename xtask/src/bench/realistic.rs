//! The realistic case of `cargo xtask bench`: the Debian kernel with every
//! module it ships (`kernel/full`, a ~390 MB `kernel.tar`) plus kiln's init,
//! runc, getty and busybox, built as `kernel+initrd`.
//!
//! The layout is the committed `oci-layout/` plus `kiln.dev/kernel-full`,
//! built by the release kiln from the pinned `linux-image` .deb (fetched
//! into `target/debs` with `apt-get download` when missing, sha256-checked)
//! and kept in `target/bench-real/` between runs. The baselines compress
//! the uncompressed cpio kiln writes for the same YAML (`--compress none`),
//! so each side sees the same bytes: `pigz -n -6` and `gzip -n -6` for
//! gzip, `zstd -T0 -3` for zstd, and with `--xz` also `xz -T0 -6` (kiln's
//! xz takes minutes on this set). Each row gives wall time, CPU time,
//! peak RSS and output size; the gzip row is checked against the hardening
//! goal of a peak below 64 MiB.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use super::{measure, median, settle, Measured};
use crate::vendor;

/// The recipe of the kernel image with every module.
const RECIPE: &str = "kernel/full";
/// The name that recipe gives its image.
const IMAGE: &str = "kiln.dev/kernel-full:0.1";
/// The pinned .deb the recipe unpacks.
const PACKAGE: &str = "linux-image-6.1.0-56-amd64";
/// The peak RSS the hardening issue asks of a `kernel+initrd` build.
const RSS_GOAL_MIB: f64 = 64.0;

const YAML: &str = "\
kernel:
  image: kiln.dev/kernel-full:0.1
  cmdline: \"console=ttyS0\"
init:
  - kiln.dev/init:0.1
  - kiln.dev/runc:0.1
services:
  - name: getty
    image: kiln.dev/getty:0.1
    env:
      - INSECURE=true
  - name: shell
    image: kiln.dev/busybox:0.1
    command: [\"/bin/sh\", \"-c\", \"sleep 1\"]
";

/// One row: what ran, its measurement and the size of what it wrote.
struct Row {
    what: String,
    m: Measured,
    out: u64,
}

pub fn bench(kiln: &Path, runs: usize, xz: bool) -> anyhow::Result<()> {
    println!();
    let work = PathBuf::from("target/bench-real");
    let layout = prepare_layout(kiln, &work)?;
    let yml = work.join("real.yml");
    fs::write(&yml, YAML)?;

    let build = |out: &Path, compress: &str| {
        let mut c = Command::new(kiln);
        c.args(["build", "-f", "kernel+initrd", "--layout"])
            .arg(&layout)
            .args(["--compress", compress, "-o"])
            .arg(out)
            .arg(&yml);
        // Each build prints the images it used; the table is what matters.
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    let mut rows = Vec::new();
    let raw_dir = work.join("none");
    fs::create_dir_all(&raw_dir)?;
    let initrd = |dir: &Path| dir.join("real-initrd.img");
    let mut none = Vec::new();
    for _ in 0..runs {
        settle();
        none.push(measure(&mut build(&raw_dir, "none"))?);
    }
    let cpio = initrd(&raw_dir);
    let cpio_len = fs::metadata(&cpio)?.len();
    rows.push(Row {
        what: "kiln --compress none".into(),
        m: median(none),
        out: cpio_len,
    });

    let mut compressed = |compress: &str, tools: &[(&str, &[&str])]| -> anyhow::Result<()> {
        let dir = work.join(compress);
        fs::create_dir_all(&dir)?;
        let mut kiln_runs = Vec::new();
        let mut tool_runs: Vec<Vec<Measured>> = tools.iter().map(|_| Vec::new()).collect();
        let tool_out = |i: usize| work.join(format!("baseline-{compress}-{i}"));
        for _ in 0..runs {
            settle();
            kiln_runs.push(measure(&mut build(&dir, compress))?);
            for (i, (tool, args)) in tools.iter().enumerate() {
                settle();
                tool_runs[i].push(measure(
                    Command::new(tool)
                        .args(*args)
                        .stdin(fs::File::open(&cpio)?)
                        .stdout(fs::File::create(tool_out(i))?),
                )?);
            }
        }
        rows.push(Row {
            what: format!("kiln --compress {compress}"),
            m: median(kiln_runs),
            out: fs::metadata(initrd(&dir))?.len(),
        });
        for (i, ((tool, args), runs)) in tools.iter().zip(tool_runs).enumerate() {
            rows.push(Row {
                what: format!("{tool} {} (same cpio)", args.join(" ")),
                m: median(runs),
                out: fs::metadata(tool_out(i))?.len(),
            });
        }
        Ok(())
    };
    compressed(
        "gzip",
        &[("pigz", &["-n", "-6", "-c"]), ("gzip", &["-n", "-6", "-c"])],
    )?;
    compressed("zstd", &[("zstd", &["-T0", "-3", "-c", "-q"])])?;
    if xz {
        compressed("xz", &[("xz", &["-T0", "-6", "-c"])])?;
    }

    println!(
        "realistic set ({IMAGE} with every module, init, runc, getty, busybox): \
         kernel+initrd, cpio {:.1} MB, {runs} run(s), median",
        cpio_len as f64 / 1e6
    );
    println!(
        "{:<36} {:>8} {:>8} {:>10} {:>10}",
        "", "wall s", "cpu s", "peak MiB", "out MB"
    );
    for r in &rows {
        println!(
            "{:<36} {:>8.2} {:>8.2} {:>10.1} {:>10.1}",
            r.what,
            r.m.secs,
            r.m.cpu_secs,
            r.m.peak_rss_kib as f64 / 1024.0,
            r.out as f64 / 1e6
        );
    }
    let find = |what: &str| rows.iter().find(|r| r.what.starts_with(what));
    if let (Some(k), Some(p), Some(g)) =
        (find("kiln --compress gzip"), find("pigz"), find("gzip -n"))
    {
        println!(
            "ratio kiln gzip / pigz wall time: {:.2} (goal 0.6); output vs gzip -6: {:.3} (goal 1.0)",
            k.m.secs / p.m.secs,
            k.out as f64 / g.out as f64
        );
    }
    if let (Some(z), Some(k)) = (find("kiln --compress zstd"), find("kiln --compress gzip")) {
        println!(
            "ratio kiln zstd / kiln gzip wall time: {:.2} (goal 0.5)",
            z.m.secs / k.m.secs
        );
    }
    if let (Some(x), Some(t)) = (find("kiln --compress xz"), find("xz -T0")) {
        println!(
            "ratio kiln xz / xz -T0 -6 wall time: {:.2} (goal 1.0); kiln xz: {:.1} s against 267 s single-threaded (goal 0.55: {:.1} s)",
            x.m.secs / t.m.secs,
            x.m.secs,
            267.0 * 0.55
        );
    }
    let worst = rows
        .iter()
        .filter(|r| r.what.starts_with("kiln"))
        .map(|r| r.m.peak_rss_kib as f64 / 1024.0)
        .fold(0.0, f64::max);
    println!("kiln peak RSS in every mode: {worst:.1} MiB (goal < {RSS_GOAL_MIB:.0})");
    Ok(())
}

/// The committed layout plus the kernel with every module, built once.
fn prepare_layout(kiln: &Path, work: &Path) -> anyhow::Result<PathBuf> {
    let layout = work.join("layout");
    let index = layout.join("index.json");
    if fs::read_to_string(&index).is_ok_and(|t| t.contains(IMAGE)) {
        return Ok(layout);
    }
    let _ = fs::remove_dir_all(work);
    fs::create_dir_all(work)?;
    let status = Command::new("cp")
        .args(["-R", "oci-layout"])
        .arg(&layout)
        .status()?;
    if !status.success() {
        bail!("copying oci-layout/ to {} failed", layout.display());
    }
    let debs = PathBuf::from("target/debs");
    fs::create_dir_all(&debs)?;
    let pins = vendor::parse_pins(
        vendor::PINS,
        &fs::read_to_string(vendor::PINS).context(vendor::PINS)?,
    )?;
    let pin = pins
        .iter()
        .find(|p| p.package == PACKAGE)
        .with_context(|| format!("{} pins no {PACKAGE}", vendor::PINS))?;
    vendor::ensure_deb(&debs, pin)?;
    eprintln!(
        "bench: building {IMAGE} from {RECIPE} (once; kept in {})",
        work.display()
    );
    let status = Command::new(kiln)
        .args(["pkg", "build", "--layout"])
        .arg(&layout)
        .arg("--debs")
        .arg(&debs)
        .arg(RECIPE)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("kiln pkg build {RECIPE} failed");
    }
    Ok(layout)
}
