//! A byte-level tar writer for layer fixtures, hostile ones included.
//!
//! [`LayerBuilder`] writes ustar headers by hand, so a test can produce
//! exactly the entry it wants: any path (`../x`, `/abs`), whiteouts, device
//! nodes, owners, mtimes, xattrs (PAX `SCHILY.xattr.*`), long names (PAX or
//! GNU `L`/`K`), raw bytes, and a header claiming more data than follows.
//! Modifiers (`owner`, `mtime`, `xattr`, …) apply to the entry added last.
//! Output depends only on the calls made.

use std::collections::BTreeMap;
use std::io::Write;

use kiln::oci::Compression;

/// The mtime entries get unless [`LayerBuilder::mtime`] says otherwise
/// (2001-09-09, so a lost mtime is visible as 0).
pub const DEFAULT_MTIME: u64 = 1_000_000_000;

/// How names and link targets longer than 100 bytes are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LongNames {
    /// PAX extended header records `path=` / `linkpath=`.
    Pax,
    /// GNU `././@LongLink` entries of type `L` / `K`.
    Gnu,
}

#[derive(Clone, Debug)]
enum Item {
    Entry(TarEntry),
    Raw(Vec<u8>),
}

#[derive(Clone, Debug)]
struct TarEntry {
    path: String,
    typeflag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    uname: String,
    gname: String,
    mtime: u64,
    link: String,
    dev: (u32, u32),
    data: Vec<u8>,
    /// PAX records (xattrs and anything else), sorted by key.
    pax: BTreeMap<String, Vec<u8>>,
    /// Header size when it lies about the data that follows; the archive
    /// ends right after this entry's (short) data.
    claimed_size: Option<u64>,
}

/// Builds a tar archive entry by entry.
#[derive(Clone, Debug)]
pub struct LayerBuilder {
    items: Vec<Item>,
    long_names: LongNames,
    end_blocks: bool,
}

impl Default for LayerBuilder {
    fn default() -> LayerBuilder {
        LayerBuilder::new()
    }
}

impl LayerBuilder {
    pub fn new() -> LayerBuilder {
        LayerBuilder {
            items: Vec::new(),
            long_names: LongNames::Pax,
            end_blocks: true,
        }
    }

    fn push(mut self, path: &str, typeflag: u8, mode: u32, data: Vec<u8>, link: &str) -> Self {
        self.items.push(Item::Entry(TarEntry {
            path: path.to_string(),
            typeflag,
            mode,
            uid: 0,
            gid: 0,
            uname: String::new(),
            gname: String::new(),
            mtime: DEFAULT_MTIME,
            link: link.to_string(),
            dev: (0, 0),
            data,
            pax: BTreeMap::new(),
            claimed_size: None,
        }));
        self
    }

    fn last(&mut self) -> &mut TarEntry {
        match self.items.last_mut() {
            Some(Item::Entry(e)) => e,
            _ => panic!("LayerBuilder: modifier with no entry before it"),
        }
    }

    /// A regular file; `path` is written exactly as given.
    pub fn file(self, path: &str, bytes: impl AsRef<[u8]>, mode: u32) -> Self {
        self.push(path, b'0', mode, bytes.as_ref().to_vec(), "")
    }

    /// A directory (tar convention: give it a trailing `/` if you want one).
    pub fn dir(self, path: &str, mode: u32) -> Self {
        self.push(path, b'5', mode, Vec::new(), "")
    }

    pub fn symlink(self, path: &str, target: &str) -> Self {
        self.push(path, b'2', 0o777, Vec::new(), target)
    }

    /// A hard link to `target` (a path in the archive).
    pub fn hardlink(self, path: &str, target: &str) -> Self {
        self.push(path, b'1', 0o644, Vec::new(), target)
    }

