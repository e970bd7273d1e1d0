//! The `unpack` stage: the ordered tar layers of one OCI image → that
//! image's filesystem as a [`Tree`].
//!
//! It takes layer streams (uncompressed, gzip or zstd) lowest first and
//! applies them with the OCI image-spec rules: `.wh.NAME` whiteouts and
//! `.wh..wh..opq` opaque markers hide what lower layers put there, later
//! entries replace earlier ones, hard links stay links. File bodies go
//! only into the [`ContentStore`]; nothing from a layer is ever written to
//! the host filesystem by path, so a hostile layer cannot escape the root.
//!
//! Deliberate choices (differences from extracting with a kernel):
//! - Paths are normalised inside the root; a path with `..` or a leading
//!   `/` is kept there and a warning names the layer and the original path.
//!   Root entries (`./`) are skipped: the tree has no root entry.
//! - Symlinks are stored, never followed, also not in parent components:
//!   a layer writing `a/b` over a lower symlink `a` replaces `a` by a
//!   directory (with a warning), where a kernel extraction would write
//!   through the link.
//! - Missing parent directories are created 0755, root-owned, mtime 0.
//! - Each layer is read to its true end (past the tar end marker), so a
//!   digest-checking reader underneath sees all of its bytes.
//! - Rejected: GNU sparse files (old and PAX forms), GNU volume and
//!   multi-volume headers, unknown entry types, a PAX `size` that differs
//!   from the header's. Ignored with a warning: global PAX headers with
//!   records other than `comment`, aufs `.wh..wh.*` metadata entries.

mod entry;
pub(crate) mod extension;
mod overlay;
pub(crate) mod pax;
mod readahead;
#[cfg(test)]
mod test_tar;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_links;

use std::cell::Cell;
use std::error::Error as StdError;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use crate::tree::{ContentStore, Tree};

/// Buffer on the (compressed) layer stream.
const RAW_BUFFER: usize = 1 << 20;
/// Buffer on the decompressed tar stream (headers are read 512 bytes at a time).
const TAR_BUFFER: usize = 256 << 10;

/// How a layer stream is compressed (the layout reader's type).
pub use crate::oci::Compression;

/// Bounds on what the layers of one image may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Decompressed tar bytes across all layers (headers and padding included).
    pub max_total_bytes: u64,
    /// Tar members across all layers (extension headers included).
    pub max_entries: u64,
    /// Size of any one file.
    pub max_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_total_bytes: 16 << 30,
            max_entries: 10_000_000,
            max_file_bytes: 16 << 30,
        }
    }
}

/// The filesystem of one image and what was odd about its layers.
#[derive(Debug)]
pub struct Unpacked {
    pub tree: Tree,
    /// In layer and tar order; each names the layer.
    pub warnings: Vec<String>,
}

/// Why the layers of an image could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("cannot open layer {index}")]
    Open {
        index: usize,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    #[error("layer {layer}: cannot read the tar stream {at}")]
    Read {
        layer: String,
        /// Where: "at its start", "after entry PATH", …
        at: String,
        #[source]
        source: io::Error,
    },
    #[error("layer {layer}: {path}: cannot read the entry data")]
    Data {
        layer: String,
        path: String,
        #[source]
        source: io::Error,
    },
    /// The content store (an unnamed file in the temp directory) could
    /// not take the data: the machine's problem, not the layer's.
    #[error("layer {layer}: {path}: cannot store the entry data in the temp directory {}", dir.display())]
    Store {
        layer: String,
        path: String,
        dir: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("layer {layer}: {path}: the header declares {declared} bytes but the stream ends after {found}")]
    Truncated {
        layer: String,
        path: String,
        declared: u64,
        found: u64,
    },
    #[error("layer {layer}: the layers hold more than {limit} bytes of tar data")]
    TotalSize { layer: String, limit: u64 },
    #[error("layer {layer}: the layers hold more than {limit} entries")]
    TooManyEntries { layer: String, limit: u64 },
    #[error("layer {layer}: {path}: {size} bytes is more than the limit of {limit} for one file")]
    FileTooBig {
        layer: String,
        path: String,
        size: u64,
        limit: u64,
    },
    #[error("layer {layer}: {path}: {reason}")]
    Header {
        layer: String,
        path: String,
        reason: String,
    },
    #[error("layer {layer}: {path}: unsupported {what}")]
    Unsupported {
        layer: String,
        path: String,
        what: String,
    },
    #[error("layer {layer}: {path}: hard link to {target}: {reason}")]
    HardLink {
        layer: String,
        path: String,
        target: String,
        reason: &'static str,
    },
}

