//! LinuxKit's own YAML corpus (`tests/data/linuxkit-corpus/`, its README says
//! where each file comes from): every document LinuxKit v1.2.0 builds is
//! built by kiln too, and no document makes kiln panic.
//!
//! `linuxkit-v1.2.0.tsv` beside the corpus records what LinuxKit v1.2.0 itself
//! said of each document (measured by running its config code; see the
//! README). The test makes one placeholder image for every name the
//! documents use (a kernel image holds every kernel file a document asks
//! for), builds each document as `tar` in-process, and checks:
//! - a document LinuxKit builds is built by kiln;
//! - a document both reject is listed in [`BOTH_REJECT`] with the words of
//!   kiln's error, so a changed reason shows up;
//! - nothing panics.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kiln::build::{BuildOptions, Format};
use kiln::output::compress::Compression;
use serde_json::Value;

use crate::support::{write_layout, LayerBuilder, TestDir, TestImage};

/// Documents LinuxKit v1.2.0 rejects and kiln rejects too: the corpus path
/// and words of kiln's error.
const BOTH_REJECT: &[(&str, &str)] = &[
    // Negative test of LinuxKit HEAD's volumes: a writable bind of a read-only volume.
    (
        "head/test/cases/000_build/070_volumes/002_rw_on_ro/test.yml",
        "so the bind must be read-only",
    ),
    // Placeholder paths in the docs and a build output that is not in the repository.
    (
        "head/docs/yaml-5.yml",
        "cannot read `/some/path/on/local/filesystem`",
    ),
    (
        "v1.2.0/docs/faq-1.yml",
        "cannot read `/path/to/runtime-config.toml`",
    ),
    (
        "head/projects/compose/compose-static.yml",
        "image-cache/nginx:alpine.tar`",
    ),
    (
        "v1.2.0/projects/compose/compose-static.yml",
        "image-cache/nginx:alpine.tar`",
    ),
    // A comment line inside a block scalar ends it: a YAML syntax error.
    ("head/examples/static-ip.yml", "did not find expected key"),
    ("v1.2.0/examples/static-ip.yml", "did not find expected key"),
    // A service without `image`.
    (
        "head/projects/clear-containers/clear-containers.yml",
        "services[0]: missing `image`",
    ),
    (
        "v1.2.0/projects/clear-containers/clear-containers.yml",
        "services[0]: missing `image`",
    ),
    // LinuxKit's own negative test for unknown keys.
    (
        "head/test/cases/000_build/091_validate_linuxkit_yaml/linuxkit.yml",
        "unknown key `unknownField`",
    ),
];

/// Documents whose TSV verdict is `ok` but which a real `linuxkit build`
/// v1.2.0 rejects after the point the TSV stops, when it parses image names
/// to pull them (go-containerregistry: "could not parse reference"): the docs'
/// `<hash>` placeholder tags. kiln rejects them for the same reason.
const LINUXKIT_PULL_REJECTS: &[(&str, &str)] = &[
    (
        "head/docs/yaml-7.yml",
        "\"linuxkit/dhcpcd:<hash>\": malformed tag",
    ),
    (
        "v1.2.0/docs/encrypted-disk-1.yml",
        "\"linuxkit/dm-crypt:<hash>\": malformed tag",
    ),
    (
        "v1.2.0/docs/encrypted-disk-2.yml",
        "\"linuxkit/dm-crypt:<hash>\": malformed tag",
    ),
    (
        "v1.2.0/docs/encrypted-disk-3.yml",
        "\"linuxkit/dm-crypt:<hash>\": malformed tag",
    ),
    (
        "v1.2.0/docs/losetup-1.yml",
        "\"linuxkit/losetup:<hash>\": malformed tag",
    ),
    (
        "v1.2.0/docs/trusted-computing-1.yml",
        "\"linuxkit/tss:<hash>\": malformed tag",
    ),
];

/// Documents LinuxKit v1.2.0 builds and kiln refuses on purpose, each a row
/// of docs/linuxkit-compat.md.
const KILN_REFUSES: &[(&str, &str)] = &[
    // `@pkg:` templates are not expanded (kiln builds from a pinned layout).
    ("head/docs/yaml-11.yml", "is a LinuxKit package template"),
    ("v1.2.0/docs/yaml-4.yml", "is a LinuxKit package template"),
    // Binds of undeclared volumes: v1.2.0 predates volumes and passes
    // `volA:/mnt/volA` to runc as a relative bind source; LinuxKit HEAD, whose
    // docs this is, rejects it ("volume volA not found") as kiln does.
    ("head/docs/yaml-4.yml", "no volume named \"volA\""),
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/linuxkit-corpus")
}

