//! Write-then-rename output files.
//!
//! Takes an output directory and a final file name; gives a writer backed by
//! a temp file in that same directory, which becomes the final file only on
//! [`AtomicFile::commit`] (fsync, then rename, then fsync of the directory).
//! A build that fails or is interrupted never leaves a partial file under a
//! final name, and a previous good output stays intact until replaced whole.
//! Dropping an uncommitted `AtomicFile` removes its temp file.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// An output file being written; hashes its bytes as they pass.
pub struct AtomicFile {
    tmp: Option<tempfile::NamedTempFile>,
    buf: BufWriter<HashingFile>,
    dest: PathBuf,
}

struct HashingFile {
    file: File,
    hasher: Sha256,
    len: u64,
}

impl Write for HashingFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.file.write(data)?;
        self.hasher.update(&data[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// What a committed file was: its path, size and sha256 (hex).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    pub len: u64,
    pub sha256: String,
}

impl AtomicFile {
    /// Start writing `dir/name`. The temp file is `dir/.name.XXXXXX.tmp`.
    pub fn create(dir: &Path, name: &str) -> io::Result<AtomicFile> {
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)?;
        let file = tmp.as_file().try_clone()?;
        Ok(AtomicFile {
            tmp: Some(tmp),
            buf: BufWriter::with_capacity(
                1 << 20,
                HashingFile {
                    file,
                    hasher: Sha256::new(),
                    len: 0,
                },
            ),
            dest: dir.join(name),
        })
    }

    /// Flush, fsync and rename into place.
    pub fn commit(mut self) -> io::Result<Written> {
        self.buf.flush()?;
        let tmp = self.tmp.take().expect("commit called once");
        // Temp files are created 0600; outputs are ordinary readable files.
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        tmp.as_file().sync_all()?;
        let inner = self.buf.get_ref();
        let written = Written {
            path: self.dest.clone(),
            len: inner.len,
            sha256: hex::encode(inner.hasher.clone().finalize()),
        };
        tmp.persist(&self.dest).map_err(|e| e.error)?;
        if let Some(dir) = self.dest.parent() {
            // Make the rename durable; not all filesystems allow this, which is fine.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(written)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.buf.flush()
    }
}

/// Write `bytes` to `dir/name` atomically.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<Written> {
    let mut f = AtomicFile::create(dir, name)?;
    f.write_all(bytes)?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_appears_until_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = AtomicFile::create(dir.path(), "out.img").unwrap();
        f.write_all(b"partial").unwrap();
        assert!(!dir.path().join("out.img").exists());
        drop(f);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "temp file removed on drop"
        );
    }

    #[test]
    fn commit_replaces_whole_and_hashes() {
        let dir = tempfile::tempdir().unwrap();
        write_file(dir.path(), "a", b"old").unwrap();
        let mut f = AtomicFile::create(dir.path(), "a").unwrap();
        f.write_all(b"new").unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"old");
        let w = f.commit().unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"new");
        assert_eq!(w.len, 3);
        assert_eq!(w.sha256, hex::encode(Sha256::digest(b"new")));
    }
}
