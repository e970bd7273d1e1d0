//! Integration tests: the `kiln` binary end to end — builds from a layout
//! written in code, golden hashes, reproducibility under a perturbed
//! environment, exit codes and atomic outputs.

mod bounded;
mod disk_tools;
mod examples;
pub(crate) mod fixture;
mod golden_cases;
mod hostile;
mod interrupted;
mod modules;
mod oci_volume;
mod progress;
mod repro;
mod run_qemu;
mod sbom;
mod search;

use std::path::Path;

use crate::support::{kiln, stderr, stdout, TestDir};
use fixture::{system_layout, write_case, CASE_BASIC};

/// Files in `dir`, sorted, excluding the given names.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn build_writes_kernel_initrd_cmdline_and_sums() {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    write_case(&t, "basic.yml", CASE_BASIC);
    let out = t.kiln(&["build", "-o", "out", "basic.yml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        listing(&t.join("out")),
        [
            "basic-cmdline",
            "basic-initrd.img",
            "basic-kernel",
            "basic.sha256"
        ]
    );
    assert_eq!(t.read("out/basic-cmdline"), b"console=ttyS0 quiet");
    assert_eq!(t.read("out/basic-kernel"), fixture::KERNEL_BYTES);
    // The sums file is what sha256sum -c accepts, and what stdout printed.
    let sums = String::from_utf8(t.read("out/basic.sha256")).unwrap();
    assert_eq!(sums.lines().count(), 3);
    for line in sums.lines() {
        let (hash, name) = line.split_once("  ").unwrap();
        assert_eq!(
            kiln::golden::hash_file(&t.join("out").join(name)).unwrap(),
            hash
        );
        assert!(stdout(&out).contains(hash));
    }
}

