//! `kiln layout ls/rm/gc/fsck/import/export`: what each verb shows and
//! changes, that gc keeps everything the names need (the layout still
//! builds the same bytes), that fsck finds corrupt and missing blobs,
//! that skopeo's oci-archive and docker-archive tarballs import and build
//! the bytes of the original layout, that exports are reproducible and
//! round-trip, that hostile archives are refused by name, and that pulls,
//! a build and a gc racing on one layout all succeed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::cli::fixture::{system_layout, CASE_BASIC};
use crate::support::registry::{free_port, pull, Auth, Registry};
use crate::support::{
    blob_path, corrupt_byte, kiln_env, ok, run_tool, stderr, stdout, write_layout,
    write_multiarch_layout, LayerBuilder, MultiArchImage, TestDir, TestImage,
};

/// The committed layout and the example that builds from it.
fn committed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oci-layout")
}
const MINIMAL_IMAGES: [&str; 4] = [
    "kiln.dev/kernel:0.1",
    "kiln.dev/init:0.1",
    "kiln.dev/runc:0.1",
    "kiln.dev/getty:0.1",
];

fn minimal_yml(t: &TestDir) {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/minimal.yml"))
            .unwrap();
    t.write("minimal.yml", text);
}

fn kiln(t: &TestDir, args: &[&str]) -> Output {
    kiln_env(t.path(), args, &[])
}

/// `kiln build -f tar --layout LAYOUT -o OUT FILE`; gives the tar's bytes.
fn build_tar(t: &TestDir, layout: &str, out: &str, file: &str) -> Vec<u8> {
    ok(&kiln(
        t,
        &["build", "-f", "tar", "--layout", layout, "-o", out, file],
    ));
    let stem = file.trim_end_matches(".yml");
    t.read(format!("{out}/{stem}.tar"))
}

fn fsck_ok(t: &TestDir, layout: &str) -> String {
    ok(&kiln(t, &["layout", "fsck", "--layout", layout]))
}

/// Copies a layout directory (blobs, index.json, oci-layout).
fn copy_layout(from: &Path, to: &Path) {
    run_tool("cp", &["-r", from.to_str().unwrap(), to.to_str().unwrap()]);
}

fn small(name: &str, file: &str, body: &str) -> TestImage {
    TestImage::new(name).layer(
        LayerBuilder::new()
            .dir("etc", 0o755)
            .file(&format!("etc/{file}"), body, 0o644)
            .build(),
    )
}

