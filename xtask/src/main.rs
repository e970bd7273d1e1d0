//! `cargo xtask`: developer tasks that are not part of the kiln binary.
//!
//! - `bench [--quick] [--realistic] [--xz]`: build a deterministic ~300 MB synthetic image with the release
//!   kiln and print wall time, throughput and peak memory next to
//!   `gzip -n -6` on the same uncompressed cpio, measured in the same run.
//! - `boot-test [--all] [CASE...]`: build, golden-check and boot the cases
//!   under qemu, checking the serial console.
//! - `man [DIR]`: write kiln's man pages (default `target/man`), generated
//!   from its clap definitions by `kiln man`.
//! - `vendor [--debs DIR] [--check | --fetch-only]`: verify the pinned Debian
//!   packages and rebuild (or check) the committed `oci-layout/` from them.

use std::path::{Path, PathBuf};

mod bench;
mod boot;
mod synth;
mod vendor;

fn main() -> anyhow::Result<()> {
    let root = project_root();
    std::env::set_current_dir(&root)?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => bench::run(&args[1..]),
        Some("bench-generate") => bench::generate(&args[1..]),
        Some("bench-raw-efi") => bench::raw_efi(&args[1..]),
        Some("boot-test") => boot::run(&args[1..]),
        Some("vendor") => vendor::run(&args[1..]),
        Some("man") => man(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <bench [--quick] [--realistic] [--xz] | boot-test [--all] [CASE...] | man [DIR] | vendor [--debs DIR] [--check | --fetch-only]>"
            );
            std::process::exit(2);
        }
    }
}

/// `kiln man DIR` through cargo, so the pages match the sources.
fn man(args: &[String]) -> anyhow::Result<()> {
    let dir = args.first().map_or("target/man", String::as_str);
    let status = std::process::Command::new("cargo")
        .args(["run", "--quiet", "--bin", "kiln", "--", "man", dir])
        .status()?;
    anyhow::ensure!(status.success(), "kiln man {dir} failed");
    println!("man pages in {dir} (man -l {dir}/kiln.1)");
    Ok(())
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}
