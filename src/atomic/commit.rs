//! The commit protocol: the outputs of one build switch as one, even when
//! kiln is killed while renaming them.
//!
//! Takes staged temp files (written and fsynced, see [`super::Staged`]) and
//! gives them their final names. With the output directory's lock held
//! exclusively (`flock` on the directory itself, so no lock file is left
//! behind), it
//!
//! 1. repairs what a killed earlier commit left ([`recover`]);
//! 2. writes the journal `.NAME.kiln-commit` (temp file, fsync, rename,
//!    fsync of the directory): the list of `temp name → final name` renames
//!    of the set, `NAME.sha256` included. From this point the new set wins;
//! 3. renames every temp file to its final name, fsyncs the directory;
//! 4. removes the journal.
//!
//! [`recover`] rolls every journal it finds forward (a rename whose temp file
//! is gone was done) and then removes the temp files of killed writers:
//! a `.X.XXXXXX.tmp` file whose lock it can take belongs to no live process
//! (every live writer holds its temp file's lock, taken while the directory
//! is locked shared, so a sweep never sees a temp file before it is locked).
//! Killed before step 2, a build leaves the old set whole; killed after it,
//! the next build or `kiln verify` completes the new set. Builds of any
//! names may run concurrently into one directory: they write in parallel
//! and commit one at a time.
//!
//! Test hook (test-only, documented in ARCHITECTURE.md): when the
//! environment variable [`KILL_STEP_ENV`] is `K`, kiln sends itself SIGKILL
//! at step K of a commit: 0 before the journal, 1 after it, 1+i after the
//! i-th rename. It never writes or deletes anything outside the directory
//! it commits into, and never deletes a file that is not its own temp file
//! or journal.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{sync_dir, Staged, Written};

/// Test hook: SIGKILL at this step of a commit (see the module docs).
pub const KILL_STEP_ENV: &str = "KILN_TEST_KILL_AT_COMMIT_STEP";

/// The suffix of a commit journal: `.NAME.kiln-commit`.
const JOURNAL_SUFFIX: &str = ".kiln-commit";

/// The largest journal read (a set has a few dozen names at most).
const MAX_JOURNAL: u64 = 1 << 20;

/// `flock(2)` on an output directory; released when dropped.
pub(super) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Taken around creating and locking one temp file.
    pub(super) fn shared(dir: &Path) -> io::Result<DirLock> {
        DirLock::take(dir, false)
    }

    /// Taken to commit a set and to recover.
    pub(super) fn exclusive(dir: &Path) -> io::Result<DirLock> {
        DirLock::take(dir, true)
    }

    fn take(dir: &Path, exclusive: bool) -> io::Result<DirLock> {
        let named = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("locking the output directory {}: {e}", dir.display()),
            )
        };
        let f = File::open(dir).map_err(named)?;
        if exclusive { f.lock() } else { f.lock_shared() }.map_err(named)?;
        Ok(DirLock { _file: f })
    }
}

/// The journal of a set named `name`.
fn journal_name(name: &str) -> String {
    format!(".{name}{JOURNAL_SUFFIX}")
}

/// Renames `staged` into place as one set named `name` (its `NAME.sha256`
/// among them), in order, under the protocol of the module docs.
pub fn commit_set(dir: &Path, name: &str, staged: Vec<Staged>) -> io::Result<Vec<Written>> {
    let _lock = DirLock::exclusive(dir)?;
    recover_locked(dir)?;
    let mut renames = Vec::with_capacity(staged.len());
    for s in &staged {
        let from = file_name(s.tmp.path())?;
        let to = file_name(&s.written.path)?;
        renames.push([from, to]);
    }
    kill_point(0);
    let journal = dir.join(journal_name(name));
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!("{}.", journal_name(name)))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    let text = serde_json::json!({ "kiln-commit": 1, "renames": renames }).to_string();
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(&journal).map_err(|e| e.error)?;
    sync_dir(dir);
    kill_point(1);
    let mut out = Vec::with_capacity(staged.len());
    for (i, s) in staged.into_iter().enumerate() {
        let written = s.written;
        s.tmp.persist(&written.path).map_err(|e| {
            io::Error::new(
                e.error.kind(),
                format!(
                    "committing {}: {} (the next build into {} completes the commit)",
                    written.path.display(),
                    e.error,
                    dir.display()
                ),
            )
        })?;
        out.push(written);
        kill_point(2 + i);
    }
    sync_dir(dir);
    fs::remove_file(&journal)?;
    sync_dir(dir);
    Ok(out)
}

fn file_name(p: &Path) -> io::Result<String> {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| io::Error::other(format!("{}: not a UTF-8 file name", p.display())))
}

fn kill_point(step: usize) {
    let hit = std::env::var(KILL_STEP_ENV).is_ok_and(|v| v.trim().parse() == Ok(step));
    if hit {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

/// Completes every interrupted commit in `dir` and removes the temp files
/// no live process owns (see the module docs).
pub fn recover(dir: &Path) -> io::Result<()> {
    let _lock = DirLock::exclusive(dir)?;
    recover_locked(dir)
}

/// [`recover`], if the set whose sums file is `sums` has an interrupted
/// commit (for `kiln verify`: it then sees the set as the killed build
/// committed it). Does nothing otherwise.
pub fn recover_beside(sums: &Path) -> io::Result<()> {
    let (Some(dir), Some(stem)) = (
        sums.parent(),
        sums.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".sha256")),
    ) else {
        return Ok(());
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if dir.join(journal_name(stem)).exists() {
        recover(dir)?;
    }
    Ok(())
}

fn recover_locked(dir: &Path) -> io::Result<()> {
    let names = || -> io::Result<Vec<String>> {
        let mut v = Vec::new();
        for e in fs::read_dir(dir)? {
            if let Some(n) = e?.file_name().to_str() {
                v.push(n.to_owned());
            }
        }
        Ok(v)
    };
    for n in names()? {
        if n.starts_with('.') && n.ends_with(JOURNAL_SUFFIX) {
            roll_forward(dir, &n)?;
        }
    }
    for n in names()? {
        if is_temp_name(&n) {
            sweep(&dir.join(n));
        }
    }
    Ok(())
}

/// `.X.XXXXXX.tmp`, as [`super::AtomicFile`] and the journal name them.
fn is_temp_name(n: &str) -> bool {
    let Some(stem) = n.strip_suffix(".tmp") else {
        return false;
    };
    let Some((head, random)) = stem.rsplit_once('.') else {
        return false;
    };
    n.starts_with('.')
        && head.len() > 1
        && random.len() == 6
        && random.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A plain name of this directory: one component, not `.`/`..`.
fn plain(n: &str) -> bool {
    !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '\0'])
}

