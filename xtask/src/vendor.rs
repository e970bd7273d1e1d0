//! `cargo xtask vendor [--debs DIR] [--check | --fetch-only]`: rebuild the
//! committed `oci-layout/` from the pinned Debian packages.
//!
//! Takes the pins in `vendor-images/debs.yml` and a directory of `.deb` files
//! (default `target/debs`). For each pin it makes sure `NAME_VERSION_ARCH.deb`
//! is there (running `apt-get download NAME:ARCH=VERSION` in that directory
//! when it is missing and apt-get exists) and that its sha256 is the pinned
//! one; a mismatch stops everything before any recipe runs. Then it runs the
//! release kiln, `kiln pkg build --layout TMP --debs DIR RECIPE...`, into a
//! scratch layout and only on success swaps it in for `oci-layout/`.
//! `--check` compares the scratch layout with the committed one file by file
//! and fails with the list of differences; `--fetch-only` stops after the
//! pins are verified. `SOURCE_DATE_EPOCH` is removed from kiln's environment
//! so the committed layout always carries kiln's default epoch. Never touches
//! `oci-layout/` unless the whole build succeeded.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The pins file, relative to the project root.
pub(crate) const PINS: &str = "vendor-images/debs.yml";
/// The committed layout, relative to the project root.
const LAYOUT: &str = "oci-layout";
/// Where the fresh layout is built before it replaces [`LAYOUT`]; inside the
/// project so that the final rename stays on one filesystem.
const SCRATCH: &str = "target/vendor-layout";
/// The recipes of the committed layout, built in this order.
const RECIPES: &[&str] = &[
    "kernel",
    "pkg/init",
    "pkg/runc",
    "pkg/busybox",
    "pkg/getty",
    "pkg/sysctl",
    "pkg/dhcpcd",
    "pkg/systemd-boot",
    "pkg/syslinux",
];

pub use kiln::pkg::pins::Pin;

/// What `cargo xtask vendor` was asked to do.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    debs: PathBuf,
    mode: Mode,
}

#[derive(Debug, PartialEq, Eq)]
enum Mode {
    /// Build and replace `oci-layout/`.
    Update,
    /// Build and compare with `oci-layout/`.
    Check,
    /// Only make sure every pinned .deb is present and intact.
    FetchOnly,
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let opts = parse_args(args)?;
    let text = fs::read_to_string(PINS).with_context(|| format!("reading {PINS}"))?;
    let pins = parse_pins(PINS, &text)?;
    fs::create_dir_all(&opts.debs).with_context(|| format!("creating {}", opts.debs.display()))?;
    for pin in &pins {
        let path = ensure_deb(&opts.debs, pin)?;
        eprintln!("vendor: {} ok", path.display());
    }
    if opts.mode == Mode::FetchOnly {
        return Ok(());
    }

    let scratch = Path::new(SCRATCH);
    remove_if_present(scratch)?;
    build_layout(scratch, &opts.debs)?;
    match opts.mode {
        Mode::Check => {
            let diffs = compare_trees(Path::new(LAYOUT), scratch)?;
            if !diffs.is_empty() {
                bail!(
                    "{LAYOUT} differs from a fresh build ({SCRATCH}):\n  {}",
                    diffs.join("\n  ")
                );
            }
            remove_if_present(scratch)?;
            eprintln!("vendor: {LAYOUT} is what the pins and recipes build");
        }
        _ => {
            replace_dir(scratch, Path::new(LAYOUT))?;
            eprintln!("vendor: wrote {LAYOUT}");
        }
    }
    Ok(())
}

fn parse_args(args: &[String]) -> anyhow::Result<Options> {
    let mut opts = Options {
        debs: PathBuf::from("target/debs"),
        mode: Mode::Update,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--debs" => match it.next() {
                Some(dir) => opts.debs = PathBuf::from(dir),
                None => bail!("--debs needs a directory"),
            },
            "--check" if opts.mode == Mode::Update => opts.mode = Mode::Check,
            "--fetch-only" if opts.mode == Mode::Update => opts.mode = Mode::FetchOnly,
            "--check" | "--fetch-only" => bail!("--check and --fetch-only exclude each other"),
            other => bail!(
                "unknown argument {other:?}; usage: cargo xtask vendor [--debs DIR] [--check | --fetch-only]"
            ),
        }
    }
    Ok(opts)
}

