//! A buffered reader that can look ahead a few bytes and count its offset.
//!
//! It takes any reader and gives [`BufRead`] (so a decompressor on top of
//! it consumes exactly its own stream) plus `peek`, which the format
//! detection needs. It holds at most its buffer (64 KiB, or a peek of up
//! to 512 bytes beyond it), never the whole input.

use std::io::{self, BufRead, Read};

const CHUNK: usize = 64 * 1024;

pub(crate) struct Input<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    /// Bytes consumed so far.
    offset: u64,
}

impl<R: Read> Input<R> {
    pub(crate) fn new(inner: R) -> Input<R> {
        Input {
            inner,
            buf: Vec::new(),
            pos: 0,
            offset: 0,
        }
    }

    /// Bytes consumed so far from the start of this stream.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The next `n` bytes without consuming them (fewer only at the end).
    pub(crate) fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.buf.len() - self.pos < n {
            self.buf.drain(..self.pos);
            self.pos = 0;
            while self.buf.len() < n {
                let have = self.buf.len();
                self.buf.resize(have + CHUNK.max(n - have), 0);
                let got = loop {
                    match self.inner.read(&mut self.buf[have..]) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        other => break other,
                    }
                };
                let got = match got {
                    Ok(g) => g,
                    Err(e) => {
                        self.buf.truncate(have);
                        return Err(e);
                    }
                };
                self.buf.truncate(have + got);
                if got == 0 {
                    break;
                }
            }
        }
        let end = (self.pos + n).min(self.buf.len());
        Ok(&self.buf[self.pos..end])
    }

    /// Consume NUL bytes (padding between archives).
    pub(crate) fn skip_zeros(&mut self) -> io::Result<()> {
        loop {
            let buf = self.fill_buf()?;
            if buf.is_empty() {
                return Ok(());
            }
            let zeros = buf.iter().take_while(|&&b| b == 0).count();
            let all = zeros == buf.len();
            self.consume(zeros);
            if !all {
                return Ok(());
            }
        }
    }

    /// Consume exactly `n` bytes, failing with `UnexpectedEof` if short.
    pub(crate) fn skip(&mut self, n: u64) -> io::Result<()> {
        let copied = io::copy(&mut self.by_ref().take(n), &mut io::sink())?;
        if copied < n {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

impl<R: Read> Read for Input<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let buf = self.fill_buf()?;
        let n = buf.len().min(out.len());
        out[..n].copy_from_slice(&buf[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Input<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.buf.len() {
            self.buf.resize(CHUNK, 0);
            self.pos = 0;
            let got = loop {
                match self.inner.read(&mut self.buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            match got {
                Ok(n) => self.buf.truncate(n),
                Err(e) => {
                    self.buf.clear();
                    return Err(e);
                }
            }
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.buf.len() - self.pos);
        self.pos += n;
        self.offset += n as u64;
    }
}
