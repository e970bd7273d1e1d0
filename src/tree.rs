//! The in-memory filesystem every stage hands to the next.
//!
//! A [`Tree`] is a map from normalised path (bytes, no leading `/`, no `.`
//! or `..` components, no trailing `/`) to [`Entry`]. It is sorted by path
//! bytes, so iterating it is the on-disk order of every writer. File
//! contents live in a [`ContentStore`] (an unnamed temporary file, so large
//! images are never held in memory twice) and entries only reference them.
//!
//! The tree never touches the host filesystem by path: device nodes, root
//! ownership and setuid bits exist only here, which is why building needs no
//! privileges and a hostile layer cannot escape the image root.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// What an entry is, with the data that kind carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    File(Content),
    Dir,
    Symlink(Vec<u8>),
    /// A hard link to another path of the same tree (normalised).
    Hardlink(Vec<u8>),
    Char {
        major: u32,
        minor: u32,
    },
    Block {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// One filesystem entry: its kind and metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (no file type bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes by full name (e.g. `security.capability`).
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Entry {
    pub fn dir(mode: u32, mtime: i64) -> Entry {
        Entry::new(Kind::Dir, mode, mtime)
    }

    pub fn file(content: Content, mode: u32, mtime: i64) -> Entry {
        Entry::new(Kind::File(content), mode, mtime)
    }

    pub fn symlink(target: impl Into<Vec<u8>>, mtime: i64) -> Entry {
        Entry::new(Kind::Symlink(target.into()), 0o777, mtime)
    }

    /// An entry owned by root with no xattrs.
    pub fn new(kind: Kind, mode: u32, mtime: i64) -> Entry {
        Entry {
            kind,
            mode: mode & 0o7777,
            uid: 0,
            gid: 0,
            mtime,
            xattrs: BTreeMap::new(),
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir)
    }

    /// The `st_mode` file-type bits of this entry (`S_IFREG`, `S_IFDIR`, …).
    /// A hard link reports `S_IFREG`; writers resolve links themselves.
    pub fn file_type_bits(&self) -> u32 {
        match self.kind {
            Kind::File(_) | Kind::Hardlink(_) => 0o100000,
            Kind::Dir => 0o040000,
            Kind::Symlink(_) => 0o120000,
            Kind::Char { .. } => 0o020000,
            Kind::Block { .. } => 0o060000,
            Kind::Fifo => 0o010000,
        }
    }
}

/// A reference to file bytes held in a [`ContentStore`].
#[derive(Clone, PartialEq, Eq)]
pub struct Content {
    offset: u64,
    len: u64,
    sha256: [u8; 32],
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Content({} bytes, sha256:{})",
            self.len,
            hex::encode(self.sha256)
        )
    }
}

impl Content {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }
}

/// Append-only storage for file contents, backed by an unnamed temp file.
///
/// Cloning gives another handle to the same store. Identical contents are
/// stored once (keyed by sha256).
#[derive(Clone)]
pub struct ContentStore {
    inner: Arc<Mutex<StoreInner>>,
    /// A second descriptor of the same file for positional reads (and the
    /// positional writes of [`ContentStore::add_sized`]): readers never take
    /// the lock, so a reader may feed [`ContentStore::add_reader`] of the
    /// same store (unpacking `kernel.tar` out of the kernel image's tree)
    /// without deadlocking, and never move the writers' offset.
    reads: Arc<File>,
}

/// Reads one [`Content`] out of a [`ContentStore`]; see
/// [`ContentStore::reader`].
pub struct ContentReader {
    store: ContentStore,
    pos: u64,
    end: u64,
}

impl Read for ContentReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.store.reads.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "content store file ended early",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

struct StoreInner {
    file: File,
    len: u64,
    by_hash: BTreeMap<[u8; 32], (u64, u64)>,
}

impl ContentStore {
    /// A new, empty store in the system temp directory.
    pub fn new() -> io::Result<ContentStore> {
        let file = tempfile::tempfile()?;
        let reads = Arc::new(file.try_clone()?);
        Ok(ContentStore {
            reads,
            inner: Arc::new(Mutex::new(StoreInner {
                file,
                len: 0,
                by_hash: BTreeMap::new(),
            })),
        })
    }