    /// An AUFS/OCI whiteout deleting `path` from lower layers.
    pub fn whiteout(self, path: &str) -> Self {
        let (dir, name) = match path.trim_end_matches('/').rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), path.trim_end_matches('/')),
        };
        self.push(&format!("{dir}.wh.{name}"), b'0', 0o644, Vec::new(), "")
    }

    /// An opaque-directory marker: `dir`'s lower-layer contents are hidden.
    pub fn opaque(self, dir: &str) -> Self {
        let dir = dir.trim_end_matches('/');
        let path = if dir.is_empty() {
            ".wh..wh..opq".to_string()
        } else {
            format!("{dir}/.wh..wh..opq")
        };
        self.push(&path, b'0', 0o644, Vec::new(), "")
    }

    pub fn char_dev(self, path: &str, major: u32, minor: u32, mode: u32) -> Self {
        let mut s = self.push(path, b'3', mode, Vec::new(), "");
        s.last().dev = (major, minor);
        s
    }

    pub fn block_dev(self, path: &str, major: u32, minor: u32, mode: u32) -> Self {
        let mut s = self.push(path, b'4', mode, Vec::new(), "");
        s.last().dev = (major, minor);
        s
    }

    pub fn fifo(self, path: &str, mode: u32) -> Self {
        self.push(path, b'6', mode, Vec::new(), "")
    }

    /// An entry of any type flag (e.g. `b'7'`, or an invalid one).
    pub fn entry(self, path: &str, typeflag: u8, mode: u32, data: impl AsRef<[u8]>) -> Self {
        self.push(path, typeflag, mode, data.as_ref().to_vec(), "")
    }

    /// Sets the last entry's numeric owner.
    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        let e = self.last();
        e.uid = uid;
        e.gid = gid;
        self
    }

    /// Sets the last entry's user and group names.
    pub fn owner_names(mut self, uname: &str, gname: &str) -> Self {
        let e = self.last();
        e.uname = uname.to_string();
        e.gname = gname.to_string();
        self
    }

    /// Sets the last entry's mtime (seconds).
    pub fn mtime(mut self, t: u64) -> Self {
        self.last().mtime = t;
        self
    }

    /// Sets the last entry's mode bits (e.g. to add setuid).
    pub fn mode(mut self, mode: u32) -> Self {
        self.last().mode = mode;
        self
    }

    /// Adds an extended attribute to the last entry (PAX `SCHILY.xattr.`).
    pub fn xattr(mut self, key: &str, value: impl AsRef<[u8]>) -> Self {
        self.last()
            .pax
            .insert(format!("SCHILY.xattr.{key}"), value.as_ref().to_vec());
        self
    }

    /// Adds any PAX record to the last entry.
    pub fn pax(mut self, key: &str, value: impl AsRef<[u8]>) -> Self {
        self.last()
            .pax
            .insert(key.to_string(), value.as_ref().to_vec());
        self
    }

    /// Chooses how names over 100 bytes are encoded (default PAX).
    pub fn long_names(mut self, style: LongNames) -> Self {
        self.long_names = style;
        self
    }

    /// A file whose header claims `claimed` bytes but only `bytes` follow;
    /// the archive ends there, with no padding and no end blocks.
    pub fn truncated_file(self, path: &str, claimed: u64, bytes: impl AsRef<[u8]>) -> Self {
        let mut s = self.push(path, b'0', 0o644, bytes.as_ref().to_vec(), "");
        s.last().claimed_size = Some(claimed);
        s
    }

    /// Appends raw bytes (e.g. a hand-made header) as they are.
    pub fn raw(mut self, bytes: impl AsRef<[u8]>) -> Self {
        self.items.push(Item::Raw(bytes.as_ref().to_vec()));
        self
    }

    /// Leaves out the two zero blocks that end an archive.
    pub fn without_end(mut self) -> Self {
        self.end_blocks = false;
        self
    }

    /// The tar bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for item in &self.items {
            match item {
                Item::Raw(b) => out.extend_from_slice(b),
                Item::Entry(e) => {
                    if self.write_entry(&mut out, e) {
                        return out;
                    }
                }
            }
        }
        if self.end_blocks {
            out.extend_from_slice(&[0u8; 1024]);
        }
        out
    }

    /// The tar bytes compressed with `c`.
    pub fn build_compressed(&self, c: Compression) -> Vec<u8> {
        compress(&self.build(), c)
    }

    /// Writes one entry; true if the archive must end here (truncated entry).
    fn write_entry(&self, out: &mut Vec<u8>, e: &TarEntry) -> bool {
        let mut pax = e.pax.clone();
        let long_path = e.path.len() > 100;
        let long_link = e.link.len() > 100;
        match self.long_names {
            LongNames::Pax => {
                if long_path {
                    pax.insert("path".to_string(), e.path.as_bytes().to_vec());
                }
                if long_link {
                    pax.insert("linkpath".to_string(), e.link.as_bytes().to_vec());
                }
            }
            LongNames::Gnu => {
                if long_path {
                    gnu_long(out, b'L', &e.path);
                }
                if long_link {
                    gnu_long(out, b'K', &e.link);
                }
            }
        }
        if !pax.is_empty() {
            let mut body = Vec::new();
            for (k, v) in &pax {
                body.extend_from_slice(&pax_record(k, v));
            }
            let name = format!("PaxHeaders/{}", truncate(&e.path, 80));
            let h = header(
                &name,
                b'x',
                0o644,
                0,
                0,
                "",
                "",
                0,
                "",
                (0, 0),
                body.len() as u64,
            );
            out.extend_from_slice(&h);
            push_padded(out, &body);
        }
        let size = e.claimed_size.unwrap_or(e.data.len() as u64);
        let h = header(
            truncate(&e.path, 100),
            e.typeflag,
            e.mode,
            e.uid,
            e.gid,
            &e.uname,
            &e.gname,
            e.mtime,
            truncate(&e.link, 100),
            e.dev,
            size,
        );
        out.extend_from_slice(&h);
        if e.claimed_size.is_some() {
            out.extend_from_slice(&e.data);
            return true;
        }
        push_padded(out, &e.data);
        false
    }
}