fn roll_forward(dir: &Path, journal: &str) -> io::Result<()> {
    let path = dir.join(journal);
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: {what}; it is the journal of a killed kiln commit: remove it and build again",
                path.display()
            ),
        )
    };
    let mut text = Vec::new();
    crate::hostfile::open_regular(&path)?
        .take(MAX_JOURNAL + 1)
        .read_to_end(&mut text)?;
    if text.len() as u64 > MAX_JOURNAL {
        return Err(bad("too large"));
    }
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|_| bad("not valid JSON"))?;
    let mut renames = Vec::new();
    for r in value["renames"]
        .as_array()
        .ok_or_else(|| bad("no renames"))?
    {
        match (r[0].as_str(), r[1].as_str()) {
            (Some(from), Some(to)) if is_temp_name(from) && plain(to) && !is_temp_name(to) => {
                renames.push((from.to_owned(), to.to_owned()))
            }
            _ => return Err(bad("a rename that is not `temp file → name`")),
        }
    }
    for (from, to) in renames {
        match fs::rename(dir.join(&from), dir.join(&to)) {
            Ok(()) => {}
            // Renamed before the kill.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    sync_dir(dir);
    fs::remove_file(&path)?;
    sync_dir(dir);
    Ok(())
}

/// Removes the temp file at `path` if no process holds its lock. Best
/// effort: anything odd leaves it in place.
fn sweep(path: &Path) {
    let Ok(f) = fs::OpenOptions::new()
        .read(true)
        .custom_flags(
            rustix::fs::OFlags::NOFOLLOW.bits() as i32 | rustix::fs::OFlags::NONBLOCK.bits() as i32,
        )
        .open(path)
    else {
        return;
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return;
    }
    if f.try_lock().is_ok() {
        let _ = fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::super::AtomicFile;
    use super::*;

    fn stage(dir: &Path, name: &str, bytes: &[u8]) -> Staged {
        let mut f = AtomicFile::create(dir, name).unwrap();
        f.write_all(bytes).unwrap();
        f.finish().unwrap()
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_set_is_committed_and_leaves_no_journal() {
        let dir = tempfile::tempdir().unwrap();
        let set = vec![
            stage(dir.path(), "x-a", b"a"),
            stage(dir.path(), "x.sha256", b"s"),
        ];
        let w = commit_set(dir.path(), "x", set).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(listing(dir.path()), ["x-a", "x.sha256"]);
    }

    #[test]
    fn a_journal_rolls_forward_and_dead_temps_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("x-a"), b"old a").unwrap();
        fs::write(d.join("x-b"), b"old b").unwrap();
        // What a build killed after its first rename leaves: x-a renamed,
        // x-b still a temp file, the journal naming both.
        fs::write(d.join(".x-b.AAAAAA.tmp"), b"new b").unwrap();
        fs::write(d.join("x-a"), b"new a").unwrap();
        fs::write(
            d.join(".x.kiln-commit"),
            r#"{"kiln-commit":1,"renames":[[".x-a.BBBBBB.tmp","x-a"],[".x-b.AAAAAA.tmp","x-b"]]}"#,
        )
        .unwrap();
        // A temp file of a killed build of another name, and one of a live writer.
        fs::write(d.join(".y-a.CCCCCC.tmp"), b"dead").unwrap();
        let live = AtomicFile::create(d, "z").unwrap();
        // A user's own hidden file that merely looks similar.
        fs::write(d.join(".notes.tmp"), b"mine").unwrap();
        recover(d).unwrap();
        assert_eq!(fs::read(d.join("x-a")).unwrap(), b"new a");
        assert_eq!(fs::read(d.join("x-b")).unwrap(), b"new b");
        let left = listing(d);
        assert_eq!(left.len(), 4, "{left:?}");
        assert!(left.iter().any(|n| n.starts_with(".z.")), "{left:?}");
        assert!(left.contains(&".notes.tmp".to_string()));
        drop(live);
    }

    #[test]
    fn a_hostile_journal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for body in [
            r#"{"renames":[[".a.AAAAAA.tmp","../escape"]]}"#,
            r#"{"renames":[["x-a","y"]]}"#,
            "not json",
        ] {
            fs::write(d.join(".x.kiln-commit"), body).unwrap();
            let e = recover(d).unwrap_err().to_string();
            assert!(e.contains(".x.kiln-commit"), "{e}");
        }
    }

    #[test]
    fn temp_names() {
        assert!(is_temp_name(".x-initrd.img.a1B2c3.tmp"));
        assert!(!is_temp_name(".x.tmp"));
        assert!(!is_temp_name("x.a1B2c3.tmp"));
        assert!(!is_temp_name("..a1B2c3.tmp"));
    }
}
