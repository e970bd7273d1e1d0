//! `crates:` entries: static binaries built from crates of this workspace.
//!
//! Takes a package and binary name; gives the binary's bytes, checked to be
//! a statically linked ELF file (no `PT_INTERP` program header). Building
//! goes through the narrow [`CrateBuilder`] trait so tests can hand in
//! bytes without running cargo; [`Cargo`] is the real one. It runs
//! `cargo build --release --locked` for the host target with static,
//! non-PIE code generation, path prefixes remapped (`<workspace>` →
//! `/kiln`, `<CARGO_HOME>` → `/cargo`), `SOURCE_DATE_EPOCH` set, and its
//! own target directory `<workspace>/target/pkg`, so these flags never
//! invalidate the normal build.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::PkgError;

/// Builds one binary of one workspace package.
pub trait CrateBuilder {
    /// The bytes of binary `binary` of package `package`, built in `workspace`.
    fn build(&self, workspace: &Path, package: &str, binary: &str) -> Result<Vec<u8>, PkgError>;
}

/// The real builder: runs cargo.
#[derive(Clone, Debug)]
pub struct Cargo {
    /// `SOURCE_DATE_EPOCH` for the build.
    pub epoch: i64,
}

impl CrateBuilder for Cargo {
    fn build(&self, workspace: &Path, package: &str, binary: &str) -> Result<Vec<u8>, PkgError> {
        let fail = |msg: String| PkgError::Crate {
            package: package.to_owned(),
            msg,
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let host = host_triple().map_err(fail)?;
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
        let mut rustflags = format!(
            "-C target-feature=+crt-static -C relocation-model=static --remap-path-prefix={}=/kiln",
            workspace.display()
        );
        if let Some(home) = cargo_home {
            rustflags.push_str(&format!(" --remap-path-prefix={}=/cargo", home.display()));
        }
        let target_dir = workspace.join("target").join("pkg");
        // `--target` keeps RUSTFLAGS off build scripts and proc macros,
        // which cannot be linked statically.
        let status = Command::new(&cargo)
            .args([
                "build",
                "--release",
                "--locked",
                "-p",
                package,
                "--bin",
                binary,
            ])
            .arg("--target")
            .arg(&host)
            .arg("--target-dir")
            .arg(&target_dir)
            .current_dir(workspace)
            .env("RUSTFLAGS", &rustflags)
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env("SOURCE_DATE_EPOCH", self.epoch.to_string())
            .status()
            .map_err(|e| fail(format!("cannot run {}: {e}", cargo.to_string_lossy())))?;
        if !status.success() {
            return Err(fail(format!("cargo build failed ({status})")));
        }
        let out = target_dir.join(&host).join("release").join(binary);
        std::fs::read(&out).map_err(|source| PkgError::Read { path: out, source })
    }
}

/// The host target triple, from `rustc -vV`.
fn host_triple() -> Result<String, String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc)
        .arg("-vV")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", rustc.to_string_lossy()))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_owned())
        .ok_or_else(|| "rustc -vV names no host target".to_owned())
}

/// The Docker/OCI architecture of the host, for checking crate recipes.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Why bytes are not a static ELF executable.
#[derive(Debug, PartialEq, Eq)]
pub enum NotStatic {
    NotElf(&'static str),
    Interpreter,
}

/// Check `bytes` is an ELF file without a `PT_INTERP` program header.
pub fn check_static(bytes: &[u8]) -> Result<(), NotStatic> {
    if bytes.len() < 16 || &bytes[..4] != b"\x7fELF" {
        return Err(NotStatic::NotElf("no ELF magic"));
    }
    let wide = match bytes[4] {
        1 => false,
        2 => true,
        _ => return Err(NotStatic::NotElf("bad ELF class")),
    };
    let big = match bytes[5] {
        1 => false,
        2 => true,
        _ => return Err(NotStatic::NotElf("bad ELF byte order")),
    };
    let int = |off: usize, len: usize| -> Result<u64, NotStatic> {
        let b = bytes
            .get(off..off + len)
            .ok_or(NotStatic::NotElf("truncated ELF header"))?;
        let mut v = 0u64;
        for i in 0..len {
            let byte = if big { b[i] } else { b[len - 1 - i] };
            v = (v << 8) | u64::from(byte);
        }
        Ok(v)
    };
    let (phoff, phentsize, phnum) = if wide {
        (int(0x20, 8)?, int(0x36, 2)?, int(0x38, 2)?)
    } else {
        (int(0x1c, 4)?, int(0x2a, 2)?, int(0x2c, 2)?)
    };
    if phentsize < 4 {
        return Err(NotStatic::NotElf("bad program header size"));
    }
    for i in 0..phnum {
        let off = phoff
            .checked_add(i * phentsize)
            .and_then(|o| usize::try_from(o).ok())
            .ok_or(NotStatic::NotElf("bad program header offset"))?;
        const PT_INTERP: u64 = 3;
        if int(off, 4)? == PT_INTERP {
            return Err(NotStatic::Interpreter);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal 64-bit little-endian ELF header with the given program
    /// header types.
    pub(crate) fn elf64(types: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for t in types {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&t.to_le_bytes());
            b.extend(ph);
        }
        b
    }

    #[test]
    fn interpreters_are_found() {
        assert_eq!(check_static(&elf64(&[1, 1, 4])), Ok(()));
        assert_eq!(
            check_static(&elf64(&[6, 3, 1])),
            Err(NotStatic::Interpreter)
        );
        assert!(check_static(b"#!/bin/sh\n").is_err());
        let mut truncated = elf64(&[1, 3]);
        truncated.truncate(100);
        assert!(check_static(&truncated).is_err());
    }

    #[test]
    fn the_test_binary_itself_is_checked() {
        // Test binaries are linked dynamically: the interpreter is found.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(check_static(&me), Err(NotStatic::Interpreter));
    }
}