impl UnpackError {
    /// Whether the machine, not the input, is at fault (exit 2).
    pub fn is_environment(&self) -> bool {
        matches!(self, UnpackError::Store { .. })
    }
}

/// Unpack the layers of one image, lowest first. Each item is the layer's
/// name for messages (its digest), its compression and its stream.
pub fn unpack_layers<R, E, I>(
    layers: I,
    store: &ContentStore,
    limits: &Limits,
) -> Result<Unpacked, UnpackError>
where
    R: Read + Send,
    E: Into<Box<dyn StdError + Send + Sync>>,
    I: IntoIterator<Item = Result<(String, Compression, R), E>>,
{
    let mut unpacker = Unpacker::new(store, limits);
    for (index, layer) in layers.into_iter().enumerate() {
        let (name, compression, reader) = layer.map_err(|e| UnpackError::Open {
            index,
            source: e.into(),
        })?;
        unpacker.apply_layer(&name, compression, reader)?;
    }
    Ok(unpacker.finish())
}

/// Sees the body of every regular file at one path as it is unpacked, so a
/// second unpacker can read it at the same time (the kernel image's
/// `kernel.tar`, unpacked into the modules tree while the image is).
pub trait Tap {
    /// The normalised path whose bodies are shown.
    fn path(&self) -> &[u8];
    /// A body at the path begins: where its bytes are copied as they are
    /// read. The copy stops at the first write error, and ends (the writer
    /// is dropped) when the body does.
    fn begin(&mut self) -> Box<dyn io::Write + Send>;
    /// The body just copied was stored as `content`. A body that was not
    /// stored (the layer failed) is not reported.
    fn stored(&mut self, content: &crate::tree::Content);
}

/// Layer-by-layer unpacking, for callers that open layers one at a time.
pub struct Unpacker<'s> {
    store: &'s ContentStore,
    limits: Limits,
    overlay: overlay::Overlay,
    warnings: Vec<String>,
    /// Decompressed tar bytes read so far.
    bytes: u64,
    /// Tar members read so far.
    entries: u64,
}

