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
//!   higher levels is small for initramfs contents), in zstd's
//!   multi-threaded mode with `threads` workers (at least one): its output
//!   does not depend on the worker count, so the bytes are the same for
//!   every thread count. A content checksum, no content size and no
//!   dictionary id.
//! - **xz**: preset 6 with a CRC32 check (the Linux kernel's xz decoder
//!   supports CRC32 but not the default CRC64), by liblzma's multi-threaded
//!   encoder in blocks of [`XZ_BLOCK_SIZE`]: the bytes depend on the block
//!   size, not on the thread count. Each worker needs about 100 MiB (the
//!   preset's encoder plus its block buffers).
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
/// The uncompressed bytes of one zstd job (a part compressed by one worker).
pub const ZSTD_JOB_SIZE: u32 = 4 << 20;
/// The xz preset.
pub const XZ_PRESET: u32 = 6;
/// The uncompressed bytes of one xz block. The multi-threaded encoder
/// compresses blocks in parallel; its bytes depend on this size, never on
/// the thread count. 8 MiB (the preset's dictionary size) keeps each
/// worker's buffers small and costs about 1% of size against 24 MiB.
pub const XZ_BLOCK_SIZE: u64 = 8 << 20;

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
    /// Start a stream of format `c` into `w`. `threads` is the gzip, zstd
    /// and xz worker count (0 counts as 1) and never changes the bytes.
    pub fn new(c: Compression, w: W, threads: usize) -> io::Result<Compressor<W>> {
        let inner = match c {
            Compression::None => Inner::None(w),
            Compression::Gzip => Inner::Gzip(ParallelGzip::new(w, GZIP_LEVEL, threads)),
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(w, ZSTD_LEVEL)?;
                // Always zstd's multi-threaded mode, with at least one worker:
                // its bytes are the same for every worker count, unlike the
                // single-threaded mode's, so KILN_THREADS=1 gives them too.
                e.multithread(u32::try_from(threads.max(1)).unwrap_or(u32::MAX))?;
                // Fixed, and smaller than zstd's 8 MiB default at this
                // level: each worker holds about two jobs' worth of buffers.
                e.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE))?;
                e.include_checksum(true)?;
                e.include_contentsize(false)?;
                e.include_dictid(false)?;
                Inner::Zstd(e)
            }
            Compression::Xz => {
                let stream = liblzma::stream::MtStreamBuilder::new()
                    .threads(u32::try_from(threads.max(1)).unwrap_or(u32::MAX))
                    .block_size(XZ_BLOCK_SIZE)
                    .preset(XZ_PRESET)
                    .check(liblzma::stream::Check::Crc32)
                    .encoder()
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

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::process::{Command, Stdio};

    use super::*;
    use crate::output::gzip::BLOCK_SIZE;

    /// Compressible, not trivially repetitive data spanning several blocks.
    fn data(len: usize) -> Vec<u8> {
        let mut x: u32 = 1;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                if i % 7 == 0 {
                    (x >> 24) as u8
                } else {
                    b"the quick brown fox "[i % 20]
                }
            })
            .collect()
    }

    fn decompress(c: Compression, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match c {
            Compression::None => out.extend_from_slice(bytes),
            Compression::Gzip => {
                flate2::read::GzDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Compression::Zstd => {
                zstd::stream::read::Decoder::new(bytes)
                    .unwrap()
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Compression::Xz => {
                liblzma::read::XzDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .unwrap();
            }
        }
        out
    }

    const ALL: [Compression; 4] = [
        Compression::None,
        Compression::Gzip,
        Compression::Zstd,
        Compression::Xz,
    ];

    #[test]
    fn names_parse_and_print() {
        for c in ALL {
            assert_eq!(c.to_string().parse::<Compression>(), Ok(c));
        }
        let err = "bzip2".parse::<Compression>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown compression \"bzip2\" (expected none, gzip, zstd or xz)"
        );
    }

    #[test]
    fn every_format_round_trips() {
        for len in [0, 1, 1000, 3 * BLOCK_SIZE + 17] {
            let d = data(len);
            for c in ALL {
                let z = compress_bytes(c, &d, 2).unwrap();
                assert!(decompress(c, &z) == d, "{c} of {len} bytes");
            }
        }
    }

    #[test]
    fn bytes_do_not_depend_on_threads_or_write_sizes() {
        let d = data(5 * BLOCK_SIZE / 2 + 3);
        for c in ALL {
            let one = compress_bytes(c, &d, 1).unwrap();
            for threads in [0, 2, 4] {
                assert!(
                    compress_bytes(c, &d, threads).unwrap() == one,
                    "{c} with {threads} threads"
                );
            }
            // Odd-sized writes and flushes in between change nothing.
            let mut w = Compressor::new(c, Vec::new(), 3).unwrap();
            for chunk in d.chunks(77_777) {
                w.write_all(chunk).unwrap();
                w.flush().unwrap();
            }
            assert!(w.finish().unwrap() == one, "{c} with small writes");
        }
    }

    #[test]
    fn gzip_header_has_no_name_and_no_time() {
        let z = compress_bytes(Compression::Gzip, b"hello", 1).unwrap();
        assert_eq!(z[..10], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
        let n = z.len();
        assert_eq!(z[n - 4..], 5u32.to_le_bytes());
        assert_eq!(z[n - 8..n - 4], crc32fast::hash(b"hello").to_le_bytes());
    }

    #[test]
    fn gzip_is_one_member_that_gzip_accepts() {
        let d = data(3 * BLOCK_SIZE + 5);
        let z = compress_bytes(Compression::Gzip, &d, 4).unwrap();
        // One member: a single-member decoder reads everything.
        assert!(decompress(Compression::Gzip, &z) == d);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gz");
        std::fs::write(&path, &z).unwrap();
        let t = Command::new("gzip")
            .arg("-t")
            .arg(&path)
            .status()
            .expect("gzip must be installed");
        assert!(t.success());
        let out = Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.stdout == d);
    }

    #[test]
    fn gzip_of_nothing_is_valid() {
        let z = compress_bytes(Compression::Gzip, b"", 2).unwrap();
        assert_eq!(z.len(), 10 + 2 + 8);
        assert!(decompress(Compression::Gzip, &z).is_empty());
    }

    #[test]
    fn zstd_bytes_do_not_depend_on_the_worker_count() {
        // Enough data for several of zstd's jobs (8 MiB each at level 3),
        // half text-like, half noise.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let data: Vec<u8> = (0..40 << 20)
            .map(|i: u32| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i & (1 << 16) == 0 {
                    b"kiln zstd "[(i % 10) as usize]
                } else {
                    x as u8
                }
            })
            .collect();
        let one = compress_bytes(Compression::Zstd, &data, 1).unwrap();
        assert!(
            one.len() < data.len() * 3 / 4,
            "compressed to {}",
            one.len()
        );
        for threads in [2, 4] {
            let other = compress_bytes(Compression::Zstd, &data, threads).unwrap();
            assert!(other == one, "{threads} workers gave other bytes");
        }
        let mut back = Vec::new();
        zstd::stream::read::Decoder::new(&one[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data);
    }

    #[test]
    fn xz_bytes_do_not_depend_on_the_thread_count() {
        // Three blocks: two full, one partial; text-like, a little noise.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let len = 2 * XZ_BLOCK_SIZE as usize + 12345;
        let data: Vec<u8> = (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 4096 < 64 {
                    x as u8
                } else {
                    b"initramfs "[i % 10]
                }
            })
            .collect();
        let one = compress_bytes(Compression::Xz, &data, 1).unwrap();
        for threads in [2, 3] {
            let other = compress_bytes(Compression::Xz, &data, threads).unwrap();
            assert!(other == one, "{threads} threads gave other bytes");
        }
        let mut back = Vec::new();
        liblzma::read::XzDecoder::new(&one[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data);
        // xz(1) sees the three blocks.
        let list = Command::new("xz")
            .args(["--robot", "--list", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(&one)?;
                c.wait_with_output()
            });
        if let Ok(out) = list {
            let text = String::from_utf8_lossy(&out.stdout);
            let totals = text.lines().find(|l| l.starts_with("totals")).unwrap_or("");
            assert_eq!(totals.split('\t').nth(2), Some("3"), "{text}");
        }
    }

    #[test]
    fn xz_uses_crc32() {
        let z = compress_bytes(Compression::Xz, b"hello", 1).unwrap();
        assert_eq!(&z[..6], b"\xfd7zXZ\0");
        // Stream flags: a zero byte, then the check type (1 = CRC32).
        assert_eq!(z[6..8], [0, 1]);
    }

    #[test]
    fn zstd_frame_has_checksum_and_no_size() {
        let z = compress_bytes(Compression::Zstd, b"hello hello hello", 1).unwrap();
        assert_eq!(z[..4], [0x28, 0xb5, 0x2f, 0xfd]);
        let descriptor = z[4];
        assert_eq!(descriptor & 0b100, 0b100, "checksum flag");
        assert_eq!(descriptor >> 6, 0, "no content size");
        assert_eq!(descriptor & 0b11, 0, "no dictionary id");
    }

    #[test]
    fn gzip_reports_write_errors() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        for threads in [1, 2] {
            let mut w = Compressor::new(Compression::Gzip, Broken, threads).unwrap();
            let d = data(3 * BLOCK_SIZE);
            let written = w.write_all(&d);
            let finished = w.finish();
            assert!(written.is_err() || finished.is_err());
        }
    }
}