    /// Store `bytes`, returning a reference to them.
    pub fn add(&self, bytes: &[u8]) -> io::Result<Content> {
        self.add_reader(&mut &bytes[..], None)
    }

    /// Stream `reader` into the store. If `limit` is set and the reader
    /// yields more than that many bytes, fails with `InvalidData`.
    pub fn add_reader(&self, reader: &mut dyn Read, limit: Option<u64>) -> io::Result<Content> {
        // One buffer per thread: allocating and zeroing it per file costs as
        // much as the copy for small files.
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; CHUNK]);
        }
        BUF.with_borrow_mut(|buf| {
            let mut hasher = Sha256::new();
            // The first chunk is read without holding the lock, so threads
            // unpacking different images decompress in parallel; most files
            // fit in it and take the lock only to append.
            let first = read_chunk(reader, buf, 0, limit)?;
            hasher.update(&buf[..first]);
            if first < buf.len() {
                let sha256: [u8; 32] = hasher.finalize().into();
                let mut inner = self.inner.lock().expect("content store poisoned");
                if let Some(c) = inner.stored(sha256) {
                    return Ok(c);
                }
                let start = inner.len;
                inner.file.seek(SeekFrom::Start(start))?;
                inner.file.write_all(&buf[..first])?;
                return Ok(inner.commit(start, first as u64, sha256));
            }
            // A large file: stream it in under the lock, so it is contiguous.
            let mut inner = self.inner.lock().expect("content store poisoned");
            let start = inner.len;
            inner.file.seek(SeekFrom::Start(start))?;
            inner.file.write_all(&buf[..first])?;
            let mut total = first as u64;
            loop {
                let n = read_chunk(reader, buf, total, limit)?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                hasher.update(&buf[..n]);
                inner.file.write_all(&buf[..n])?;
            }
            let sha256: [u8; 32] = hasher.finalize().into();
            if let Some(c) = inner.stored(sha256) {
                // Already stored: forget the copy just written.
                inner.file.set_len(start)?;
                return Ok(c);
            }
            Ok(inner.commit(start, total, sha256))
        })
    }

    /// Stream `reader`, which says it holds `size` bytes, into a region of
    /// that size reserved up front, writing without holding the lock, so
    /// other writers go on while it streams (the kernel image's `kernel.tar`
    /// is stored while its modules are unpacked from the same bytes into
    /// this store). Fails with `InvalidData` past `size` bytes; a shorter
    /// stream gives a shorter content (the caller compares). A duplicate,
    /// or a failed stream, leaves its region unused: only the caller's one
    /// large file comes this way, so the temp file grows by at most its size.
    pub fn add_sized(&self, reader: &mut dyn Read, size: u64) -> io::Result<Content> {
        let start = {
            let mut inner = self.inner.lock().expect("content store poisoned");
            let start = inner.len;
            inner.len = start
                .checked_add(size)
                .ok_or_else(|| io::Error::other("content store offset overflows"))?;
            start
        };
        let mut buf = vec![0u8; CHUNK];
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        loop {
            let n = read_chunk(reader, &mut buf, total, Some(size))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            self.reads.write_all_at(&buf[..n], start + total)?;
            total += n as u64;
        }
        let sha256: [u8; 32] = hasher.finalize().into();
        let mut inner = self.inner.lock().expect("content store poisoned");
        if let Some(c) = inner.stored(sha256) {
            return Ok(c);
        }
        inner.by_hash.insert(sha256, (start, total));
        Ok(Content {
            offset: start,
            len: total,
            sha256,
        })
    }

    /// Read the whole content into memory (for small files such as configs).
    pub fn read(&self, content: &Content) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(content.len as usize);
        self.copy_to(content, &mut out)?;
        Ok(out)
    }

    /// A reader of the content, for streaming it into a writer that pulls
    /// (the ISO writer's chained sections); it reads through the store's
    /// file at its own position, so readers do not disturb each other.
    pub fn reader(&self, content: &Content) -> ContentReader {
        ContentReader {
            store: self.clone(),
            pos: content.offset,
            end: content.offset + content.len,
        }
    }

    /// Copy the content to `w` without holding it all in memory.
    pub fn copy_to(&self, content: &Content, w: &mut dyn Write) -> io::Result<()> {
        // Sized to the content: the cpio and tar writers copy thousands of
        // small files, and zeroing a large buffer for each cost more than
        // the copy.
        let mut buf = vec![0u8; (content.len as usize).clamp(1, 256 * 1024)];
        let mut pos = content.offset;
        let end = content.offset + content.len;
        while pos < end {
            let want = ((end - pos) as usize).min(buf.len());
            self.reads.read_exact_at(&mut buf[..want], pos)?;
            w.write_all(&buf[..want])?;
            pos += want as u64;
        }
        Ok(())
    }
}

