//! Reading pinned Debian packages: a `.deb` → the entries a recipe keeps.
//!
//! Takes a [`Pin`] and the `.deb` file; checks the sha256 of the whole file
//! against the pin before anything else is read, walks the `ar` archive
//! (`!<arch>\n`, 60-byte member headers, members padded to even offsets)
//! to its `data.tar[.gz|.xz|.zst]`, and feeds that to the [`Unpacker`] (so
//! paths are normalised, `./` dropped, links kept, nothing written to the
//! host). Then [`select`] applies `keep`/`strip`/`prefix`. Every size read
//! from a header is checked against the file, and every error names the
//! package. Maintainer scripts in `control.tar` are never read or run.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::glob;
use super::pins::Pin;
use super::recipe::{DebUse, Extract};
use super::PkgError;
use crate::tree::{join, Content, ContentStore, Entry, Kind, Tree};
use crate::unpack::{Compression, Limits, Unpacked, Unpacker};

const AR_MAGIC: &[u8; 8] = b"!<arch>\n";
const AR_HEADER: usize = 60;

/// Open the `.deb` of `pin` at `path` and check its sha256.
pub fn open_verified(pin: &Pin, path: &Path) -> Result<File, PkgError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(PkgError::DebMissing {
                package: pin.package.clone(),
                path: path.to_owned(),
                expected: pin.sha256.clone(),
            })
        }
        Err(source) => {
            return Err(PkgError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(|source| PkgError::Read {
        path: path.to_owned(),
        source,
    })?;
    let actual = hex::encode(hasher.finalize());
    if actual != pin.sha256 {
        return Err(PkgError::DebHash {
            package: pin.package.clone(),
            path: path.to_owned(),
            expected: pin.sha256.clone(),
            actual,
        });
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|source| PkgError::Read {
            path: path.to_owned(),
            source,
        })?;
    Ok(file)
}

/// The filesystem in the `data.tar` member of a verified `.deb`.
pub fn unpack_data(
    pin: &Pin,
    path: &Path,
    mut file: File,
    store: &ContentStore,
) -> Result<Unpacked, PkgError> {
    let bad = |reason: String| PkgError::DebFormat {
        package: pin.package.clone(),
        path: path.to_owned(),
        reason,
    };
    let io_err = |e: io::Error| bad(format!("cannot read the ar archive: {e}"));
    let len = file.metadata().map_err(io_err)?.len();
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic).map_err(io_err)?;
    if &magic != AR_MAGIC {
        return Err(bad("not an ar archive (no `!<arch>` magic)".to_owned()));
    }
    let mut pos = AR_MAGIC.len() as u64;
    let mut first = true;
    while pos < len {
        if len - pos < AR_HEADER as u64 {
            return Err(bad(format!("truncated ar member header at offset {pos}")));
        }
        let mut header = [0u8; AR_HEADER];
        file.read_exact(&mut header).map_err(io_err)?;
        let (name, size) = parse_header(&header).map_err(|m| bad(format!("offset {pos}: {m}")))?;
        let data_start = pos + AR_HEADER as u64;
        if size > len - data_start {
            return Err(bad(format!(
                "member {name} claims {size} bytes, past the end of the file"
            )));
        }
        if first && name != "debian-binary" {
            return Err(bad(format!(
                "the first member is {name}, not debian-binary"
            )));
        }
        first = false;
        if let Some(suffix) = name.strip_prefix("data.tar") {
            let member = (&mut file).take(size);
            let reader: Box<dyn Read + Send + '_> = match suffix {
                "" => Box::new(member),
                ".gz" => Box::new(flate2::read::MultiGzDecoder::new(member)),
                ".xz" => Box::new(liblzma::read::XzDecoder::new(member)),
                ".zst" => Box::new(zstd::stream::read::Decoder::new(member).map_err(io_err)?),
                _ => return Err(bad(format!("unsupported member {name}"))),
            };
            let layer = format!("{}:{name}", pin.file_name());
            let mut unpacker = Unpacker::new(store, &Limits::default());
            unpacker
                .apply_layer(&layer, Compression::None, reader)
                .map_err(|source| PkgError::DebUnpack {
                    package: pin.package.clone(),
                    source,
                })?;
            return Ok(unpacker.finish());
        }
        pos = data_start + size + (size & 1);
        file.seek(SeekFrom::Start(pos)).map_err(io_err)?;
    }
    Err(bad("no data.tar member".to_owned()))
}

