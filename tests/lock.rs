//! Integration tests: `kiln lock` and `kiln build --locked`.
//!
//! A lock pins every reference by digest and is byte-for-byte the same when
//! nothing changed; an unchanged layout builds the same bytes under
//! `--locked`; a moved tag or a reference missing from the lock is refused,
//! naming the reference and both digests.

use crate::cli::fixture::{system_layout, write_case, CASE_BASIC};
use crate::support::*;

fn lock_json(t: &TestDir, name: &str) -> serde_json::Value {
    serde_json::from_slice(&t.read(name)).expect("the lock is JSON")
}

#[test]
fn lock_pins_every_reference_and_locked_builds_the_same_bytes() {
    let t = TestDir::new();
    system_layout(&t.join("oci-layout"));
    write_case(&t, "basic.yml", CASE_BASIC);
    let out = t.kiln(&["lock", "basic.yml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("6 images pinned in basic.lock"),
        "{}",
        stdout(&out)
    );
    let first = t.read("basic.lock");
    let lock = lock_json(&t, "basic.lock");
    assert_eq!(lock["kiln-lock"], 1);
    assert_eq!(lock["arch"], "amd64");
    let images = lock["images"].as_object().unwrap();
    let refs: Vec<&str> = images.keys().map(String::as_str).collect();
    assert_eq!(
        refs,
        [
            "kiln.test/busybox:1",
            "kiln.test/init:1",
            "kiln.test/kernel:1",
            "kiln.test/runc:1",
            "kiln.test/sysctl:1",
            "kiln.test/web:1"
        ]
    );
    let init = &images["kiln.test/init:1"];
    assert_eq!(init["name"], "kiln.test/init:1");
    assert!(init["manifest"].as_str().unwrap().starts_with("sha256:"));
    assert!(init["config"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(init["layers"].as_array().unwrap().len(), 2);
    assert!(init.get("index").is_none() && init.get("signature").is_none());

    // Deterministic: locking again writes the same bytes.
    let out = t.kiln(&["lock", "basic.yml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(t.read("basic.lock"), first);

    let plain = t.kiln(&["build", "-o", "plain", "basic.yml"]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    let locked = t.kiln(&["build", "--locked", "-o", "locked", "basic.yml"]);
    assert!(locked.status.success(), "{}", stderr(&locked));
    assert_eq!(t.read("locked/basic.sha256"), t.read("plain/basic.sha256"));
    assert_eq!(
        t.read("locked/basic-initrd.img"),
        t.read("plain/basic-initrd.img")
    );
}

#[test]
fn build_locked_refuses_a_moved_tag_naming_it_and_both_digests() {
    let t = TestDir::new();
    let dir = t.join("oci-layout");
    system_layout(&dir);
    write_case(&t, "basic.yml", CASE_BASIC);
    assert!(t.kiln(&["lock", "basic.yml"]).status.success());
    let pinned = lock_json(&t, "basic.lock")["images"]["kiln.test/web:1"]["manifest"]
        .as_str()
        .unwrap()
        .to_string();
    // The tag moves: another image under the same name.
    let moved = write_layout(
        &dir,
        &[TestImage::new("kiln.test/web:1")
            .layer(
                LayerBuilder::new()
                    .file("bin/web", "#!web v2\n", 0o755)
                    .build(),
            )
            .entrypoint(&["/bin/web"])],
    );
    let out = t.kiln(&["build", "--locked", "-o", "out", "basic.yml"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("basic.lock"), "{err}");
    assert!(err.contains("image \"kiln.test/web:1\" moved"), "{err}");
    assert!(
        err.contains(&pinned) && err.contains(&moved[0].digest),
        "{err}"
    );
    assert!(!t.join("out/basic-initrd.img").exists());
    // validate runs the same check.
    let out = t.kiln(&["validate", "--locked", "basic.yml"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains(&moved[0].digest), "{}", stderr(&out));
    let pubkey = crate::trust::data("kiln-test.pub");
    let out = t.kiln(&[
        "validate",
        "--verify-key",
        pubkey.to_str().unwrap(),
        "basic.yml",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has no signature"),
        "{}",
        stderr(&out)
    );
    // Without --locked the build follows the tag.
    let out = t.kiln(&["build", "-o", "out", "basic.yml"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn build_locked_refuses_a_reference_not_in_the_lock() {
    let t = TestDir::new();
    let dir = t.join("oci-layout");
    system_layout(&dir);
    write_layout(
        &dir,
        &[TestImage::new("kiln.test/extra:1")
            .layer(LayerBuilder::new().file("x", "x", 0o644).build())],
    );
    write_case(&t, "basic.yml", CASE_BASIC);
    assert!(t.kiln(&["lock", "basic.yml"]).status.success());
    write_case(
        &t,
        "basic.yml",
        &CASE_BASIC.replace(
            "files:\n  - path: etc/motd",
            "  - name: extra\n    image: kiln.test/extra:1\nfiles:\n  - path: etc/motd",
        ),
    );
    let out = t.kiln(&["build", "--locked", "-o", "out", "basic.yml"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("image \"kiln.test/extra:1\" is not in the lock"),
        "{err}"
    );
    // A missing lock file is bad input naming it.
    let out = t.kiln(&[
        "build",
        "--locked",
        "--name",
        "other",
        "-o",
        "out",
        "basic.yml",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("other.lock"), "{}", stderr(&out));
}

#[test]
fn lock_with_verify_key_records_signatures_and_multi_arch_indexes() {
    let t = TestDir::new();
    let dir = t.join("oci-layout");
    system_layout(&dir);
    let layer = LayerBuilder::new().file("a", "a", 0o644).build();
    let idx = write_multiarch_layout(
        &dir,
        &[MultiArchImage::new(
            "kiln.test/multi:1",
            vec![
                TestImage::new("x").layer(layer.clone()).arch("amd64"),
                TestImage::new("x").layer(layer).arch("arm64"),
            ],
        )],
    );
    write_case(
        &t,
        "m.yml",
        &CASE_BASIC.replace(
            "files:\n  - path: etc/motd",
            "  - name: multi\n    image: kiln.test/multi:1\n    command: [/bin/true]\nfiles:\n  - path: etc/motd",
        ),
    );
    let key = crate::trust::data("kiln-test.key");
    let pubkey = crate::trust::data("kiln-test.pub");
    let mut args = vec!["sign", "--key", key.to_str().unwrap()];
    let refs = [
        "kiln.test/kernel:1",
        "kiln.test/init:1",
        "kiln.test/runc:1",
        "kiln.test/sysctl:1",
        "kiln.test/busybox:1",
        "kiln.test/web:1",
        "kiln.test/multi:1",
    ];
    args.extend_from_slice(&refs);
    let out = t.kiln(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = t.kiln(&["lock", "--verify-key", pubkey.to_str().unwrap(), "m.yml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lock = lock_json(&t, "m.lock");
    let multi = &lock["images"]["kiln.test/multi:1"];
    assert_eq!(multi["index"], idx[0].digest.as_str());
    for r in refs {
        assert!(
            lock["images"][r]["signature"]
                .as_str()
                .unwrap()
                .starts_with("sha256:"),
            "{r}"
        );
    }
    let out = t.kiln(&[
        "build",
        "--locked",
        "--verify-key",
        pubkey.to_str().unwrap(),
        "-o",
        "out",
        "m.yml",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A lock made for another architecture does not pass.
    let text = String::from_utf8(t.read("m.lock")).unwrap();
    t.write(
        "m.lock",
        text.replace("\"arch\": \"amd64\"", "\"arch\": \"arm64\""),
    );
    let out = t.kiln(&["build", "--locked", "-o", "out", "m.yml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the lock was made for arm64, this build is for amd64"),
        "{}",
        stderr(&out)
    );
}
