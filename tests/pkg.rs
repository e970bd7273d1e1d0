//! `kiln pkg build`: recipes with pinned `.deb`s (built here, byte by byte:
//! an `ar` archive around gzip tars), files, crates (through a fake
//! builder) and tars become OCI images that skopeo and umoci read; builds
//! are bit-identical across working directories, time zones and umasks;
//! every bad input is a clear error that leaves the layout untouched.

mod fixtures;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln::pkg::{CrateBuilder, PkgError, PkgOptions};

use crate::support::*;
use fixtures::*;

const RUNC_RECIPE: &str = r#"image: kiln.dev/runc
tag: "0.1"
debs:
  - package: runc
    keep: [usr/sbin/runc*]
    strip: usr/sbin
    prefix: bin
files:
  - path: etc/motd
    contents: "hi\n"
  - path: /
    source: rootfs
  - path: run
    directory: true
  - path: bin/sh
    symlink: busybox
config:
  net: host
  capabilities: [CAP_SYS_ADMIN]
entrypoint: [/bin/runc]
env: [PATH=/bin]
workdir: /
"#;

/// A workspace with the runc deb pinned and the runc recipe in `pkg/runc`.
fn runc_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.add_deb("runc", "1:1.1.5+ds1-1", &runc_data());
    ws.recipe("pkg/runc", RUNC_RECIPE);
    ws.dir.write("pkg/runc/rootfs/etc/hostname", "kiln\n");
    ws.dir.write("pkg/runc/rootfs/usr/bin/tool", "#!/bin/sh\n");
    set_mode(&ws.dir.join("pkg/runc/rootfs/etc/hostname"), 0o600);
    set_mode(&ws.dir.join("pkg/runc/rootfs/usr/bin/tool"), 0o700);
    ws
}

