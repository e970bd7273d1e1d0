//! Test support for `unpack`: a tiny tar writer that puts any bytes in
//! any header field (so tests can build hostile and broken layers), and a
//! one-line-per-entry listing of an unpacked tree.

use std::io;

use super::pax::record;
use super::*;
use crate::tree::Kind;

/// A hand-made tar stream.
#[derive(Default)]
pub(crate) struct Tar {
    buf: Vec<u8>,
}

/// Metadata for one member.
#[derive(Clone, Copy)]
pub(crate) struct Meta {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

pub(crate) const META: Meta = Meta {
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtime: 1_600_000_000,
};

impl Tar {
    pub fn new() -> Tar {
        Tar::default()
    }

    /// One member; `path` and `link` must fit their ustar fields.
    pub fn member(
        &mut self,
        ty: u8,
        path: &[u8],
        link: &[u8],
        body: &[u8],
        meta: Meta,
    ) -> &mut Tar {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..path.len()].copy_from_slice(path);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_mode(meta.mode);
        h.set_uid(meta.uid);
        h.set_gid(meta.gid);
        h.set_mtime(meta.mtime);
        h.set_size(body.len() as u64);
        h.set_entry_type(tar::EntryType::new(ty));
        h.set_cksum();
        self.buf.extend_from_slice(h.as_bytes());
        self.data(body)
    }

    /// Raw data padded to a block.
    pub fn data(&mut self, body: &[u8]) -> &mut Tar {
        self.buf.extend_from_slice(body);
        self.buf.resize(self.buf.len().div_ceil(512) * 512, 0);
        self
    }

    pub fn file(&mut self, path: &str, body: &[u8]) -> &mut Tar {
        self.member(b'0', path.as_bytes(), b"", body, META)
    }

    pub fn dir(&mut self, path: &str) -> &mut Tar {
        self.member(
            b'5',
            path.as_bytes(),
            b"",
            b"",
            Meta {
                mode: 0o755,
                ..META
            },
        )
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Tar {
        self.member(
            b'2',
            path.as_bytes(),
            target.as_bytes(),
            b"",
            Meta {
                mode: 0o777,
                ..META
            },
        )
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Tar {
        self.member(b'1', path.as_bytes(), target.as_bytes(), b"", META)
    }

    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Tar {
        let body: Vec<u8> = records.iter().flat_map(|(k, v)| record(k, v)).collect();
        self.member(b'x', b"PaxHeaders/x", b"", &body, META)
    }

    /// The end marker: two zero blocks.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        out.extend_from_slice(&[0; 1024]);
        out
    }
}

/// Unpack uncompressed layers named `layer0`, `layer1`, …
pub(crate) fn unpack(layers: &[Vec<u8>], store: &ContentStore) -> Result<Unpacked, UnpackError> {
    unpack_limited(layers, store, &Limits::default())
}

pub(crate) fn unpack_limited(
    layers: &[Vec<u8>],
    store: &ContentStore,
    limits: &Limits,
) -> Result<Unpacked, UnpackError> {
    let items = layers
        .iter()
        .enumerate()
        .map(|(i, l)| Ok::<_, io::Error>((format!("layer{i}"), Compression::None, &l[..])));
    unpack_layers(items, store, limits)
}

/// One line per entry: `path kind mode uid:gid mtime`, files with their text.
pub(crate) fn listing(u: &Unpacked, store: &ContentStore) -> Vec<String> {
    u.tree
        .iter()
        .map(|(path, e)| {
            let kind = match &e.kind {
                Kind::File(c) => format!(
                    "file {:?}",
                    String::from_utf8_lossy(&store.read(c).unwrap())
                ),
                Kind::Dir => "dir".to_owned(),
                Kind::Symlink(t) => format!("symlink {}", show(t)),
                Kind::Hardlink(t) => format!("hardlink {}", show(t)),
                Kind::Char { major, minor } => format!("char {major},{minor}"),
                Kind::Block { major, minor } => format!("block {major},{minor}"),
                Kind::Fifo => "fifo".to_owned(),
            };
            format!(
                "{} {kind} {:o} {}:{} {}",
                show(path),
                e.mode,
                e.uid,
                e.gid,
                e.mtime
            )
        })
        .collect()
}
