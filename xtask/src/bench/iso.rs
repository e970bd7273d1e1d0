//! The `iso-efi` line of `cargo xtask bench`: kiln's ISO writer against
//! `xorriso -as mkisofs` on the same file, measured in the same run.
//!
//! Takes one payload file (the compressed bench initrd, standing in for a
//! UKI) and gives a table: median wall time, MB/s of payload, peak RSS and
//! output size for kiln and for the tools, and the kiln/tool ratios. kiln's
//! writer builds the FAT32 ESP holding the payload and the ISO around it,
//! so it is compared twice: with the whole tool pipeline doing the same
//! (`mkfs.vfat` + `mcopy` + `xorriso`), and with `xorriso` alone around an
//! ESP made beforehand, which is the strictest comparison (kiln's time
//! includes making the ESP, xorriso's does not). Each writer runs in its
//! own process, so its peak RSS is its own. Never compares output bytes:
//! the images differ in layout (kiln's is also a GPT disk), not in content.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use super::{measure, median, settle, Measured};

/// The ESP image's name inside the ISO tree given to xorriso.
const ESP_NAME: &str = "EFI.IMG";

/// Compare kiln's `iso-efi` writer with xorriso on `payload`, `runs` times;
/// `xtask` is the release xtask binary (its `bench-raw-efi --iso` mode).
pub fn bench(xtask: &Path, work: &Path, payload: &Path, runs: usize) -> anyhow::Result<()> {
    let payload_len = fs::metadata(payload)
        .with_context(|| format!("reading {}", payload.display()))?
        .len();
    let mb = payload_len as f64 / 1e6;
    let kiln_iso = work.join("iso-kiln.iso");
    let tool_iso = work.join("iso-tools.iso");
    let root = work.join("iso-root");
    let esp = root.join(ESP_NAME);
    // xorriso prints its banner on stderr even with -quiet: keep it aside.
    let log = work.join("xorriso.log");
    let see_log = || format!("see {}", log.display());
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    // The same ESP recipe as the raw-efi line: FAT32, the payload as the
    // default EFI boot path, 34 MiB of slack so FAT32 is always legal.
    let make_esp = format!(
        "mkfs.vfat -F 32 -C {esp} {kib} >/dev/null && \
         mmd -i {esp} ::EFI ::EFI/BOOT && mcopy -i {esp} {payload} ::EFI/BOOT/BOOTX64.EFI",
        esp = esp.display(),
        kib = payload_len / 1024 + 34 * 1024,
        payload = payload.display(),
    );
    let (mut kiln_runs, mut pipe_runs, mut xorriso_runs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        // Each writer starts without an old output to truncate or unlink.
        let _ = fs::remove_file(&kiln_iso);
        settle();
        kiln_runs.push(measure(
            Command::new(xtask)
                .args(["bench-raw-efi", "--iso"])
                .arg(payload)
                .arg(&kiln_iso)
                .stdout(Stdio::null()),
        )?);
        let _ = fs::remove_file(&tool_iso);
        let _ = fs::remove_file(&esp);
        settle();
        let pipeline = format!(
            "{make_esp} && xorriso -as mkisofs -quiet -o {out} -e {ESP_NAME} -no-emul-boot {root} \
             >/dev/null 2>{log}",
            out = tool_iso.display(),
            root = root.display(),
            log = log.display(),
        );
        pipe_runs.push(measure(Command::new("sh").arg("-c").arg(pipeline)).with_context(see_log)?);
        // xorriso alone, around the ESP the pipeline just made.
        let _ = fs::remove_file(&tool_iso);
        settle();
        xorriso_runs.push(
            measure(
                Command::new("xorriso")
                    .args(["-as", "mkisofs", "-quiet", "-o"])
                    .arg(&tool_iso)
                    .args(["-e", ESP_NAME, "-no-emul-boot"])
                    .arg(&root)
                    .stdout(Stdio::null())
                    .stderr(fs::File::create(&log)?),
            )
            .with_context(see_log)?,
        );
    }
    let size = |p: &Path| -> anyhow::Result<f64> {
        Ok(fs::metadata(p)
            .with_context(|| format!("reading {}", p.display()))?
            .len() as f64
            / 1e6)
    };
    let (kiln_mb, tool_mb) = (size(&kiln_iso)?, size(&tool_iso)?);
    let (k, p, x) = (median(kiln_runs), median(pipe_runs), median(xorriso_runs));
    println!();
    println!(
        "iso-efi: one {mb:.1} MB file in a FAT32 ESP, El Torito EFI entry, {runs} run(s), median"
    );
    println!(
        "{:<34} {:>8} {:>9} {:>10} {:>10}",
        "", "wall s", "MB/s", "peak MiB", "out MB"
    );
    let row = |name: &str, m: &Measured, out: f64| {
        println!(
            "{name:<34} {:>8.2} {:>9.1} {:>10.1} {:>10.1}",
            m.secs,
            mb / m.secs,
            m.peak_rss_kib as f64 / 1024.0,
            out
        );
    };
    row("kiln (ESP + ISO + GPT)", &k, kiln_mb);
    row("mkfs.vfat + mcopy + xorriso", &p, tool_mb);
    row("xorriso -as mkisofs (ESP ready)", &x, tool_mb);
    println!(
        "ratio kiln/tools wall time: {:.2}, kiln/xorriso alone: {:.2} (target <= 1.00); \
         peak RSS kiln {:.1} MiB, xorriso {:.1} MiB",
        k.secs / p.secs,
        k.secs / x.secs,
        k.peak_rss_kib as f64 / 1024.0,
        x.peak_rss_kib as f64 / 1024.0
    );
    Ok(())
}

/// `xtask bench-raw-efi --iso PAYLOAD OUT`: write an `iso-efi` image whose
/// UKI is PAYLOAD with kiln's writer, as `kiln build` does.
pub fn write(args: &[String]) -> anyhow::Result<()> {
    let [payload, out] = args else {
        bail!("usage: bench-raw-efi --iso PAYLOAD OUT")
    };
    let store = kiln::tree::ContentStore::new()?;
    let uki = store.add_reader(
        &mut fs::File::open(payload).with_context(|| format!("opening {payload}"))?,
        None,
    )?;
    let mut f = fs::File::create(out).with_context(|| format!("creating {out}"))?;
    let mut buf = std::io::BufWriter::with_capacity(1 << 20, &mut f);
    kiln::output::iso::write_iso_efi(&uki, &store, kiln::DEFAULT_EPOCH, "bench", &mut buf)
        .with_context(|| format!("writing {out}"))?;
    buf.flush()?;
    Ok(())
}
