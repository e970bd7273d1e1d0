//! `kiln inspect`: list what an output archive contains.
//!
//! It takes a path to a cpio (newc) or tar archive, uncompressed or
//! compressed with gzip, zstd or xz (detected by magic bytes, never by file
//! name), and gives one [`Listing`] per archive member, in archive order.
//! Like the Linux kernel's initramfs unpacker it reads a sequence of
//! segments: uncompressed cpio archives and compressed streams holding
//! cpio archives, separated by NUL padding, so an early-microcode cpio
//! prepended to a compressed initrd lists both. It streams: contents are
//! hashed as they are read, never held; names and link targets are
//! bounded. It never writes anything and never follows the listing into
//! the host filesystem.
//!
//! [`format_listing`] renders rows as text, one member per line:
//!
//! ```text
//! TYPEPERM UID GID SIZE SHA256 PATH[ -> SYMLINK-TARGET | => HARDLINK-TARGET]
//! -0755 0 0 12 5891b5b5…e1b5 bin/tool
//! d0755 0 0 0 - etc
//! h0755 0 0 12 5891b5b5…e1b5 bin/alias => bin/tool
//! l0777 0 0 7 - bin/sh -> busybox
//! c0600 0 0 5,1 - dev/console
//! ```
//!
//! TYPE is `-` file, `d` directory, `l` symlink, `h` hard link, `c`/`b`
//! character/block device, `p` fifo, `s` socket; PERM is four octal digits
//! (setuid/setgid/sticky included). SIZE is the content length (the link
//! target's length for a symlink, `MAJOR,MINOR` for a device). SHA256 is
//! the hex digest of the contents for files and hard links, `-` otherwise.
//! Within one cpio archive the first path of a hard-link group is shown as
//! the file and later ones as `h` rows naming it, whichever member carried
//! the data; tar hard links name their target as stored. Paths are shown as
//! stored, with bytes that are not printable UTF-8 and `\` written as
//! `\xNN`. A path stored twice is listed twice.

mod cpio;
mod input;
mod tar;

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use input::Input;

/// The type of an archive member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemberType {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
    Socket,
}

impl MemberType {
    /// The one-letter code used in [`format_listing`].
    pub fn letter(self) -> char {
        match self {
            MemberType::File => '-',
            MemberType::Dir => 'd',
            MemberType::Symlink => 'l',
            MemberType::Hardlink => 'h',
            MemberType::Char => 'c',
            MemberType::Block => 'b',
            MemberType::Fifo => 'p',
            MemberType::Socket => 's',
        }
    }
}

/// One archive member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    pub kind: MemberType,
    /// Permission bits, setuid/setgid/sticky included.
    pub perm: u32,
    pub uid: u64,
    pub gid: u64,
    /// Content length (symlink: target length; others 0).
    pub size: u64,
    /// Device numbers of `Char`/`Block` members.
    pub rdev: Option<(u32, u32)>,
    /// Digest of the contents of files and hard links.
    pub sha256: Option<[u8; 32]>,
    pub path: Vec<u8>,
    /// Symlink target, or the path a hard link names.
    pub target: Option<Vec<u8>>,
}

/// Why an archive could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: io::Error },
    #[error("{}: {what}", path.display())]
    Malformed { path: PathBuf, what: String },
}

/// An error while reading a stream, before the path is attached.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(io::Error),
    Bad(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> ReadError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ReadError::Bad("archive is truncated".to_string())
        } else {
            ReadError::Io(e)
        }
    }
}

/// The most a name or link target may take, as in the kernel (`PATH_MAX`).
pub(crate) const MAX_NAME: usize = 4096;

