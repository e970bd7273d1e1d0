//! Golden hashes: each case's outputs must hash to `golden/<case>.sha256`.
//!
//! A golden file changes only on purpose: run with `KILN_UPDATE_GOLDEN=1`
//! to rewrite the files, and say in the commit message why the bytes changed.

use std::path::PathBuf;

use super::fixture::{system_layout, write_case, CASE_BASIC, CASE_OVERLAY};
use crate::support::{kiln_env, stderr, TestDir};

struct Case {
    name: &'static str,
    files: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
}

const ALL_FORMATS: &[&str] = &[
    "-f",
    "kernel+initrd",
    "-f",
    "tar-kernel-initrd",
    "-f",
    "tar",
    "-f",
    "docker",
];

fn check(case: &Case) {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    for (name, text) in case.files {
        write_case(&t, name, text);
    }
    let mut args = vec!["build", "-o", "out", "--name", case.name];
    args.extend_from_slice(case.args);
    args.extend(case.files.iter().map(|(n, _)| *n));
    let out = kiln_env(t.path(), &args, case.env);
    assert!(out.status.success(), "{}", stderr(&out));
    let actual = String::from_utf8(t.read(format!("out/{}.sha256", case.name))).unwrap();
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(format!("{}.sha256", case.name));
    if std::env::var_os("KILN_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with KILN_UPDATE_GOLDEN=1 to create it)",
            golden.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "outputs of case {} differ from {}",
        case.name,
        golden.display()
    );
}

#[test]
fn golden_basic_all_formats() {
    check(&Case {
        name: "basic",
        files: &[("basic.yml", CASE_BASIC)],
        args: ALL_FORMATS,
        env: &[],
    });
}

#[test]
fn golden_basic_with_source_date_epoch() {
    check(&Case {
        name: "basic-sde",
        files: &[("basic.yml", CASE_BASIC)],
        args: &[],
        env: &[("SOURCE_DATE_EPOCH", "1700000000")],
    });
}

#[test]
fn golden_zstd() {
    check(&Case {
        name: "zstd",
        files: &[("basic.yml", CASE_BASIC)],
        args: &["--compress", "zstd"],
        env: &[],
    });
}

#[test]
fn golden_xz() {
    check(&Case {
        name: "xz",
        files: &[("basic.yml", CASE_BASIC)],
        args: &["--compress", "xz"],
        env: &[],
    });
}

#[test]
fn golden_sbom() {
    check(&Case {
        name: "sbom",
        files: &[("basic.yml", CASE_BASIC)],
        args: &["--sbom", "-f", "kernel+initrd", "-f", "tar"],
        env: &[],
    });
}

#[test]
fn golden_uncompressed() {
    check(&Case {
        name: "none",
        files: &[("basic.yml", CASE_BASIC)],
        args: &["--compress", "none"],
        env: &[],
    });
}

#[test]
fn golden_merged_files() {
    check(&Case {
        name: "merged",
        files: &[("basic.yml", CASE_BASIC), ("overlay.yml", CASE_OVERLAY)],
        args: &["-f", "kernel+initrd", "-f", "tar"],
        env: &[],
    });
}