const CHUNK: usize = 256 * 1024;

/// Fill `buf` from `reader` as far as it goes; fails with `InvalidData` if
/// `already + n` passes `limit`. Returns the number of bytes read (0 at EOF).
fn read_chunk(
    reader: &mut dyn Read,
    buf: &mut [u8],
    already: u64,
    limit: Option<u64>,
) -> io::Result<usize> {
    let n = fill(reader, buf)?;
    if let Some(limit) = limit {
        if already + n as u64 > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("content exceeds the limit of {limit} bytes"),
            ));
        }
    }
    Ok(n)
}

/// Fill `buf` from `reader` as far as it goes (short only at the end);
/// the number of bytes read.
pub(crate) fn fill(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl StoreInner {
    /// The content already stored under `sha256`, if any.
    fn stored(&self, sha256: [u8; 32]) -> Option<Content> {
        self.by_hash.get(&sha256).map(|&(offset, len)| Content {
            offset,
            len,
            sha256,
        })
    }

    fn commit(&mut self, start: u64, len: u64, sha256: [u8; 32]) -> Content {
        self.len = start + len;
        self.by_hash.insert(sha256, (start, len));
        Content {
            offset: start,
            len,
            sha256,
        }
    }
}

/// A sorted filesystem tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    entries: BTreeMap<Vec<u8>, Entry>,
}

/// Normalise a path from an untrusted source into a tree key.
///
/// Leading `/`, `.` components and empty components are dropped; `..`
/// pops a component but never goes above the root. Returns the key and
/// whether anything had to be changed beyond dropping a leading `./` or `/`
/// and a trailing `/` (callers warn about such paths).
pub fn normalize(path: &[u8]) -> (Vec<u8>, bool) {
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut suspicious = false;
    for comp in path.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                suspicious = true;
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if path.starts_with(b"/") && !path.starts_with(b"./") {
        suspicious = true;
    }
    (parts.join(&b'/'), suspicious)
}

