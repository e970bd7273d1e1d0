//! `cargo xtask boot-test [--all] [CASE...]`: build each case, check its
//! hashes against `golden/`, boot it under qemu and check the console.
//!
//! A case is a LinuxKit YAML file with a sibling `.expect` file, in
//! `examples/` or `tests/boot/`. The `.expect` file has one directive a line:
//! `expect: TEXT` (must appear, in this order), `forbid: TEXT` (must never
//! appear), `timeout: SECONDS`, `formats: kernel+initrd …`, `compress: xz`
//! (the build's `--compress`), `firmware: bios` (boot only under SeaBIOS),
//! `break: legacy-bios-bootable` (clear the ESP's GPT attribute bit 2 of the
//! built raw-efi disk before booting it), and `ci: yes` (run without `--all`).
//! The hybrid GPT disks (raw-efi, qcow2-efi, vhd, dynamic-vhd, vmdk, aws,
//! gcp) boot twice, under OVMF and under SeaBIOS. The guest reports its own verdict: the check
//! container prints what it found and powers off, so the harness never has
//! to guess from a timeout.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context};

struct Case {
    name: String,
    yml: PathBuf,
    expect: Vec<String>,
    forbid: Vec<String>,
    timeout: u64,
    formats: Vec<String>,
    /// `--compress` for the build (kiln's default when `None`).
    compress: Option<String>,
    /// `firmware: bios`: boot only under BIOS (SeaBIOS); `None`: every way
    /// the format boots.
    firmware: Option<String>,
    /// `break: legacy-bios-bootable`: clear GPT attribute bit 2 of the
    /// built raw-efi disk's ESP before booting it, so its BIOS half is
    /// broken (the case then expects the BIOS boot to fail).
    breaks: Option<String>,
    ci: bool,
}

fn parse_expect(name: &str, yml: &Path, text: &str) -> anyhow::Result<Case> {
    let mut case = Case {
        name: name.to_owned(),
        yml: yml.to_owned(),
        expect: Vec::new(),
        forbid: vec!["Kernel panic".into(), "kiln-init: panic".into()],
        timeout: 120,
        formats: vec!["kernel+initrd".into()],
        compress: None,
        firmware: None,
        breaks: None,
        ci: false,
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once(':')
            .with_context(|| format!("{name}.expect:{}: want KEY: VALUE", i + 1))?;
        let value = value.trim().to_owned();
        match key {
            "expect" => case.expect.push(value),
            "forbid" => case.forbid.push(value),
            "timeout" => {
                case.timeout = value
                    .parse()
                    .with_context(|| format!("{name}.expect:{}: timeout", i + 1))?
            }
            "formats" => case.formats = value.split_whitespace().map(str::to_owned).collect(),
            "compress" => case.compress = Some(value),
            "firmware" if value == "bios" => case.firmware = Some(value),
            "firmware" => bail!("{name}.expect:{}: firmware: only bios is known", i + 1),
            "break" if value == "legacy-bios-bootable" => case.breaks = Some(value),
            "break" => bail!(
                "{name}.expect:{}: break: only legacy-bios-bootable is known",
                i + 1
            ),
            "ci" => case.ci = value == "yes",
            other => bail!("{name}.expect:{}: unknown directive {other:?}", i + 1),
        }
    }
    Ok(case)
}

fn discover() -> anyhow::Result<Vec<Case>> {
    let mut cases = Vec::new();
    for dir in ["examples", "tests/boot"] {
        let Ok(rd) = fs::read_dir(dir) else { continue };
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if p.extension().is_some_and(|e| e == "expect") {
                let name = p
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let yml = p.with_extension("yml");
                if !yml.is_file() {
                    bail!("{} has no {}", p.display(), yml.display());
                }
                cases.push(parse_expect(&name, &yml, &fs::read_to_string(&p)?)?);
            }
        }
    }
    Ok(cases)
}

/// Where each marker was found: Ok(()) or the first missing/forbidden one.
fn check_console(console: &str, case: &Case) -> Result<(), String> {
    for f in &case.forbid {
        if console.contains(f.as_str()) {
            return Err(format!("forbidden marker seen: {f:?}"));
        }
    }
    let mut at = 0;
    for e in &case.expect {
        match console[at..].find(e.as_str()) {
            Some(i) => at += i + e.len(),
            None => {
                return Err(if console.contains(e.as_str()) {
                    format!("marker out of order: {e:?}")
                } else {
                    format!("missing marker: {e:?}")
                })
            }
        }
    }
    Ok(())
}

