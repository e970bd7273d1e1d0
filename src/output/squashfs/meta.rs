//! The two kinds of compressed storage in a squashfs image: metadata
//! blocks (8 KiB chunks behind a two-byte header, used by every table) and
//! data blocks (one file's bytes cut into block-size pieces).
//!
//! Both compress with zlib at level 9 (`mksquashfs -comp gzip`'s default)
//! through the pinned pure-Rust flate2 backend, and store a block raw
//! whenever compression would not make it smaller, as the format requires.
//! Neither reads anything but the bytes given to it.

use std::io::{self, Write};

use flate2::write::ZlibEncoder;
use flate2::Compression;

/// Uncompressed bytes in one metadata block.
const METADATA_SIZE: usize = 8192;
/// Bit of a metadata header saying the block is stored raw.
const METADATA_RAW: u16 = 0x8000;
/// Bit of a data block size saying the block is stored raw.
const DATA_RAW: u32 = 1 << 24;

/// `data` compressed with zlib at level 9.
pub(super) fn zlib(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut enc = ZlibEncoder::new(Vec::with_capacity(data.len() / 2), Compression::best());
    enc.write_all(data)?;
    enc.finish()
}

/// A metadata table being built in memory: finished (compressed) blocks
/// and the block being filled.
#[derive(Default)]
pub(super) struct Meta {
    /// Finished blocks, each with its header.
    pub(super) out: Vec<u8>,
    /// Bytes of the current, unfinished block (always < METADATA_SIZE).
    buf: Vec<u8>,
    /// Start (in `out`) of every finished block, for index tables.
    pub(super) block_starts: Vec<u64>,
}

impl Meta {
    /// Where the next byte written will be: the start of its block in the
    /// table and its offset in the block's uncompressed bytes.
    pub(super) fn pos(&self) -> (u64, u16) {
        (self.out.len() as u64, self.buf.len() as u16)
    }

    /// [`Meta::pos`] as a squashfs inode reference (`block << 16 | offset`).
    pub(super) fn reference(&self) -> u64 {
        let (block, offset) = self.pos();
        (block << 16) | u64::from(offset)
    }

    pub(super) fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let take = (METADATA_SIZE - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buf.len() == METADATA_SIZE {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Finish the last block, if it holds anything; gives the table.
    pub(super) fn finish(mut self) -> io::Result<Meta> {
        if !self.buf.is_empty() {
            self.flush()?;
        }
        Ok(self)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.block_starts.push(self.out.len() as u64);
        let packed = zlib(&self.buf)?;
        if packed.len() < self.buf.len() {
            self.out
                .extend_from_slice(&(packed.len() as u16).to_le_bytes());
            self.out.extend_from_slice(&packed);
        } else {
            let header = self.buf.len() as u16 | METADATA_RAW;
            self.out.extend_from_slice(&header.to_le_bytes());
            self.out.extend_from_slice(&self.buf);
        }
        self.buf.clear();
        Ok(())
    }
}

/// Cuts one file's bytes into data blocks, compresses each and writes it
/// out, remembering the on-disk size of every block. The last block may be
/// short: images are written without fragments.
pub(super) struct Blocks<'w> {
    out: &'w mut dyn Write,
    block_size: usize,
    buf: Vec<u8>,
    /// On-disk size word of every block written so far.
    pub(super) sizes: Vec<u32>,
    /// Bytes written to `out`.
    pub(super) written: u64,
}

impl<'w> Blocks<'w> {
    pub(super) fn new(out: &'w mut dyn Write, block_size: usize) -> Blocks<'w> {
        Blocks {
            out,
            block_size,
            buf: Vec::with_capacity(block_size),
            sizes: Vec::new(),
            written: 0,
        }
    }

    /// Write the last, possibly short, block.
    pub(super) fn finish(mut self) -> io::Result<(Vec<u32>, u64)> {
        if !self.buf.is_empty() {
            self.emit()?;
        }
        Ok((self.sizes, self.written))
    }

    fn emit(&mut self) -> io::Result<()> {
        let packed = zlib(&self.buf)?;
        if packed.len() < self.buf.len() {
            self.out.write_all(&packed)?;
            self.sizes.push(packed.len() as u32);
            self.written += packed.len() as u64;
        } else {
            self.out.write_all(&self.buf)?;
            self.sizes.push(self.buf.len() as u32 | DATA_RAW);
            self.written += self.buf.len() as u64;
        }
        self.buf.clear();
        Ok(())
    }
}

impl Write for Blocks<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let take = (self.block_size - self.buf.len()).min(bytes.len());
        self.buf.extend_from_slice(&bytes[..take]);
        if self.buf.len() == self.block_size {
            self.emit()?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