/// A member's name (without GNU's trailing `/`) and size.
fn parse_header(h: &[u8; AR_HEADER]) -> Result<(String, u64), String> {
    if &h[58..60] != b"`\n" {
        return Err("bad ar member header (no terminator)".to_owned());
    }
    let name = std::str::from_utf8(&h[..16])
        .map_err(|_| "ar member name is not UTF-8".to_owned())?
        .trim_end_matches(' ')
        .trim_end_matches('/');
    let size = std::str::from_utf8(&h[48..58])
        .ok()
        .map(|s| s.trim_end_matches(' '))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| format!("ar member {name} has a bad size field"))?;
    Ok((name.to_owned(), size))
}

/// The entries `deb` keeps from `tree`, relocated by `strip`/`prefix`, in
/// path order, owned by root with mtime `epoch`. A kept directory brings
/// everything below it; a hard link whose target is not kept becomes a copy
/// of the target (the first such link; later ones link to it). Symlinks are
/// kept as they are, their targets not followed.
pub fn select(deb: &DebUse, tree: &Tree, epoch: i64) -> Result<Vec<(Vec<u8>, Entry)>, PkgError> {
    let mut kept: BTreeSet<&[u8]> = BTreeSet::new();
    for (g, pos) in &deb.keep {
        let mut any = false;
        for (path, entry) in tree.iter() {
            if !glob::matches(g, path) {
                continue;
            }
            any = true;
            kept.insert(path);
            if entry.is_dir() {
                kept.extend(tree.children_of(path).map(|(c, _)| c.as_slice()));
            }
        }
        if !any {
            return Err(PkgError::NoMatch {
                pos: pos.clone(),
                package: deb.package.clone(),
                glob: g.clone(),
            });
        }
    }
    let relocate = |path: &[u8]| -> Result<Option<Vec<u8>>, PkgError> {
        let rest = match &deb.strip {
            None => path,
            Some(s) if path == s.as_bytes() && tree.get(path).is_some_and(Entry::is_dir) => {
                return Ok(None)
            }
            // `strip` naming a single file renames it to `prefix`
            // (e.g. boot/vmlinuz-VERSION → kernel).
            Some(s)
                if path == s.as_bytes() && deb.prefix.as_deref().is_some_and(|p| !p.is_empty()) =>
            {
                &[]
            }
            Some(s) => match path
                .strip_prefix(s.as_bytes())
                .and_then(|r| r.strip_prefix(b"/"))
            {
                Some(r) => r,
                None => {
                    return Err(PkgError::NotUnderStrip {
                        pos: deb.pos.clone(),
                        package: deb.package.clone(),
                        path: String::from_utf8_lossy(path).into_owned(),
                        strip: s.clone(),
                    })
                }
            },
        };
        Ok(Some(join(
            deb.prefix.as_deref().unwrap_or("").as_bytes(),
            rest,
        )))
    };
    let mut out = Vec::with_capacity(kept.len());
    // Unkept hard-link target → the kept path that now holds its data.
    let mut copies: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for path in kept.iter().copied() {
        let Some(new) = relocate(path)? else { continue };
        let Some(entry) = tree.get(path) else {
            continue;
        };
        let mut entry = entry.clone();
        if let Kind::Hardlink(target) = entry.kind.clone() {
            if kept.contains(target.as_slice()) {
                if let Some(t) = relocate(&target)? {
                    entry.kind = Kind::Hardlink(t);
                }
            } else if let Some(first) = copies.get(&target) {
                entry.kind = Kind::Hardlink(first.clone());
            } else if let Some(original) = tree.get(&target) {
                copies.insert(target, new.clone());
                entry = original.clone();
            }
        }
        entry.uid = 0;
        entry.gid = 0;
        entry.mtime = epoch;
        out.push((new, entry));
    }
    Ok(out)
}

