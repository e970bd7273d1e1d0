//! Reading the members of one layer's tar stream into [`Changes`].
//!
//! Takes the tar stream (iterated raw, so kiln itself reads PAX `x`
//! headers by their length prefixes and GNU `L`/`K` long names) and gives
//! the layer's whiteouts, opaque markers and entries with their metadata.
//! File bodies are streamed into the [`ContentStore`] as they pass; no
//! layer is ever held in memory. It never touches the tree (see
//! `overlay`) or the host filesystem.

use std::cell::Cell;
use std::io::{self, Read};
use std::mem;
use std::rc::Rc;

use tar::EntryType;

use super::extension::{Absorbed, ExtensionError, Pending};
use super::overlay::Changes;
use super::{show, Limits, UnpackError};
use crate::tree::{self, ContentStore, Entry, Kind};

/// What reading one layer needs from the [`super::Unpacker`].
pub(crate) struct Context<'a, 't> {
    pub layer: &'a str,
    pub store: &'a ContentStore,
    pub limits: &'a Limits,
    pub entries: &'a mut u64,
    pub warnings: &'a mut Vec<String>,
    /// Decompressed bytes of this layer so far, and the most it may have.
    pub count: Rc<Cell<u64>>,
    pub budget: u64,
    /// Sees the bodies of one path as they pass (see [`super::Tap`]).
    pub tap: Option<&'a mut (dyn super::Tap + 't)>,
}

/// Read every member up to the end marker. Also gives the stream offset
/// just past the last member's data (to spot a missing end marker).
pub(crate) fn read_changes<R: Read>(
    archive: &mut tar::Archive<R>,
    cx: &mut Context<'_, '_>,
) -> Result<(Changes, u64), UnpackError> {
    let mut changes = Changes::default();
    let mut pending = Pending::default();
    let mut last: Option<Vec<u8>> = None;
    let mut end = 0u64;
    let members = archive
        .entries()
        .map_err(|e| cx.io_error(at(last.as_deref()), e))?
        .raw(true);
    for member in members {
        let mut member = member.map_err(|e| cx.io_error(at(last.as_deref()), e))?;
        let header_path = member.header().path_bytes().into_owned();
        end = member
            .raw_file_position()
            .checked_add(member.size().div_ceil(512) * 512)
            .ok_or_else(|| cx.header_error(&header_path, "size overflows".to_owned()))?;
        *cx.entries += 1;
        if *cx.entries > cx.limits.max_entries {
            return Err(UnpackError::TooManyEntries {
                layer: cx.layer.to_owned(),
                limit: cx.limits.max_entries,
            });
        }
        let absorbed = pending
            .absorb(&mut member)
            .map_err(|e| cx.extension_error(&header_path, e))?;
        match absorbed {
            Absorbed::Extension => {}
            Absorbed::Global(parsed) => {
                if !parsed.other_keys.is_empty() {
                    cx.warnings.push(format!(
                        "layer {}: global pax header ignored (keys: {})",
                        cx.layer,
                        parsed.other_keys.join(", ")
                    ));
                }
            }
            Absorbed::Member => {
                let ext = mem::take(&mut pending);
                let path = ext.path(header_path);
                cx.member(&mut member, &path, ext, &mut changes)?;
                last = Some(path);
            }
        }
    }
    if !pending.is_empty() {
        let path = last.unwrap_or_default();
        return Err(cx.header_error(
            &path,
            "the last extension header describes no member".to_owned(),
        ));
    }
    Ok((changes, end))
}

fn at(last: Option<&[u8]>) -> String {
    match last {
        Some(path) => format!("after entry {}", show(path)),
        None => "at its start".to_owned(),
    }
}

/// A numeric header field holding only NULs and spaces.
fn blank(field: &[u8]) -> bool {
    field.iter().all(|&b| b == 0 || b == b' ')
}

impl Context<'_, '_> {
    /// An I/O error, unless it is the total-size budget running out.
    pub fn io_error(&self, at: String, source: io::Error) -> UnpackError {
        if self.count.get() > self.budget {
            return self.total_size();
        }
        UnpackError::Read {
            layer: self.layer.to_owned(),
            at,
            source,
        }
    }

    fn total_size(&self) -> UnpackError {
        UnpackError::TotalSize {
            layer: self.layer.to_owned(),
            limit: self.limits.max_total_bytes,
        }
    }

    fn header_error(&self, path: &[u8], reason: String) -> UnpackError {
        UnpackError::Header {
            layer: self.layer.to_owned(),
            path: show(path),
            reason,
        }
    }

    fn unsupported(&self, path: &[u8], what: &str) -> UnpackError {
        UnpackError::Unsupported {
            layer: self.layer.to_owned(),
            path: show(path),
            what: what.to_owned(),
        }
    }

