//! Write-then-rename output files, and the one way a set of them is
//! committed.
//!
//! Takes an output directory and final file names; gives writers backed by
//! temp files in that same directory (`.NAME.XXXXXX.tmp`), each holding an
//! exclusive `flock` on its temp file for as long as it lives. A single
//! file becomes final on [`AtomicFile::commit`] (fsync, rename, fsync of the
//! directory); the outputs of one build become final together through
//! [`commit_set`] (see [`commit`] for the journal that makes a killed commit
//! roll forward). A build that fails or is interrupted never leaves a
//! partial file under a final name, and a previous good output stays intact
//! until replaced whole. Dropping an uncommitted `AtomicFile` removes its
//! temp file; a temp file whose writer was killed is removed by the next
//! [`recover`] of its directory, which knows it is stale because its lock
//! is free. Never touches a file of the directory other than its own temp
//! files, journals and the final names it is given.

mod commit;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use commit::{commit_set, recover, recover_beside, KILL_STEP_ENV};

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
    /// Where the bytes not yet handed to writeback start.
    flushed: u64,
}

/// Bytes written between two requests to start writeback.
const WRITEBACK_STEP: u64 = 8 << 20;

impl Write for HashingFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.file.write(data)?;
        self.hasher.update(&data[..n]);
        self.len += n as u64;
        if self.len - self.flushed >= WRITEBACK_STEP {
            start_writeback(&self.file, self.flushed, self.len - self.flushed);
            self.flushed = self.len;
        }
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

/// A written, fsynced temp file waiting to be renamed to its final name;
/// it still holds its lock, and removes its temp file if dropped.
pub struct Staged {
    tmp: tempfile::NamedTempFile,
    written: Written,
}

impl Staged {
    /// Where the file goes and what it holds.
    pub fn written(&self) -> &Written {
        &self.written
    }
}

impl AtomicFile {
    /// Start writing `dir/name`. The temp file is `dir/.name.XXXXXX.tmp`,
    /// locked before a sweep of the directory can see it (the sweep takes
    /// the directory's lock exclusively; creating takes it shared).
    pub fn create(dir: &Path, name: &str) -> io::Result<AtomicFile> {
        let tmp = {
            let _guard = commit::DirLock::shared(dir)?;
            let tmp = tempfile::Builder::new()
                .prefix(&format!(".{name}."))
                .suffix(".tmp")
                .tempfile_in(dir)?;
            tmp.as_file().try_lock().map_err(|e| match e {
                std::fs::TryLockError::Error(e) => e,
                std::fs::TryLockError::WouldBlock => {
                    io::Error::other("a new temp file is locked by another process")
                }
            })?;
            tmp
        };
        let file = tmp.as_file().try_clone()?;
        Ok(AtomicFile {
            tmp: Some(tmp),
            buf: BufWriter::with_capacity(
                1 << 20,
                HashingFile {
                    file,
                    hasher: Sha256::new(),
                    len: 0,
                    flushed: 0,
                },
            ),
            dest: dir.join(name),
        })
    }

    /// Flush and fsync; the file is ready to be renamed into place.
    pub fn finish(mut self) -> io::Result<Staged> {
        self.buf.flush()?;
        let tmp = self.tmp.take().expect("finished once");
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
        Ok(Staged { tmp, written })
    }

    /// Flush, fsync and rename into place (one file on its own; a build's
    /// outputs go through [`commit_set`]).
    pub fn commit(self) -> io::Result<Written> {
        let staged = self.finish()?;
        let written = staged.written.clone();
        staged.tmp.persist(&written.path).map_err(|e| e.error)?;
        if let Some(dir) = written.path.parent() {
            sync_dir(dir);
        }
        Ok(written)
    }
}

/// Ask the kernel to start writing `len` bytes at `offset` to the disk now
/// without waiting, so the fsync before the rename finds little left to do
/// (a 113 MB initrd: ~0.2 s less at the end of a build). Advisory: errors
/// are ignored, the fsync is what makes the file durable.
fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: sync_file_range only reads its integer arguments; the
        // descriptor is open for as long as `file` is borrowed.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Make renames in `dir` durable; not all filesystems allow this, which is fine.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
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
