//! `kiln pull` and `kiln build --pull` against a real registry (Debian's
//! `docker-registry`, started per test on loopback and filled by
//! `skopeo copy`): tags, digests, multi-arch indexes, basic and token auth,
//! a corrupt blob, resuming, and that what was pulled builds the bytes a
//! `skopeo copy` of the same images builds, offline.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;

use crate::cli::fixture::{system_layout, CASE_BASIC};
use crate::support::ok;
use crate::support::registry::{
    free_port, pull, Auth, Registry, StallingProxy, TokenServer, PASSWORD, USER,
};
use crate::support::{
    kiln_env, stderr, stdout, write_layout, write_multiarch_layout, LayerBuilder, MultiArchImage,
    TestDir, TestImage,
};

const SYSTEM: [&str; 6] = ["kernel", "init", "runc", "sysctl", "busybox", "web"];

fn build_tar(t: &TestDir, layout: &str, out: &str, extra: &[&str]) -> Vec<u8> {
    let mut args = vec!["build", "-f", "tar", "--layout", layout, "-o", out];
    args.extend_from_slice(extra);
    args.push("sys.yml");
    ok(&kiln_env(t.path(), &args, &[]));
    t.read(format!("{out}/sys.tar"))
}

fn small_image(name: &str, file: &str, body: &str) -> TestImage {
    TestImage::new(name).layer(
        LayerBuilder::new()
            .dir("etc", 0o755)
            .file(&format!("etc/{file}"), body, 0o644)
            .build(),
    )
}

#[test]
fn pulled_layout_builds_the_bytes_of_a_skopeo_copy_and_builds_offline() {
    let t = TestDir::new();
    system_layout(&t.join("src"));
    let reg = Registry::start(&t, free_port(), Auth::None);
    let host = reg.host();
    for n in SYSTEM {
        reg.push(
            &t.join("src"),
            &format!("kiln.test/{n}:1"),
            &format!("test/{n}:1"),
        );
    }
    // One reference pinned by digest, the others by tag.
    let web = reg.digest("test/web:1");
    let pinned = format!("{host}/test/web@{web}");
    t.write(
        "sys.yml",
        CASE_BASIC
            .replace("kiln.test/web:1", &pinned)
            .replace("kiln.test/", &format!("{host}/test/")),
    );
    let mut refs: Vec<String> = SYSTEM[..5]
        .iter()
        .map(|n| format!("{host}/test/{n}:1"))
        .collect();
    refs.push(pinned.clone());
    let out = ok(&pull(&t, &reg, "pulled", &refs, &[]));
    assert!(out.contains(&format!("{web}  {pinned}")), "{out}");
    // The names are stored as written, as skopeo's oci:DIR:REF stores them.
    let index = String::from_utf8(t.read("pulled/index.json")).unwrap();
    for r in &refs {
        assert!(index.contains(&format!("\"{r}\"")), "{r} not in {index}");
    }

    for n in SYSTEM {
        registry_copy(&reg, &format!("test/{n}:1"), &t.join("copied"));
    }
    let copied = build_tar(&t, "copied", "out-copied", &[]);
    let pulled = build_tar(&t, "pulled", "out-pulled", &[]);
    assert!(
        copied == pulled,
        "a pulled layout builds other bytes than skopeo's copy"
    );

    // build --pull fills an empty layout with what the YAML names.
    let insecure = ["--pull", "--insecure-registry", &host];
    assert!(build_tar(&t, "bp", "out-bp", &insecure) == copied);
    // With everything present, build --pull contacts nobody.
    drop(reg);
    assert!(build_tar(&t, "bp", "out-bp2", &insecure) == copied);

    // A build without --pull opens no connection: it passes with no network at all.
    if Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        let o = Command::new("unshare")
            .arg("-n")
            .arg(env!("CARGO_BIN_EXE_kiln"))
            .args([
                "build",
                "-f",
                "tar",
                "--layout",
                "pulled",
                "-o",
                "out-offline",
                "sys.yml",
            ])
            .current_dir(t.path())
            .env_clear()
            .env("HOME", t.path())
            .output()
            .expect("unshare");
        ok(&o);
        assert!(t.read("out-offline/sys.tar") == copied);
    } else {
        eprintln!("unshare -n is not permitted here; the offline build was checked with the registry stopped only");
    }
}