    fn data_error(&self, path: &[u8], source: io::Error) -> UnpackError {
        if self.count.get() > self.budget {
            return self.total_size();
        }
        UnpackError::Data {
            layer: self.layer.to_owned(),
            path: show(path),
            source,
        }
    }

    fn truncated(&self, path: &[u8], declared: u64, found: u64) -> UnpackError {
        UnpackError::Truncated {
            layer: self.layer.to_owned(),
            path: show(path),
            declared,
            found,
        }
    }

    fn extension_error(&self, path: &[u8], e: ExtensionError) -> UnpackError {
        match e {
            ExtensionError::Read(e) => self.data_error(path, e),
            ExtensionError::Truncated { declared, found } => self.truncated(path, declared, found),
            other => self.header_error(path, other.to_string()),
        }
    }

    /// Turn one real member into a change of the layer.
    fn member<R: Read>(
        &mut self,
        member: &mut tar::Entry<'_, R>,
        raw_path: &[u8],
        ext: Pending,
        changes: &mut Changes,
    ) -> Result<(), UnpackError> {
        let pax = ext.pax.clone().unwrap_or_default();
        if raw_path.len() > super::MAX_PATH_BYTES {
            return Err(self.unsupported(
                raw_path,
                &format!("path longer than {} bytes", super::MAX_PATH_BYTES),
            ));
        }
        let (path, odd) = tree::normalize(raw_path);
        if path.is_empty() {
            return Ok(()); // the root itself (`./`, `/`): the tree has no entry for it
        }
        // What no Linux filesystem can hold, and some image formats would
        // silently mangle: refused here, once, for every output format.
        if path.contains(&0) {
            return Err(self.unsupported(raw_path, "a NUL byte in the file name"));
        }
        if path
            .split(|&b| b == b'/')
            .any(|c| c.len() > super::MAX_NAME_BYTES)
        {
            let what = format!("a name longer than {} bytes", super::MAX_NAME_BYTES);
            return Err(self.unsupported(raw_path, &what));
        }
        if odd {
            self.warnings.push(format!(
                "layer {}: entry {} leaves the image root; kept inside it as /{}",
                self.layer,
                show(raw_path),
                show(&path)
            ));
        }
        let ty = member.header().entry_type();
        if pax.sparse || ty == EntryType::GNUSparse {
            return Err(self.unsupported(raw_path, "sparse file"));
        }
        if pax.size.is_some_and(|s| s != member.size()) {
            return Err(
                self.unsupported(raw_path, "pax size record differing from the header size")
            );
        }
        let name = path.rsplit(|&b| b == b'/').next().unwrap_or(&path);
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            let parent = tree::parent(&path).unwrap_or(b"");
            if hidden == b".wh..opq" {
                changes.opaque.push(parent.to_vec());
            } else if hidden.starts_with(b".wh.") || hidden.is_empty() {
                self.warnings.push(format!(
                    "layer {}: whiteout metadata entry {} ignored",
                    self.layer,
                    show(raw_path)
                ));
            } else {
                changes.whiteouts.push(tree::join(parent, hidden));
            }
            return Ok(());
        }

        let header = member.header();
        let field = |what: &str, e: io::Error| {
            self.header_error(raw_path, format!("bad {what} field: {e}"))
        };
        // As Go's archive/tar does, a numeric field left blank means 0.
        let old = header.as_old();
        let number = |what: &str, raw: &[u8], v: io::Result<u64>| {
            if blank(raw) {
                Ok(0)
            } else {
                v.map_err(|e| field(what, e))
            }
        };
        let mode = number("mode", &old.mode, header.mode().map(u64::from))? & 0o7777;
        let uid = match pax.uid {
            Some(uid) => uid,
            None => number("uid", &old.uid, header.uid())?,
        };
        let gid = match pax.gid {
            Some(gid) => gid,
            None => number("gid", &old.gid, header.gid())?,
        };
        let mtime = match pax.mtime {
            Some(mtime) => mtime,
            None => {
                let mtime = number("mtime", &old.mtime, header.mtime())?;
                i64::try_from(mtime).map_err(|_| {
                    self.header_error(raw_path, format!("mtime {mtime} is out of range"))
                })?
            }
        };
        let id = |what: &str, v: u64| {
            u32::try_from(v)
                .map_err(|_| self.header_error(raw_path, format!("{what} {v} is out of range")))
        };
        let (mode, uid, gid) = (mode as u32, id("uid", uid)?, id("gid", gid)?);
        let (major_field, minor_field) = match (header.as_ustar(), header.as_gnu()) {
            (Some(u), _) => (&u.dev_major[..], &u.dev_minor[..]),
            (None, Some(g)) => (&g.dev_major[..], &g.dev_minor[..]),
            (None, None) => (&[][..], &[][..]),
        };
        let device = |what: &str, raw: &[u8], n: io::Result<Option<u32>>| {
            if blank(raw) {
                Ok(0)
            } else {
                n.map(Option::unwrap_or_default).map_err(|e| field(what, e))
            }
        };
        let link = || {
            ext.link(member)
                .filter(|l| !l.is_empty())
                .ok_or_else(|| self.header_error(raw_path, "link without a target".to_owned()))
                .and_then(|l| {
                    if l.len() > super::MAX_PATH_BYTES {
                        let what =
                            format!("link target longer than {} bytes", super::MAX_PATH_BYTES);
                        return Err(self.unsupported(raw_path, &what));
                    }
                    Ok(l)
                })
        };

