//! Test helpers: temp dirs, a kiln runner, and OCI layouts written from in-code descriptions.
//!
//! [`TestDir`] is a temp dir that cleans up after itself; [`kiln`] runs the
//! built binary with a clean environment; [`layer::LayerBuilder`] writes
//! layer tars byte by byte (hostile ones too); [`layout::TestImage`] and
//! [`layout::write_layout`] turn them into OCI layouts through the
//! library's own `LayoutWriter`; [`rss::kiln_measured`] runs kiln bounded
//! and gives its peak RSS. Every fixture is built in code.

#![allow(dead_code, unused_imports)]

pub mod layer;
pub mod layout;
pub mod registry;
pub mod rss;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use layer::{compress, LayerBuilder, LongNames, DEFAULT_MTIME};
pub use layout::{
    blob_path, corrupt_byte, read_index_json, write_layout, write_multiarch_layout, MultiArchImage,
    TestImage,
};

/// A fresh temporary directory, removed when dropped.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl Default for TestDir {
    fn default() -> TestDir {
        TestDir::new()
    }
}

impl TestDir {
    pub fn new() -> TestDir {
        TestDir {
            dir: tempfile::Builder::new()
                .prefix("kiln-test-")
                .tempdir()
                .expect("create temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `path()/rel`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `bytes` to `rel` (creating parent directories); gives the full path.
    pub fn write(&self, rel: impl AsRef<Path>, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dirs");
        }
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Reads `rel`, panicking with the path on failure.
    pub fn read(&self, rel: impl AsRef<Path>) -> Vec<u8> {
        let path = self.join(rel);
        std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    /// Creates `rel` as a directory (and its parents); gives the full path.
    pub fn mkdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let path = self.join(rel);
        std::fs::create_dir_all(&path).expect("create dir");
        path
    }

    /// Runs kiln with this directory as its working directory.
    pub fn kiln(&self, args: &[&str]) -> Output {
        kiln(self.path(), args)
    }
}

/// Runs the kiln binary in `cwd` with a clean environment: only `PATH`,
/// `HOME=cwd`, `LANG=C`, `LC_ALL=C`; in particular no `SOURCE_DATE_EPOCH`.
pub fn kiln(cwd: &Path, args: &[&str]) -> Output {
    kiln_env(cwd, args, &[])
}

/// [`kiln`] with extra environment variables (e.g. `SOURCE_DATE_EPOCH`).
pub fn kiln_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", cwd)
        .env("LANG", "C")
        .env("LC_ALL", "C");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run kiln")
}

/// stdout as UTF-8 (lossy).
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as UTF-8 (lossy).
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs an external tool (skopeo, umoci, …), panicking with its stderr if
/// it cannot start or fails. Tests that need a tool fail when it is missing.
pub fn run_tool(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .env("LANG", "C")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        out.status,
        stderr(&out)
    );
    out
}

/// Asserts that kiln succeeded; gives its stdout.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "kiln failed: {}\n{}",
        o.status,
        stderr(o)
    );
    stdout(o)
}

/// A new pseudo-terminal: (master, slave).
pub fn pty() -> (std::fs::File, std::fs::File) {
    let master =
        rustix::pty::openpt(rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY)
            .unwrap();
    rustix::pty::grantpt(&master).unwrap();
    rustix::pty::unlockpt(&master).unwrap();
    let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    (std::fs::File::from(master), slave)
}