/// `skopeo copy docker://HOST/REPO_TAG oci:DIR:HOST/REPO_TAG`.
fn registry_copy(reg: &Registry, repo_tag: &str, dir: &Path) {
    crate::support::run_tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{}/{repo_tag}", reg.host()),
            &format!("oci:{}:{}/{repo_tag}", dir.display(), reg.host()),
        ],
    );
}

#[test]
fn multi_arch_index_keeps_the_index_and_the_chosen_platforms() {
    let t = TestDir::new();
    let plat = |arch: &str, variant: Option<&str>| {
        let mut i = TestImage::untagged()
            .arch(arch)
            .layer(LayerBuilder::new().file("arch", arch, 0o644).build());
        if let Some(v) = variant {
            i = i.variant(v);
        }
        i
    };
    write_multiarch_layout(
        &t.join("src"),
        &[MultiArchImage::new(
            "kiln.test/multi:1",
            vec![
                plat("amd64", None),
                plat("arm64", Some("v8")),
                plat("arm", Some("v7")),
            ],
        )],
    );
    let reg = Registry::start(&t, free_port(), Auth::None);
    reg.push(&t.join("src"), "kiln.test/multi:1", "test/multi:1");
    let r = format!("{}/test/multi:1", reg.host());
    let index_digest = reg.digest("test/multi:1");

    let out = ok(&pull(&t, &reg, "a", &[&r], &[]));
    assert!(out.starts_with(&index_digest), "{out}");
    let layout = kiln::oci::Layout::open(&t.join("a")).unwrap();
    assert_eq!(
        layout.resolve(&r, "amd64").unwrap().config.architecture,
        "amd64"
    );
    let e = layout.resolve(&r, "arm64").unwrap_err().to_string();
    assert!(
        e.contains("linux/arm64 manifest") && e.contains("--platform linux/arm64"),
        "{e}"
    );
    // The other platforms' manifests are absent, which fsck reports, not fails.
    assert_eq!(layout.fsck().unwrap().absent_manifests, 2);
    crate::support::run_tool(
        "skopeo",
        &["inspect", &format!("oci:{}:{r}", t.join("a").display())],
    );

    let out = ok(&kiln_env(
        t.path(),
        &[
            "pull",
            "--layout",
            "a",
            "--insecure-registry",
            &reg.host(),
            "--platform",
            "linux/arm64,linux/amd64",
            &r,
        ],
        &[],
    ));
    // Only the arm64 manifest, config and layer were missing.
    assert!(
        out.contains("fetched 3 blobs") && out.contains("4 already present"),
        "{out}"
    );
    let layout = kiln::oci::Layout::open(&t.join("a")).unwrap();
    assert_eq!(
        layout.resolve(&r, "arm64").unwrap().config.architecture,
        "arm64"
    );
    assert_eq!(layout.manifests().len(), 1);
    assert_eq!(layout.manifests()[0].digest, index_digest);

    let o = kiln_env(
        t.path(),
        &[
            "pull",
            "--layout",
            "a",
            "--insecure-registry",
            &reg.host(),
            "--platform",
            "linux/s390x",
            &r,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("no manifest for linux/s390x")
            && e.contains("linux/amd64, linux/arm64/v8, linux/arm/v7"),
        "{e}"
    );
}

/// Fills a registry without auth, then restarts it on the same port and
/// storage with `auth`.
fn registry_with(t: &TestDir, auth: Auth) -> Registry {
    write_layout(
        &t.join("src"),
        &[small_image("kiln.test/one:1", "one", "1\n")],
    );
    let port = free_port();
    let reg = Registry::start(t, port, Auth::None);
    reg.push(&t.join("src"), "kiln.test/one:1", "test/one:1");
    drop(reg);
    Registry::start(t, port, auth)
}

fn auth_file(t: &TestDir, rel: &str, host: &str, password: &str) {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
    t.write(
        rel,
        serde_json::json!({"auths": {host: {"auth": auth}}}).to_string(),
    );
}

#[test]
fn basic_auth_uses_the_credential_files() {
    let t = TestDir::new();
    let reg = registry_with(&t, Auth::Basic);
    let r = vec![format!("{}/test/one:1", reg.host())];

    let o = pull(&t, &reg, "l", &r, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("asks for a username and password"),
        "{}",
        stderr(&o)
    );

    auth_file(&t, "wrong/config.json", &reg.host(), "nope");
    let wrong = t.join("wrong");
    let o = pull(
        &t,
        &reg,
        "l",
        &r,
        &[("DOCKER_CONFIG", wrong.to_str().unwrap())],
    );
    assert!(
        stderr(&o).contains("refused the credentials"),
        "{}",
        stderr(&o)
    );

    auth_file(&t, "auth.json", &reg.host(), PASSWORD);
    ok(&pull(
        &t,
        &reg,
        "l",
        &r,
        &[("REGISTRY_AUTH_FILE", "auth.json")],
    ));
    // ~/.docker/config.json (HOME is the test dir).
    auth_file(&t, ".docker/config.json", &reg.host(), PASSWORD);
    ok(&pull(&t, &reg, "l2", &r, &[]));
    assert!(kiln::oci::Layout::open(&t.join("l2"))
        .unwrap()
        .resolve(&r[0], "amd64")
        .is_ok());
}

#[test]
fn bearer_token_auth_asks_the_realm_with_the_credentials() {
    let t = TestDir::new();
    let tokens = TokenServer::start(&t);
    let reg = registry_with(&t, Auth::Token(&tokens));
    let r = vec![format!("{}/test/one:1", reg.host())];

    let o = pull(&t, &reg, "l", &r, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("the token server"), "{}", stderr(&o));

    auth_file(&t, "auth.json", &reg.host(), PASSWORD);
    ok(&pull(
        &t,
        &reg,
        "l",
        &r,
        &[("REGISTRY_AUTH_FILE", "auth.json")],
    ));
    assert!(tokens.issued.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert!(kiln::oci::Layout::open(&t.join("l"))
        .unwrap()
        .resolve(&r[0], "amd64")
        .is_ok());
}

#[test]
fn a_corrupt_blob_is_named_and_never_stored_and_the_next_pull_fetches_only_what_is_missing() {
    let t = TestDir::new();
    let two = small_image("kiln.test/two:1", "a", "first layer\n").layer(
        LayerBuilder::new()
            .dir("etc", 0o755)
            .file("etc/b", "second layer\n".repeat(100), 0o644)
            .build(),
    );
    write_layout(
        &t.join("src"),
        &[small_image("kiln.test/one:1", "one", "1\n"), two],
    );
    let reg = Registry::start(&t, free_port(), Auth::None);
    reg.push(&t.join("src"), "kiln.test/one:1", "test/one:1");
    reg.push(&t.join("src"), "kiln.test/two:1", "test/two:1");
    let one = format!("{}/test/one:1", reg.host());
    let two = format!("{}/test/two:1", reg.host());
    ok(&pull(&t, &reg, "l", &[&one], &[]));
    let index_before = t.read("l/index.json");

    let src = kiln::oci::Layout::open(&t.join("src")).unwrap();
    let layer = src.resolve("kiln.test/two:1", "amd64").unwrap().layers[1]
        .digest
        .clone();
    let stored = reg.blob_file(&layer);
    let good = std::fs::read(&stored).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&stored, &bad).unwrap();

    // The pull fails naming the digest; nothing bad enters blobs/, no temp
    // file is left, and the layout is as it was.
    let o = pull(&t, &reg, "l", &[&two], &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains(&layer) && e.contains("nothing was stored"),
        "{e}"
    );
    let hex = layer.strip_prefix("sha256:").unwrap();
    assert!(!t.join("l/blobs/sha256").join(hex).exists());
    let leftovers: Vec<_> = std::fs::read_dir(t.join("l/blobs/sha256"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(t.read("l/index.json"), index_before);
    let layout = kiln::oci::Layout::open(&t.join("l")).unwrap();
    assert!(layout.resolve(&one, "amd64").is_ok());
    layout.fsck().unwrap();

    // Repaired, the next pull fetches the layer and the manifest only: the
    // config and first layer arrived (verified) during the failed pull.
    std::fs::write(&stored, &good).unwrap();
    let out = ok(&pull(&t, &reg, "l", &[&two], &[]));
    assert!(
        out.contains("fetched 2 blobs") && out.contains("2 already present"),
        "{out}"
    );
    let layout = kiln::oci::Layout::open(&t.join("l")).unwrap();
    assert!(layout.resolve(&one, "amd64").is_ok() && layout.resolve(&two, "amd64").is_ok());
    layout.fsck().unwrap();
    // skopeo reads what kiln wrote.
    crate::support::run_tool(
        "skopeo",
        &["inspect", &format!("oci:{}:{two}", t.join("l").display())],
    );
}

#[test]
fn a_pull_killed_mid_blob_leaves_a_valid_layout_and_the_next_one_fetches_the_rest() {
    let t = TestDir::new();
    let big: Vec<u8> = (0..400_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let image = small_image("kiln.test/big:1", "small", "small\n").layer_with(
        LayerBuilder::new().file("big", &big, 0o644).build(),
        kiln::oci::Compression::None,
    );
    write_layout(
        &t.join("src"),
        &[small_image("kiln.test/one:1", "one", "1\n"), image],
    );
    let reg = Registry::start(&t, free_port(), Auth::None);
    reg.push(&t.join("src"), "kiln.test/one:1", "test/one:1");
    reg.push(&t.join("src"), "kiln.test/big:1", "test/big:1");
    // skopeo compresses the layer on its way into the registry.
    let layer = reg.manifest("test/big:1")["layers"][1]["digest"]
        .as_str()
        .expect("layer digest")
        .to_string();
    let proxy = StallingProxy::start(reg.port, format!("/blobs/{layer}"));
    let host = proxy.host();
    let one = format!("{host}/test/one:1");
    let big_ref = format!("{host}/test/big:1");
    ok(&kiln_env(
        t.path(),
        &["pull", "--layout", "l", "--insecure-registry", &host, &one],
        &[],
    ));
    let index_before = t.read("l/index.json");

    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "pull",
            "--layout",
            "l",
            "--insecure-registry",
            &host,
            &big_ref,
        ])
        .current_dir(t.path())
        .env_clear()
        .env("HOME", t.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start kiln pull");
    proxy
        .stalled
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the pull reached the big layer");
    child.kill().expect("kill kiln");
    child.wait().expect("reap kiln");

    // Killed mid-blob: the old index, no blob under the layer's name, and
    // readers (kiln and skopeo) still see a valid layout.
    assert_eq!(t.read("l/index.json"), index_before);
    let hex = layer.strip_prefix("sha256:").unwrap();
    assert!(!t.join("l/blobs/sha256").join(hex).exists());
    let layout = kiln::oci::Layout::open(&t.join("l")).unwrap();
    layout.fsck().unwrap();
    assert!(layout.resolve(&one, "amd64").is_ok() && layout.resolve(&big_ref, "amd64").is_err());
    crate::support::run_tool(
        "skopeo",
        &["inspect", &format!("oci:{}:{one}", t.join("l").display())],
    );

    // The next pull fetches the layer and the manifest only, and sweeps
    // the killed pull's temp file.
    let out = ok(&kiln_env(
        t.path(),
        &[
            "pull",
            "--layout",
            "l",
            "--insecure-registry",
            &host,
            &big_ref,
        ],
        &[],
    ));
    assert!(
        out.contains("fetched 2 blobs") && out.contains("2 already present"),
        "{out}"
    );
    let temps: Vec<_> = std::fs::read_dir(t.join("l/blobs/sha256"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
    let layout = kiln::oci::Layout::open(&t.join("l")).unwrap();
    layout.fsck().unwrap();
    assert!(layout.resolve(&big_ref, "amd64").is_ok());
}

#[test]
fn docker_v2_manifests_are_pulled_as_served() {
    let t = TestDir::new();
    write_layout(
        &t.join("src"),
        &[small_image("kiln.test/one:1", "one", "1\n")],
    );
    let reg = Registry::start(&t, free_port(), Auth::None);
    reg.push_with(
        &t.join("src"),
        "kiln.test/one:1",
        "test/v2s2:1",
        &["--format", "v2s2"],
    );
    let m = reg.manifest("test/v2s2:1");
    assert_eq!(
        m["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let r = format!("{}/test/v2s2:1", reg.host());
    let out = ok(&pull(&t, &reg, "l", &[&r], &[]));
    assert!(out.starts_with(&reg.digest("test/v2s2:1")), "{out}");
    let layout = kiln::oci::Layout::open(&t.join("l")).unwrap();
    let img = layout.resolve(&r, "amd64").unwrap();
    assert_eq!(
        img.manifest_media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    layout.fsck().unwrap();
}

#[test]
fn https_registries_need_their_ca_and_plain_http_needs_insecure_registry() {
    let t = TestDir::new();
    // A CA and a server certificate for 127.0.0.1 signed by it.
    let p = |n: &str| t.join(n).to_str().unwrap().to_string();
    let (ca, ca_key, csr, ext) = (p("ca.pem"), p("ca-key.pem"), p("tls.csr"), p("tls.ext"));
    let (cert, key) = (t.join("tls-cert.pem"), t.join("tls-key.pem"));
    let (cert_s, key_s) = (p("tls-cert.pem"), p("tls-key.pem"));
    t.write(
        "tls.ext",
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    );
    let openssl = |args: &[&str]| crate::support::run_tool("openssl", args);
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=kiln-test-ca",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &key_s,
        "-out",
        &csr,
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &ext,
        "-out",
        &cert_s,
    ]);
    write_layout(
        &t.join("src"),
        &[small_image("kiln.test/one:1", "one", "1\n")],
    );
    let reg = Registry::start_with(&t, free_port(), Auth::None, Some((&cert, &key)));
    reg.push(&t.join("src"), "kiln.test/one:1", "test/one:1");
    let r = format!("{}/test/one:1", reg.host());

    // Unknown issuer without --ca-cert.
    let o = kiln_env(t.path(), &["pull", "--layout", "l", &r], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("https://{}", reg.host())),
        "{}",
        stderr(&o)
    );
    assert!(!t.join("l/index.json").exists());
    // Trusted with it.
    ok(&kiln_env(
        t.path(),
        &["pull", "--layout", "l", "--ca-cert", &ca, &r],
        &[],
    ));
    assert!(kiln::oci::Layout::open(&t.join("l"))
        .unwrap()
        .resolve(&r, "amd64")
        .is_ok());
    // A plain-HTTP registry is never reached over HTTP unless named insecure.
    let plain = Registry::start(&t, free_port(), Auth::None);
    plain.push(&t.join("src"), "kiln.test/one:1", "test/one:1");
    let r = format!("{}/test/one:1", plain.host());
    let o = kiln_env(
        t.path(),
        &["pull", "--layout", "l", "--ca-cert", &ca, &r],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    ok(&pull(&t, &plain, "l", &[&r], &[]));
}

#[test]
fn concurrent_pulls_and_a_build_on_one_layout_all_succeed_and_leave_it_valid() {
    let t = TestDir::new();
    system_layout(&t.join("src"));
    let reg = Registry::start(&t, free_port(), Auth::None);
    let host = reg.host();
    let refs = reg.push_system(&t.join("src"), &SYSTEM);
    t.write(
        "sys.yml",
        CASE_BASIC.replace("kiln.test/", &format!("{host}/test/")),
    );
    // A first layout every build reads; then, repeatedly, one pull per
    // image into a second layout at once, and a build from that layout
    // racing them once it exists.
    ok(&pull(&t, &reg, "l", &refs, &[]));
    let want = build_tar(&t, "l", "out-l", &[]);
    let kiln_bin = env!("CARGO_BIN_EXE_kiln");
    for round in 0..3 {
        let layout = format!("race{round}");
        let mut children: Vec<_> = refs
            .iter()
            .map(|r| {
                Command::new(kiln_bin)
                    .args(["pull", "--layout", &layout, "--insecure-registry", &host, r])
                    .current_dir(t.path())
                    .env_clear()
                    .env("HOME", t.path())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("start kiln pull")
            })
            .collect();
        let builder = Command::new(kiln_bin)
            .args([
                "build",
                "--pull",
                "--insecure-registry",
                &host,
                "-f",
                "tar",
                "--layout",
                &layout,
            ])
            .args(["-o", &format!("out-race{round}"), "sys.yml"])
            .current_dir(t.path())
            .env_clear()
            .env("HOME", t.path())
            .output()
            .expect("run kiln build --pull");
        for c in children.drain(..) {
            let o = c.wait_with_output().expect("wait for kiln pull");
            assert!(o.status.success(), "{}", stderr(&o));
        }
        ok(&builder);
        assert!(t.read(format!("out-race{round}/sys.tar")) == want);
        let l = kiln::oci::Layout::open(&t.join(&layout)).unwrap();
        for r in &refs {
            assert!(l.resolve(r, "amd64").is_ok(), "{r} lost in round {round}");
        }
        l.fsck().unwrap();
        crate::support::run_tool(
            "skopeo",
            &[
                "inspect",
                &format!("oci:{}:{}", t.join(&layout).display(), refs[0]),
            ],
        );
    }
}

#[test]
fn a_manifest_that_does_not_hash_to_its_pinned_digest_is_refused() {
    let t = TestDir::new();
    write_layout(
        &t.join("src"),
        &[small_image("kiln.test/one:1", "one", "1\n")],
    );
    let reg = Registry::start(&t, free_port(), Auth::None);
    reg.push(&t.join("src"), "kiln.test/one:1", "test/one:1");
    let digest = reg.digest("test/one:1");
    // Same length, other bytes: the registry serves it under the old digest.
    let stored = reg.blob_file(&digest);
    let text = std::fs::read_to_string(&stored).unwrap();
    // The config's size, one digit changed: still a manifest the registry parses.
    let at = text.find("\"size\":").expect("size") + "\"size\":".len();
    let end = at + text[at..].find(|c: char| !c.is_ascii_digit()).unwrap();
    let mut bytes = text.into_bytes();
    bytes[end - 1] = if bytes[end - 1] == b'9' {
        b'8'
    } else {
        bytes[end - 1] + 1
    };
    std::fs::write(&stored, bytes).unwrap();
    let r = format!("{}/test/one@{digest}", reg.host());
    let o = pull(&t, &reg, "l", &[&r], &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("manifest {digest}")) && e.contains("nothing was stored"),
        "{e}"
    );
    assert!(!t.join("l/index.json").exists());
}

#[test]
fn signatures_are_pulled_beside_the_images_and_verify_offline() {
    let t = TestDir::new();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cosign");
    let key = data.join("kiln-test.key");
    let (good, other) = (data.join("kiln-test.pub"), data.join("other.pub"));
    let (good, other) = (good.to_str().unwrap(), other.to_str().unwrap());
    write_layout(
        &t.join("src"),
        &[small_image("kiln.test/one:1", "one", "1\n")],
    );
    let signed = ok(&kiln_env(
        t.path(),
        &[
            "sign",
            "--key",
            key.to_str().unwrap(),
            "--layout",
            "src",
            "kiln.test/one:1",
        ],
        &[],
    ));
    // DIGEST  REFERENCE  SIG-NAME
    let sig_name = signed
        .split_whitespace()
        .nth(2)
        .expect("sign output")
        .to_string();
    let sig_tag = sig_name.rsplit(':').next().unwrap().to_string();
    let reg = Registry::start(&t, free_port(), Auth::None);
    reg.push(&t.join("src"), "kiln.test/one:1", "test/one:1");
    reg.push(&t.join("src"), &sig_name, &format!("test/one:{sig_tag}"));
    reg.push(&t.join("src"), "kiln.test/one:1", "unsigned/one:1");
    let host = reg.host();
    let pull_verify = |layout: &str, key: &str, r: &str| {
        kiln_env(
            t.path(),
            &[
                "pull",
                "--layout",
                layout,
                "--insecure-registry",
                &host,
                "--verify-key",
                key,
                r,
            ],
            &[],
        )
    };
    let r = format!("{host}/test/one:1");
    let out = ok(&pull_verify("l", good, &r));
    assert!(out.contains("verified with"), "{out}");
    let index = String::from_utf8(t.read("l/index.json")).unwrap();
    assert!(
        index.contains(&format!("{host}/test/one:{sig_tag}")),
        "{index}"
    );
    // Another key, or no signature in the registry: exit 3, naming the image.
    let o = pull_verify("l", other, &r);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains(&r), "{}", stderr(&o));
    let unsigned = format!("{host}/unsigned/one:1");
    let o = pull_verify("l2", good, &unsigned);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains(&unsigned), "{}", stderr(&o));
    // Offline, from the layout alone.
    drop(reg);
    let layout = kiln::oci::Layout::open(&t.join("l")).unwrap();
    let image = layout.resolve(&r, "amd64").unwrap();
    let keys = kiln::trust::load_keys(&[data.join("kiln-test.pub")]).unwrap();
    kiln::trust::verify(&layout, &image, &keys).unwrap();
}

#[test]
fn pull_lock_fetches_what_the_lock_pins_after_a_tag_moved() {
    let t = TestDir::new();
    system_layout(&t.join("src"));
    write_layout(
        &t.join("src"),
        &[TestImage::new("kiln.test/web:2")
            .layer(
                LayerBuilder::new()
                    .file("moved", "the tag moved\n", 0o644)
                    .build(),
            )
            .entrypoint(&["/moved"])],
    );
    let reg = Registry::start(&t, free_port(), Auth::None);
    let host = reg.host();
    for n in SYSTEM {
        reg.push(
            &t.join("src"),
            &format!("kiln.test/{n}:1"),
            &format!("test/{n}:1"),
        );
    }
    t.write(
        "sys.yml",
        CASE_BASIC.replace("kiln.test/", &format!("{host}/test/")),
    );
    let insecure = ["--pull", "--insecure-registry", &host];
    let want = build_tar(&t, "first", "out-first", &insecure);
    ok(&kiln_env(
        t.path(),
        &["lock", "--layout", "first", "sys.yml"],
        &[],
    ));
    let web = reg.digest("test/web:1");
    // The tag moves in the registry.
    reg.push(&t.join("src"), "kiln.test/web:2", "test/web:1");
    assert_ne!(reg.digest("test/web:1"), web);

    // Pulling by tag follows it, and --locked refuses, naming the reference.
    build_tar(&t, "by-tag", "out-by-tag", &insecure);
    let o = kiln_env(
        t.path(),
        &[
            "build", "--locked", "-f", "tar", "--layout", "by-tag", "-o", "out-x", "sys.yml",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("{host}/test/web:1")),
        "{}",
        stderr(&o)
    );
    // Pulling the lock fetches the pinned digests under the locked names.
    let out = ok(&kiln_env(
        t.path(),
        &[
            "pull",
            "--layout",
            "locked",
            "--insecure-registry",
            &host,
            "--lock",
            "sys.lock",
        ],
        &[],
    ));
    assert!(out.contains(&format!("{web}  {host}/test/web:1")), "{out}");
    assert!(build_tar(&t, "locked", "out-locked", &["--locked"]) == want);
}
