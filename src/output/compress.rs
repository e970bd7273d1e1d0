//! Compressors for archive outputs: gzip, zstd and xz, with fixed headers
//! and bytes that depend only on the input.
//!
//! A [`Compressor`] wraps any writer; write the archive into it and call
//! [`Compressor::finish`]. The choices, all fixed:
//!
//! - **gzip**: level 6, no file name, mtime 0, OS byte 3 (Unix, what
//!   `gzip -n` writes on Linux), XFL 0. Compressed in parallel by
//!   [`ParallelGzip`]: the input is cut into fixed 1 MiB blocks, so the
//!   bytes are the same for every thread count.
//! - **zstd**: level 3 (zstd's own default: fast, and the ratio gap to
//!   higher levels is small for initramfs contents), single-threaded, with a
//!   content checksum, no content size and no dictionary id.
//! - **xz**: preset 6 with a CRC32 check, single-threaded: the Linux
//!   kernel's xz decoder supports CRC32 but not the default CRC64.
//!
//! The compressors never read the clock or the environment. The library
//! versions are pinned by Cargo.lock.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

pub use super::gzip::ParallelGzip;

/// The gzip level.
pub const GZIP_LEVEL: u32 = 6;
/// The zstd level.
pub const ZSTD_LEVEL: i32 = 3;
/// The xz preset.
pub const XZ_PRESET: u32 = 6;

/// A compression format for an output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
}

/// A compression name that is not one of `none`, `gzip`, `zstd`, `xz`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown compression {0:?} (expected none, gzip, zstd or xz)")]
pub struct UnknownCompression(pub String);

impl FromStr for Compression {
    type Err = UnknownCompression;

    fn from_str(s: &str) -> Result<Compression, UnknownCompression> {
        match s {
            "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "xz" => Ok(Compression::Xz),
            other => Err(UnknownCompression(other.to_string())),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
        })
    }
}

impl Compression {
    /// The usual file-name suffix, without the dot (`""` for none).
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => "gz",
            Compression::Zstd => "zst",
            Compression::Xz => "xz",
        }
    }
}

/// A writer that compresses into `W`. Call [`Compressor::finish`] to end
/// the stream; dropping it unfinished leaves a truncated stream.
pub struct Compressor<W: Write> {
    inner: Inner<W>,
}

enum Inner<W: Write> {
    None(W),
    Gzip(ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Xz(liblzma::write::XzEncoder<W>),
}

impl<W: Write> Compressor<W> {
    /// Start a stream of format `c` into `w`. `threads` only matters for
    /// gzip (0 counts as 1) and never changes the bytes.
    pub fn new(c: Compression, w: W, threads: usize) -> io::Result<Compressor<W>> {
        let inner = match c {
            Compression::None => Inner::None(w),
            Compression::Gzip => Inner::Gzip(ParallelGzip::new(w, GZIP_LEVEL, threads)),
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(w, ZSTD_LEVEL)?;
                e.include_checksum(true)?;
                e.include_contentsize(false)?;
                e.include_dictid(false)?;
                Inner::Zstd(e)
            }
            Compression::Xz => {
                let stream = liblzma::stream::Stream::new_easy_encoder(
                    XZ_PRESET,
                    liblzma::stream::Check::Crc32,
                )
                .map_err(io::Error::other)?;
                Inner::Xz(liblzma::write::XzEncoder::new_stream(w, stream))
            }
        };
        Ok(Compressor { inner })
    }

    /// End the stream (trailers, checksums), flush, and give back the writer.
    pub fn finish(self) -> io::Result<W> {
        let mut w = match self.inner {
            Inner::None(w) => w,
            Inner::Gzip(g) => g.finish()?,
            Inner::Zstd(z) => z.finish()?,
            Inner::Xz(x) => x.finish()?,
        };
        w.flush()?;
        Ok(w)
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::None(w) => w.write(buf),
            Inner::Gzip(g) => g.write(buf),
            Inner::Zstd(z) => z.write(buf),
            Inner::Xz(x) => x.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::None(w) => w.flush(),
            Inner::Gzip(g) => g.flush(),
            // Flushing an encoder would end a block and make the bytes
            // depend on flush calls; only the sink is flushed.
            Inner::Zstd(z) => z.get_mut().flush(),
            Inner::Xz(x) => x.get_mut().flush(),
        }
    }
}

/// Compress all of `data` in memory (for tests and small outputs).
pub fn compress_bytes(c: Compression, data: &[u8], threads: usize) -> io::Result<Vec<u8>> {
    let mut w = Compressor::new(c, Vec::new(), threads)?;
    w.write_all(data)?;
    w.finish()
}
