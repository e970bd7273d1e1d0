//! Interrupted and concurrent builds (issue 13, item 7): a build killed at
//! any point of its commit leaves the old set of outputs or the new one,
//! never a mix; the next build removes a killed build's temp files; builds
//! running at once into one directory each keep a whole set.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::fixture::{system_layout, write_case, CASE_BASIC};
use crate::support::{kiln_env, stderr, TestDir};

const FORMATS: &str = "kernel+initrd,tar";

fn build(t: &TestDir, out: &str, name: &str, epoch: &str, extra: &[(&str, &str)]) -> bool {
    let mut env = vec![("SOURCE_DATE_EPOCH", epoch)];
    env.extend_from_slice(extra);
    let o = kiln_env(
        t.path(),
        &[
            "build",
            "-f",
            FORMATS,
            "-o",
            out,
            "--name",
            name,
            "basic.yml",
        ],
        &env,
    );
    match o.status.code() {
        Some(0) => true,
        None => false, // killed
        Some(c) => panic!("build exit {c}: {}", stderr(&o)),
    }
}

/// Whether the set `dir/NAME.sha256` lists matches `golden` (`kiln verify`).
fn verifies(t: &TestDir, sums: &Path, golden: &Path) -> bool {
    let o = kiln_env(
        t.path(),
        &[
            "verify",
            sums.to_str().unwrap(),
            "--golden",
            golden.to_str().unwrap(),
        ],
        &[],
    );
    o.status.success()
}

fn hidden(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// The test system, and the sums of set A (default epoch) and B (epoch 7).
fn setup() -> TestDir {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    write_case(&t, "basic.yml", CASE_BASIC);
    assert!(build(&t, "a", "x", "", &[]));
    assert!(build(&t, "b", "x", "7", &[]));
    std::fs::copy(t.join("a/x.sha256"), t.join("A.sha256")).unwrap();
    std::fs::copy(t.join("b/x.sha256"), t.join("B.sha256")).unwrap();
    assert_ne!(t.read("A.sha256"), t.read("B.sha256"));
    t
}

#[test]
fn a_build_killed_at_any_commit_step_leaves_the_old_set_or_the_new() {
    let t = setup();
    // 5 files (kernel, initrd, cmdline, tar, sums): steps 0 (before the
    // journal) to 6 (after the last rename); 7 is past the commit.
    for step in 0..=7 {
        let out = format!("o{step}");
        assert!(build(&t, &out, "x", "", &[]));
        let step_text = step.to_string();
        let done = build(
            &t,
            &out,
            "x",
            "7",
            &[("KILN_TEST_KILL_AT_COMMIT_STEP", &step_text)],
        );
        assert_eq!(
            done,
            step == 7,
            "step {step}: killed only inside the commit"
        );
        let sums = t.join(&out).join("x.sha256");
        let (old, new) = (
            verifies(&t, &sums, &t.join("A.sha256")),
            verifies(&t, &sums, &t.join("B.sha256")),
        );
        // Before the journal the old set stands; from it on, the new one.
        assert!(
            old == (step == 0) && new == (step > 0),
            "step {step}: old {old} new {new}"
        );
        // The next build removes what the killed one left.
        assert!(build(&t, &out, "x", "", &[]));
        assert!(verifies(&t, &sums, &t.join("A.sha256")));
        assert_eq!(hidden(&t.join(&out)), Vec::<String>::new(), "step {step}");
    }
}

#[test]
fn kill_9_at_increasing_delays_never_mixes_sets_and_temps_are_removed() {
    let t = setup();
    let layout = t.join("oci-layout");
    for (i, ms) in [0u64, 20, 40, 60, 80, 100, 130, 160, 200, 250, 300, 400]
        .iter()
        .enumerate()
    {
        let out = t.join(format!("k{i}"));
        std::fs::create_dir(&out).unwrap();
        for f in std::fs::read_dir(t.join("a")).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), out.join(f.file_name())).unwrap();
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["build", "-f", FORMATS, "--name", "x", "--layout"])
            .arg(&layout)
            .arg("-o")
            .arg(&out)
            .arg(t.join("basic.yml"))
            .env("SOURCE_DATE_EPOCH", "7")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(*ms));
        let _ = child.kill();
        let status = child.wait().unwrap();
        assert!(status.success() || status.signal() == Some(9));
        let sums = out.join("x.sha256");
        let old = verifies(&t, &sums, &t.join("A.sha256"));
        let new = verifies(&t, &sums, &t.join("B.sha256"));
        assert!(old || new, "kill after {ms} ms: a mixed set");
        assert!(build(&t, out.to_str().unwrap(), "x", "", &[]));
        assert_eq!(hidden(&out), Vec::<String>::new(), "kill after {ms} ms");
    }
}

#[test]
fn stale_temp_files_of_killed_builds_are_removed_and_live_ones_kept() {
    let t = setup();
    // What kiln before the commit journal left when killed (any name).
    t.write("a/.x-initrd.img.Ab12Cd.tmp", vec![0u8; 1 << 20]);
    t.write("a/.other.tar.zzzzzz.tmp", b"stale");
    t.write("a/.keep-me", b"a user's own file");
    assert!(build(&t, "a", "y", "", &[]));
    assert_eq!(hidden(&t.join("a")), vec![".keep-me".to_string()]);
}

#[test]
fn eight_concurrent_builds_into_one_directory_each_keep_a_whole_set() {
    let t = setup();
    let layout = t.join("oci-layout");
    t.mkdir("c");
    // Four names built once each, and one name built by four at once with
    // different epochs (so their sets differ).
    let jobs: Vec<(String, String)> = (0..4)
        .map(|i| (format!("n{i}"), i.to_string()))
        .chain((0..4).map(|i| ("same".to_string(), (10 + i).to_string())))
        .collect();
    let children: Vec<_> = jobs
        .iter()
        .map(|(name, epoch)| {
            Command::new(env!("CARGO_BIN_EXE_kiln"))
                .args(["build", "-f", FORMATS, "--name", name, "--layout"])
                .arg(&layout)
                .arg("-o")
                .arg(t.join("c"))
                .arg(t.join("basic.yml"))
                .env("SOURCE_DATE_EPOCH", epoch)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    for name in ["n0", "n1", "n2", "n3", "same"] {
        let sums = t.join(format!("c/{name}.sha256"));
        assert!(
            verifies(&t, &sums, &sums),
            "{name}: files differ from its sums"
        );
    }
    assert_eq!(hidden(&t.join("c")), Vec::<String>::new());
}
