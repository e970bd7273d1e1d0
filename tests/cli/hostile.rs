//! Hostile input (issue 13's items as they are fixed): each case ends in
//! bounded time with exit 1 and a message, and writes nothing outside the
//! output directory.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::fixture::{system_layout, write_case, CASE_BASIC};
use crate::support::{stderr, TestDir};

/// Runs kiln in `dir` with at most `MEMORY` bytes of address space,
/// killing it after 30 s: a hang or an allocation past the bound fails the
/// test (the allocation aborts kiln, which is not exit 1).
fn kiln_bounded(dir: &Path, args: &[&str]) -> Output {
    const MEMORY: u64 = 1 << 30;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    // SAFETY: setrlimit(2) only, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let limit = rustix::process::Rlimit {
                current: Some(MEMORY),
                maximum: Some(MEMORY),
            };
            rustix::process::setrlimit(rustix::process::Resource::As, limit)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("kiln {args:?} still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn mkfifo(path: &Path) {
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
}

#[test]
fn name_must_stay_inside_the_output_directory() {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    write_case(&t, "basic.yml", CASE_BASIC);
    t.mkdir("out");
    for name in ["./../../x", "../x", "a/b", "..", ""] {
        let out = kiln_bounded(
            t.path(),
            &["build", "-o", "out", "--name", name, "basic.yml"],
        );
        assert_eq!(out.status.code(), Some(1), "{name:?}");
        assert!(
            stderr(&out).contains("a name is one path component"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(std::fs::read_dir(t.join("out")).unwrap().count(), 0);
    assert!(
        !t.join("x-initrd.img").exists()
            && !t.path().parent().unwrap().join("x-initrd.img").exists()
    );
}

#[test]
fn files_source_must_be_a_regular_file() {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    mkfifo(&t.join("pipe"));
    let head = "kernel:\n  image: kiln.test/kernel:1\ninit:\n  - kiln.test/init:1\nfiles:\n";
    for (source, words) in [
        ("pipe", "not a regular file"),
        ("/dev/zero", "not a regular file"),
    ] {
        t.write(
            "f.yml",
            format!("{head}  - path: etc/x\n    source: {source}\n"),
        );
        for cmd in ["validate", "build"] {
            let out = kiln_bounded(t.path(), &[cmd, "f.yml"]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{cmd} {source}: {err}");
            assert!(
                err.contains("f.yml:7:13") && err.contains(words),
                "{cmd} {source}: {err}"
            );
        }
    }
}

#[test]
fn a_fifo_in_a_layout_is_an_error_not_a_hang() {
    let t = TestDir::new();
    let layout = t.join("oci-layout");
    system_layout(&layout);
    write_case(&t, "basic.yml", CASE_BASIC);
    std::fs::remove_file(layout.join("index.json")).unwrap();
    mkfifo(&layout.join("index.json"));
    let out = kiln_bounded(t.path(), &["validate", "basic.yml"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("index.json: it is not a regular file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn verify_reads_only_outputs_beside_the_sums_file() {
    let t = TestDir::new();
    let a = "a".repeat(64);
    for name in ["../secret", "/etc/passwd", "zero"] {
        t.write("x.sha256", format!("{a}  {name}\n"));
        if name == "zero" {
            let _ = std::os::unix::fs::symlink("/dev/zero", t.join("zero"));
        }
        let out = kiln_bounded(t.path(), &["verify", "x.sha256", "--golden", "x.sha256"]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("is not a file name of the sums file's directory"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn escape_sequences_in_input_are_not_sent_to_the_terminal() {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    t.write("e.yml", "\"evil\\e]0;owned\\a\": 1\n");
    let out = kiln_bounded(t.path(), &["validate", "e.yml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !out.stderr.contains(&0x1b) && !out.stderr.contains(&0x07),
        "{:?}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("evil\\u{1b}]0;owned\\u{7}"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn aliases_of_a_large_scalar_stay_within_memory() {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    // One 1 MiB scalar aliased 1,500 times: 1.5 GiB if expanded.
    let mut text = format!("x-big: &big \"{}\"\nx-list: [", "x".repeat(1 << 20));
    text.push_str(&vec!["*big"; 1500].join(", "));
    text.push_str("]\n");
    t.write("a.yml", text);
    let out = kiln_bounded(t.path(), &["validate", "a.yml"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("alias expansion copies more than"),
        "{}",
        stderr(&out)
    );
}