fn output_name(format: &str, case: &str) -> String {
    match format {
        "kernel+initrd" => case.to_owned(),
        "kernel+squashfs" => format!("{case}-squashfs.img"),
        "iso-bios" => format!("{case}.iso"),
        "iso-efi" => format!("{case}-efi.iso"),
        "iso-efi-initrd" => format!("{case}-efi-initrd.iso"),
        "qcow2-bios" => format!("{case}.qcow2"),
        "kernel+iso" => format!("{case}.iso"),
        "gcp" => format!("{case}.img.tar.gz"),
        "raw-efi" => format!("{case}-efi.img"),
        "raw-bios" => format!("{case}-bios.img"),
        "uki" => format!("{case}.efi"),
        "qcow2-efi" => format!("{case}-efi.qcow2"),
        "dynamic-vhd" => format!("{case}-dynamic.vhd"),
        "aws" => format!("{case}.raw"),
        other => format!("{case}.{other}"),
    }
}

/// Every way `format` boots, as `(variant, kiln run qemu arguments)`; the
/// first is its default (variant ""). The hybrid ISOs boot from a CD and as
/// a disk, iso-efi under UEFI (its default) and BIOS; iso-bios also as a
/// disk. The hybrid GPT disks boot under UEFI (their default) and BIOS.
fn variants(format: &str) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut v = vec![("", Vec::new())];
    match format {
        "iso-efi" => v.extend([
            ("bios", vec!["--bios"]),
            ("disk", vec!["--iso-as-disk"]),
            ("disk-bios", vec!["--iso-as-disk", "--bios"]),
        ]),
        "iso-bios" | "iso-efi-initrd" => v.push(("disk", vec!["--iso-as-disk"])),
        "raw-efi" | "qcow2-efi" | "vhd" | "dynamic-vhd" | "vmdk" | "aws" | "gcp" => {
            v.push(("bios", vec!["--bios"]))
        }
        _ => {}
    }
    v
}

/// Copy the raw GPT disk at `disk` to `to` with attribute bit 2 (legacy
/// BIOS bootable) of its first partition cleared in both GPTs, their CRCs
/// fixed: a disk whose BIOS half `gptmbr.bin` cannot find. Gives `to`.
fn break_legacy_bios_bootable(disk: &Path, to: &Path) -> anyhow::Result<PathBuf> {
    let mut bytes = fs::read(disk).with_context(|| format!("break: reading {}", disk.display()))?;
    let sectors = bytes.len() as u64 / 512;
    for header_lba in [1, sectors.saturating_sub(1)] {
        let h = usize::try_from(header_lba * 512)?;
        if bytes.get(h..h + 8) != Some(b"EFI PART".as_slice()) {
            bail!(
                "break: {} has no GPT header at sector {header_lba}",
                disk.display()
            );
        }
        let le32 = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let table = usize::try_from(u64::from_le_bytes(bytes[h + 72..h + 80].try_into()?) * 512)?;
        let (count, size) = (le32(&bytes, h + 80) as usize, le32(&bytes, h + 84) as usize);
        let entries = bytes
            .get_mut(table..table + count * size)
            .context("break: the GPT entries lie outside the disk")?;
        if entries[48] & 4 == 0 {
            bail!(
                "break: partition 1 of {} is not legacy-BIOS-bootable",
                disk.display()
            );
        }
        entries[48] &= !4;
        let entries_crc = crc32fast::hash(entries);
        bytes[h + 88..h + 92].copy_from_slice(&entries_crc.to_le_bytes());
        bytes[h + 16..h + 20].fill(0);
        let header_crc = crc32fast::hash(&bytes[h..h + 92]);
        bytes[h + 16..h + 20].copy_from_slice(&header_crc.to_le_bytes());
    }
    fs::write(to, &bytes).with_context(|| format!("break: writing {}", to.display()))?;
    Ok(to.to_owned())
}

/// Unpack `disk.raw` from a GCE image archive into `dir`; its path.
fn extract_disk_raw(archive: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let archive = fs::canonicalize(archive)
        .with_context(|| format!("no GCE archive at {}", archive.display()))?;
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("disk.raw")
        .current_dir(dir)
        .status()?;
    if !status.success() {
        bail!("extracting disk.raw from {}", archive.display());
    }
    Ok(dir.join("disk.raw"))
}

/// One boot of one built format of a case.
struct Job<'a> {
    case: &'a Case,
    /// `format` or `format/variant`.
    label: String,
    /// Extra `kiln run qemu` arguments of the variant.
    extra: Vec<String>,
    target: PathBuf,
    log: PathBuf,
}