/// Reads the pins file with kiln's own parser (the one `kiln pkg build`
/// checks every .deb against), in package order.
pub fn parse_pins(file: &str, text: &str) -> anyhow::Result<Vec<Pin>> {
    let pins = kiln::pkg::pins::parse(Path::new(file), text)?;
    Ok(pins.pins.into_values().collect())
}

/// Makes sure the pinned .deb is in `dir` and intact; returns its path.
pub(crate) fn ensure_deb(dir: &Path, pin: &Pin) -> anyhow::Result<PathBuf> {
    let path = dir.join(pin.file_name());
    if !path.exists() {
        download(dir, pin)?;
        if !path.exists() {
            bail!(
                "apt-get download {} did not write {}",
                pin.package,
                path.display()
            );
        }
    }
    let actual = kiln::golden::hash_file(&path)?;
    if actual != pin.sha256 {
        bail!(
            "{}: sha256 mismatch for {} {}: expected {}, found {actual}",
            path.display(),
            pin.package,
            pin.version,
            pin.sha256
        );
    }
    Ok(path)
}

fn download(dir: &Path, pin: &Pin) -> anyhow::Result<()> {
    let spec = format!("{}:{}={}", pin.package, pin.arch, pin.version);
    eprintln!("vendor: apt-get download {spec}");
    let status = Command::new("apt-get")
        .arg("download")
        .arg(&spec)
        .current_dir(dir)
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("apt-get download {spec} failed ({s}); is the version still in the apt sources? (snapshot.debian.org keeps every version)"),
        Err(e) => bail!(
            "{} is missing and apt-get could not run ({e}); put {} (from https://snapshot.debian.org/package/{}/) into {}",
            pin.file_name(),
            pin.file_name(),
            pin.source,
            dir.display()
        ),
    }
}

/// Runs the release kiln on every recipe into `layout`.
fn build_layout(layout: &Path, debs: &Path) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "run",
        "--release",
        "--quiet",
        "--bin",
        "kiln",
        "--",
        "pkg",
        "build",
    ])
    .arg("--layout")
    .arg(layout)
    .arg("--debs")
    .arg(debs)
    .args(RECIPES)
    .env_remove("SOURCE_DATE_EPOCH");
    let status = cmd
        .status()
        .context("running cargo run --release -- pkg build")?;
    if !status.success() {
        bail!("kiln pkg build failed ({status}); {LAYOUT} is unchanged");
    }
    Ok(())
}

/// Every regular file and symlink under `root`, relative and sorted, with a
/// sha256 (files) or the link target (symlinks).
fn list_tree(root: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let dir = root.join(&rel);
        let entries = fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let name = entry.file_name();
            if name == kiln::oci::write::LOCK_FILE || name == kiln::oci::write::INDEX_LOCK_FILE {
                continue; // the advisory locks, not content
            }
            let rel = rel.join(entry.file_name());
            let path = root.join(&rel);
            let meta = fs::symlink_metadata(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let key = rel.to_string_lossy().into_owned();
            if meta.is_dir() {
                todo.push(rel);
            } else if meta.file_type().is_symlink() {
                let target = fs::read_link(&path)?;
                out.insert(key, format!("-> {}", target.display()));
            } else {
                out.insert(key, kiln::golden::hash_file(&path)?);
            }
        }
    }
    Ok(out)
}

/// The files that differ between two directory trees, one line each.
fn compare_trees(committed: &Path, fresh: &Path) -> anyhow::Result<Vec<String>> {
    let old = if committed.exists() {
        list_tree(committed)?
    } else {
        BTreeMap::new()
    };
    let new = list_tree(fresh)?;
    let mut diffs = Vec::new();
    for (name, hash) in &old {
        match new.get(name) {
            None => diffs.push(format!("{name}: committed, not built")),
            Some(h) if h != hash => diffs.push(format!("{name}: contents differ")),
            Some(_) => {}
        }
    }
    for name in new.keys().filter(|n| !old.contains_key(*n)) {
        diffs.push(format!("{name}: built, not committed"));
    }
    diffs.sort();
    Ok(diffs)
}