#[test]
fn builds_an_image_from_a_deb_and_files() {
    let ws = runc_workspace();
    let out = ws
        .dir
        .kiln(&["pkg", "build", "pkg/runc", "--layout", "out"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "{line}");
    assert!(fields[0].starts_with("sha256:"), "{line}");
    assert_eq!(fields[1], "kiln.dev/runc:0.1");
    let hash = fields[2].strip_prefix("kiln.dev/runc:").expect("hash tag");
    assert!(
        hash.len() == 12 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{hash}"
    );

    let layout = ws.dir.join("out");
    let img = read_image(&layout, "kiln.dev/runc:0.1");
    assert_eq!(img.digest, fields[0]);
    assert_eq!(read_image(&layout, fields[2]).digest, img.digest);
    let epoch = kiln::DEFAULT_EPOCH as u64;
    assert!(
        img.entries
            .iter()
            .all(|e| e.uid == 0 && e.gid == 0 && e.mtime == epoch && e.uname.is_empty()),
        "{:#?}",
        img.entries
    );
    assert_eq!(
        img.listing(),
        [
            "bin/ d 755",
            "bin/runc f 755 runc-binary",
            "bin/runc-hard h 755 -> bin/runc",
            "bin/runc-link l 777 -> runc",
            "bin/sh l 777 -> busybox",
            "etc/ d 755",
            "etc/hostname f 644 kiln\n",
            "etc/motd f 644 hi\n",
            "run/ d 755",
            "usr/ d 755",
            "usr/bin/ d 755",
            "usr/bin/tool f 755 #!/bin/sh\n",
        ]
    );
    let cfg = &img.config["config"];
    assert_eq!(
        cfg["Labels"]["org.mobyproject.config"],
        r#"{"capabilities":["CAP_SYS_ADMIN"],"net":"host"}"#
    );
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/bin/runc"]));
    assert_eq!(cfg["Env"], serde_json::json!(["PATH=/bin"]));
    assert_eq!(cfg["WorkingDir"], "/");
    assert_eq!(img.config["architecture"], "amd64");
    assert!(img.config.get("created").is_none(), "{}", img.config);
}

#[test]
fn builds_are_identical_across_cwd_tz_and_umask() {
    let a = runc_workspace();
    let b = runc_workspace();
    let run = |ws: &Workspace, cwd: &Path, recipe: &str, tz: &str, umask: &str| {
        let layout = ws.dir.join("layout");
        let script = format!(
            "umask {umask}; exec \"$0\" pkg build {recipe} --layout {}",
            layout.display()
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_kiln"))
            .current_dir(cwd)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("TZ", tz)
            .output()
            .expect("run kiln");
        assert!(out.status.success(), "{}", stderr(&out));
        (stdout(&out), snapshot(&layout))
    };
    let abs = b.dir.join("pkg/runc");
    let (out_a, snap_a) = run(&a, a.dir.path(), "pkg/runc", "UTC", "022");
    let (out_b, snap_b) = run(
        &b,
        Path::new("/"),
        abs.to_str().expect("utf-8"),
        "Asia/Kolkata",
        "077",
    );
    assert_eq!(out_a, out_b);
    assert_eq!(snap_a, snap_b);

    // The epoch is an input: another one gives another image and hash tag.
    let layout = a.dir.join("other");
    let out = kiln_env(
        a.dir.path(),
        &["pkg", "build", "pkg/runc", "--layout", "other"],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let other = stdout(&out);
    assert_ne!(
        other.split_whitespace().nth(2),
        out_a.split_whitespace().nth(2)
    );
    let img = read_image(&layout, "kiln.dev/runc:0.1");
    assert!(img.entries.iter().all(|e| e.mtime == 1_700_000_000));
}

/// Runs a failing `kiln pkg build` in a workspace whose layout already
/// holds an image, and checks the layout did not change at all.
fn fails_cleanly(ws: &Workspace, args: &[&str]) -> String {
    ws.recipe(
        "pkg/ok",
        "image: kiln.dev/ok\ntag: '1'\nfiles:\n  - {path: a, contents: a}\n",
    );
    let ok = ws.dir.kiln(&["pkg", "build", "pkg/ok", "--layout", "out"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let before = snapshot(&ws.dir.join("out"));
    let mut full = vec!["pkg", "build", "--layout", "out"];
    full.extend_from_slice(args);
    let out = ws.dir.kiln(&full);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(snapshot(&ws.dir.join("out")), before);
    stderr(&out)
}

#[test]
fn a_deb_that_does_not_match_its_pin_is_refused() {
    let ws = runc_workspace();
    let deb = ws.deb_path("runc", "1:1.1.5+ds1-1");
    let pinned = sha256_hex(&std::fs::read(&deb).expect("read deb"));
    let tampered = build_deb(&LayerBuilder::new().file("./usr/sbin/runc", "evil", 0o755));
    std::fs::write(&deb, &tampered).expect("write deb");
    // A good recipe built in the same run is not added either.
    ws.recipe(
        "pkg/new",
        "image: kiln.dev/new\ntag: '1'\nfiles:\n  - {path: n, contents: n}\n",
    );
    let err = fails_cleanly(&ws, &["pkg/new", "pkg/runc"]);
    assert!(err.contains("deb runc:"), "{err}");
    assert!(err.contains(&pinned), "{err}");
    assert!(err.contains(&sha256_hex(&tampered)), "{err}");
}

#[test]
fn a_missing_deb_is_named() {
    let ws = runc_workspace();
    std::fs::remove_file(ws.deb_path("runc", "1:1.1.5+ds1-1")).expect("remove deb");
    let err = fails_cleanly(&ws, &["pkg/runc"]);
    assert!(err.contains("deb runc:"), "{err}");
    assert!(
        err.contains("runc_1%3a1.1.5+ds1-1_amd64.deb is missing"),
        "{err}"
    );
}

#[test]
fn an_unpinned_deb_is_named() {
    let ws = runc_workspace();
    ws.recipe(
        "pkg/x",
        "image: kiln.dev/x\ntag: '1'\ndebs:\n  - package: nope\n    keep: [a]\n",
    );
    let err = fails_cleanly(&ws, &["pkg/x"]);
    assert!(
        err.contains("pkg/x/build.yml:4:5: deb nope (amd64) is not pinned in"),
        "{err}"
    );
}

#[test]
fn a_missing_recipe_is_named() {
    let ws = runc_workspace();
    ws.dir.mkdir("pkg/empty");
    let err = fails_cleanly(&ws, &["pkg/empty"]);
    assert!(err.contains("cannot read pkg/empty/build.yml"), "{err}");
}

#[test]
fn an_unknown_key_points_at_the_recipe_line() {
    let ws = runc_workspace();
    ws.recipe(
        "pkg/x",
        "image: kiln.dev/x\ntag: '1'\nfiles:\n  - path: a\n    contents: b\n    mod: '0600'\n",
    );
    let err = fails_cleanly(&ws, &["pkg/x"]);
    assert!(
        err.contains("pkg/x/build.yml:6:5: files[0]: unknown key `mod`; did you mean `mode`?"),
        "{err}"
    );
}

#[test]
fn a_keep_glob_that_matches_nothing_is_named() {
    let ws = runc_workspace();
    ws.recipe(
        "pkg/x",
        "image: kiln.dev/x\ntag: '1'\ndebs:\n  - package: runc\n    keep:\n      - usr/sbin/runc\n      - usr/sbin/rnuc\n",
    );
    let err = fails_cleanly(&ws, &["pkg/x"]);
    assert!(
        err.contains("pkg/x/build.yml:7:9: deb runc: keep glob `usr/sbin/rnuc` matches nothing"),
        "{err}"
    );
}

#[test]
fn sources_through_symlinks_out_of_the_recipe_are_refused() {
    let ws = runc_workspace();
    ws.dir.write("secret/key", "private");
    ws.dir.mkdir("pkg/x");
    std::os::unix::fs::symlink(ws.dir.join("secret"), ws.dir.join("pkg/x/out")).expect("symlink");
    ws.recipe(
        "pkg/x",
        "image: kiln.dev/x\ntag: '1'\nfiles:\n  - {path: k, source: out/key}\n",
    );
    let err = fails_cleanly(&ws, &["pkg/x"]);
    assert!(err.contains("pkg/x/build.yml:4:5: "), "{err}");
    assert!(
        err.contains("out/key: leads out of the recipe directory"),
        "{err}"
    );

    // The link itself is copied as a link, not followed.
    ws.recipe(
        "pkg/x",
        "image: kiln.dev/x\ntag: '1'\nfiles:\n  - {path: k, source: out}\n",
    );
    let out = ws.dir.kiln(&["pkg", "build", "pkg/x", "--layout", "out"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let img = read_image(&ws.dir.join("out"), "kiln.dev/x:1");
    let target = ws.dir.join("secret");
    assert_eq!(img.listing(), [format!("k l 777 -> {}", target.display())]);
}

#[test]
fn skopeo_and_umoci_read_the_images() {
    let ws = runc_workspace();
    let out = ws
        .dir
        .kiln(&["pkg", "build", "pkg/runc", "--layout", "out"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let hash_name = stdout(&out)
        .split_whitespace()
        .nth(2)
        .expect("hash")
        .to_owned();
    let layout = ws.dir.join("out");
    let l = layout.to_str().expect("utf-8");
    let ls = stdout(&run_tool("umoci", &["ls", "--layout", l]));
    let mut want = vec!["kiln.dev/runc:0.1".to_owned(), hash_name];
    want.sort();
    assert_eq!(ls.lines().collect::<Vec<_>>(), want);
    let info = stdout(&run_tool(
        "skopeo",
        &["inspect", &format!("oci:{l}:kiln.dev/runc:0.1")],
    ));
    let info: serde_json::Value = serde_json::from_str(&info).expect("skopeo json");
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Layers"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        info["Labels"]["org.mobyproject.config"],
        r#"{"capabilities":["CAP_SYS_ADMIN"],"net":"host"}"#
    );
}

#[test]
fn tars_move_paths_into_a_tar_file() {
    let ws = Workspace::new();
    ws.add_deb(
        "linux-image",
        "6.1.0-1",
        &LayerBuilder::new()
            .dir("./", 0o755)
            .dir("./boot/", 0o755)
            .file("./boot/vmlinuz-6.1.0-1-amd64", "KERNEL", 0o644)
            .dir("./lib/", 0o755)
            .dir("./lib/modules/", 0o755)
            .dir("./lib/modules/6.1.0-1-amd64/", 0o755)
            .file("./lib/modules/6.1.0-1-amd64/a.ko", "A", 0o644),
    );
    ws.recipe(
        "kernel",
        "image: kiln.dev/kernel\ntag: '6.1'\ndebs:\n  - package: linux-image\n    keep: [boot/vmlinuz-*, lib/modules]\ntars:\n  - path: kernel.tar\n    from: [lib/modules]\n",
    );
    let out = ws.dir.kiln(&["pkg", "build", "kernel", "--layout", "out"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let img = read_image(&ws.dir.join("out"), "kiln.dev/kernel:6.1");
    let listing = img.listing();
    assert_eq!(
        &listing[..2],
        ["boot/ d 755", "boot/vmlinuz-6.1.0-1-amd64 f 644 KERNEL"]
    );
    assert_eq!(listing.len(), 3, "{listing:#?}");
    let tar = img.file("kernel.tar");
    let inner = entries_of(&tar);
    let names: Vec<_> = inner.iter().map(|e| e.line()).collect();
    assert_eq!(
        names,
        [
            "lib/ d 755",
            "lib/modules/ d 755",
            "lib/modules/6.1.0-1-amd64/ d 755",
            "lib/modules/6.1.0-1-amd64/a.ko f 644 A",
        ]
    );
}

/// A builder that hands back fixed bytes, recording what it was asked.
struct FakeCargo(Vec<u8>, std::sync::Mutex<Vec<(PathBuf, String, String)>>);

impl CrateBuilder for FakeCargo {
    fn build(&self, ws: &Path, package: &str, binary: &str) -> Result<Vec<u8>, PkgError> {
        let mut calls = self.1.lock().expect("lock");
        calls.push((ws.to_owned(), package.to_owned(), binary.to_owned()));
        Ok(self.0.clone())
    }
}

fn crate_options(ws: &Workspace) -> PkgOptions {
    PkgOptions {
        layout: ws.dir.join("out"),
        debs: None,
        pins: None,
        arch: kiln::pkg::host_arch().to_owned(),
        epoch: kiln::DEFAULT_EPOCH,
    }
}

#[test]
fn crate_binaries_must_be_static() {
    let ws = Workspace::new();
    ws.dir.write("Cargo.toml", "[workspace]\nmembers = []\n");
    ws.recipe(
        "pkg/init",
        "image: kiln.dev/init\ntag: '1'\ncrates:\n  - package: kiln-init\n    path: /init\n",
    );
    let dirs = [ws.dir.join("pkg/init")];

    let fake = FakeCargo(elf64(&[1]), Default::default());
    let built = kiln::pkg::build(&dirs, &crate_options(&ws), &fake).expect("build");
    assert_eq!(built[0].name, "kiln.dev/init:1");
    let calls = fake.1.lock().expect("lock").clone();
    assert_eq!(
        calls,
        [(
            ws.dir.path().to_owned(),
            "kiln-init".to_owned(),
            "kiln-init".to_owned()
        )]
    );
    let img = read_image(&ws.dir.join("out"), "kiln.dev/init:1");
    assert_eq!(img.entries.len(), 1);
    assert_eq!(
        (img.entries[0].path.as_str(), img.entries[0].mode),
        ("init", 0o755)
    );
    assert_eq!(img.file("init"), elf64(&[1]));

    let before = snapshot(&ws.dir.join("out"));
    let dynamic = FakeCargo(elf64(&[6, 3, 1]), Default::default());
    let err = kiln::pkg::build(&dirs, &crate_options(&ws), &dynamic).unwrap_err();
    assert_eq!(
        err.to_string(),
        "crate kiln-init: binary kiln-init is not statically linked (it names an ELF interpreter)"
    );
    assert_eq!(snapshot(&ws.dir.join("out")), before);
}

/// Every file under `dir` with its bytes (empty map if it does not exist).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(items) = std::fs::read_dir(&d) else {
            continue;
        };
        for item in items {
            let path = item.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("under dir").to_owned();
                out.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    out
}

/// Without --layout (or $KILN_LAYOUT) `kiln pkg build` refuses to write into
/// ./oci-layout, which in a checkout is the committed layout.
#[test]
fn pkg_build_needs_an_explicit_layout() {
    let t = crate::support::TestDir::new();
    t.mkdir("oci-layout");
    let out = crate::support::kiln_env(
        t.path(),
        &["pkg", "build", "pkg/runc"],
        &[("KILN_LAYOUT", "")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = crate::support::stderr(&out);
    assert!(err.contains("name it with --layout DIR"), "{err}");
    assert_eq!(std::fs::read_dir(t.join("oci-layout")).unwrap().count(), 0);
}
