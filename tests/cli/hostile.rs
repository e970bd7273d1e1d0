//! Hostile input (issue 13's items as they are fixed): each case ends in
//! bounded time with exit 1 and a message, and writes nothing outside the
//! output directory.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use super::fixture::{system_layout, write_case, CASE_BASIC};
use crate::support::{rss, stderr, TestDir};

/// Runs kiln in `dir` with at most 1 GiB of address space, killing it
/// after 30 s: a hang or an allocation past the bound fails the test (the
/// allocation aborts kiln, which is not exit 1).
fn kiln_bounded(dir: &Path, args: &[&str]) -> Output {
    kiln_measured(dir, args, &[], None).0
}

/// [`kiln_bounded`] with extra environment variables and an optional
/// `RLIMIT_FSIZE`, giving also kiln's peak RSS in bytes and its seconds.
fn kiln_measured(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    file_size_limit: Option<u64>,
) -> (Output, u64, f64) {
    let m = rss::kiln_measured(&rss::Bounds {
        dir,
        args,
        env,
        file_size_limit,
        deadline: Duration::from_secs(30),
    });
    (m.output, m.peak_rss, m.secs)
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

/// Bytes that do not compress, from a fixed seed.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const SMALL_YML: &str = "kernel:\n  image: kiln.test/k:1\n  cmdline: console=ttyS0\n  tar: none\ninit:\n  - kiln.test/i:1\n";

/// A kernel, an init image holding `bin/big` (`big` bytes) and twelve
/// copies of one 100 KiB file (stored once, written twelve times to a
/// tar), and a bootloader image whose stub is 2 MiB.
fn small_system(dir: &Path, big: usize) {
    use crate::support::{write_layout, LayerBuilder, TestImage};
    let kernel = TestImage::new("kiln.test/k:1").layer(
        LayerBuilder::new()
            .file("kernel", b"MZ kernel", 0o644)
            .build(),
    );
    let copy = noise(100 << 10, 5);
    let mut layer = LayerBuilder::new()
        .dir("bin", 0o755)
        .file("bin/big", noise(big, 7), 0o755);
    for i in 0..12 {
        layer = layer.file(&format!("bin/c{i}"), &copy, 0o755);
    }
    let init = TestImage::new("kiln.test/i:1").layer(layer.build());
    let loader = TestImage::new("kiln.dev/systemd-boot:0.1").layer(
        LayerBuilder::new()
            .file(
                "usr/lib/systemd/boot/efi/linuxx64.efi.stub",
                noise(2 << 20, 9),
                0o644,
            )
            .build(),
    );
    write_layout(dir, &[kernel, init, loader]);
}

#[test]
fn max_image_bytes_bounds_the_bootloader_images_too() {
    let t = TestDir::new();
    small_system(&t.join("oci-layout"), 1000);
    t.write("s.yml", SMALL_YML);
    let out = kiln_bounded(
        t.path(),
        &[
            "build",
            "-f",
            "uki",
            "--max-image-bytes",
            "1500000",
            "-o",
            "out",
            "s.yml",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("more than the limit of 1500000")
            && stderr(&out).contains("kiln.dev/systemd-boot:0.1"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_full_temp_dir_is_the_environment_naming_the_directory() {
    let t = TestDir::new();
    small_system(&t.join("oci-layout"), 1 << 20);
    t.write("s.yml", SMALL_YML);
    let tmp = t.mkdir("tmp");
    // Writes past 512 KiB fail with EFBIG, as on a full disk: the content
    // store (in TMPDIR) cannot take bin/big.
    let (out, _, _) = kiln_measured(
        t.path(),
        &["build", "-f", "tar", "-o", "out", "s.yml"],
        &[("TMPDIR", tmp.to_str().unwrap())],
        Some(512 << 10),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("in the temp directory {}", tmp.display()))
            && err.contains("too large"),
        "{err}"
    );
    // The store holds the copies once (100 KiB); the tar has all twelve:
    // the output directory is where the limit is hit.
    small_system(&t.join("oci-layout"), 0);
    let (out, _, _) = kiln_measured(
        t.path(),
        &["build", "-f", "tar", "-o", "out", "s.yml"],
        &[("TMPDIR", tmp.to_str().unwrap())],
        Some(512 << 10),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("writing the outputs in out") && err.contains("too large"),
        "{err}"
    );
    assert!(!t.join("out/s.tar").exists() && !t.join("out/s.sha256").exists());
}

/// A tar whose first member is an extension header (`L` GNU long name or
/// `x` PAX header) declaring `size` bytes, all NUL, zstd-compressed (a few
/// KiB on disk).
fn huge_extension(kind: tar::EntryType, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path("././@LongLink").unwrap();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    let mut z = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
    std::io::Write::write_all(&mut z, h.as_bytes()).unwrap();
    std::io::copy(&mut std::io::repeat(0).take(size), &mut z).unwrap();
    z.finish().unwrap()
}

#[test]
fn inspect_reads_a_huge_long_name_within_bounds() {
    let t = TestDir::new();
    for (kind, file) in [
        (tar::EntryType::GNULongName, "l.tar.zst"),
        (tar::EntryType::XHeader, "x.tar.zst"),
    ] {
        t.write(file, huge_extension(kind, 600 << 20));
        let (out, rss, secs) = kiln_measured(t.path(), &["inspect", file], &[], None);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{file}: {err}");
        assert!(
            err.contains("extension header of 629145600 bytes is too large"),
            "{err}"
        );
        assert!(rss < 64 << 20, "{file}: peak RSS {rss} bytes");
        assert!(secs < 10.0, "{file}: {secs} s");
    }
}

#[test]
fn an_index_of_15000_children_resolves_in_linear_time() {
    use sha2::Digest as _;
    let t = TestDir::new();
    let layout = t.join("oci-layout");
    system_layout(&layout);
    write_case(&t, "basic.yml", CASE_BASIC);
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifests = index["manifests"].as_array_mut().unwrap();
    let web = manifests
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == "kiln.test/web:1")
        .unwrap()
        .clone();
    // 15,000 more names (in three unnamed nested indexes: index.json is
    // bounded to 4 MiB), and a nested index of 15,000 children without a
    // platform (each read to learn it) under one name.
    let blob = |json: String| {
        let digest = hex::encode(sha2::Sha256::digest(json.as_bytes()));
        std::fs::write(layout.join(format!("blobs/sha256/{digest}")), &json).unwrap();
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{digest}"),
            "size": json.len(),
        })
    };
    for part in 0..3 {
        let named: Vec<serde_json::Value> = (0..5_000)
            .map(|i| {
                // Names of one length with a long common prefix: comparing
                // two costs their length, as with long repository paths.
                let name = format!("x.test/{}/n{part}{i:05}:1", "p".repeat(240));
                let mut d = web.clone();
                d["annotations"]["org.opencontainers.image.ref.name"] = name.into();
                d
            })
            .collect();
        let nested = serde_json::json!({"schemaVersion": 2, "manifests": named}).to_string();
        manifests.push(blob(nested));
    }
    let mut child = web.clone();
    child.as_object_mut().unwrap().remove("annotations");
    child.as_object_mut().unwrap().remove("platform");
    let nested = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": vec![child; 15_000],
    })
    .to_string();
    let mut wide = blob(nested);
    wide["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "x.test/wide:1"});
    manifests.push(wide);
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    t.write(
        "wide.yml",
        "kernel:\n  image: kiln.test/kernel:1\ninit:\n  - kiln.test/init:1\nonboot:\n  - name: wide\n    image: x.test/wide:1\n",
    );
    for file in ["basic.yml", "wide.yml"] {
        let (out, _, secs) = kiln_measured(t.path(), &["validate", file], &[], None);
        assert_eq!(out.status.code(), Some(0), "{file}: {}", stderr(&out));
        // Quadratic name collection took 3.2 s here (49 s in issue 13).
        assert!(secs < 2.5, "{file}: {secs:.2} s");
    }
}

#[test]
fn user_errors_exit_1_and_a_fifo_argument_is_refused_not_read() {
    use std::os::unix::ffi::OsStrExt;
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    mkfifo(&t.join("pipe.yml"));
    mkfifo(&t.join("pipe.img"));
    for args in [
        &["validate", "pipe.yml"][..],
        &["build", "pipe.yml"],
        &["inspect", "pipe.img"],
    ] {
        let out = kiln_bounded(t.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("not a regular file"),
            "{}",
            stderr(&out)
        );
    }
    // A first file whose name is not UTF-8 gives no output name: bad input.
    let odd = std::ffi::OsStr::from_bytes(b"\xff.yml");
    std::fs::write(t.join(odd), CASE_BASIC).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("build")
        .arg(odd)
        .current_dir(t.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("use --name"), "{}", stderr(&out));
}
