//! sha256sum-format hash lists: what every build writes, and the golden contract.
//!
//! Takes the outputs a build committed; gives `NAME.sha256` text (one
//! `HEX  FILE` line per output, sorted by file name, exactly what
//! `sha256sum` prints and `sha256sum -c` reads) and compares such lists.
//! Never reads the outputs' directory order: lines are sorted.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// File name → lowercase hex sha256.
pub type Sums = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum GoldenError {
    #[error("{path}:{line}: not a sha256sum line: {text:?}")]
    Parse {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: io::Error },
    #[error("{path}: {name:?} is not a file name of the sums file's directory (one path component, a regular file)")]
    NotAnOutput { path: PathBuf, name: String },
}

/// Render sums in sha256sum format.
pub fn render(sums: &Sums) -> String {
    sums.iter()
        .map(|(name, hash)| format!("{hash}  {name}\n"))
        .collect()
}

/// Parse sha256sum-format text (also accepts the binary-mode `*` marker).
pub fn parse(path: &Path, text: &str) -> Result<Sums, GoldenError> {
    let mut sums = Sums::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || GoldenError::Parse {
            path: path.to_owned(),
            line: i + 1,
            text: line.to_owned(),
        };
        let (hash, rest) = line.split_once(' ').ok_or_else(bad)?;
        let name = rest
            .strip_prefix(' ')
            .or_else(|| rest.strip_prefix('*'))
            .ok_or_else(bad)?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) || name.is_empty() {
            return Err(bad());
        }
        sums.insert(name.to_owned(), hash.to_ascii_lowercase());
    }
    Ok(sums)
}

/// Read and parse a sums file.
pub fn read(path: &Path) -> Result<Sums, GoldenError> {
    let text = std::fs::read_to_string(path).map_err(|err| GoldenError::Io {
        path: path.to_owned(),
        err,
    })?;
    parse(path, &text)
}

/// One way a set of sums differs from the golden set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    Differs {
        name: String,
        expected: String,
        actual: String,
    },
    Missing {
        name: String,
        expected: String,
    },
    Unexpected {
        name: String,
        actual: String,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Differs {
                name,
                expected,
                actual,
            } => {
                write!(f, "{name}: sha256 {actual}, golden {expected}")
            }
            Mismatch::Missing { name, expected } => {
                write!(f, "{name}: missing (golden {expected})")
            }
            Mismatch::Unexpected { name, actual } => {
                write!(f, "{name}: not in golden file (sha256 {actual})")
            }
        }
    }
}

/// Every difference between `actual` and `golden`, in file-name order.
pub fn compare(actual: &Sums, golden: &Sums) -> Vec<Mismatch> {
    let mut out = Vec::new();
    for (name, expected) in golden {
        match actual.get(name) {
            Some(a) if a == expected => {}
            Some(a) => out.push(Mismatch::Differs {
                name: name.clone(),
                expected: expected.clone(),
                actual: a.clone(),
            }),
            None => out.push(Mismatch::Missing {
                name: name.clone(),
                expected: expected.clone(),
            }),
        }
    }
    for (name, actual_hash) in actual {
        if !golden.contains_key(name) {
            out.push(Mismatch::Unexpected {
                name: name.clone(),
                actual: actual_hash.clone(),
            });
        }
    }
    out.sort_by(|a, b| key(a).cmp(key(b)));
    out
}

fn key(m: &Mismatch) -> &str {
    match m {
        Mismatch::Differs { name, .. }
        | Mismatch::Missing { name, .. }
        | Mismatch::Unexpected { name, .. } => name,
    }
}

/// sha256 of a file, streamed.
pub fn hash_file(path: &Path) -> Result<String, GoldenError> {
    let io_err = |err| GoldenError::Io {
        path: path.to_owned(),
        err,
    };
    let mut f = crate::hostfile::open_regular(path).map_err(io_err)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Hash the files a sums file lists (relative to its directory) as they are now.
pub fn rehash(sums_path: &Path) -> Result<Sums, GoldenError> {
    let listed = read(sums_path)?;
    let dir = sums_path.parent().unwrap_or(Path::new("."));
    let mut now = Sums::new();
    for name in listed.keys() {
        // Outputs sit beside their sums file: a name is one component, and
        // only regular files are read (never a device, a FIFO or a path
        // elsewhere that a hostile sums file names).
        let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0']);
        if !plain {
            return Err(GoldenError::NotAnOutput {
                path: sums_path.to_owned(),
                name: name.clone(),
            });
        }
        let p = dir.join(name);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() => {
                now.insert(name.clone(), hash_file(&p)?);
            }
            Ok(_) => {
                return Err(GoldenError::NotAnOutput {
                    path: sums_path.to_owned(),
                    name: name.clone(),
                })
            }
            Err(_) => {}
        }
    }
    Ok(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn render_parse_round_trip() {
        let sums: Sums = [
            ("x-initrd.img".to_string(), A.to_string()),
            ("x-kernel".to_string(), B.to_string()),
        ]
        .into();
        let text = render(&sums);
        assert_eq!(text, format!("{A}  x-initrd.img\n{B}  x-kernel\n"));
        assert_eq!(parse(Path::new("g"), &text).unwrap(), sums);
    }

    #[test]
    fn rehash_reads_only_regular_files_beside_the_sums_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("out.img"), b"x").unwrap();
        let sums = dir.path().join("x.sha256");
        std::fs::write(&sums, format!("{A}  out.img\n")).unwrap();
        let now = rehash(&sums).unwrap();
        assert_eq!(now.len(), 1);
        for hostile in ["../x.sha256", "/etc/passwd", "sub/out.img", ".."] {
            std::fs::write(&sums, format!("{A}  {hostile}\n")).unwrap();
            let e = rehash(&sums).unwrap_err().to_string();
            assert!(
                e.contains("is not a file name of the sums file's directory"),
                "{e}"
            );
        }
        // A device (or FIFO, directory, symlink) beside it is not read.
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero")).unwrap();
        std::fs::write(&sums, format!("{A}  zero\n")).unwrap();
        assert!(rehash(&sums).is_err());
    }

    #[test]
    fn parse_names_line_of_bad_input() {
        let err = parse(
            Path::new("golden/x.sha256"),
            &format!("{A}  ok\nnot a line\n"),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("golden/x.sha256:2: "), "{err}");
    }

    #[test]
    fn compare_reports_every_difference() {
        let golden: Sums = [("a".into(), A.into()), ("b".into(), A.into())].into();
        let actual: Sums = [("a".into(), B.into()), ("c".into(), A.into())].into();
        let m = compare(&actual, &golden);
        assert_eq!(m.len(), 3);
        assert!(matches!(&m[0], Mismatch::Differs { name, .. } if name == "a"));
        assert!(matches!(&m[1], Mismatch::Missing { name, .. } if name == "b"));
        assert!(matches!(&m[2], Mismatch::Unexpected { name, .. } if name == "c"));
        assert!(compare(&golden, &golden).is_empty());
    }
}