/// The bytes `x` names, cut from the package file `x.from` of `tree` and
/// checked against `x.sha256`, stored in `store`.
pub fn extract(
    x: &Extract,
    package: &str,
    tree: &Tree,
    store: &ContentStore,
) -> Result<Content, PkgError> {
    let fail = |msg: String| PkgError::Rule {
        pos: x.pos.clone(),
        msg: format!("deb {package}: extract {}: {msg}", x.from),
    };
    let mut entry = tree.get(x.from.as_bytes());
    if let Some(Kind::Hardlink(target)) = entry.map(|e| &e.kind) {
        entry = tree.get(target);
    }
    let Some(Kind::File(content)) = entry.map(|e| &e.kind) else {
        return Err(fail("no such regular file in the package".into()));
    };
    let bytes = store.read(content).map_err(PkgError::Store)?;
    let range = usize::try_from(x.offset)
        .ok()
        .zip(usize::try_from(x.length).ok())
        .and_then(|(o, l)| Some(o..o.checked_add(l)?))
        .filter(|r| r.end <= bytes.len())
        .ok_or_else(|| {
            fail(format!(
                "bytes {}..+{} are outside the file ({} bytes)",
                x.offset,
                x.length,
                bytes.len()
            ))
        })?;
    let cut = &bytes[range];
    let actual = hex::encode(Sha256::digest(cut));
    if actual != x.sha256 {
        return Err(fail(format!(
            "bytes {}..+{} have sha256 {actual}, but {} is pinned",
            x.offset, x.length, x.sha256
        )));
    }
    store.add(cut).map_err(PkgError::Store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Pos;

    fn deb_use(keep: &[&str], strip: Option<&str>, prefix: Option<&str>) -> DebUse {
        DebUse {
            package: "p".to_owned(),
            keep: keep
                .iter()
                .map(|g| (g.to_string(), Pos::default()))
                .collect(),
            strip: strip.map(str::to_owned),
            prefix: prefix.map(str::to_owned),
            extract: Vec::new(),
            pos: Pos::default(),
        }
    }

    fn cut(from: &str, offset: u64, length: u64, sha256: &str) -> Extract {
        Extract {
            from: from.to_owned(),
            offset,
            length,
            sha256: sha256.to_owned(),
            path: "out".to_owned(),
            pos: Pos::default(),
        }
    }

    #[test]
    fn extract_cuts_a_pinned_range_through_hard_links() {
        let store = ContentStore::new().unwrap();
        let t = sample(&store);
        let want = hex::encode(Sha256::digest(b"at"));
        let got = extract(&cut("usr/bin/a", 1, 2, &want), "p", &t, &store).unwrap();
        assert_eq!(store.read(&got).unwrap(), b"at");
    }

    #[test]
    fn extract_refuses_wrong_hashes_ranges_and_paths() {
        let store = ContentStore::new().unwrap();
        let t = sample(&store);
        let good = hex::encode(Sha256::digest(b"at"));
        let bad = "0".repeat(64);
        let msg = |x: Extract| extract(&x, "p", &t, &store).unwrap_err().to_string();
        assert!(msg(cut("usr/lib/real", 1, 2, &bad)).contains("is pinned"));
        assert!(msg(cut("usr/lib/real", 3, 2, &good)).contains("outside the file (4 bytes)"));
        assert!(msg(cut("usr/lib/real", u64::MAX, 2, &good)).contains("outside"));
        assert!(msg(cut("usr/bin", 0, 1, &good)).contains("no such regular file"));
    }

    fn sample(store: &ContentStore) -> Tree {
        let mut t = Tree::new();
        let c = store.add(b"data").unwrap();
        let mut owned = Entry::file(c, 0o4755, 5);
        owned.uid = 1000;
        t.insert_with_parents(b"usr/lib/real".to_vec(), owned, 0o700, 5);
        t.insert(b"usr/bin".to_vec(), Entry::dir(0o755, 5));
        for l in ["usr/bin/a", "usr/bin/b"] {
            let link = Entry::new(Kind::Hardlink(b"usr/lib/real".to_vec()), 0o4755, 5);
            t.insert(l.as_bytes().to_vec(), link);
        }
        t
    }

    #[test]
    fn links_to_unkept_targets_become_one_copy() {
        let store = ContentStore::new().unwrap();
        let t = sample(&store);
        let got = select(&deb_use(&["usr/bin"], Some("usr"), Some("opt")), &t, 42).unwrap();
        let paths: Vec<_> = got
            .iter()
            .map(|(p, _)| String::from_utf8_lossy(p))
            .collect();
        assert_eq!(paths, ["opt/bin", "opt/bin/a", "opt/bin/b"]);
        assert!(matches!(got[1].1.kind, Kind::File(_)));
        assert_eq!(
            (got[1].1.mode, got[1].1.uid, got[1].1.mtime),
            (0o4755, 0, 42)
        );
        assert_eq!(got[2].1.kind, Kind::Hardlink(b"opt/bin/a".to_vec()));
    }

    #[test]
    fn strip_naming_a_file_renames_it_to_prefix() {
        let store = ContentStore::new().unwrap();
        let t = sample(&store);
        let got = select(
            &deb_use(&["usr/lib/real"], Some("usr/lib/real"), Some("kernel")),
            &t,
            0,
        )
        .unwrap();
        let paths: Vec<_> = got
            .iter()
            .map(|(p, _)| String::from_utf8_lossy(p).into_owned())
            .collect();
        assert_eq!(paths, ["kernel"]);
        assert!(matches!(got[0].1.kind, Kind::File(_)));
    }

    #[test]
    fn kept_paths_outside_strip_are_errors() {
        let store = ContentStore::new().unwrap();
        let t = sample(&store);
        let e = select(&deb_use(&["usr/lib/real"], Some("usr/bin"), None), &t, 0).unwrap_err();
        assert!(
            e.to_string()
                .contains("kept path usr/lib/real is not under strip `usr/bin`"),
            "{e}"
        );
        let e = select(&deb_use(&["usr/nope*"], None, None), &t, 0).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("deb p: keep glob `usr/nope*` matches nothing"),
            "{e}"
        );
    }

    #[test]
    fn ar_headers_parse() {
        let mut h = [b' '; AR_HEADER];
        h[..14].copy_from_slice(b"data.tar.xz/  ");
        h[48..52].copy_from_slice(b"1234");
        h[58..60].copy_from_slice(b"`\n");
        assert_eq!(parse_header(&h).unwrap(), ("data.tar.xz".to_owned(), 1234));
        h[48] = b'x';
        assert!(parse_header(&h).unwrap_err().contains("bad size field"));
        h[59] = b'x';
        assert!(parse_header(&h).is_err());
    }
}