/// The parent of a tree key, or `None` for a top-level entry.
pub fn parent(path: &[u8]) -> Option<&[u8]> {
    path.iter().rposition(|&b| b == b'/').map(|i| &path[..i])
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, path: &[u8]) -> Option<&Entry> {
        self.entries.get(path)
    }

    pub fn get_mut(&mut self, path: &[u8]) -> Option<&mut Entry> {
        self.entries.get_mut(path)
    }

    /// Insert or replace an entry. The path must already be normalised.
    /// Missing parent directories are NOT created; see [`Tree::insert_with_parents`].
    pub fn insert(&mut self, path: Vec<u8>, entry: Entry) -> Option<Entry> {
        debug_assert!(!path.starts_with(b"/") && !path.ends_with(b"/"));
        self.entries.insert(path, entry)
    }

    /// Insert, creating missing parents as directories with `dir_mode`,
    /// root-owned, at `mtime`. An existing non-directory parent is replaced
    /// by a directory (as a later layer would).
    pub fn insert_with_parents(&mut self, path: Vec<u8>, entry: Entry, dir_mode: u32, mtime: i64) {
        self.mkdir_parents(&path, dir_mode, mtime);
        self.insert(path, entry);
    }

    /// Create every missing ancestor of `path` as a directory.
    pub fn mkdir_parents(&mut self, path: &[u8], dir_mode: u32, mtime: i64) {
        let mut end = 0;
        while let Some(i) = path[end..].iter().position(|&b| b == b'/') {
            let dir = &path[..end + i];
            match self.entries.get(dir) {
                Some(e) if e.is_dir() => {}
                Some(_) => {
                    self.remove_subtree(dir);
                    self.entries
                        .insert(dir.to_vec(), Entry::dir(dir_mode, mtime));
                }
                None => {
                    self.entries
                        .insert(dir.to_vec(), Entry::dir(dir_mode, mtime));
                }
            }
            end += i + 1;
        }
    }

    /// Remove `path` and everything below it.
    pub fn remove_subtree(&mut self, path: &[u8]) {
        self.entries.remove(path);
        self.remove_children(path);
    }

    /// Remove everything below `path`, keeping `path` itself.
    pub fn remove_children(&mut self, path: &[u8]) {
        let mut prefix = path.to_vec();
        prefix.push(b'/');
        let doomed: Vec<Vec<u8>> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.entries.remove(&k);
        }
    }

    /// Entries in path-byte order.
    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Entry)> {
        self.entries.iter()
    }

    /// Entries strictly below `path` (all depths), in order.
    pub fn children_of<'a>(
        &'a self,
        path: &[u8],
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a Entry)> + 'a {
        let mut prefix = path.to_vec();
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        let p2 = prefix.clone();
        self.entries
            .range(prefix..)
            .take_while(move |(k, _)| k.starts_with(&p2))
    }

    /// Graft `other` under `prefix` (normalised, may be empty for the root),
    /// replacing entries at the same paths. Hard-link targets are re-rooted.
    pub fn graft(&mut self, prefix: &[u8], other: Tree) {
        for (path, mut entry) in other.entries {
            if let Kind::Hardlink(target) = &mut entry.kind {
                *target = join(prefix, target);
            }
            self.entries.insert(join(prefix, &path), entry);
        }
    }
}

