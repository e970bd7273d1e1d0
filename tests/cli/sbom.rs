//! `kiln build --sbom`: an SPDX 2.3 document beside the outputs and in the
//! image, listing the images and the distribution packages inside them,
//! accepted by an independent validator and the same bytes on every build.

use std::path::PathBuf;
use std::process::Command;

use super::fixture::{system_layout, write_case, CASE_BASIC};
use crate::support::{kiln, kiln_env, stderr, write_layout, LayerBuilder, TestDir, TestImage};

/// The fixture's layout plus an image holding a dpkg status file (one
/// broken paragraph), an apk database and an os-release.
fn setup(t: &TestDir) {
    system_layout(&t.join("oci-layout"));
    let distro = TestImage::new("kiln.test/distro:1")
        .layer(
            LayerBuilder::new()
                .dir("bin", 0o755)
                .file("bin/app", "#!app\n", 0o755)
                .dir("etc", 0o755)
                .file("etc/os-release", "NAME=\"Debian\"\nID=debian\n", 0o644)
                .dir("var", 0o755)
                .dir("var/lib", 0o755)
                .dir("var/lib/dpkg", 0o755)
                .file(
                    "var/lib/dpkg/status",
                    "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\n\
                     Source: glibc\nVersion: 2.36-9+deb12u4\n\n\
                     Package: half\nStatus: install ok installed\n\n\
                     Package: tzdata\nStatus: install ok installed\nArchitecture: all\n\
                     Version: 2024a-0+deb12u1\n",
                    0o644,
                )
                .dir("lib", 0o755)
                .dir("lib/apk", 0o755)
                .dir("lib/apk/db", 0o755)
                .file(
                    "lib/apk/db/installed",
                    "P:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\n",
                    0o644,
                )
                .build(),
        )
        .cmd(&["/bin/app"]);
    write_layout(&t.join("oci-layout"), &[distro]);
    write_case(t, "s.yml", CASE_BASIC);
    write_case(
        t,
        "more.yml",
        "services:\n  - name: app\n    image: kiln.test/distro:1\n",
    );
}

/// The one file `member` of the gzip cpio at `initrd`, if it is there.
fn initrd_member(initrd: &std::path::Path, member: &str) -> Option<Vec<u8>> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zcat {} | cpio -i --quiet --to-stdout {member}",
            initrd.display()
        ))
        .output()
        .unwrap();
    (out.status.success() && !out.stdout.is_empty()).then_some(out.stdout)
}

/// `kiln build --sbom EXTRA... -o DIR s.yml more.yml` in `t`; it must
/// succeed. Gives kiln's stderr (its warnings).
fn build_sbom(t: &TestDir, dir: &str, extra: &[&str]) -> String {
    let mut args = vec!["build", "--sbom", "-o", dir];
    args.extend_from_slice(extra);
    args.extend(["s.yml", "more.yml"]);
    let out = kiln(t.path(), &args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stderr(&out)
}

fn validator() -> PathBuf {
    std::env::var_os("KILN_SPDX_VALIDATOR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools-venv/bin/pyspdxtools"),
        PathBuf::from,
    )
}

#[test]
fn sbom_lists_images_and_packages_validates_and_travels_with_the_image() {
    let t = TestDir::new();
    setup(&t);
    let warnings = build_sbom(&t, "out", &[]);
    // The broken paragraph is a warning naming the image, file and line.
    assert!(
        warnings.contains(
            "image kiln.test/distro:1: /var/lib/dpkg/status:7: a package without Package: or Version:"
        ),
        "{warnings}"
    );
    let doc = t.read("out/s.spdx.json");
    let sums = String::from_utf8(t.read("out/s.sha256")).unwrap();
    assert!(sums.contains("  s.spdx.json\n"), "{sums}");
    assert_eq!(
        initrd_member(&t.join("out/s-initrd.img"), "sbom.spdx.json").as_deref(),
        Some(&doc[..]),
        "the image carries the same document"
    );

    let v: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    assert_eq!(v["spdxVersion"], "SPDX-2.3");
    assert_eq!(v["creationInfo"]["created"], "2017-04-18T16:30:00Z");
    let packages = v["packages"].as_array().unwrap();
    let purls: Vec<&str> = packages
        .iter()
        .map(|p| p["externalRefs"][0]["referenceLocator"].as_str().unwrap())
        .collect();
    for want in [
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&upstream=glibc",
        "pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all",
        "pkg:apk/debian/musl@1.2.4-r2?arch=x86_64",
    ] {
        assert!(purls.contains(&want), "{want} not in {purls:#?}");
    }
    let images: Vec<&str> = packages
        .iter()
        .filter(|p| p["primaryPackagePurpose"] == "CONTAINER")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        images,
        [
            "kiln.test/busybox:1",
            "kiln.test/distro:1",
            "kiln.test/init:1",
            "kiln.test/kernel:1",
            "kiln.test/runc:1",
            "kiln.test/sysctl:1",
            "kiln.test/web:1"
        ]
    );
    let contains = v["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["relationshipType"] == "CONTAINS")
        .count();
    assert_eq!(contains, 3);

    // An independent validator accepts it (and refuses a broken copy).
    let check = |path: &std::path::Path| {
        Command::new(validator())
            .arg("-i")
            .arg(path)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (run `bash .ci/install-tools`)",
                    validator().display()
                )
            })
    };
    let ok = check(&t.join("out/s.spdx.json"));
    assert!(ok.status.success(), "{}", stderr(&ok));
    let broken = String::from_utf8(doc.clone())
        .unwrap()
        .replace("SPDXRef-Image-1\"", "SPDXRef Image 1\"");
    t.write("broken.spdx.json", broken);
    assert!(!check(&t.join("broken.spdx.json")).status.success());

    // The same bytes under another cwd, TZ, umask and thread count.
    t.mkdir("elsewhere");
    let again = kiln_env(
        &t.join("elsewhere"),
        &[
            "build",
            "--sbom",
            "-o",
            "../again",
            "../s.yml",
            "../more.yml",
            "--layout",
            "../oci-layout",
        ],
        &[
            ("TZ", "Asia/Kolkata"),
            ("KILN_THREADS", "1"),
            ("LC_ALL", "C.UTF-8"),
        ],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(t.read("again/s.spdx.json") == doc);
    assert!(t.read("again/s-initrd.img") == t.read("out/s-initrd.img"));
}