/// The `.deb` reader over mutations of the seed corpus
/// (`tests/data/fuzz/deb/`): never a panic, whatever the bytes.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    fn seeds() -> Vec<Vec<u8>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz/deb");
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
    }

    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        let seeds = seeds();
        let edit = (any::<usize>(), any::<u8>(), 0..4u8);
        (0..seeds.len(), prop::collection::vec(edit, 0..8)).prop_map(move |(i, edits)| {
            let mut v = seeds[i].clone();
            for (at, byte, op) in edits {
                let at = at % (v.len() + 1);
                match op {
                    0 if at < v.len() => v[at] = byte,
                    1 => v.insert(at, byte),
                    2 if at < v.len() => {
                        v.remove(at);
                    }
                    3 => v.truncate(at),
                    // Header fields are decimal: give one a large number.
                    _ => v.splice(at..at, b"99999999".iter().copied()).for_each(drop),
                }
            }
            v
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn deb_reader_never_panics(bytes in mutated()) {
            read(&bytes).ok();
        }
    }

    fn read(bytes: &[u8]) -> Result<Unpacked, PkgError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x_1_all.deb");
        std::fs::write(&path, bytes).unwrap();
        let pin = Pin {
            package: "x".into(),
            version: "1".into(),
            arch: "all".into(),
            sha256: String::new(),
            source: "x".into(),
            license: "MIT".into(),
        };
        let store = ContentStore::new().unwrap();
        let file = File::open(&path).unwrap();
        unpack_data(&pin, &path, file, &store)
    }

    #[test]
    fn the_seed_deb_is_read() {
        for seed in seeds() {
            assert!(read(&seed).unwrap().tree.get(b"usr/bin/x").is_some());
        }
    }
}
