//! Reproducibility: the same YAML and layout give the same bytes whatever
//! the working directory, umask, TZ, locale, thread count or the order of
//! entries in the layout's index.json; SOURCE_DATE_EPOCH changes only the
//! generated entries.

use std::path::Path;
use std::process::Command;

use super::fixture::{system_layout, write_case, CASE_BASIC};
use crate::support::TestDir;

const FORMATS: &[&str] = &[
    "-f",
    "kernel+initrd",
    "-f",
    "tar-kernel-initrd",
    "-f",
    "tar",
    "-f",
    "docker",
    // The SBOM is an output too, and goes into every image.
    "--sbom",
];

/// Run kiln with `args` in `cwd` through `sh`, so the umask can be set,
/// with only `PATH` and `env` in its environment; it must succeed.
fn kiln_under(cwd: &Path, args: &[&str], umask: &str, env: &[(&str, &str)]) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .args(args);
    cmd.current_dir(cwd)
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Build the fixture formats of `yml` into `out`.
fn build(cwd: &Path, yml: &str, layout: &str, out: &Path, umask: &str, env: &[(&str, &str)]) {
    let mut args = vec!["build", "--name", "r", "--layout", layout, "-o"];
    args.push(out.to_str().unwrap());
    args.extend_from_slice(FORMATS);
    args.push(yml);
    kiln_under(cwd, &args, umask, env);
}

fn outputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Reverse the order of `manifests` in index.json (same images, other order).
fn reverse_index(layout: &Path) {
    let p = layout.join("index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    index["manifests"].as_array_mut().unwrap().reverse();
    std::fs::write(&p, serde_json::to_vec_pretty(&index).unwrap()).unwrap();
}

#[test]
fn same_bytes_under_a_perturbed_environment() {
    let t = TestDir::new();
    system_layout(&t.join("layout-a"));
    system_layout(&t.join("nested/dir/layout-b"));
    reverse_index(&t.join("nested/dir/layout-b"));
    write_case(&t, "basic.yml", CASE_BASIC);
    t.write("nested/dir/basic.yml", CASE_BASIC);

    let a = t.join("out-a");
    build(
        t.path(),
        "basic.yml",
        "layout-a",
        &a,
        "022",
        &[("TZ", "UTC"), ("LANG", "C"), ("KILN_THREADS", "1")],
    );
    let b = t.join("out-b");
    build(
        &t.join("nested/dir"),
        "./basic.yml",
        "layout-b",
        &b,
        "077",
        &[
            ("TZ", "Pacific/Kiritimati"),
            ("LANG", "de_DE.UTF-8"),
            ("LC_ALL", "tr_TR.UTF-8"),
            ("KILN_THREADS", "4"),
        ],
    );
    let (oa, ob) = (outputs(&a), outputs(&b));
    assert_eq!(oa.len(), 8);
    for ((na, ba), (nb, bb)) in oa.iter().zip(&ob) {
        assert_eq!(na, nb);
        assert!(ba == bb, "{na} differs between the two builds");
    }
}

#[test]
fn source_date_epoch_changes_only_generated_entries() {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    write_case(&t, "basic.yml", CASE_BASIC);
    let unset = t.join("unset");
    build(t.path(), "basic.yml", "oci-layout", &unset, "022", &[]);
    let default = t.join("default");
    build(
        t.path(),
        "basic.yml",
        "oci-layout",
        &default,
        "022",
        &[("SOURCE_DATE_EPOCH", "1492533000")],
    );
    let set = t.join("set");
    build(
        t.path(),
        "basic.yml",
        "oci-layout",
        &set,
        "022",
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );

    assert!(
        outputs(&unset) == outputs(&default),
        "unset means LinuxKit's default epoch"
    );
    let read = |d: &Path, n: &str| std::fs::read(d.join(n)).unwrap();
    // Bytes from the images and the YAML do not move…
    assert!(read(&unset, "r-kernel") == read(&set, "r-kernel"));
    assert!(read(&unset, "r-cmdline") == read(&set, "r-cmdline"));
    // …generated entries (config.json, files:, directories) do.
    assert!(read(&unset, "r-initrd.img") != read(&set, "r-initrd.img"));
    assert!(read(&unset, "r.tar") != read(&set, "r.tar"));

    // In the tar, exactly the entries kiln generated carry the epoch; entries
    // from image layers keep their own mtime.
    let f = std::fs::File::open(set.join("r.tar")).unwrap();
    let mut archive = tar::Archive::new(f);
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mtime = e.header().mtime().unwrap();
        if path.ends_with("config.json") || path == "etc/motd" || path == "boot/cmdline" {
            assert_eq!(mtime, 1_700_000_000, "{path}");
        }
        if path == "usr/bin/runc" || path == "containers/services/web/lower/bin/web" {
            assert_eq!(mtime, crate::support::DEFAULT_MTIME, "{path}");
        }
    }
}

#[test]
fn disk_formats_are_reproducible_under_a_perturbed_environment() {
    // The committed layout (real kernel, systemd-stub): every disk format,
    // built twice with other cwd, umask, TZ, locale and thread count.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let layout = root.join("oci-layout");
    let yml = root.join("examples/minimal.yml");
    let formats = [
        "uki",
        "iso-bios",
        "iso-efi",
        "iso-efi-initrd",
        "raw-bios",
        "qcow2-bios",
        "raw-efi",
        "qcow2-efi",
        "vhd",
        "dynamic-vhd",
        "vmdk",
        "aws",
        "gcp",
    ];
    // kernel+squashfs adds four files (kernel, cmdline, squashfs, root initrd).
    let formats_and_squashfs: Vec<&str> =
        formats.iter().copied().chain(["kernel+squashfs"]).collect();
    let t = TestDir::new();
    let run = |set: &[&str], cwd: &Path, out: &Path, umask: &str, env: &[(&str, &str)]| {
        let (layout, out) = (layout.to_str().unwrap(), out.to_str().unwrap());
        let mut args = vec!["build", "--layout", layout, "-o", out];
        for f in set {
            args.extend(["-f", f]);
        }
        args.push(yml.to_str().unwrap());
        kiln_under(cwd, &args, umask, env);
    };

    std::fs::create_dir_all(t.join("elsewhere/deeper")).unwrap();
    // kernel+iso writes NAME.iso as iso-bios does, so it is a second set;
    // it adds the kernel, cmdline, root ISO and root initrd.
    let sets: [(&[&str], usize); 2] = [
        (&formats_and_squashfs, formats.len() + 4),
        (&["kernel+iso"], 4),
    ];
    for (i, (set, files)) in sets.iter().enumerate() {
        let (a, b) = (t.join(format!("a{i}")), t.join(format!("b{i}")));
        run(
            set,
            t.path(),
            &a,
            "022",
            &[("TZ", "UTC"), ("KILN_THREADS", "1")],
        );
        run(
            set,
            &t.join("elsewhere/deeper"),
            &b,
            "077",
            &[
                ("TZ", "America/St_Johns"),
                ("LC_ALL", "fr_FR.UTF-8"),
                ("KILN_THREADS", "3"),
            ],
        );
        let (oa, ob) = (outputs(&a), outputs(&b));
        assert_eq!(
            oa.len(),
            files + 1,
            "{set:?}: every output file and the sums"
        );
        for ((na, ba), (nb, bb)) in oa.iter().zip(&ob) {
            assert_eq!(na, nb);
            assert!(ba == bb, "{na} differs between the two builds");
        }
    }
}