fn truncate(s: &str, n: usize) -> &str {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn push_padded(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

fn gnu_long(out: &mut Vec<u8>, typeflag: u8, name: &str) {
    let mut data = name.as_bytes().to_vec();
    data.push(0);
    let h = header(
        "././@LongLink",
        typeflag,
        0o644,
        0,
        0,
        "",
        "",
        0,
        "",
        (0, 0),
        data.len() as u64,
    );
    out.extend_from_slice(&h);
    push_padded(out, &data);
}

/// `"<len> <key>=<value>\n"` where len counts the whole record.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while base + len.to_string().len() != len {
        len = base + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let s = format!("{value:0width$o}");
    let s = s.as_bytes();
    // Values too wide for the field keep their low digits (the field is
    // then wrong, which is what a hostile fixture may want).
    let start = s.len().saturating_sub(width);
    field[..width].copy_from_slice(&s[start..]);
    field[width] = 0;
}

fn put(field: &mut [u8], s: &str) {
    let n = s.len().min(field.len());
    field[..n].copy_from_slice(&s.as_bytes()[..n]);
}

#[allow(clippy::too_many_arguments)]
fn header(
    name: &str,
    typeflag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    uname: &str,
    gname: &str,
    mtime: u64,
    link: &str,
    dev: (u32, u32),
    size: u64,
) -> [u8; 512] {
    let mut h = [0u8; 512];
    put(&mut h[0..100], name);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], uid);
    octal(&mut h[116..124], gid);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = typeflag;
    put(&mut h[157..257], link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    put(&mut h[265..297], uname);
    put(&mut h[297..329], gname);
    octal(&mut h[329..337], u64::from(dev.0));
    octal(&mut h[337..345], u64::from(dev.1));
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let ck = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(ck.as_bytes());
    h
}

/// Compresses `bytes` (gzip with no name and mtime 0, or zstd level 3).
pub fn compress(bytes: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::None => bytes.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::new(6));
            e.write_all(bytes).expect("gzip");
            e.finish().expect("gzip")
        }
        Compression::Zstd => zstd::stream::encode_all(bytes, 3).expect("zstd"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `tar` crate reads what we write, long names and xattrs included.
    #[test]
    fn layer_builder_output_reads_back_with_tar_crate() {
        let long = format!("d/{}", "n".repeat(150));
        for style in [LongNames::Pax, LongNames::Gnu] {
            let bytes = LayerBuilder::new()
                .long_names(style)
                .dir("d/", 0o755)
                .file("d/f", b"hello", 0o644)
                .owner(1, 2)
                .mtime(7)
                .xattr("user.k", b"v")
                .file(&long, b"x", 0o600)
                .symlink("d/s", &long)
                .char_dev("d/null", 1, 3, 0o666)
                .whiteout("d/gone")
                .opaque("d")
                .build();
            let mut ar = tar::Archive::new(bytes.as_slice());
            let mut seen = Vec::new();
            for e in ar.entries().expect("entries") {
                let mut e = e.expect("entry");
                let path = e.path().expect("path").to_string_lossy().into_owned();
                if path == "d/f" {
                    assert_eq!(e.header().uid().ok(), Some(1));
                    assert_eq!(e.header().mtime().ok(), Some(7));
                    let x: Vec<_> = e
                        .pax_extensions()
                        .expect("pax")
                        .expect("has pax")
                        .map(|r| r.expect("record").key().expect("key").to_string())
                        .collect();
                    assert_eq!(x, ["SCHILY.xattr.user.k"]);
                }
                if path == "d/s" {
                    let target = e.link_name().expect("link").expect("some");
                    assert_eq!(target.to_string_lossy(), long);
                }
                seen.push(path);
            }
            assert_eq!(
                seen,
                [
                    "d/",
                    "d/f",
                    long.as_str(),
                    "d/s",
                    "d/null",
                    "d/.wh.gone",
                    "d/.wh..wh..opq"
                ]
            );
        }
    }

    /// Hostile entries come out verbatim: the tar crate sees the raw paths
    /// and fails on the short entry.
    #[test]
    fn layer_builder_writes_hostile_entries_verbatim() {
        let bytes = LayerBuilder::new()
            .file("../x", b"up", 0o644)
            .file("/abs", b"root", 0o644)
            .truncated_file("short", 4096, b"only this")
            .build();
        let mut ar = tar::Archive::new(bytes.as_slice());
        let mut paths = Vec::new();
        let mut failed = false;
        for e in ar.entries().expect("entries") {
            match e {
                Ok(mut e) => {
                    paths.push(e.path_bytes().into_owned());
                    if std::io::copy(&mut e, &mut std::io::sink()).is_err() {
                        failed = true;
                    }
                }
                Err(_) => failed = true,
            }
        }
        assert_eq!(paths[..2], [b"../x".to_vec(), b"/abs".to_vec()]);
        assert!(
            failed,
            "a header claiming 4096 bytes with 9 present must fail"
        );
        assert_eq!(bytes.len(), 4 * 512 + 512 + 9);
    }
}