#[test]
fn ls_shows_names_digests_platforms_sizes_and_signatures() {
    let t = TestDir::new();
    let descs = write_layout(
        &t.join("l"),
        &[
            small("kiln.test/a:1", "a", "a\n"),
            small("kiln.test/b:1", "b", "b\n"),
        ],
    );
    let plat = |arch: &str| {
        TestImage::untagged()
            .arch(arch)
            .layer(LayerBuilder::new().file("arch", arch, 0o644).build())
    };
    write_multiarch_layout(
        &t.join("l"),
        &[MultiArchImage::new(
            "kiln.test/multi:1",
            vec![plat("amd64"), plat("arm64")],
        )],
    );
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cosign/kiln-test.key");
    ok(&kiln(
        &t,
        &[
            "sign",
            "--key",
            key.to_str().unwrap(),
            "--layout",
            "l",
            "kiln.test/a:1",
        ],
    ));

    let text = ok(&kiln(&t, &["layout", "ls", "--layout", "l"]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("REFERENCE"), "{text}");
    assert!(
        lines[1].starts_with("kiln.test/a:1") && lines[1].contains(&descs[0].digest),
        "{text}"
    );
    assert!(
        lines[1].contains("linux/amd64") && lines[1].ends_with("signed"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("kiln.test/b:1") && lines[2].ends_with('-'),
        "{text}"
    );
    assert!(lines[3].contains("linux/amd64,linux/arm64"), "{text}");

    let json: serde_json::Value = serde_json::from_str(&ok(&kiln(
        &t,
        &["layout", "ls", "--layout", "l", "--json", "--all"],
    )))
    .unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 4, "{json}");
    let sig = rows
        .iter()
        .find(|r| r.get("signature_of").is_some())
        .expect("the signature image is listed with --all");
    assert_eq!(sig["signature_of"], descs[0].digest.as_str());
    let a = &rows[0];
    assert_eq!(a["reference"], "kiln.test/a:1");
    assert_eq!(a["signed"], true);
    // The size is the manifest, the config and the one layer.
    let layout = kiln::oci::Layout::open(&t.join("l")).unwrap();
    let img = layout.resolve("kiln.test/a:1", "amd64").unwrap();
    assert_eq!(
        a["size"].as_u64().unwrap(),
        img.manifest_size + img.config_size + img.layers[0].size
    );
}

#[test]
fn rm_then_gc_keeps_what_the_names_need_and_the_layout_builds_the_same_bytes() {
    let t = TestDir::new();
    copy_layout(&committed(), &t.join("l"));
    minimal_yml(&t);
    let before = build_tar(&t, "l", "out1", "minimal.yml");
    let blobs_before = std::fs::read_dir(t.join("l/blobs/sha256")).unwrap().count();

    // dhcpcd is not in minimal.yml; its blobs are its own.
    let o = ok(&kiln(
        &t,
        &["layout", "rm", "--layout", "l", "kiln.dev/dhcpcd:0.1"],
    ));
    assert_eq!(o.trim(), "removed kiln.dev/dhcpcd:0.1");
    let ls = ok(&kiln(&t, &["layout", "ls", "--layout", "l"]));
    assert!(
        !ls.contains("kiln.dev/dhcpcd:0.1") && ls.contains("kiln.dev/dhcpcd:a800e0187431"),
        "{ls}"
    );
    // Not a name: exit 1, and the closest names are offered.
    let o = kiln(&t, &["layout", "rm", "--layout", "l", "kiln.dev/getty:0.2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("closest: kiln.dev/getty:0.1"),
        "{}",
        stderr(&o)
    );
    // The second name of the same image: now its blobs are unreferenced.
    ok(&kiln(
        &t,
        &[
            "layout",
            "rm",
            "--layout",
            "l",
            "kiln.dev/dhcpcd:a800e0187431",
        ],
    ));
    let fsck = fsck_ok(&t, "l");
    assert!(!fsck.contains(" 0 unreferenced"), "{fsck}");

    // A killed writer's temp file and a stray blob.
    t.write("l/blobs/sha256/.tmp-dead", "partial");
    let stray = kiln::oci::Digest::sha256_of(b"stray");
    t.write(format!("l/blobs/sha256/{}", stray.hex()), "stray");

    let o = ok(&kiln(&t, &["layout", "gc", "--layout", "l", "--json"]));
    let r: serde_json::Value = serde_json::from_str(&o).unwrap();
    assert_eq!(r["temp_files"], 1, "{o}");
    assert!(r["removed"].as_u64().unwrap() >= 4, "{o}"); // manifest, config, layer(s), stray
    assert_eq!(
        r["kept"].as_u64().unwrap() + r["removed"].as_u64().unwrap(),
        blobs_before as u64 + 1,
        "{o}"
    );
    assert!(!t.join("l/blobs/sha256/.tmp-dead").exists());
    assert!(!t.join(format!("l/blobs/sha256/{}", stray.hex())).exists());
    let fsck = fsck_ok(&t, "l");
    assert!(fsck.contains(" 0 unreferenced"), "{fsck}");
    // Every other image still resolves and the build is the same.
    assert!(build_tar(&t, "l", "out2", "minimal.yml") == before);
    // A second gc has nothing to do.
    let o = ok(&kiln(&t, &["layout", "gc", "--layout", "l", "--json"]));
    assert!(o.contains("\"removed\":0"), "{o}");
}

#[test]
fn fsck_names_a_corrupt_and_a_missing_blob_exits_3_and_gc_refuses() {
    let t = TestDir::new();
    let descs = write_layout(
        &t.join("l"),
        &[
            small("kiln.test/a:1", "a", "a\n"),
            small("kiln.test/b:1", "b", "b\n"),
        ],
    );
    let out = fsck_ok(&t, "l");
    assert!(out.starts_with("2 names, 6 blobs"), "{out}");
    let layout = kiln::oci::Layout::open(&t.join("l")).unwrap();
    let a = layout.resolve("kiln.test/a:1", "amd64").unwrap();
    let b = layout.resolve("kiln.test/b:1", "amd64").unwrap();
    corrupt_byte(&blob_path(&t.join("l"), &a.layers[0].digest), 40);
    std::fs::remove_file(blob_path(&t.join("l"), &b.config_digest)).unwrap();

    let o = kiln(&t, &["layout", "fsck", "--layout", "l"]);
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("kiln: corrupt: blob {}", a.layers[0].digest))
            && err.contains("\"kiln.test/a:1\""),
        "{err}"
    );
    assert!(
        err.contains(&format!("kiln: missing: blob {}", b.config_digest))
            && err.contains("\"kiln.test/b:1\""),
        "{err}"
    );
    assert!(err.contains("2 problem(s)"), "{err}");
    let json: serde_json::Value =
        serde_json::from_slice(&kiln(&t, &["layout", "fsck", "--layout", "l", "--json"]).stdout)
            .unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["problems"].as_array().unwrap().len(), 2);

    // gc deletes nothing while a manifest's blobs are missing or damaged.
    let count = std::fs::read_dir(t.join("l/blobs/sha256")).unwrap().count();
    let o = kiln(&t, &["layout", "gc", "--layout", "l"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains(&b.config_digest), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_dir(t.join("l/blobs/sha256")).unwrap().count(),
        count
    );

    // A corrupt blob no name reaches is found too (a pull would reuse it).
    ok(&kiln(
        &t,
        &[
            "layout",
            "rm",
            "--layout",
            "l",
            "kiln.test/a:1",
            "kiln.test/b:1",
        ],
    ));
    let o = kiln(&t, &["layout", "fsck", "--layout", "l"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains(&a.layers[0].digest), "{}", stderr(&o));
    assert_eq!(descs.len(), 2);

    // Not a layout: exit 1.
    let o = kiln(&t, &["layout", "fsck", "--layout", "nowhere"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

/// `skopeo copy oci:LAYOUT:REF TRANSPORT:FILE:REF` for every ref (the
/// archive holds them all).
fn skopeo_archive(layout: &Path, transport: &str, file: &Path, refs: &[&str]) {
    for r in refs {
        run_tool(
            "skopeo",
            &[
                "copy",
                "--quiet",
                &format!("oci:{}:{r}", layout.display()),
                &format!("{transport}:{}:{r}", file.display()),
            ],
        );
    }
}

#[test]
fn skopeo_docker_and_oci_archives_import_and_build_the_original_bytes() {
    let t = TestDir::new();
    minimal_yml(&t);
    copy_layout(&committed(), &t.join("orig"));
    let want = build_tar(&t, "orig", "out-orig", "minimal.yml");
    // docker-archive keeps one image per file when written like this; a
    // second image in the same file is another skopeo run into a new file.
    for (i, r) in MINIMAL_IMAGES.iter().enumerate() {
        skopeo_archive(
            &committed(),
            "docker-archive",
            &t.join(format!("d{i}.tar")),
            &[r],
        );
    }
    skopeo_archive(
        &committed(),
        "oci-archive",
        &t.join("o.tar"),
        &MINIMAL_IMAGES[..1],
    );
    for (i, r) in MINIMAL_IMAGES.iter().enumerate().skip(1) {
        skopeo_archive(
            &committed(),
            "oci-archive",
            &t.join(format!("o{i}.tar")),
            &[r],
        );
    }

    for (i, r) in MINIMAL_IMAGES.iter().enumerate() {
        let o = ok(&kiln(
            &t,
            &["layout", "import", "--layout", "dock", &format!("d{i}.tar")],
        ));
        assert!(o.contains(r), "{o}");
    }
    for f in ["o.tar", "o1.tar", "o2.tar", "o3.tar"] {
        ok(&kiln(&t, &["layout", "import", "--layout", "oci", f]));
    }
    fsck_ok(&t, "dock");
    fsck_ok(&t, "oci");
    assert!(
        build_tar(&t, "dock", "out-dock", "minimal.yml") == want,
        "docker-archive import builds other bytes"
    );
    assert!(
        build_tar(&t, "oci", "out-oci", "minimal.yml") == want,
        "oci-archive import builds other bytes"
    );
    // The oci-archive keeps the manifests: same digests as the original.
    let orig = kiln::oci::Layout::open(&committed()).unwrap();
    let oci = kiln::oci::Layout::open(&t.join("oci")).unwrap();
    for r in MINIMAL_IMAGES {
        assert_eq!(
            orig.resolve(r, "amd64").unwrap().manifest_digest,
            oci.resolve(r, "amd64").unwrap().manifest_digest
        );
    }
    // Importing again writes nothing new.
    let o = kiln(&t, &["layout", "import", "--layout", "oci", "o.tar"]);
    assert!(stderr(&o).contains(": 0 blobs written"), "{}", stderr(&o));
    // Another layout directory imports too.
    ok(&kiln(&t, &["layout", "import", "--layout", "copy", "dock"]));
    assert!(build_tar(&t, "copy", "out-copy", "minimal.yml") == want);
}

#[test]
fn export_is_reproducible_skopeo_reads_it_and_it_imports_back() {
    let t = TestDir::new();
    minimal_yml(&t);
    copy_layout(&committed(), &t.join("l"));
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cosign/kiln-test.key");
    ok(&kiln(
        &t,
        &[
            "sign",
            "--key",
            key.to_str().unwrap(),
            "--layout",
            "l",
            "kiln.dev/getty:0.1",
        ],
    ));
    let want = build_tar(&t, "l", "out", "minimal.yml");
    let mut args = vec!["layout", "export", "--layout", "l", "-o", "x.tar"];
    args.extend(MINIMAL_IMAGES);
    ok(&kiln(&t, &args));
    let first = t.read("x.tar");
    args[5] = "y.tar";
    ok(&kiln(&t, &args));
    assert!(first == t.read("y.tar"), "two exports differ");
    // Fixed headers: uid/gid 0, the default epoch.
    let mut ar = tar::Archive::new(first.as_slice());
    let mut names = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(e.header().uid().unwrap(), 0);
        assert_eq!(e.header().mtime().unwrap(), kiln::DEFAULT_EPOCH as u64);
        names.push(e.path().unwrap().to_string_lossy().into_owned());
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names.last().unwrap(), "oci-layout");

    let x = t.join("x.tar");
    let out = run_tool(
        "skopeo",
        &[
            "inspect",
            &format!("oci-archive:{}:kiln.dev/init:0.1", x.display()),
        ],
    );
    assert!(stdout(&out).contains("\"Digest\""), "{}", stdout(&out));

    let o = ok(&kiln(
        &t,
        &["layout", "import", "--layout", "back", "x.tar"],
    ));
    assert!(
        o.contains("kiln.dev/getty:0.1") && o.contains(".sig"),
        "{o}"
    );
    assert!(build_tar(&t, "back", "out-back", "minimal.yml") == want);
    // The signature came along: --verify-key works on the imported layout.
    let pubkey = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cosign/kiln-test.pub");
    let ls = ok(&kiln(&t, &["layout", "ls", "--layout", "back"]));
    assert!(
        ls.lines()
            .any(|l| l.starts_with("kiln.dev/getty:0.1") && l.ends_with("signed")),
        "{ls}"
    );
    let keys = kiln::trust::load_keys(&[pubkey]).unwrap();
    let back = kiln::oci::Layout::open(&t.join("back")).unwrap();
    let getty = back.resolve("kiln.dev/getty:0.1", "amd64").unwrap();
    kiln::trust::verify(&back, &getty, &keys).expect("the exported signature verifies");
    // An unknown name is refused, naming it.
    let o = kiln(
        &t,
        &[
            "layout",
            "export",
            "--layout",
            "l",
            "-o",
            "z.tar",
            "kiln.dev/nope:1",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("\"kiln.dev/nope:1\""), "{}", stderr(&o));
    assert!(!t.join("z.tar").exists());
}

/// A tar from `(path, bytes)` members, written with the header fields as given.
fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, bytes) in members {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // Raw name bytes: the tar crate refuses `..` in set_path.
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, *bytes).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn hostile_archives_are_refused_naming_the_member_and_leave_the_layout_valid() {
    let t = TestDir::new();
    write_layout(&t.join("l"), &[small("kiln.test/a:1", "a", "a\n")]);
    let index_before = t.read("l/index.json");
    let marker = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let good = b"hello";
    let good_digest = kiln::oci::Digest::sha256_of(good);
    let wrong_name = format!("blobs/sha256/{}", "0".repeat(64));
    let index = br#"{"schemaVersion":2,"manifests":[]}"#;
    let big = vec![b' '; 5 << 20];
    let digest_msg = format!("member {wrong_name:?}: its content hashes to {good_digest}");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "escape.tar",
            tar_of(&[("../x", b"x"), ("oci-layout", marker), ("index.json", index)]),
            "member \"../x\": a path with a `..` component",
        ),
        (
            "digest.tar",
            tar_of(&[
                (&wrong_name, good),
                ("index.json", br#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":5,"annotations":{"org.opencontainers.image.ref.name":"x:1"}}]}"#),
                ("oci-layout", marker),
            ]),
            &digest_msg,
        ),
        (
            "big.tar",
            tar_of(&[("manifest.json", &big)]),
            "member \"manifest.json\": 5242880 bytes, more than the 4194304 allowed",
        ),
        (
            "absent.tar",
            tar_of(&[(
                "manifest.json",
                br#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":["../../etc/passwd"]}]"#,
            )]),
            "member \"c.json\": manifest.json names it, but the archive holds no such file",
        ),
        (
            "notar.tar",
            vec![7u8; 2048],
            "not a tar archive",
        ),
    ];
    for (file, bytes, want) in &cases {
        t.write(file, bytes);
        let o = kiln(&t, &["layout", "import", "--layout", "l", file]);
        assert_eq!(o.status.code(), Some(1), "{file}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(&format!("{file}: ")) && err.contains(want),
            "{file}: {err}"
        );
        assert!(
            t.read("l/index.json") == index_before,
            "{file} changed index.json"
        );
        assert!(!t.path().join("x").exists() && !t.path().parent().unwrap().join("x").exists());
        fsck_ok(&t, "l");
    }
    assert!(!t
        .join(format!("l/blobs/sha256/{}", "0".repeat(64)))
        .exists());

    // A docker-archive layer that is not what its config says.
    let layer = LayerBuilder::new().file("f", "real\n", 0o644).build();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", "1".repeat(64))]},
    })
    .to_string();
    let config_name = format!(
        "{}.json",
        kiln::oci::Digest::sha256_of(config.as_bytes()).hex()
    );
    let manifest =
        format!(r#"[{{"Config":"{config_name}","RepoTags":["x:1"],"Layers":["l.tar"]}}]"#);
    t.write(
        "difflayer.tar",
        tar_of(&[
            ("l.tar", &layer),
            (&config_name, config.as_bytes()),
            ("manifest.json", manifest.as_bytes()),
        ]),
    );
    let o = kiln(&t, &["layout", "import", "--layout", "l", "difflayer.tar"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("member \"l.tar\": its content is sha256:")
            && stderr(&o).contains(&format!("lists sha256:{}", "1".repeat(64))),
        "{}",
        stderr(&o)
    );
    assert!(t.read("l/index.json") == index_before);
    fsck_ok(&t, "l");
    // gc clears what the refused imports left.
    ok(&kiln(&t, &["layout", "gc", "--layout", "l"]));
    assert!(fsck_ok(&t, "l").contains(" 0 unreferenced"));
}

#[test]
fn two_pulls_a_build_and_gc_racing_on_one_layout_all_succeed_and_leave_it_valid() {
    let t = TestDir::new();
    system_layout(&t.join("src"));
    let rounds = 3;
    let extras: Vec<TestImage> = (0..rounds)
        .flat_map(|r| {
            ["a", "b"].map(|x| {
                small(
                    &format!("kiln.test/extra-{r}{x}:1"),
                    x,
                    &format!("{r}{x}\n"),
                )
            })
        })
        .collect();
    write_layout(&t.join("src"), &extras);
    let reg = Registry::start(&t, free_port(), Auth::None);
    let host = reg.host();
    let refs = reg.push_system(
        &t.join("src"),
        &["kernel", "init", "runc", "sysctl", "busybox", "web"],
    );
    for r in 0..rounds {
        for x in ["a", "b"] {
            reg.push(
                &t.join("src"),
                &format!("kiln.test/extra-{r}{x}:1"),
                &format!("test/extra-{r}{x}:1"),
            );
        }
    }
    t.write(
        "sys.yml",
        CASE_BASIC.replace("kiln.test/", &format!("{host}/test/")),
    );
    ok(&pull(&t, &reg, "l", &refs, &[]));
    let want = build_tar(&t, "l", "out", "sys.yml");
    let kiln_bin = env!("CARGO_BIN_EXE_kiln");
    let spawn = |args: &[&str]| {
        Command::new(kiln_bin)
            .args(args)
            .current_dir(t.path())
            .env_clear()
            .env("HOME", t.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kiln")
    };
    for round in 0..rounds {
        // Garbage for gc: the previous round's extras, dropped.
        if round > 0 {
            let prev: Vec<String> = ["a", "b"]
                .iter()
                .map(|x| format!("{host}/test/extra-{}{x}:1", round - 1))
                .collect();
            let mut args = vec!["layout", "rm", "--layout", "l"];
            args.extend(prev.iter().map(String::as_str));
            ok(&kiln(&t, &args));
        }
        let a = format!("{host}/test/extra-{round}a:1");
        let b = format!("{host}/test/extra-{round}b:1");
        let out = format!("out{round}");
        let children = vec![
            spawn(&[
                "pull",
                "--layout",
                "l",
                "--insecure-registry",
                &host,
                &a,
                &refs[0],
            ]),
            spawn(&["layout", "gc", "--layout", "l"]),
            spawn(&["build", "-f", "tar", "--layout", "l", "-o", &out, "sys.yml"]),
            spawn(&[
                "pull",
                "--layout",
                "l",
                "--insecure-registry",
                &host,
                &b,
                &refs[5],
            ]),
        ];
        for c in children {
            let o = c.wait_with_output().expect("wait for kiln");
            assert!(o.status.success(), "round {round}: {}", stderr(&o));
        }
        assert!(
            t.read(format!("{out}/sys.tar")) == want,
            "round {round}: other bytes"
        );
        fsck_ok(&t, "l");
        let l = kiln::oci::Layout::open(&t.join("l")).unwrap();
        for r in refs.iter().chain([&a, &b]) {
            assert!(l.resolve(r, "amd64").is_ok(), "{r} lost in round {round}");
        }
        for r in [&refs[0], &a, &b] {
            run_tool(
                "skopeo",
                &["inspect", &format!("oci:{}:{r}", t.join("l").display())],
            );
        }
    }
}

/// Whether the child is still running after `ms` milliseconds.
fn still_running(child: &mut std::process::Child, ms: u64) -> bool {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    child.try_wait().expect("poll kiln").is_none()
}

#[test]
fn gc_waits_for_a_writer_between_its_blobs_and_its_commit_and_for_a_reading_build() {
    let t = TestDir::new();
    write_layout(&t.join("l"), &[small("kiln.test/a:1", "a", "a\n")]);
    let gc = || {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["layout", "gc", "--layout", "l", "--json"])
            .current_dir(t.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kiln layout gc")
    };
    // A writer with a blob written but not yet named.
    let mut w = kiln::oci::write::LayoutWriter::open_or_create(&t.join("l")).unwrap();
    let d = w.add_blob(b"written, not yet named").unwrap();
    let mut child = gc();
    assert!(
        still_running(&mut child, 300),
        "gc ran while a writer was live"
    );
    // Committing does not let gc in before the writer is done.
    let d = kiln::oci::Descriptor {
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        ..d
    };
    w.add_ref("kiln.test/blob:1", &d);
    w.commit().unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"removed\":0"), "{}", stdout(&o));
    assert!(blob_path(&t.join("l"), &d.digest).exists());

    // A build (any reader holding the layout lock shared) holds gc off too.
    let reading = kiln::oci::write::LayoutLock::for_reading(&t.join("l")).expect("lock file");
    ok(&kiln(
        &t,
        &["layout", "rm", "--layout", "l", "kiln.test/blob:1"],
    ));
    let mut child = gc();
    assert!(
        still_running(&mut child, 300),
        "gc ran while a build was reading"
    );
    drop(reading);
    let o = child.wait_with_output().unwrap();
    assert!(stdout(&o).contains("\"removed\":1"), "{}", stdout(&o));
    assert!(!blob_path(&t.join("l"), &d.digest).exists());
}