#[test]
fn sbom_can_stay_out_of_the_image_and_is_off_by_default() {
    let t = TestDir::new();
    setup(&t);
    build_sbom(&t, "file", &["--no-sbom-in-image"]);
    assert!(t.join("file/s.spdx.json").is_file());
    assert_eq!(
        initrd_member(&t.join("file/s-initrd.img"), "sbom.spdx.json"),
        None
    );

    let out = kiln(t.path(), &["build", "-o", "plain", "s.yml", "more.yml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!t.join("plain/s.spdx.json").exists());
    // Without the document in the image, the image is the same either way.
    assert!(t.read("plain/s-initrd.img") == t.read("file/s-initrd.img"));

    let out = kiln(t.path(), &["build", "--no-sbom-in-image", "s.yml"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--sbom"), "{}", stderr(&out));
}

/// Python in the tools virtualenv (`.ci/install-tools`).
fn tools_python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools-venv/bin/python")
}

/// Validates a CycloneDX 1.5 JSON file with cyclonedx-python-lib's strict
/// JSON schema validator.
fn cyclonedx_valid(path: &std::path::Path) -> bool {
    const CHECK: &str = "import sys\n\
        from cyclonedx.schema import SchemaVersion\n\
        from cyclonedx.validation.json import JsonStrictValidator\n\
        e = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\n\
        sys.exit(1 if e else 0)\n";
    Command::new(tools_python())
        .args(["-c", CHECK])
        .arg(path)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run `bash .ci/install-tools`)",
                tools_python().display()
            )
        })
        .success()
}

#[test]
fn cyclonedx_from_the_same_model_validates() {
    let t = TestDir::new();
    setup(&t);
    build_sbom(&t, "out", &["--sbom-format", "cyclonedx"]);
    let doc = t.read("out/s.cdx.json");
    assert!(!t.join("out/s.spdx.json").exists());
    assert_eq!(
        initrd_member(&t.join("out/s-initrd.img"), "sbom.cdx.json").as_deref(),
        Some(&doc[..])
    );
    let v: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    assert_eq!(v["specVersion"], "1.5");
    assert_eq!(v["metadata"]["timestamp"], "2017-04-18T16:30:00Z");
    let components = v["components"].as_array().unwrap();
    let libraries = components.iter().filter(|c| c["type"] == "library").count();
    let containers = components
        .iter()
        .filter(|c| c["type"] == "container")
        .count();
    assert_eq!((libraries, containers), (3, 7));
    assert!(cyclonedx_valid(&t.join("out/s.cdx.json")));
    let broken = String::from_utf8(doc)
        .unwrap()
        .replace("\"CycloneDX\"", "\"CycloneDY\"");
    t.write("broken.cdx.json", broken);
    assert!(!cyclonedx_valid(&t.join("broken.cdx.json")));
}