/// LinuxKit's verdict per document: `None` = built, `Some(reason)` = rejected.
fn linuxkit_verdicts() -> BTreeMap<String, Option<String>> {
    let text = std::fs::read_to_string(corpus_dir().join("linuxkit-v1.2.0.tsv")).unwrap();
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut cols = line.splitn(3, '\t');
        let (path, verdict) = (cols.next().unwrap(), cols.next().unwrap_or(""));
        let reason = cols.next().unwrap_or("").to_string();
        let v = match verdict {
            "ok" => None,
            "rejected" => Some(reason),
            other => panic!("linuxkit-v1.2.0.tsv: {path}: verdict {other:?}"),
        };
        assert!(out.insert(path.to_string(), v).is_none(), "{path} twice");
    }
    out
}

/// What one document needs from the layout.
#[derive(Default)]
struct Needs {
    /// Container, init and volume images.
    images: BTreeSet<String>,
    /// Kernel image → the files documents ask of it.
    kernels: BTreeMap<String, BTreeSet<String>>,
}

/// The image names a document uses, read with kiln's YAML loader only (not
/// its strict parser, which is what is under test).
fn collect(doc: &str, text: &str, needs: &mut Needs) {
    let Ok(node) = kiln::spec::yaml::load(doc, text) else {
        return;
    };
    let json = node.to_json();
    let str_at = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    if let Some(k) = json.get("kernel") {
        if let Some(image) = str_at(k, "image") {
            let files = needs.kernels.entry(image).or_default();
            files.insert(str_at(k, "binary").unwrap_or_else(|| "kernel".into()));
            files.insert(str_at(k, "tar").unwrap_or_else(|| "kernel.tar".into()));
            if let Some(u) = str_at(k, "ucode") {
                files.insert(u);
            }
        }
    }
    for i in json
        .get("init")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(s) = i.as_str() {
            needs.images.insert(s.to_string());
        }
    }
    for section in ["onboot", "onshutdown", "services", "volumes"] {
        let items = json.get(section).and_then(Value::as_array);
        for item in items.into_iter().flatten() {
            if let Some(image) = str_at(item, "image") {
                needs.images.insert(image);
            }
        }
    }
}

/// One layout with a placeholder for every image, tagged with every way the
/// documents write its name (`busybox` and `busybox:latest` are one image).
fn placeholder_layout(dir: &Path, needs: &Needs) {
    let canonical = |n: &str| kiln::oci::name::canonical_name(n).unwrap_or_else(|| n.to_string());
    // canonical name → (names as written, kernel files if a kernel).
    let mut by_name: BTreeMap<String, (BTreeSet<&str>, BTreeSet<&str>)> = BTreeMap::new();
    for name in &needs.images {
        by_name.entry(canonical(name)).or_default().0.insert(name);
    }
    for (name, files) in &needs.kernels {
        let entry = by_name.entry(canonical(name)).or_default();
        entry.0.insert(name);
        entry.1.extend(files.iter().map(String::as_str));
    }
    let mut images = Vec::new();
    for (canonical, (names, files)) in &by_name {
        let mut layer = LayerBuilder::new().dir("bin", 0o755).file(
            "bin/placeholder",
            format!("image {canonical}\n"),
            0o755,
        );
        for f in files.iter().filter(|f| !f.is_empty() && **f != "none") {
            let body = if f.ends_with(".tar") {
                LayerBuilder::new()
                    .file("lib/modules/placeholder/modules.dep", "", 0o644)
                    .build()
            } else {
                format!("placeholder {f}\n").into_bytes()
            };
            layer = layer.file(f, body, 0o644);
        }
        let mut names = names.iter();
        // Real images name their program; documents rely on that.
        let mut image = TestImage::new(names.next().expect("one name at least"))
            .entrypoint(&["/bin/placeholder"]);
        for n in names {
            image = image.also_named(n);
        }
        images.push(image.layer(layer.build()));
    }
    write_layout(dir, &images);
}

