//! Property tests over the readers of untrusted input (issue 13): the YAML
//! loader, the tar/PAX reader (unpack), the OCI JSON readers and the
//! layout, and `kiln inspect`. Inputs are mutations of the seed corpus in
//! `tests/data/fuzz/` (every file there is a seed, failures found are kept
//! there as `regress-*` files); any input must give `Ok` or an error, never a
//! panic, and a reader bounded by its input (a huge declared size in a small
//! input must not be allocated: the test process would abort). The `.deb`
//! reader's property test lives beside it (`src/pkg/deb.rs`), as it is
//! private. Case counts keep the whole file near 30 s in CI.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use crate::support::TestDir;

/// The seed files of `tests/data/fuzz/DIR`, sorted by name.
pub fn seeds(dir: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz")
        .join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// One edit of a byte string.
#[derive(Clone, Debug)]
pub enum Edit {
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Repeat(usize, usize, usize),
}

/// Bytes that parsers give meaning to.
const INTERESTING: &[&[u8]] = &[
    b"\0",
    b"\xff",
    b" ",
    b"\n",
    b"=",
    b"7",
    b"9",
    b"-",
    b"*",
    b"&a",
    b"[",
    b"{",
    b"\"",
    b"99999999999",
    b"77777777777",
    b"18446744073709551616",
    b"-1",
    b"0x",
    b"../",
    b"././@LongLink",
    b"path=",
    b"size=",
    b"GNU.sparse.",
    b"sha256:",
    b"0707010",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<usize>(), prop::sample::select(INTERESTING))
            .prop_map(|(i, s)| Edit::Insert(i, s.to_vec())),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, v)| Edit::Insert(i, v)),
        (any::<usize>(), 1..64usize).prop_map(|(i, n)| Edit::Delete(i, n)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), 1..600usize, 1..4usize).prop_map(|(i, n, k)| Edit::Repeat(i, n, k)),
    ]
}

pub fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for e in edits {
        let at = |i: usize, v: &Vec<u8>| if v.is_empty() { 0 } else { i % (v.len() + 1) };
        match e {
            Edit::Set(i, b) => {
                if !v.is_empty() {
                    let i = i % v.len();
                    v[i] = *b;
                }
            }
            Edit::Insert(i, bytes) => {
                let i = at(*i, &v);
                v.splice(i..i, bytes.iter().copied());
            }
            Edit::Delete(i, n) => {
                let i = at(*i, &v);
                let end = (i + n).min(v.len());
                v.drain(i..end);
            }
            Edit::Truncate(i) => {
                let i = at(*i, &v);
                v.truncate(i);
            }
            Edit::Repeat(i, n, k) => {
                let i = at(*i, &v);
                let chunk: Vec<u8> = v[i..(i + n).min(v.len())].to_vec();
                for _ in 0..*k {
                    v.splice(i..i, chunk.iter().copied());
                }
            }
        }
    }
    v
}

/// A mutation of one of `dir`'s seeds (or the seed itself).
pub fn mutated(dir: &str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds(dir);
    assert!(!seeds.is_empty(), "no seeds in tests/data/fuzz/{dir}");
    (0..seeds.len(), prop::collection::vec(edit(), 0..6))
        .prop_map(move |(i, edits)| apply(&seeds[i], &edits))
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(4000))]

    #[test]
    fn yaml_loader_never_panics(bytes in mutated("yaml")) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = kiln::spec::yaml::load("fuzz.yml", &text);
        let _ = kiln::spec::load_str("fuzz.yml", &text, Path::new("/nonexistent"));
    }

    #[test]
    fn oci_json_readers_never_panic(bytes in mutated("oci")) {
        let _ = serde_json::from_slice::<kiln::oci::json::Index>(&bytes);
        let _ = serde_json::from_slice::<kiln::oci::json::Manifest>(&bytes);
        let _ = serde_json::from_slice::<kiln::oci::json::ConfigFile>(&bytes);
        let _ = kiln::oci::json::sniff_kind(&bytes);
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn tar_reader_never_panics_and_stays_bounded(bytes in mutated("tar")) {
        let store = kiln::tree::ContentStore::new().unwrap();
        let limits = kiln::unpack::Limits {
            max_total_bytes: 64 << 20,
            max_entries: 10_000,
            max_file_bytes: 16 << 20,
        };
        let layer = Ok::<_, std::io::Error>((
            "fuzz".to_string(),
            kiln::unpack::Compression::None,
            &bytes[..],
        ));
        let _ = kiln::unpack::unpack_layers(std::iter::once(layer), &store, &limits);
    }

    #[test]
    fn inspect_never_panics(bytes in mutated("archive")) {
        let t = TestDir::new();
        let path = t.write("fuzz.img", &bytes);
        if let Ok(rows) = kiln::inspect::inspect(&path) {
            let _ = kiln::inspect::format_listing(&rows);
        }
    }

    #[test]
    fn layout_reader_never_panics(bytes in mutated("oci")) {
        let t = TestDir::new();
        t.write("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#);
        t.write("index.json", &bytes);
        if let Ok(layout) = kiln::oci::Layout::open(t.path()) {
            let _ = layout.resolve("kiln.dev/init:0.1", "amd64");
            let _ = layout.fsck();
        }
    }
}

/// The seeds themselves are valid input, so mutations start deep in the
/// readers rather than at their first check.
#[test]
fn every_seed_is_read_whole() {
    let store = kiln::tree::ContentStore::new().unwrap();
    for seed in seeds("tar") {
        let layer = Ok::<_, std::io::Error>((
            "seed".to_string(),
            kiln::unpack::Compression::None,
            &seed[..],
        ));
        let limits = kiln::unpack::Limits::default();
        kiln::unpack::unpack_layers(std::iter::once(layer), &store, &limits).unwrap();
    }
    let t = TestDir::new();
    for (i, seed) in seeds("archive").iter().enumerate() {
        let path = t.write(format!("a{i}"), seed);
        assert!(!kiln::inspect::inspect(&path).unwrap().is_empty());
    }
    for seed in seeds("yaml") {
        kiln::spec::yaml::load("seed.yml", std::str::from_utf8(&seed).unwrap()).unwrap();
    }
    let index = &seeds("oci")[1];
    serde_json::from_slice::<kiln::oci::json::Index>(index).unwrap();
}