#[test]
fn inspect_summarizes_both_formats_alike() {
    let t = TestDir::new();
    setup(&t);
    for format in ["spdx", "cyclonedx"] {
        build_sbom(&t, format, &["--sbom-format", format]);
    }
    let summary = |file: &str| {
        let out = kiln(t.path(), &["inspect", "--sbom", "--json", file]);
        assert!(out.status.success(), "{}", stderr(&out));
        let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let format = v["format"].take();
        (format, v)
    };
    let (f1, spdx) = summary("spdx/s.spdx.json");
    let (f2, cdx) = summary("cyclonedx/s.cdx.json");
    assert_eq!(
        (f1.as_str(), f2.as_str()),
        (Some("SPDX-2.3"), Some("CycloneDX-1.5"))
    );
    assert_eq!(spdx, cdx, "one model, two formats");
    assert_eq!(spdx["packages"], 3);
    assert_eq!(spdx["licences"], serde_json::json!({"MIT": 1}));

    let out = kiln(t.path(), &["inspect", "--sbom", "spdx/s.spdx.json"]);
    let text = crate::support::stdout(&out);
    assert!(
        text.starts_with(
            "SPDX-2.3 \"s\", created 2017-04-18T16:30:00Z: 7 images, 3 packages, 2 files\n"
        ),
        "{text}"
    );
    assert!(text.contains("image kiln.test/distro:1  sha256:"), "{text}");
    assert!(
        text.contains("  3 packages\n") && text.contains("licence MIT: 1 packages"),
        "{text}"
    );

    let out = kiln(t.path(), &["inspect", "--sbom", "s.yml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("s.yml: not JSON"), "{}", stderr(&out));
}

#[test]
fn files_of_the_yaml_are_listed_and_sbom_files_lists_every_file() {
    let t = TestDir::new();
    setup(&t);
    let spdx_files = |dir: &str, extra: &[&str]| {
        build_sbom(&t, dir, extra);
        let ok = Command::new(validator())
            .arg("-i")
            .arg(t.join(format!("{dir}/s.spdx.json")))
            .output()
            .unwrap();
        assert!(ok.status.success(), "{}", stderr(&ok));
        let v: serde_json::Value =
            serde_json::from_slice(&t.read(format!("{dir}/s.spdx.json"))).unwrap();
        v["files"].as_array().cloned().unwrap_or_default()
    };
    // The YAML's files: etc/motd and etc/linuxkit-config (var/empty is a directory).
    let files = spdx_files("yaml", &[]);
    let names: Vec<&str> = files
        .iter()
        .map(|f| f["fileName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["./etc/linuxkit-config", "./etc/motd"]);
    // `printf 'hello from kiln\n' | sha1sum`, and sha256sum.
    assert_eq!(
        files[1]["checksums"],
        serde_json::json!([
            {"algorithm": "SHA1", "checksumValue": "ab9dc6e0a609eaa2faff9da66c81719ba5ce5dbb"},
            {"algorithm": "SHA256", "checksumValue": "ff9371bfd6d641bcb856f8e568b72d4dbf234481e97fa8fa7c51f4108e4429bb"},
        ])
    );

    // --sbom-files: every regular file of the image, as `kiln inspect` lists
    // the initrd (whose extra file is the SBOM itself).
    let all = spdx_files("all", &["--sbom-files"]);
    let out = kiln(t.path(), &["inspect", "all/s-initrd.img"]);
    let listing = crate::support::stdout(&out);
    let mut regular: Vec<String> = listing
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|l| format!("./{}", l.rsplit(' ').next().unwrap()))
        .filter(|p| p != "./sbom.spdx.json")
        .collect();
    regular.sort();
    let listed: Vec<String> = all
        .iter()
        .map(|f| f["fileName"].as_str().unwrap().to_string())
        .collect();
    assert!(listed.len() > 10, "{listed:?}");
    // The image's boot/ files (kernel, cmdline) are outputs of their own,
    // not initrd members; the SBOM lists them too.
    let (boot, rest): (Vec<String>, Vec<String>) =
        listed.into_iter().partition(|p| p.starts_with("./boot/"));
    assert_eq!(boot, ["./boot/cmdline", "./boot/kernel"]);
    assert_eq!(rest, regular);
}

#[test]
fn linuxkit_example_sbom_validates_and_lists_pinned_debs_and_crates() {
    let t = TestDir::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let layout = root.join("oci-layout");
    let yml = root.join("examples/linuxkit.yml");
    let out = kiln(
        t.path(),
        &[
            "build",
            "--sbom",
            "--layout",
            layout.to_str().unwrap(),
            "-o",
            "out",
            yml.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let ok = Command::new(validator())
        .arg("-i")
        .arg(t.join("out/linuxkit.spdx.json"))
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", stderr(&ok));
    let v: serde_json::Value = serde_json::from_slice(&t.read("out/linuxkit.spdx.json")).unwrap();
    let package = |purl_start: &str| {
        v["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| {
                p["externalRefs"][0]["referenceLocator"]
                    .as_str()
                    .is_some_and(|l| l.starts_with(purl_start))
            })
            .unwrap_or_else(|| panic!("no {purl_start} in {v}"))
            .clone()
    };
    // runc's pin in vendor-images/debs.yml: its sha256 and licence.
    let pins = std::fs::read_to_string(root.join("vendor-images/debs.yml")).unwrap();
    let runc = package("pkg:deb/debian/runc@");
    let sha = runc["checksums"][0]["checksumValue"].as_str().unwrap();
    assert!(pins.contains(&format!("sha256: {sha}")), "{sha}");
    assert_eq!(runc["licenseDeclared"], "Apache-2.0");
    // kiln-init, compiled from this workspace, at its Cargo.toml version.
    let manifest = std::fs::read_to_string(root.join("pkg/init/Cargo.toml")).unwrap();
    let init = package("pkg:cargo/kiln-init@");
    let version = init["versionInfo"].as_str().unwrap();
    assert!(
        manifest.contains(&format!("version = \"{version}\"")),
        "{version}"
    );
}