/// Replaces `dst` by `src` with two renames, so `dst` is always either the
/// old or the new layout, never a mix.
fn replace_dir(src: &Path, dst: &Path) -> anyhow::Result<()> {
    let old = dst.with_extension("old");
    remove_if_present(&old)?;
    if dst.exists() {
        fs::rename(dst, &old)
            .with_context(|| format!("moving {} to {}", dst.display(), old.display()))?;
    }
    fs::rename(src, dst)
        .with_context(|| format!("moving {} to {}", src.display(), dst.display()))?;
    remove_if_present(&old)
}

fn remove_if_present(dir: &Path) -> anyhow::Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "- package: busybox-static\n  version: 1:1.35.0-4+deb12u1+b1\n  arch: amd64\n  sha256: 3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744\n  source: busybox\n  license: GPL-2.0-only\n";

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn file_name_escapes_the_epoch_like_apt() {
        let pins = parse_pins("debs.yml", ONE).unwrap();
        assert_eq!(
            pins[0].file_name(),
            "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb"
        );
    }

    #[test]
    fn committed_pins_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(PINS);
        let text = fs::read_to_string(root).unwrap();
        let pins = parse_pins(PINS, &text).unwrap();
        assert!(pins.iter().any(|p| p.package == "runc"));
    }

    #[test]
    fn bad_pins_name_the_problem() {
        let cases = [
            (
                ONE.replace("  arch: amd64\n", ""),
                "missing required key `arch`",
            ),
            (ONE.replace("3d3fdbe9", ""), "sha256 must be 64 hex digits"),
            (
                ONE.replace("busybox-static", "../x"),
                "not a Debian package name",
            ),
            (ONE.replace("1:1.35", "/1.35"), "not a Debian version"),
            (ONE.replace("license:", "licence:"), "unknown key `licence`"),
            (format!("{ONE}{ONE}"), "pinned twice"),
            ("package: x\n".to_owned(), "expected a sequence"),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", parse_pins("debs.yml", &text).unwrap_err());
            assert!(err.contains(want), "{err:?} should contain {want:?}");
            assert!(err.starts_with("debs.yml:"), "{err:?} should name the file");
        }
    }

    #[test]
    fn a_corrupt_deb_is_refused() {
        let dir = std::env::temp_dir().join(format!("kiln-vendor-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let pin = &parse_pins("debs.yml", ONE).unwrap()[0];
        fs::write(dir.join(pin.file_name()), b"not the pinned bytes").unwrap();
        let err = format!("{:#}", ensure_deb(&dir, pin).unwrap_err());
        fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("sha256 mismatch for busybox-static"), "{err}");
        assert!(err.contains(&pin.sha256), "{err}");
    }

    #[test]
    fn args() {
        let o = parse_args(&strings(&["--debs", "d", "--check"])).unwrap();
        assert_eq!(
            o,
            Options {
                debs: "d".into(),
                mode: Mode::Check
            }
        );
        assert!(parse_args(&strings(&["--check", "--fetch-only"])).is_err());
        assert!(parse_args(&strings(&["--debs"])).is_err());
        assert!(parse_args(&strings(&["--bogus"])).is_err());
    }

    #[test]
    fn tree_comparison_lists_every_difference() {
        let base = std::env::temp_dir().join(format!("kiln-vendor-cmp-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        for d in [&a, &b] {
            fs::create_dir_all(d.join("blobs")).unwrap();
            fs::write(d.join("blobs/same"), b"x").unwrap();
        }
        fs::write(a.join("index.json"), b"1").unwrap();
        fs::write(b.join("index.json"), b"2").unwrap();
        fs::write(a.join("blobs/old"), b"o").unwrap();
        fs::write(b.join("blobs/new"), b"n").unwrap();
        let diffs = compare_trees(&a, &b).unwrap();
        fs::remove_dir_all(&base).unwrap();
        assert_eq!(
            diffs,
            [
                "blobs/new: built, not committed",
                "blobs/old: committed, not built",
                "index.json: contents differ"
            ]
        );
    }
}