/// List the members of the archive at `path`.
pub fn inspect(path: &Path) -> Result<Vec<Listing>, InspectError> {
    // A FIFO or device is refused, not read (it could block forever).
    let file = crate::hostfile::open_regular(path).map_err(|err| InspectError::Io {
        path: path.to_path_buf(),
        err,
    })?;
    let mut input = Input::new(file);
    let mut rows = Vec::new();
    read_top(&mut input, &mut rows).map_err(|e| match e {
        ReadError::Io(err) => InspectError::Io {
            path: path.to_path_buf(),
            err,
        },
        ReadError::Bad(what) => InspectError::Malformed {
            path: path.to_path_buf(),
            what,
        },
    })?;
    Ok(rows)
}

/// A compression format recognised by its magic bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Magic {
    Gzip,
    Zstd,
    Xz,
}

fn compression_of(head: &[u8]) -> Option<Magic> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(Magic::Gzip)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Magic::Zstd)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some(Magic::Xz)
    } else {
        None
    }
}

fn is_cpio(head: &[u8]) -> bool {
    head.starts_with(b"070701") || head.starts_with(b"070702")
}

/// The most memory the xz decoder may use (a hostile header could ask
/// for far more); preset 9 needs 65 MiB.
const XZ_MEMLIMIT: u64 = 256 << 20;

/// A decoder reading exactly one compressed stream from `input`.
fn decoder<'a, R: io::Read>(
    magic: Magic,
    input: &'a mut Input<R>,
) -> Result<Input<Box<dyn io::Read + 'a>>, ReadError> {
    let d: Box<dyn io::Read + 'a> = match magic {
        Magic::Gzip => Box::new(flate2::bufread::GzDecoder::new(input)),
        Magic::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?.single_frame()),
        Magic::Xz => {
            let stream = liblzma::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, 0)
                .map_err(io::Error::other)?;
            Box::new(liblzma::bufread::XzDecoder::new_stream(input, stream))
        }
    };
    Ok(Input::new(d))
}

/// The whole file: a tar (maybe compressed) or a sequence of segments.
fn read_top<R: io::Read>(input: &mut Input<R>, rows: &mut Vec<Listing>) -> Result<(), ReadError> {
    let head = input.peek(512)?.to_vec();
    if let Some(magic) = compression_of(&head) {
        let mut inner = decoder(magic, input)?;
        let inner_head = inner.peek(512)?;
        if !is_cpio(inner_head) && tar::looks_like_tar(inner_head) {
            return tar::read_tar(&mut inner, rows);
        }
        segments(&mut inner, true, rows)?;
    } else if !is_cpio(&head) && tar::looks_like_tar(&head) {
        return tar::read_tar(input, rows);
    } else if !is_cpio(&head) {
        return Err(ReadError::Bad(
            "not a cpio or tar archive (uncompressed, gzip, zstd or xz)".to_string(),
        ));
    }
    segments(input, false, rows)
}

/// Read cpio archives and (unless `nested`) compressed streams of them,
/// skipping NUL padding between them, until the end of `input`.
fn segments<R: io::Read>(
    input: &mut Input<R>,
    nested: bool,
    rows: &mut Vec<Listing>,
) -> Result<(), ReadError> {
    loop {
        input.skip_zeros()?;
        let offset = input.offset();
        let head = input.peek(6)?;
        if head.is_empty() {
            return Ok(());
        }
        if is_cpio(head) {
            cpio::read_archive(input, rows)?;
            continue;
        }
        match compression_of(head) {
            Some(magic) if !nested => {
                let mut inner = decoder(magic, input)?;
                segments(&mut inner, true, rows)?;
            }
            _ => {
                let place = if nested { "in compressed data " } else { "" };
                return Err(ReadError::Bad(format!(
                    "unexpected bytes {place}at offset {offset}: not a cpio archive{}",
                    if nested { "" } else { " or compressed stream" }
                )));
            }
        }
    }
}

