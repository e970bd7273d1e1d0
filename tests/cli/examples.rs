//! The examples build from the committed `oci-layout/` to the bytes in
//! `golden/` — what a fresh clone gets from the README's first command.

use std::path::{Path, PathBuf};

use crate::support::{kiln, stderr, TestDir};

pub(super) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Build `examples/minimal.yml` from the committed layout into `t`'s `out/`
/// as `m`, in `formats` (none: the default); the build must succeed.
pub(super) fn build_minimal(t: &TestDir, formats: &[&str]) {
    build_example(t, "minimal", "m", formats);
}

/// Build `examples/EXAMPLE.yml` from the committed layout into `t`'s
/// `out/` as `name`, in `formats`; the build must succeed.
pub(super) fn build_example(t: &TestDir, example: &str, name: &str, formats: &[&str]) {
    let layout = root().join("oci-layout");
    let yml = root().join(format!("examples/{example}.yml"));
    let mut args = vec![
        "build",
        "--layout",
        layout.to_str().unwrap(),
        "-o",
        "out",
        "--name",
        name,
    ];
    for f in formats {
        args.extend(["-f", f]);
    }
    args.push(yml.to_str().unwrap());
    let out = kiln(t.path(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
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
fn example_netns_matches_golden() {
    check("netns");
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
            "netns",
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

#[test]
fn committed_layout_is_read_by_skopeo_and_umoci() {
    let layout = root().join("oci-layout");
    let layout = layout.to_str().unwrap();
    let listed = crate::support::stdout(&crate::support::run_tool(
        "umoci",
        &["ls", "--layout", layout],
    ));
    for image in [
        "kernel",
        "init",
        "runc",
        "busybox",
        "getty",
        "sysctl",
        "dhcpcd",
        "systemd-boot",
    ] {
        assert!(
            listed.lines().any(|l| l == format!("kiln.dev/{image}:0.1")),
            "{image} missing from:\n{listed}"
        );
        let out = crate::support::run_tool(
            "skopeo",
            &["inspect", &format!("oci:{layout}:kiln.dev/{image}:0.1")],
        );
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(info["Architecture"], "amd64", "{image}");
        assert_eq!(
            info["Layers"].as_array().map(Vec::len),
            Some(1),
            "{image}: one layer"
        );
    }
    // Every blob still matches its digest.
    kiln::oci::Layout::open(&root().join("oci-layout"))
        .unwrap()
        .fsck()
        .unwrap();
}

#[test]
fn kernel_squashfs_root_initrd_holds_init_and_the_root_modules_only() {
    // The committed layout's Debian kernel has virtio_blk, squashfs and
    // overlay as modules: the root initrd must carry them (and what they
    // depend on) beside kiln-init, and nothing of the image itself.
    let t = TestDir::new();
    build_minimal(&t, &["kernel+squashfs"]);
    let sums = String::from_utf8(t.read("out/m.sha256")).unwrap();
    let files: Vec<&str> = sums.lines().filter_map(|l| l.split("  ").nth(1)).collect();
    assert_eq!(
        files,
        [
            "m-cmdline",
            "m-kernel",
            "m-root-initrd.img",
            "m-squashfs.img"
        ]
    );
    // The command line is kernel+initrd's: root= is added by whoever boots it.
    assert_eq!(t.read("out/m-cmdline"), b"console=ttyS0");

    let out = kiln(t.path(), &["inspect", "out/m-root-initrd.img"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = crate::support::stdout(&out);
    let paths: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.splitn(6, ' ').nth(5))
        .collect();
    let release = "lib/modules/6.1.0-56-amd64";
    for want in [
        "init".to_owned(),
        format!("{release}/modules.dep"),
        format!("{release}/modules.builtin"),
        format!("{release}/kernel/drivers/block/virtio_blk.ko"),
        format!("{release}/kernel/drivers/virtio/virtio_pci.ko"),
        format!("{release}/kernel/drivers/virtio/virtio_ring.ko"),
        format!("{release}/kernel/fs/squashfs/squashfs.ko"),
        format!("{release}/kernel/fs/overlayfs/overlay.ko"),
        format!("{release}/kernel/fs/isofs/isofs.ko"),
        format!("{release}/kernel/drivers/scsi/sr_mod.ko"),
    ] {
        assert!(paths.contains(&want.as_str()), "{want} missing:\n{listing}");
    }
    for p in &paths {
        assert!(
            *p == "init" || *p == "lib" || p.starts_with("lib/modules"),
            "{p} is not part of the root initrd:\n{listing}"
        );
        assert!(
            !p.ends_with("virtio_net.ko") && !p.ends_with("ext4.ko"),
            "{p}: only the root's modules belong here"
        );
    }
    // /init is the image's kiln-init, byte for byte.
    let init = |file: &str| -> String {
        let out = kiln(t.path(), &["inspect", file]);
        crate::support::stdout(&out)
            .lines()
            .find(|l| l.ends_with(" init"))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    build_minimal(&t, &[]);
    assert_eq!(init("out/m-root-initrd.img"), init("out/m-initrd.img"));
    assert!(!init("out/m-initrd.img").is_empty());
}
