//! Several layouts searched in order (`--layout A --layout B`, or
//! `KILN_LAYOUT=A:B`): a user's own layout beside kiln's.

use crate::support::{
    kiln, kiln_env, stderr, stdout, write_layout, LayerBuilder, TestDir, TestImage,
};

use super::fixture::{system_layout, write_case, CASE_BASIC};

/// An image holding one file, so two images of one name differ.
fn image(name: &str, body: &str) -> TestImage {
    TestImage::new(name)
        .layer(
            LayerBuilder::new()
                .dir("bin", 0o755)
                .file("bin/tool", body, 0o755)
                .build(),
        )
        .cmd(&["/bin/tool"])
}

/// `sys/` is the system layout; `mine/` holds the user's own service, a
/// second `kiln.test/busybox:1` and a bare-tag `1` image.
fn setup(t: &TestDir) {
    system_layout(&t.join("sys"));
    write_layout(
        &t.join("mine"),
        &[
            image("kiln.test/mine:1", "#!mine\n"),
            image("kiln.test/busybox:1", "#!other busybox\n"),
        ],
    );
    write_case(t, "s.yml", CASE_BASIC);
    write_case(
        t,
        "more.yml",
        "services:\n  - name: mine\n    image: kiln.test/mine:1\n",
    );
}

/// The manifest digest a dry run resolves `reference` to.
fn resolved(t: &TestDir, layouts: &[&str], env: &[(&str, &str)], reference: &str) -> String {
    let mut args = vec!["build", "--dry-run", "--json"];
    for l in layouts {
        args.extend(["--layout", l]);
    }
    args.extend(["s.yml", "more.yml"]);
    let out = kiln_env(t.path(), &args, env);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let found = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["reference"] == reference)
        .unwrap_or_else(|| panic!("{reference} not in {report}"));
    found["manifest"].as_str().unwrap().to_string()
}

#[test]
fn later_layouts_supply_what_earlier_ones_lack_and_the_first_name_wins() {
    let t = TestDir::new();
    setup(&t);
    // Only the system layout: the user's service is missing, and the
    // message names the layout.
    let out = kiln(
        t.path(),
        &["validate", "--layout", "sys", "s.yml", "more.yml"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("\"kiln.test/mine:1\" not found in layout sys"),
        "{}",
        stderr(&out)
    );

    let sys_first = resolved(&t, &["sys", "mine"], &[], "kiln.test/busybox:1");
    let mine_first = resolved(&t, &["mine", "sys"], &[], "kiln.test/busybox:1");
    assert_ne!(
        sys_first, mine_first,
        "each order takes its first layout's busybox"
    );
    assert_eq!(
        resolved(&t, &["sys", "mine"], &[], "kiln.test/mine:1"),
        resolved(&t, &["mine", "sys"], &[], "kiln.test/mine:1"),
    );
    // $KILN_LAYOUT is the same search order, colon-separated.
    assert_eq!(
        resolved(
            &t,
            &[],
            &[("KILN_LAYOUT", "sys:mine")],
            "kiln.test/busybox:1"
        ),
        sys_first
    );

    // A whole build reads blobs from both layouts, and the bytes are those
    // of the same images in one layout.
    let out = kiln(
        t.path(),
        &[
            "build", "--layout", "sys", "--layout", "mine", "-o", "two", "s.yml", "more.yml",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    system_layout(&t.join("one"));
    write_layout(&t.join("one"), &[image("kiln.test/mine:1", "#!mine\n")]);
    let out = kiln(
        t.path(),
        &[
            "build", "--layout", "one", "-o", "single", "s.yml", "more.yml",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(t.read("two/s-initrd.img"), t.read("single/s-initrd.img"));
}

#[test]
fn an_image_in_no_layout_names_every_layout_searched() {
    let t = TestDir::new();
    setup(&t);
    write_case(
        &t,
        "more.yml",
        "services:\n  - name: x\n    image: kiln.test/nowhere:1\n",
    );
    let out = kiln(
        t.path(),
        &[
            "validate", "--layout", "sys", "--layout", "mine", "s.yml", "more.yml",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("\"kiln.test/nowhere:1\" not found in layout sys, nor in mine"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_exact_name_in_a_later_layout_beats_a_bare_tag_in_an_earlier_one() {
    let t = TestDir::new();
    setup(&t);
    // `skopeo copy … oci:bare:1` stores only the tag.
    write_layout(&t.join("bare"), &[image("1", "#!bare tag\n")]);
    let exact = resolved(&t, &["mine", "sys"], &[], "kiln.test/mine:1");
    assert_eq!(
        resolved(&t, &["bare", "sys", "mine"], &[], "kiln.test/mine:1"),
        exact
    );
    // Alone, the bare tag is used (with the warning of a bare-tag match).
    let bare = resolved(&t, &["bare", "sys"], &[], "kiln.test/mine:1");
    assert_ne!(bare, exact);
}
