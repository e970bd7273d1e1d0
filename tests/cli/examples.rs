//! The examples build from the committed `oci-layout/` to the bytes in
//! `golden/` — what a fresh clone gets from the README's first command.

use std::path::{Path, PathBuf};

use crate::support::{kiln, stderr, TestDir};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check(example: &str) {
    let t = TestDir::new();
    let yml = root().join("examples").join(format!("{example}.yml"));
    let layout = root().join("oci-layout");
    let golden = root().join("golden").join(format!("{example}.sha256"));
    let args = [
        "build",
        "--layout",
        layout.to_str().unwrap(),
        "-o",
        "out",
        "--golden",
        golden.to_str().unwrap(),
    ];
    let mut args: Vec<&str> = args.to_vec();
    // Build the formats the boot test builds (the `.expect` file's `formats:`).
    let expect = std::fs::read_to_string(root().join("examples").join(format!("{example}.expect")))
        .unwrap_or_default();
    let formats: Vec<String> = expect
        .lines()
        .find_map(|l| l.strip_prefix("formats:"))
        .map(|f| f.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    for f in &formats {
        args.extend(["-f", f]);
    }
    args.push(yml.to_str().unwrap());
    let out = kiln(t.path(), &args);
    assert!(
        out.status.success(),
        "examples/{example}.yml: {}",
        stderr(&out)
    );
    assert!(Path::new(&t.join(format!("out/{example}-initrd.img"))).is_file());
}

#[test]
fn example_minimal_matches_golden() {
    check("minimal");
}

#[test]
fn example_linuxkit_matches_golden() {
    check("linuxkit");
}

#[test]
fn example_runtime_matches_golden() {
    check("runtime");
}

#[test]
fn example_files_matches_golden() {
    check("files");
}

#[test]
fn example_readonly_matches_golden() {
    check("readonly");
}

#[test]
fn example_binds_matches_golden() {
    check("binds");
}

#[test]
fn example_onshutdown_matches_golden() {
    check("onshutdown");
}

#[test]
fn example_metadata_matches_golden() {
    check("metadata");
}

#[test]
fn example_capabilities_matches_golden() {
    check("capabilities");
}

#[test]
fn every_example_has_a_golden_file_and_a_test() {
    let mut names: Vec<String> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "yml").then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "binds",
            "capabilities",
            "files",
            "linuxkit",
            "metadata",
            "minimal",
            "onshutdown",
            "readonly",
            "runtime"
        ],
        "add a test above for a new example"
    );
    for n in names {
        assert!(
            root().join("golden").join(format!("{n}.sha256")).is_file(),
            "golden/{n}.sha256 missing"
        );
    }
}