impl<'s> Unpacker<'s> {
    pub fn new(store: &'s ContentStore, limits: &Limits) -> Unpacker<'s> {
        Unpacker {
            store,
            limits: *limits,
            overlay: overlay::Overlay::default(),
            warnings: Vec::new(),
            bytes: 0,
            entries: 0,
        }
    }

    /// Apply the next layer on top of those applied so far. `layer` names
    /// it in messages. The stream is read to its end before the tree
    /// changes; after an error the unpacker is spent (drop it).
    pub fn apply_layer(
        &mut self,
        layer: &str,
        compression: Compression,
        reader: impl Read + Send,
    ) -> Result<(), UnpackError> {
        self.apply_layer_tapped(layer, compression, reader, None)
    }

    /// [`Unpacker::apply_layer`], showing the bodies of the tap's path to it.
    pub fn apply_layer_tapped(
        &mut self,
        layer: &str,
        compression: Compression,
        reader: impl Read + Send,
        tap: Option<&mut dyn Tap>,
    ) -> Result<(), UnpackError> {
        let raw = BufReader::with_capacity(RAW_BUFFER, reader);
        let decoder = Decoder::new(compression, raw).map_err(|source| UnpackError::Read {
            layer: layer.to_owned(),
            at: "at its start".to_owned(),
            source,
        })?;
        // Reading, checking and decompressing the layer overlap the parsing
        // and storing of its entries below.
        std::thread::scope(|s| {
            let ahead = readahead::start(s, decoder, Decoder::into_raw);
            self.apply_decompressed(layer, ahead, tap)
        })
    }

    fn apply_decompressed(
        &mut self,
        layer: &str,
        decompressed: readahead::ReadAhead,
        tap: Option<&mut dyn Tap>,
    ) -> Result<(), UnpackError> {
        let count = Rc::new(Cell::new(0u64));
        let budget = self.limits.max_total_bytes.saturating_sub(self.bytes);
        let counted = Counted {
            inner: decompressed,
            count: Rc::clone(&count),
            budget,
        };
        let mut archive = tar::Archive::new(BufReader::with_capacity(TAR_BUFFER, counted));
        let mut cx = entry::Context {
            layer,
            store: self.store,
            limits: &self.limits,
            entries: &mut self.entries,
            warnings: &mut self.warnings,
            count: Rc::clone(&count),
            budget,
            tap,
        };
        let (changes, end) = entry::read_changes(&mut archive, &mut cx)?;

        // Drain what follows the end marker: the rest of the tar stream,
        // then whatever the decompressor left of the raw stream.
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink())
            .map_err(|e| cx.io_error("after the end-of-archive marker".to_owned(), e))?;
        if count.get() == end {
            cx.warnings.push(format!(
                "layer {layer}: the tar stream has no end-of-archive marker"
            ));
        }
        rest.into_inner()
            .inner
            .finish_raw()
            .map_err(|e| cx.io_error("after the compressed data".to_owned(), e))?;
        self.bytes += count.get();

        self.overlay.apply(changes, layer, &mut self.warnings)
    }

    /// The tree of all layers applied, and the warnings.
    pub fn finish(self) -> Unpacked {
        Unpacked {
            tree: self.overlay.tree,
            warnings: self.warnings,
        }
    }
}

/// A layer's decompressor, giving back the raw stream when done.
enum Decoder<R: BufRead> {
    Plain(R),
    Gzip(Box<flate2::bufread::MultiGzDecoder<R>>),
    Zstd(zstd::stream::read::Decoder<'static, R>),
}

impl<R: BufRead> Decoder<R> {
    fn new(compression: Compression, raw: R) -> io::Result<Decoder<R>> {
        Ok(match compression {
            Compression::None => Decoder::Plain(raw),
            Compression::Gzip => Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(raw))),
            Compression::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(raw)?),
        })
    }

    fn into_raw(self) -> R {
        match self {
            Decoder::Plain(r) => r,
            Decoder::Gzip(d) => d.into_inner(),
            Decoder::Zstd(d) => d.finish(),
        }
    }
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
        }
    }
}

/// Counts decompressed bytes and fails once they pass the budget (the
/// caller turns that failure into [`UnpackError::TotalSize`]).
struct Counted<R> {
    inner: R,
    count: Rc<Cell<u64>>,
    budget: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.count.get() + n as u64;
        self.count.set(total);
        if total > self.budget {
            return Err(io::Error::other("the total size limit is exceeded"));
        }
        Ok(n)
    }
}

/// A path for messages: as is when it is printable UTF-8, else escaped;
/// a very long one is cut after 200 bytes with its length said.
fn show(path: &[u8]) -> String {
    const SHOWN: usize = 200;
    let (head, cut) = if path.len() > SHOWN {
        (&path[..SHOWN], format!("… ({} bytes)", path.len()))
    } else {
        (path, String::new())
    };
    let text = match std::str::from_utf8(head) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_owned(),
        _ => head.escape_ascii().to_string(),
    };
    text + &cut
}

/// The longest name (path component) kept, in bytes: Linux's `NAME_MAX`.
pub const MAX_NAME_BYTES: usize = 255;

/// The longest path (and link target) kept, in bytes: Linux's `PATH_MAX`.
/// It also bounds the depth, and so the work per entry.
pub const MAX_PATH_BYTES: usize = 4096;