/// Render rows as text, one line each (format in the module docs).
/// The listing as JSON: one object per member, paths as (lossy) UTF-8.
pub fn listing_json(rows: &[Listing]) -> serde_json::Value {
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "type": r.kind.letter().to_string(),
                "mode": format!("{:04o}", r.perm & 0o7777),
                "uid": r.uid,
                "gid": r.gid,
                "size": r.size,
                "rdev": r.rdev.map(|(major, minor)| [major, minor]),
                "sha256": r.sha256.map(hex::encode),
                "path": String::from_utf8_lossy(&r.path),
                "target": r.target.as_ref().map(|t| String::from_utf8_lossy(t).into_owned()),
            })
        })
        .collect();
    serde_json::Value::Array(rows)
}

pub fn format_listing(rows: &[Listing]) -> String {
    let mut out = String::new();
    for r in rows {
        let size = match r.rdev {
            Some((major, minor)) => format!("{major},{minor}"),
            None => r.size.to_string(),
        };
        let sha = r.sha256.map(hex::encode).unwrap_or_else(|| "-".to_string());
        let _ = write!(
            out,
            "{}{:04o} {} {} {} {} {}",
            r.kind.letter(),
            r.perm & 0o7777,
            r.uid,
            r.gid,
            size,
            sha,
            escape(&r.path)
        );
        match (&r.target, r.kind) {
            (Some(t), MemberType::Hardlink) => {
                let _ = write!(out, " => {}", escape(t));
            }
            (Some(t), _) => {
                let _ = write!(out, " -> {}", escape(t));
            }
            (None, _) => {}
        }
        out.push('\n');
    }
    out
}