        let kind = match ty {
            EntryType::Regular | EntryType::Continuous if raw_path.ends_with(b"/") => Kind::Dir,
            EntryType::Regular | EntryType::Continuous => {
                Kind::File(self.file_body(member, raw_path, &path)?)
            }
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink(link()?),
            EntryType::Link => {
                let raw_target = link()?;
                let (target, odd) = tree::normalize(&raw_target);
                if odd {
                    self.warnings.push(format!(
                        "layer {}: hard link {} to {} leaves the image root; kept inside it as /{}",
                        self.layer,
                        show(raw_path),
                        show(&raw_target),
                        show(&target)
                    ));
                }
                Kind::Hardlink(target)
            }
            EntryType::Char => Kind::Char {
                major: device("device major", major_field, header.device_major())?,
                minor: device("device minor", minor_field, header.device_minor())?,
            },
            EntryType::Block => Kind::Block {
                major: device("device major", major_field, header.device_major())?,
                minor: device("device minor", minor_field, header.device_minor())?,
            },
            EntryType::Fifo => Kind::Fifo,
            other => {
                let what = format!("tar entry type {:?}", char::from(other.as_byte()));
                return Err(self.unsupported(raw_path, &what));
            }
        };
        let mut entry = Entry::new(kind, mode, mtime);
        entry.uid = uid;
        entry.gid = gid;
        entry.xattrs = pax.xattrs;
        changes.entries.push((path, entry));
        Ok(())
    }

    /// Stream a regular file's body into the content store (and to the tap,
    /// when it wants this path).
    fn file_body<R: Read>(
        &mut self,
        member: &mut tar::Entry<'_, R>,
        raw_path: &[u8],
        path: &[u8],
    ) -> Result<crate::tree::Content, UnpackError> {
        let size = member.size();
        if size > self.limits.max_file_bytes {
            return Err(UnpackError::FileTooBig {
                layer: self.layer.to_owned(),
                path: show(raw_path),
                size,
                limit: self.limits.max_file_bytes,
            });
        }
        // An error the member's reader did not give is the store's: the
        // temp directory is full or failing, not the layer bad.
        let mut reader = ReadFailed {
            inner: member,
            failed: false,
        };
        let tap = self.tap.as_deref_mut().filter(|t| t.path() == path);
        let stored = match tap {
            None => self.store.add_reader(&mut reader, Some(size)),
            Some(tap) => {
                let mut tee = Tee {
                    inner: &mut reader,
                    copy: Some(tap.begin()),
                };
                let stored = self.store.add_sized(&mut tee, size);
                // Closing the copy ends the tap's stream.
                drop(tee);
                if let Ok(c) = &stored {
                    tap.stored(c);
                }
                stored
            }
        };
        let content = match stored {
            Ok(c) => c,
            Err(e) if !reader.failed => {
                return Err(UnpackError::Store {
                    layer: self.layer.to_owned(),
                    path: show(raw_path),
                    dir: std::env::temp_dir(),
                    source: e,
                })
            }
            Err(e) => return Err(self.data_error(raw_path, e)),
        };
        if content.len() != size {
            return Err(self.truncated(raw_path, size, content.len()));
        }
        Ok(content)
    }
}

/// Copies what is read to a second writer until that writer fails (its
/// reader gave up: the tap's result is then not used) or the end is read.
struct Tee<'r, R> {
    inner: &'r mut R,
    copy: Option<Box<dyn io::Write + Send>>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            // The end: closing the copy now lets its reader finish (it may
            // hold the store's lock) before the store is asked for it.
            self.copy = None;
        }
        if let Some(w) = &mut self.copy {
            if w.write_all(&buf[..n]).is_err() {
                self.copy = None;
            }
        }
        Ok(n)
    }
}

/// A reader that remembers whether it failed.
struct ReadFailed<R> {
    inner: R,
    failed: bool,
}

impl<R: Read> Read for ReadFailed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        self.failed |= r.is_err();
        r
    }
}