#[test]
fn inspect_lists_the_initrd_layout() {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    write_case(&t, "basic.yml", CASE_BASIC);
    let out = t.kiln(&["build", "-o", "out", "basic.yml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = t.kiln(&["inspect", "out/basic-initrd.img"]);
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!("inspect_basic_initrd", stdout(&out));
}

#[test]
fn initrd_matches_what_gnu_cpio_sees() {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    write_case(&t, "basic.yml", CASE_BASIC);
    let out = t.kiln(&["build", "--compress", "none", "-o", "out", "basic.yml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = stdout(&t.kiln(&["inspect", "out/basic-initrd.img"]));
    let ours: Vec<String> = listed
        .lines()
        .map(|l| {
            l.splitn(6, ' ')
                .nth(5)
                .unwrap()
                .split(" -> ")
                .next()
                .unwrap()
                .split(" => ")
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let cpio = std::process::Command::new("sh")
        .arg("-c")
        .arg("cpio -t --quiet < out/basic-initrd.img")
        .current_dir(t.path())
        .output()
        .expect("cpio (Debian package cpio) must be installed");
    assert!(
        cpio.status.success(),
        "{}",
        String::from_utf8_lossy(&cpio.stderr)
    );
    let theirs: Vec<String> = String::from_utf8_lossy(&cpio.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ours, theirs);
    assert!(
        theirs
            .iter()
            .any(|p| p == "containers/services/web/config.json"),
        "{theirs:?}"
    );
}

#[test]
fn every_tar_format_is_written() {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    write_case(&t, "basic.yml", CASE_BASIC);
    let out = t.kiln(&[
        "build",
        "-f",
        "tar",
        "-f",
        "tar-kernel-initrd",
        "-f",
        "docker",
        "-o",
        "out",
        "basic.yml",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        listing(&t.join("out")),
        [
            "basic-initrd.tar",
            "basic.docker",
            "basic.sha256",
            "basic.tar"
        ]
    );
    let names = |file: &str| -> Vec<String> {
        let f = std::fs::File::open(t.join("out").join(file)).unwrap();
        tar::Archive::new(f)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        names("basic-initrd.tar"),
        ["cmdline", "initrd.img", "kernel"]
    );
    let full = names("basic.tar");
    assert!(
        full.contains(&"boot/kernel".to_owned()) && full.contains(&"boot/cmdline".to_owned()),
        "{full:?}"
    );
    let docker = names("basic.docker");
    assert!(docker.contains(&"Dockerfile".to_owned()));
    assert_eq!(docker.len(), full.len() + 1);
}

#[test]
fn golden_mismatch_exits_3_naming_each_output() {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    write_case(&t, "basic.yml", CASE_BASIC);
    let out = t.kiln(&["build", "-o", "out", "basic.yml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sums = String::from_utf8(t.read("out/basic.sha256")).unwrap();
    let zero = "0".repeat(64);
    let wrong: String = sums
        .lines()
        .map(|l| {
            if l.ends_with("basic-kernel") {
                format!("{zero}  basic-kernel\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    t.write("golden.sha256", &wrong);
    let out = t.kiln(&[
        "build",
        "-o",
        "out",
        "--golden",
        "golden.sha256",
        "basic.yml",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("basic-kernel: sha256 "),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("basic-initrd.img"),
        "only differing outputs are named"
    );
    let out = t.kiln(&["verify", "out/basic.sha256", "--golden", "golden.sha256"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("basic-kernel"));
    let out = t.kiln(&["verify", "out/basic.sha256", "--golden", "out/basic.sha256"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A tampered output fails verification against its own sums.
    t.write("out/basic-cmdline", "console=tty0");
    let out = t.kiln(&["verify", "out/basic.sha256", "--golden", "out/basic.sha256"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("basic-cmdline"), "{}", stderr(&out));
}

#[test]
fn bad_yaml_exits_1_with_position() {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    t.write("bad.yml", "kernel:\n  image: kiln.test/kernel:1\nservices:\n  - name: x\n    image: kiln.test/web:1\n    capabilities: [CAP_FLY]\n");
    let out = t.kiln(&["build", "bad.yml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("bad.yml:6:20") && err.contains("CAP_FLY"),
        "{err}"
    );
    let out = t.kiln(&["validate", "bad.yml"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn missing_image_exits_1_with_closest_names() {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    t.write("m.yml", "init:\n  - kiln.test/inti:1\n");
    let out = t.kiln(&["validate", "m.yml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("m.yml:2:5")
            && err.contains("kiln.test/inti:1")
            && err.contains("kiln.test/init:1"),
        "{err}"
    );
    // The position wraps the layout's error: its text is printed once.
    assert_eq!(err.matches("not found in layout").count(), 1, "{err}");
    t.write(
        "p.yml",
        "services:\n  - name: a\n    image: \"@pkg:../pkg/x\"\n",
    );
    let out = t.kiln(&["validate", "p.yml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("p.yml:3:12: image \"@pkg:../pkg/x\" is a LinuxKit package template")
            && err.contains("`kiln pkg build`")
            && !err.contains("digest"),
        "{err}"
    );
    assert_eq!(err.matches("package template").count(), 1, "{err}");
    write_case(&t, "basic.yml", CASE_BASIC);
    let out = t.kiln(&["validate", "basic.yml"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn layout_from_env_and_flag() {
    let t = TestDir::new();
    system_layout(&t.join("elsewhere"));
    write_case(&t, "basic.yml", CASE_BASIC);
    let out = t.kiln(&["validate", "basic.yml"]);
    assert_eq!(out.status.code(), Some(1), "no ./oci-layout here");
    let out = crate::support::kiln_env(
        t.path(),
        &["validate", "basic.yml"],
        &[("KILN_LAYOUT", "elsewhere")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = t.kiln(&["validate", "--layout", "elsewhere", "basic.yml"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn failed_build_keeps_previous_outputs_and_leaves_no_temp_files() {
    let t = TestDir::new();
    let layout = t.join("oci-layout");
    system_layout(&layout);
    write_case(&t, "basic.yml", CASE_BASIC);
    let out = t.kiln(&["build", "-o", "out", "basic.yml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before: Vec<Vec<u8>> = listing(&t.join("out"))
        .iter()
        .map(|n| t.read(Path::new("out").join(n)))
        .collect();
    // Damage the last byte of the largest blob (a layer): the digest check
    // fails only after the stream was read, i.e. mid-build.
    let largest = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| (std::fs::metadata(p).unwrap().len(), p.clone()))
        .unwrap();
    crate::support::corrupt_byte(&largest, -1);
    let out = t.kiln(&[
        "build",
        "-f",
        "kernel+initrd",
        "-f",
        "tar",
        "-o",
        "out",
        "basic.yml",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let digest = largest.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        stderr(&out).contains(&digest),
        "error names the blob: {}",
        stderr(&out)
    );
    let after: Vec<Vec<u8>> = listing(&t.join("out"))
        .iter()
        .map(|n| t.read(Path::new("out").join(n)))
        .collect();
    assert_eq!(
        listing(&t.join("out")),
        [
            "basic-cmdline",
            "basic-initrd.img",
            "basic-kernel",
            "basic.sha256"
        ]
    );
    assert_eq!(before, after);
}

#[test]
fn bad_environment_values_are_user_errors() {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    write_case(&t, "basic.yml", CASE_BASIC);
    for (k, v) in [("SOURCE_DATE_EPOCH", "yesterday"), ("KILN_THREADS", "0")] {
        let out =
            crate::support::kiln_env(t.path(), &["build", "-o", "out", "basic.yml"], &[(k, v)]);
        assert_eq!(out.status.code(), Some(1), "{k}={v}");
        assert!(stderr(&out).contains(k), "{}", stderr(&out));
    }
}

#[test]
fn flate2_uses_the_pinned_pure_rust_backend() {
    // The gzip bytes depend on the deflate implementation: it must be
    // zlib-rs (pinned by Cargo.lock), never a C zlib some dependency
    // switched on through feature unification.
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "kiln",
            "-e",
            "features",
            "-i",
            "flate2",
            "--prefix",
            "none",
        ])
        .current_dir(root)
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("flate2 feature \"zlib-rs\""), "{text}");
    for c_backend in [
        "\"zlib\"",
        "\"zlib-ng\"",
        "\"zlib-ng-compat\"",
        "\"cloudflare_zlib\"",
        "\"miniz_oxide\"",
    ] {
        assert!(
            !text.contains(&format!("flate2 feature {c_backend}")),
            "flate2 backend {c_backend} enabled:\n{text}"
        );
    }
}

#[test]
fn unknown_format_is_rejected_by_the_cli() {
    let t = TestDir::new();
    let out = kiln(t.path(), &["build", "-f", "floppy-bios", "x.yml"]);
    assert_eq!(out.status.code(), Some(1), "usage errors are bad input");
    assert!(stderr(&out).contains("floppy-bios"));
}

#[test]
fn hostile_layers_are_bad_input_naming_the_layer() {
    use crate::support::{write_layout, LayerBuilder, TestImage};
    let t = TestDir::new();
    let truncated = LayerBuilder::new()
        .truncated_file("etc/big", 4096, "short")
        .build();
    let escaping = LayerBuilder::new()
        .file("../../../etc/evil", "x", 0o644)
        .build();
    write_layout(
        &t.join("oci-layout"),
        &[
            TestImage::new("kiln.test/truncated:1").layer(truncated),
            TestImage::new("kiln.test/escaping:1").layer(escaping),
        ],
    );
    t.write("t.yml", "init:\n  - kiln.test/truncated:1\n");
    let out = t.kiln(&["build", "-o", "out", "t.yml"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("sha256:") && stderr(&out).contains("etc/big"),
        "{}",
        stderr(&out)
    );
    assert!(!t.join("out/t-initrd.img").exists());

    // `..` stays inside the image root, with a warning naming the path.
    t.write("e.yml", "init:\n  - kiln.test/escaping:1\n");
    let out = t.kiln(&["build", "-o", "out", "e.yml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning") && stderr(&out).contains("../../../etc/evil"),
        "{}",
        stderr(&out)
    );
    let listing = stdout(&t.kiln(&["inspect", "out/e-initrd.img"]));
    assert!(
        listing.lines().any(|l| l.ends_with(" etc/evil")),
        "{listing}"
    );
    assert!(!t.path().parent().unwrap().join("etc/evil").exists());

    // The size bound is configurable and enforced.
    let out = t.kiln(&["build", "-o", "out", "--max-image-bytes", "1000", "e.yml"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("1000"), "{}", stderr(&out));
}

/// `kiln validate` runs every check of a build that needs no layer contents:
/// each of these builds fails, and validate fails first with the same words.
#[test]
fn validate_runs_the_checks_a_build_runs_without_layer_contents() {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    let head = "kernel:\n  image: kiln.test/kernel:1\ninit:\n  - kiln.test/init:1\n";
    let cases = [
        (
            "rw-bind-of-ro-volume",
            "volumes:\n  - name: v\n    readonly: true\nservices:\n  - name: s\n    image: kiln.test/busybox:1\n    binds: [\"v:/data\"]\n",
            "volume \"v\" is read-only, so the bind must be read-only",
        ),
        (
            "undeclared-volume",
            "services:\n  - name: s\n    image: kiln.test/busybox:1\n    binds: [\"v:/data\"]\n",
            "no volume named \"v\"",
        ),
        (
            "unknown-volume-format",
            "volumes:\n  - name: v\n    format: squashfs\n",
            "format \"squashfs\" is not supported",
        ),
        (
            "device-without-mode",
            "services:\n  - name: s\n    image: kiln.test/busybox:1\n    devices:\n      - path: /dev/x\n        type: c\n        major: 1\n        minor: 3\n",
            "device \"/dev/x\" from the yaml has no mode",
        ),
    ];
    for (name, body, words) in cases {
        let file = format!("{name}.yml");
        t.write(&file, format!("{head}{body}"));
        for args in [vec!["validate", &file], vec!["build", "-o", "out", &file]] {
            let cmd = args[0];
            let out = t.kiln(&args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{cmd} {name}: {err}");
            assert!(
                err.contains(&format!("{file}:")) && err.contains(words),
                "{cmd} {name}: {err}"
            );
        }
    }
}

/// A reference that matches only a layout entry named by its bare tag
/// (`skopeo copy … oci:DIR:1.0`) builds, with a warning on stderr and in
/// `--json` that names the reference and the bare name.
#[test]
fn bare_tag_match_warns_in_text_and_json() {
    let t = TestDir::new();
    let layout = t.join("oci-layout");
    system_layout(&layout);
    crate::support::write_layout(
        &layout,
        &[crate::support::TestImage::new("1.0").layer(
            crate::support::LayerBuilder::new()
                .file("etc/which", "some image", 0o644)
                .build(),
        )],
    );
    t.write(
        "b.yml",
        "kernel:\n  image: kiln.test/kernel:1\ninit:\n  - kiln.test/init:1\nonboot:\n  - name: r\n    image: redis:1.0\n    command: [/bin/true]\n",
    );
    let words = "image \"redis:1.0\" matched the layout entry named only \"1.0\"";
    let out = t.kiln(&["build", "-f", "tar", "-o", "out", "--json", "b.yml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("b.yml:7:12") && err.contains(words), "{err}");
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let warnings = report["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w.as_str().unwrap().contains(words)),
        "{report}"
    );
    // Provenance: every image with its digests, on stderr and in --json.
    let want = kiln::oci::Layout::open(&layout)
        .unwrap()
        .resolve("redis:1.0", "amd64")
        .unwrap();
    let line = format!(
        "kiln: image redis:1.0 = docker.io/library/redis:1.0@{} (config {})",
        want.manifest_digest, want.config_digest
    );
    assert!(err.contains(&line), "{err}");
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 3, "{report}");
    let redis = images
        .iter()
        .find(|i| i["reference"] == "redis:1.0")
        .unwrap();
    assert_eq!(redis["manifest"], want.manifest_digest.as_str());
    assert_eq!(redis["layers"][0], want.layers[0].digest.as_str());
    let out = t.kiln(&["validate", "b.yml"]);
    assert!(
        out.status.success() && stderr(&out).contains(words),
        "{}",
        stderr(&out)
    );
}

/// validate (and build) name every image the layout lacks, not only the first.
#[test]
fn every_missing_image_is_reported() {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    t.write(
        "m.yml",
        "kernel:\n  image: kiln.test/kernel:1\ninit:\n  - kiln.test/nope:1\nservices:\n  - name: a\n    image: kiln.test/absent:2\n  - name: b\n    image: kiln.test/nope:1\n",
    );
    for cmd in ["validate", "build"] {
        let out = t.kiln(&[cmd, "m.yml"]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.contains("m.yml:4:5: image \"kiln.test/nope:1\" not found")
                && err.contains("m.yml:7:12: image \"kiln.test/absent:2\" not found"),
            "{cmd}: {err}"
        );
        assert_eq!(
            err.matches("kiln.test/nope:1\" not found").count(),
            1,
            "{err}"
        );
    }
}

/// A container whose program needs an ELF interpreter its image lacks
/// builds with a warning naming the program and the interpreter; one with no
/// command at all is an error naming the container and its image.
#[test]
fn build_time_checks_of_the_containers_program() {
    let t = TestDir::new();
    let layout = t.join("oci-layout");
    system_layout(&layout);
    // An ELF64 header with one PT_INTERP program header.
    let interp = b"/lib/ld-musl-x86_64.so.1\0";
    let mut elf = vec![0u8; 0x40 + 0x38];
    elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
    elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
    elf[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
    elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
    elf[0x40..0x44].copy_from_slice(&3u32.to_le_bytes());
    let off = elf.len() as u64;
    elf[0x48..0x50].copy_from_slice(&off.to_le_bytes());
    elf[0x60..0x68].copy_from_slice(&(interp.len() as u64).to_le_bytes());
    elf.extend_from_slice(interp);
    crate::support::write_layout(
        &layout,
        &[
            crate::support::TestImage::new("kiln.test/dyn:1")
                .entrypoint(&["app"])
                .layer(
                    crate::support::LayerBuilder::new()
                        .dir("usr", 0o755)
                        .dir("usr/bin", 0o755)
                        .file("usr/bin/app", &elf, 0o755)
                        .build(),
                ),
            crate::support::TestImage::new("kiln.test/nocmd:1").layer(
                crate::support::LayerBuilder::new()
                    .file("data", "x", 0o644)
                    .build(),
            ),
        ],
    );
    let head = "kernel:\n  image: kiln.test/kernel:1\ninit:\n  - kiln.test/init:1\nservices:\n";
    t.write(
        "d.yml",
        format!("{head}  - name: app\n    image: kiln.test/dyn:1\n"),
    );
    let out = t.kiln(&["build", "-f", "tar", "-o", "out", "d.yml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("d.yml:6:5: container \"app\": /usr/bin/app needs the ELF interpreter /lib/ld-musl-x86_64.so.1"),
        "{err}"
    );
    t.write(
        "n.yml",
        format!("{head}  - name: idle\n    image: kiln.test/nocmd:1\n"),
    );
    for cmd in ["validate", "build"] {
        let out = t.kiln(&[cmd, "n.yml"]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = stderr(&out);
        assert!(
            err.contains("n.yml:6:5: container \"idle\" has no command")
                && err.contains("image kiln.test/nocmd:1"),
            "{cmd}: {err}"
        );
    }
}

/// Where the layout went wrong is said plainly: no layout where kiln was
/// started, a tar archive given as the layout, a path that does not exist.
#[test]
fn layout_mistakes_are_explained() {
    let t = TestDir::new();
    write_case(&t, "basic.yml", CASE_BASIC);
    let out =
        crate::support::kiln_env(t.path(), &["validate", "basic.yml"], &[("KILN_LAYOUT", "")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("no --layout was given, $KILN_LAYOUT is unset")
            && err.contains("has no oci-layout directory"),
        "{err}"
    );
    // An oci-archive given as --layout.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(2);
    h.set_cksum();
    tar.append_data(&mut h, "oci-layout", &b"{}"[..]).unwrap();
    t.write("img.tar", tar.into_inner().unwrap());
    let out = t.kiln(&["validate", "--layout", "img.tar", "basic.yml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("img.tar is not an OCI image layout: it is a tar archive")
            && err.contains("kiln layout import --layout DIR img.tar"),
        "{err}"
    );
    let out = t.kiln(&["validate", "--layout", "nowhere", "basic.yml"]);
    assert!(
        stderr(&out).contains("nowhere is not an OCI image layout: it does not exist"),
        "{}",
        stderr(&out)
    );
}

/// An output directory that cannot be used is bad input (exit 1) named in
/// the message.
#[test]
fn unusable_output_directory_exits_1_naming_it() {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    write_case(&t, "basic.yml", CASE_BASIC);
    t.write("taken", "a file");
    let out = t.kiln(&["build", "-o", "taken", "basic.yml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("output directory taken: cannot create it"),
        "{err}"
    );
    assert_eq!(t.read("taken"), b"a file");
}

/// Shell completions and man pages come from the clap definitions; inspect,
/// validate and verify speak JSON with --json.
#[test]
fn completions_man_pages_and_json_outputs() {
    let t = TestDir::new();
    let out = t.kiln(&["completions", "bash"]);
    assert!(out.status.success());
    let script = stdout(&out);
    assert!(
        script.contains("_kiln()") && script.contains("validate"),
        "{script}"
    );
    let out = t.kiln(&["man", "man"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = String::from_utf8(t.read("man/kiln.1")).unwrap();
    assert!(page.contains(".TH kiln 1"), "{page}");
    assert!(t.join("man/kiln-build.1").is_file());

    system_layout(&t.join("oci-layout"));
    write_case(&t, "basic.yml", CASE_BASIC);
    let out = t.kiln(&["validate", "--json", "basic.yml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["ok"], true);
    assert!(v["warnings"].is_array());

    let out = t.kiln(&["build", "-f", "tar", "-o", "out", "basic.yml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = t.kiln(&["inspect", "--json", "out/basic.tar"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let text = stdout(&t.kiln(&["inspect", "out/basic.tar"]));
    assert_eq!(rows.as_array().unwrap().len(), text.lines().count());
    // Each row says what the text line says.
    for (row, line) in rows.as_array().unwrap().iter().zip(text.lines()) {
        let path = row["path"].as_str().unwrap();
        assert!(
            line.ends_with(path) || line.contains(&format!(" {path} ")),
            "{row} vs {line}"
        );
        let mode = row["mode"].as_str().unwrap();
        assert!(
            line.starts_with(&format!("{}{mode}", row["type"].as_str().unwrap())),
            "{row} vs {line}"
        );
    }

    let out = t.kiln(&[
        "verify",
        "--json",
        "out/basic.sha256",
        "--golden",
        "out/basic.sha256",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["ok"], true);
    assert!(
        v["outputs"]["basic.tar"].as_str().unwrap().len() == 64,
        "{v}"
    );
}

/// `build --dry-run` runs the checks and names the images with their
/// digests, and writes nothing.
#[test]
fn dry_run_prints_images_and_writes_nothing() {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    write_case(&t, "basic.yml", CASE_BASIC);
    let out = t.kiln(&["build", "--dry-run", "-f", "tar", "-o", "out", "basic.yml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let kernel = kiln::oci::Layout::open(&t.join("oci-layout"))
        .unwrap()
        .resolve("kiln.test/kernel:1", "amd64")
        .unwrap();
    assert!(
        text.starts_with("would build basic into out as tar\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "  kiln.test/kernel:1 = kiln.test/kernel:1@{}",
            kernel.manifest_digest
        )),
        "{text}"
    );
    assert!(!t.join("out").exists());
    // Checks still run: a bad reference fails the dry run.
    t.write("bad.yml", "init:\n  - kiln.test/missing:1\n");
    let out = t.kiln(&["build", "--dry-run", "bad.yml"]);
    assert_eq!(out.status.code(), Some(1));
}