/// Printable UTF-8 as is; control bytes, invalid UTF-8 and `\` as `\xNN`.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' || c.is_control() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\x{b:02x}");
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::output::compress::{compress_bytes, Compression};
    use crate::output::{cpio::write_cpio, sample, tar::write_tar};
    use crate::tree::{ContentStore, Entry, Kind, Tree};

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn sample_archives() -> (Vec<u8>, Vec<u8>) {
        let store = ContentStore::new().unwrap();
        let tree = sample::tree(&store);
        let (mut c, mut t) = (Vec::new(), Vec::new());
        write_cpio(&tree, &store, &mut c).unwrap();
        write_tar(&tree, &store, &mut t).unwrap();
        (c, t)
    }

    fn listing(dir: &Path, name: &str, bytes: &[u8]) -> String {
        format_listing(&inspect(&write(dir, name, bytes)).unwrap())
    }

    #[test]
    fn listing_of_a_small_tree() {
        let store = ContentStore::new().unwrap();
        let mut t = Tree::new();
        let mut add = |p: &[u8], e: Entry| t.insert_with_parents(p.to_vec(), e, 0o755, 0);
        add(
            b"bin/busybox",
            Entry::file(store.add(b"busybox").unwrap(), 0o755, 0),
        );
        add(
            b"bin/ash",
            Entry::new(Kind::Hardlink(b"bin/busybox".to_vec()), 0o755, 0),
        );
        add(b"bin/sh", Entry::symlink("busybox", 0));
        add(
            b"dev/console",
            Entry::new(Kind::Char { major: 5, minor: 1 }, 0o600, 0),
        );
        let mut passwd = Entry::file(
            store.add(b"root:x:0:0:root:/root:/bin/sh\n").unwrap(),
            0o644,
            0,
        );
        passwd.gid = 42;
        add(b"etc/passwd", passwd);
        add(
            b"etc/odd \xff name",
            Entry::file(store.add(b"").unwrap(), 0o4750, 0),
        );
        add(b"run", Entry::dir(0o1777, 0));
        let mut c = Vec::new();
        write_cpio(&t, &store, &mut c).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let text = listing(dir.path(), "initrd.cpio", &c);
        insta::with_settings!({ snapshot_path => "inspect/snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!("small_tree", text);
        });
    }

    #[test]
    fn cpio_and_tar_of_one_tree_list_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let (c, t) = sample_archives();
        assert_eq!(
            listing(dir.path(), "a.cpio", &c),
            listing(dir.path(), "a.tar", &t)
        );
    }

    #[test]
    fn compression_is_detected_by_magic() {
        let dir = tempfile::tempdir().unwrap();
        let (c, t) = sample_archives();
        let plain = listing(dir.path(), "plain", &c);
        for comp in [Compression::Gzip, Compression::Zstd, Compression::Xz] {
            let z = compress_bytes(comp, &c, 1).unwrap();
            assert_eq!(listing(dir.path(), "cpio.z", &z), plain, "{comp} cpio");
            let z = compress_bytes(comp, &t, 1).unwrap();
            assert_eq!(listing(dir.path(), "tar.z", &z), plain, "{comp} tar");
        }
    }

    #[test]
    fn microcode_cpio_before_compressed_initrd_lists_both() {
        let store = ContentStore::new().unwrap();
        let mut ucode = Tree::new();
        let blob = store.add(b"microcode").unwrap();
        ucode.insert_with_parents(
            b"kernel/x86/microcode/GenuineIntel.bin".to_vec(),
            Entry::file(blob, 0o644, 0),
            0o755,
            0,
        );
        let mut bytes = Vec::new();
        write_cpio(&ucode, &store, &mut bytes).unwrap();
        // Padding between the parts, as tools align to 512 bytes.
        bytes.resize(bytes.len().next_multiple_of(512), 0);
        let (c, _) = sample_archives();
        let mut z = compress_bytes(Compression::Gzip, &c, 2).unwrap();
        // A second archive inside the same compressed stream, and a second stream.
        let dir = tempfile::tempdir().unwrap();
        let both = [c.clone(), vec![0; 8], c.clone()].concat();
        let z2 = compress_bytes(Compression::Xz, &both, 1).unwrap();
        bytes.append(&mut z);
        bytes.extend_from_slice(&z2);
        let rows = inspect(&write(dir.path(), "initrd", &bytes)).unwrap();
        let one = inspect(&write(dir.path(), "one", &c)).unwrap();
        assert_eq!(rows.len(), 4 + 3 * one.len());
        assert_eq!(rows[3].path, b"kernel/x86/microcode/GenuineIntel.bin");
        assert_eq!(rows[4..4 + one.len()], one[..]);
        assert_eq!(rows[4 + 2 * one.len()..], one[..]);
    }

    #[test]
    fn junk_and_truncation_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = sample_archives();
        let junk = write(dir.path(), "junk.img", b"MZ this is not an archive");
        let err = inspect(&junk).unwrap_err().to_string();
        assert!(err.contains("junk.img: not a cpio or tar archive"), "{err}");

        let cut = write(dir.path(), "cut.cpio", &c[..c.len() / 2]);
        let err = inspect(&cut).unwrap_err().to_string();
        assert!(err.ends_with("cut.cpio: archive is truncated"), "{err}");

        let mut trailing = c.clone();
        trailing.extend_from_slice(b"garbage!");
        let err = inspect(&write(dir.path(), "t.cpio", &trailing))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("unexpected bytes at offset {}", c.len())),
            "{err}"
        );

        let mut bad = c.clone();
        bad[10] = b'g';
        let err = inspect(&write(dir.path(), "bad.cpio", &bad))
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("bad.cpio: bad cpio header at offset 0"),
            "{err}"
        );

        let missing = inspect(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(missing, InspectError::Io { .. }));
    }

    #[test]
    fn oversized_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Vec::new();
        write!(h, "070701{:08X}{:08X}", 1, 0o100644).unwrap();
        for _ in 0..9 {
            h.extend_from_slice(b"00000000");
        }
        write!(h, "{:08X}00000000", 0x7fff_ffff).unwrap();
        let err = inspect(&write(dir.path(), "huge", &h))
            .unwrap_err()
            .to_string();
        assert!(err.contains("name size 2147483647 out of range"), "{err}");
    }

    #[test]
    fn paths_are_escaped() {
        assert_eq!(escape(b"caf\xc3\xa9/a b"), "café/a b");
        assert_eq!(escape(b"new\nline\\\xff"), "new\\x0aline\\x5c\\xff");
    }
}