/// Boots `job` with `kiln run qemu`, watching the console log: stops as soon
/// as every marker was seen (a service such as getty never powers off) or a
/// forbidden one appears. Gives the seconds, the verdict and the console.
fn boot_one(
    kiln: &Path,
    accel: &str,
    job: &Job,
) -> anyhow::Result<(f64, Result<(), String>, String)> {
    let case = job.case;
    let start = Instant::now();
    // kiln's own messages go beside the console log and are shown on failure.
    let stderr_path = job.log.with_extension("stderr");
    let stderr = fs::File::create(&stderr_path)?;
    let mut child = Command::new(kiln)
        .args([
            "run",
            "qemu",
            "--accel",
            accel,
            "--timeout",
            &case.timeout.to_string(),
            "--console-log",
        ])
        .arg(&job.log)
        .args(&job.extra)
        .arg(&job.target)
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .process_group(0)
        .spawn()?;
    // SIGTERM lets kiln stop qemu and remove its temp directory; the whole
    // process group is killed only if that takes too long.
    let stop = |child: &mut std::process::Child| {
        // SAFETY: plain kill(2) on the child we started.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let asked = Instant::now();
        while asked.elapsed() < std::time::Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // SAFETY: plain kill(2) on the process group we created.
        unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = child.wait();
    };
    let code = loop {
        if let Some(status) = child.try_wait()? {
            break status.code();
        }
        let console = fs::read_to_string(&job.log).unwrap_or_default();
        if check_console(&console, case).is_ok()
            || case.forbid.iter().any(|f| console.contains(f.as_str()))
        {
            stop(&mut child);
            break Some(0);
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    let secs = start.elapsed().as_secs_f64();
    let console = fs::read_to_string(&job.log).unwrap_or_default();
    let verdict = match (code, check_console(&console, case)) {
        (_, Err(e)) => Err(e),
        (Some(0), Ok(())) => Ok(()),
        (Some(124), Ok(())) => Err(format!("timed out after {}s", case.timeout)),
        (code, Ok(())) => Err(format!("qemu exited with {code:?}")),
    };
    let verdict = verdict.map_err(|e| {
        let said = fs::read_to_string(&stderr_path).unwrap_or_default();
        if said.trim().is_empty() {
            e
        } else {
            format!(
                "{e}\n    kiln said: {}",
                said.trim().replace('\n', "\n    kiln said: ")
            )
        }
    });
    Ok((secs, verdict, console))
}

/// What `cargo xtask boot-test --help` prints.
const HELP: &str = "usage: cargo xtask boot-test [--all] [CASE...]

Builds each case (examples/*.yml and tests/boot/*.yml with a sibling .expect
file) with the release kiln, checks its outputs against golden/, boots every
format the case lists under qemu (SeaBIOS or OVMF, both for iso-efi and the
hybrid GPT disks; TCG when KVM hangs) and checks the serial console for the
case's expect: lines, in order, and for no forbid: line. Boots run side by
side, one per core (KILN_BOOT_JOBS=N to change it); each line prints as its
boot ends.

  (no CASE)   the cases marked `ci: yes`
  --all       every case
  CASE...     only these cases (by file stem)
";

pub fn run(args: &[String]) -> anyhow::Result<()> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{HELP}");
        return Ok(());
    }
    if let Some(bad) = args.iter().find(|a| a.starts_with('-') && *a != "--all") {
        bail!("boot-test: unknown option {bad}\n\n{HELP}");
    }
    let all = args.iter().any(|a| a == "--all");
    let wanted: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let status = Command::new("cargo")
        .args(["build", "--release", "--quiet", "-p", "kiln"])
        .status()?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    // Where cargo put it: a shared CARGO_TARGET_DIR (worktrees) or ./target.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let release = target_dir.join("release/kiln");
    let kiln = fs::canonicalize(&release)
        .with_context(|| format!("finding the kiln binary at {}", release.display()))?;
    let mut cases = discover()?;
    cases.retain(|c| {
        if wanted.is_empty() {
            all || c.ci
        } else {
            wanted.iter().any(|w| **w == c.name)
        }
    });
    if cases.is_empty() {
        bail!("no boot-test case selected");
    }
    let mut failures = 0;
    let mut jobs: Vec<Job> = Vec::new();
    for case in &cases {
        let out = PathBuf::from("target/boot").join(&case.name);
        let _ = fs::remove_dir_all(&out);
        fs::create_dir_all(&out)?;
        let golden = PathBuf::from("golden").join(format!("{}.sha256", case.name));
        let mut build = Command::new(&kiln);
        build
            .arg("build")
            .arg("-o")
            .arg(&out)
            .args(["--name", &case.name]);
        for f in &case.formats {
            build.args(["-f", f]);
        }
        if let Some(c) = &case.compress {
            build.args(["--compress", c]);
        }
        build
            .arg("--golden")
            .arg(&golden)
            .arg(&case.yml)
            .env_remove("SOURCE_DATE_EPOCH");
        let b = build.output()?;
        if !b.status.success() {
            failures += case.formats.len();
            println!(
                "FAIL {:<24} build    {}",
                case.name,
                String::from_utf8_lossy(&b.stderr).trim()
            );
            continue;
        }
        let runs = case
            .formats
            .iter()
            .flat_map(|f| variants(f).into_iter().map(move |(v, a)| (f, v, a)))
            .filter(|(_, _, extra)| case.firmware.is_none() || extra.contains(&"--bios"));
        for (format, variant, extra) in runs {
            let mut target = out.join(output_name(format, &case.name));
            if case.breaks.is_some() {
                match break_legacy_bios_bootable(&target, &out.join("broken-efi.img")) {
                    Ok(broken) => target = broken,
                    Err(e) => {
                        failures += 1;
                        println!("FAIL {:<24} {:<14} {e:#}", case.name, format);
                        continue;
                    }
                }
            }
            if format == "gcp" {
                // A GCE import archive: boot the disk.raw GCE would import.
                match extract_disk_raw(&target, &out.join("gcp")) {
                    Ok(disk) => target = disk,
                    Err(e) => {
                        failures += 1;
                        println!("FAIL {:<24} {:<14} {e:#}", case.name, format);
                        continue;
                    }
                }
            }
            let label = if variant.is_empty() {
                format.clone()
            } else {
                format!("{format}/{variant}")
            };
            let log = out.join(format!("{}.console", label.replace('/', "-")));
            jobs.push(Job {
                case,
                label,
                extra: extra.iter().map(|a| a.to_string()).collect(),
                target,
                log,
            });
        }
    }
    // Each TCG guest keeps one core busy: boot as many at once as there are
    // cores (KILN_BOOT_JOBS to change it). Lines print as boots finish.
    let workers = std::env::var("KILN_BOOT_JOBS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, jobs.len().max(1));
    // One KVM probe for the whole run instead of one per boot.
    let accel = if kiln::run::kvm_works() { "kvm" } else { "tcg" };
    println!(
        "boot-test: {} boots, {workers} at a time, accelerator {accel}",
        jobs.len()
    );
    let next = AtomicUsize::new(0);
    let passes = AtomicUsize::new(0);
    let failed = AtomicUsize::new(failures);
    let print = Mutex::new(());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let (secs, verdict, console) = match boot_one(&kiln, accel, job) {
                        Ok(r) => r,
                        Err(e) => (0.0, Err(format!("{e:#}")), String::new()),
                    };
                    let _guard = print.lock().expect("print lock");
                    let (name, label) = (&job.case.name, &job.label);
                    match verdict {
                        Ok(()) => {
                            passes.fetch_add(1, Ordering::Relaxed);
                            println!("PASS {name:<24} {label:<14} {secs:6.1}s");
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            println!("FAIL {name:<24} {label:<14} {secs:6.1}s  {e}");
                            let lines: Vec<&str> = console.lines().collect();
                            for l in &lines[lines.len().saturating_sub(40)..] {
                                println!("    | {l}");
                            }
                        }
                    }
                }
            });
        }
    });
    let (passes, failures) = (passes.into_inner(), failed.into_inner());
    println!("boot-test: {passes} passed, {failures} failed");
    if failures > 0 {
        bail!("{failures} boot test(s) failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn help_and_unknown_options_do_not_run_the_suite() {
        // Neither builds nor boots anything: both return before cargo runs.
        assert!(super::run(&["--help".to_string()]).is_ok());
        let err = super::run(&["--quick".to_string()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown option --quick") && err.contains("usage:"),
            "{err}"
        );
    }

    use super::*;

    fn case(text: &str) -> Case {
        parse_expect("c", Path::new("c.yml"), text).unwrap()
    }

    #[test]
    fn markers_must_appear_in_order() {
        let c = case("expect: a\nexpect: b\n");
        assert!(check_console("x a y b z", &c).is_ok());
        assert_eq!(
            check_console("b a", &c).unwrap_err(),
            "marker out of order: \"b\""
        );
        assert_eq!(check_console("a", &c).unwrap_err(), "missing marker: \"b\"");
    }

    #[test]
    fn forbidden_markers_fail() {
        let c = case("expect: a\nforbid: oops\n");
        assert!(check_console("a oops", &c).unwrap_err().contains("oops"));
        assert!(check_console("a Kernel panic - not syncing", &c).is_err());
    }

    #[test]
    fn kernel_squashfs_boots_from_its_squashfs() {
        // `kiln run qemu` finds the kernel and root initrd beside it; the
        // name alone would boot a kernel+initrd of the same build instead.
        assert_eq!(output_name("kernel+squashfs", "m"), "m-squashfs.img");
        assert_eq!(output_name("kernel+initrd", "m"), "m");
    }

    #[test]
    fn directives_parse() {
        let c = case("# comment\ntimeout: 30\nformats: kernel+initrd iso-bios\nci: yes\n");
        assert_eq!(c.timeout, 30);
        assert_eq!(c.formats, ["kernel+initrd", "iso-bios"]);
        assert!(c.ci);
        assert!(parse_expect("c", Path::new("c.yml"), "bogus: 1").is_err());
    }

    #[test]
    fn hybrid_disks_boot_under_both_firmwares() {
        for f in [
            "raw-efi",
            "qcow2-efi",
            "vhd",
            "dynamic-vhd",
            "vmdk",
            "aws",
            "gcp",
        ] {
            let v = variants(f);
            assert_eq!(v.len(), 2, "{f}");
            assert_eq!((v[1].0, v[1].1.as_slice()), ("bios", ["--bios"].as_slice()));
        }
        assert_eq!(variants("raw-bios").len(), 1);
        assert_eq!(variants("iso-efi").len(), 4);
        let c = case("formats: raw-efi\nfirmware: bios\nbreak: legacy-bios-bootable\n");
        assert_eq!(c.firmware.as_deref(), Some("bios"));
        assert_eq!(c.breaks.as_deref(), Some("legacy-bios-bootable"));
        assert!(parse_expect("c", Path::new("c.yml"), "firmware: uefi").is_err());
        assert!(parse_expect("c", Path::new("c.yml"), "break: mbr").is_err());
    }

    #[test]
    fn breaking_the_bios_half_clears_bit_2_in_both_gpts() {
        use kiln::output::disk::{
            guid_from, write_gpt_disk, GptPartition, PartData, ESP_TYPE, LEGACY_BIOS_BOOTABLE,
        };
        let dir = std::env::temp_dir().join(format!("kiln-break-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut data: &[u8] = &[1u8; 512];
        let mut parts = [GptPartition {
            type_guid: ESP_TYPE,
            unique_guid: guid_from(b"p"),
            name: "ESP",
            attributes: LEGACY_BIOS_BOOTABLE,
            first_lba: None,
            data: PartData::Reader(&mut data),
            len: 512,
        }];
        let mut disk = Vec::new();
        write_gpt_disk(&mut parts, guid_from(b"d"), None, None, &mut disk).unwrap();
        let (good, broken) = (dir.join("good.img"), dir.join("broken.img"));
        fs::write(&good, &disk).unwrap();
        break_legacy_bios_bootable(&good, &broken).unwrap();
        let b = fs::read(&broken).unwrap();
        let last = b.len() - 512;
        for (header, table) in [(512, 1024), (last, last - 32 * 512)] {
            assert_eq!(b[table + 48], 0, "bit 2 cleared");
            let entries = &b[table..table + 128 * 128];
            assert_eq!(
                &b[header + 88..header + 92],
                &crc32fast::hash(entries).to_le_bytes()
            );
            let mut h = b[header..header + 92].to_vec();
            let crc = h[16..20].to_vec();
            h[16..20].fill(0);
            assert_eq!(crc, crc32fast::hash(&h).to_le_bytes());
        }
        // A disk that is already broken is refused: the case would prove nothing.
        let err = break_legacy_bios_bootable(&broken, &dir.join("again.img")).unwrap_err();
        assert!(
            err.to_string().contains("not legacy-BIOS-bootable"),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn output_names_are_the_files_kiln_build_writes() {
        for (format, file) in [
            ("kernel+initrd", "m"),
            ("kernel+squashfs", "m-squashfs.img"),
            ("kernel+iso", "m.iso"),
            ("iso-bios", "m.iso"),
            ("iso-efi", "m-efi.iso"),
            ("iso-efi-initrd", "m-efi-initrd.iso"),
            ("raw-bios", "m-bios.img"),
            ("raw-efi", "m-efi.img"),
            ("qcow2-bios", "m.qcow2"),
            ("qcow2-efi", "m-efi.qcow2"),
            ("uki", "m.efi"),
            ("vhd", "m.vhd"),
            ("dynamic-vhd", "m-dynamic.vhd"),
            ("vmdk", "m.vmdk"),
            ("aws", "m.raw"),
            ("gcp", "m.img.tar.gz"),
        ] {
            assert_eq!(output_name(format, "m"), file, "{format}");
        }
    }
}