/// Join a (possibly empty) normalised prefix and a normalised path.
pub fn join(prefix: &[u8], path: &[u8]) -> Vec<u8> {
    if prefix.is_empty() {
        return path.to_vec();
    }
    if path.is_empty() {
        return prefix.to_vec();
    }
    let mut out = Vec::with_capacity(prefix.len() + 1 + path.len());
    out.extend_from_slice(prefix);
    out.push(b'/');
    out.extend_from_slice(path);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_stream_contents_independently() {
        let store = ContentStore::new().unwrap();
        let a = store.add(&[1u8; 5000]).unwrap();
        let b = store.add(b"second").unwrap();
        let (mut ra, mut rb) = (store.reader(&a), store.reader(&b));
        let mut head = [0u8; 10];
        ra.read_exact(&mut head).unwrap();
        let mut all_b = Vec::new();
        rb.read_to_end(&mut all_b).unwrap();
        let mut rest = Vec::new();
        ra.read_to_end(&mut rest).unwrap();
        assert_eq!((head, all_b.as_slice()), ([1u8; 10], &b"second"[..]));
        assert_eq!(rest, vec![1u8; 4990]);
    }

    #[test]
    fn sized_adds_let_other_writers_go_on_while_they_stream() {
        let store = ContentStore::new().unwrap();
        let big: Vec<u8> = (0..CHUNK * 3 + 5).map(|i| (i % 253) as u8).collect();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(0);
        // The sized add streams from a channel that is fed only after
        // another content was added: with the lock held while streaming,
        // this would deadlock.
        let (sized, other) = std::thread::scope(|s| {
            let sized = s.spawn(|| {
                let mut r = ChannelReader {
                    rx,
                    buf: Vec::new(),
                };
                store.add_sized(&mut r, big.len() as u64).unwrap()
            });
            let other = store.add(&vec![9u8; CHUNK * 2]).unwrap();
            for piece in big.chunks(CHUNK / 2) {
                tx.send(piece.to_vec()).unwrap();
            }
            drop(tx);
            (sized.join().unwrap(), other)
        });
        assert_eq!(store.read(&sized).unwrap(), big);
        assert_eq!(store.read(&other).unwrap(), vec![9u8; CHUNK * 2]);
        assert_eq!(store.add(&big).unwrap(), sized, "deduplicated");
        assert_eq!(
            store.add_sized(&mut &big[..], big.len() as u64).unwrap(),
            sized
        );
        let short = store.add_sized(&mut &b"abc"[..], 10).unwrap();
        assert_eq!(
            (short.len(), store.read(&short).unwrap()),
            (3, b"abc".to_vec())
        );
        let err = store.add_sized(&mut &big[..], 100).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(store.read(&store.add(b"later").unwrap()).unwrap(), b"later");
    }

    /// Reads what a channel sends, in the pieces it sends.
    struct ChannelReader {
        rx: std::sync::mpsc::Receiver<Vec<u8>>,
        buf: Vec<u8>,
    }

    impl Read for ChannelReader {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.buf.is_empty() {
                match self.rx.recv() {
                    Ok(piece) => self.buf = piece,
                    Err(_) => return Ok(0),
                }
            }
            let n = out.len().min(self.buf.len());
            out[..n].copy_from_slice(&self.buf[..n]);
            self.buf.drain(..n);
            Ok(n)
        }
    }

    #[test]
    fn normalize_keeps_paths_inside_the_root() {
        assert_eq!(normalize(b"./a/b/"), (b"a/b".to_vec(), false));
        assert_eq!(normalize(b"/etc/passwd"), (b"etc/passwd".to_vec(), true));
        assert_eq!(
            normalize(b"../../etc/shadow"),
            (b"etc/shadow".to_vec(), true)
        );
        assert_eq!(normalize(b"a/../../b"), (b"b".to_vec(), true));
        assert_eq!(normalize(b"a//./c"), (b"a/c".to_vec(), false));
    }

    #[test]
    fn store_dedups_and_round_trips() {
        let store = ContentStore::new().unwrap();
        let a = store.add(b"hello").unwrap();
        let b = store.add(b"world!").unwrap();
        let c = store.add(b"hello").unwrap();
        assert_eq!(a, c);
        assert_ne!(a, b);
        assert_eq!(store.read(&a).unwrap(), b"hello");
        assert_eq!(store.read(&b).unwrap(), b"world!");
    }

    #[test]
    fn store_round_trips_large_contents_and_dedups_them() {
        let store = ContentStore::new().unwrap();
        let big: Vec<u8> = (0..CHUNK * 3 + 17).map(|i| (i % 251) as u8).collect();
        let exact = vec![7u8; CHUNK];
        let a = store.add(&big).unwrap();
        let e = store.add(&exact).unwrap();
        let small = store.add(b"after").unwrap();
        let again = store.add(&big).unwrap();
        assert_eq!(a, again);
        assert_eq!(store.read(&a).unwrap(), big);
        assert_eq!(store.read(&e).unwrap(), exact);
        assert_eq!(store.read(&small).unwrap(), b"after");
        let err = store
            .add_reader(&mut &big[..], Some(CHUNK as u64 + 1))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // A failed add leaves the store usable.
        assert_eq!(store.read(&store.add(b"later").unwrap()).unwrap(), b"later");
    }

    #[test]
    fn store_enforces_limit() {
        let store = ContentStore::new().unwrap();
        let err = store
            .add_reader(&mut &[0u8; 100][..], Some(99))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn parents_and_subtrees() {
        let mut t = Tree::new();
        t.insert_with_parents(b"a/b/c".to_vec(), Entry::dir(0o755, 0), 0o755, 0);
        assert!(t.get(b"a").unwrap().is_dir());
        assert!(t.get(b"a/b").unwrap().is_dir());
        t.insert(b"ab".to_vec(), Entry::dir(0o755, 0));
        t.remove_subtree(b"a");
        let keys: Vec<_> = t.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec![b"ab".to_vec()]);
    }
}