fn build(doc: &Path, layout: &Path, out: &Path) -> Result<(), String> {
    let opts = BuildOptions {
        files: vec![doc.to_path_buf()],
        formats: vec![Format::Tar],
        out_dir: out.to_path_buf(),
        name: "corpus".into(),
        layout: layout.to_path_buf(),
        more_layouts: Vec::new(),
        arch: "amd64".into(),
        compression: Compression::None,
        epoch: kiln::DEFAULT_EPOCH,
        threads: 1,
        limits: Default::default(),
        size: None,
        cmdline_append: None,
        verify_keys: Vec::new(),
        locked: None,
        sbom: Default::default(),
        sbom_format: Default::default(),
        sbom_files: false,
    };
    kiln::build::build(&opts)
        .map(drop)
        .map_err(|e| kiln::build::error_message(e.as_ref()))
}

#[test]
fn kiln_builds_every_document_linuxkit_builds() {
    let verdicts = linuxkit_verdicts();
    assert!(verdicts.len() > 300, "{} documents", verdicts.len());
    let mut needs = Needs::default();
    let mut texts = BTreeMap::new();
    for doc in verdicts.keys() {
        let path = corpus_dir().join(doc);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{doc}: {e}"));
        collect(doc, &text, &mut needs);
        texts.insert(doc.clone(), path);
    }
    let dir = TestDir::new();
    let layout = dir.join("layout");
    placeholder_layout(&layout, &needs);

    let both_reject: BTreeMap<&str, &str> = BOTH_REJECT
        .iter()
        .chain(LINUXKIT_PULL_REJECTS)
        .chain(KILN_REFUSES)
        .copied()
        .collect();
    let ok_in_tsv: BTreeSet<&str> = LINUXKIT_PULL_REJECTS
        .iter()
        .chain(KILN_REFUSES)
        .map(|(d, _)| *d)
        .collect();
    let mut failures = Vec::new();
    let (mut built, mut rejected) = (0, 0);
    for (doc, path) in &texts {
        let out = dir.join("out");
        let result = std::panic::catch_unwind(|| build(path, &layout, &out));
        let _ = std::fs::remove_dir_all(&out);
        let result = match result {
            Ok(r) => r,
            Err(_) => {
                failures.push(format!("{doc}: kiln panicked"));
                continue;
            }
        };
        let verdict = match (&verdicts[doc], ok_in_tsv.contains(doc.as_str())) {
            (None, true) => Some("(see LINUXKIT_PULL_REJECTS / KILN_REFUSES)".to_string()),
            (Some(lk), true) => {
                failures.push(format!("{doc}: listed as ok in the TSV, but it says: {lk}"));
                continue;
            }
            (v, false) => v.clone(),
        };
        match (&verdict, result, both_reject.get(doc.as_str())) {
            (None, Ok(()), None) => built += 1,
            (None, Err(e), _) => failures.push(format!("{doc}: LinuxKit builds it, kiln: {e}")),
            (None, Ok(()), Some(_)) => failures.push(format!(
                "{doc}: listed in BOTH_REJECT but LinuxKit builds it"
            )),
            (Some(_), Err(e), Some(words)) if e.contains(words) => rejected += 1,
            (Some(lk), Err(e), Some(words)) => failures.push(format!(
                "{doc}: kiln's error no longer says {words:?}: {e} (LinuxKit: {lk})"
            )),
            (Some(lk), Err(e), None) => failures.push(format!(
                "{doc}: both reject it; list it in BOTH_REJECT (kiln: {e}; LinuxKit: {lk})"
            )),
            (Some(_), Ok(()), Some(_)) => {
                failures.push(format!("{doc}: listed in BOTH_REJECT but kiln builds it"))
            }
            // LinuxKit rejects it, kiln builds it: allowed (kiln is more lenient
            // there, see docs/linuxkit-compat.md).
            (Some(_), Ok(()), None) => built += 1,
        }
    }
    for doc in both_reject.keys() {
        if !verdicts.contains_key(*doc) {
            failures.push(format!("{doc}: in BOTH_REJECT but not in the corpus"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} documents: (built {built}, rejected as listed {rejected})\n{}",
        failures.len(),
        texts.len(),
        failures.join("\n")
    );
}
