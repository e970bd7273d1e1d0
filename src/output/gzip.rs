//! Parallel gzip whose bytes do not depend on the thread count.
//!
//! The input is cut into fixed [`BLOCK_SIZE`] blocks. Each block is
//! deflated on its own (raw deflate, primed with the previous 32 KiB of
//! input as dictionary, like pigz) and ended with a sync flush, so the
//! pieces concatenate into one deflate stream; an empty final block
//! (`03 00`) ends it. One gzip member results, which `gzip -d`, zlib and
//! the Linux kernel's inflate read like any other. The CRC32 is combined
//! from per-block CRCs. Every output byte is a function of the input, the
//! level and the block size: workers only change when a block is ready,
//! never what it contains. At most `2 × threads` blocks are in flight.
//!
//! `flush` writes out finished blocks but never cuts the current block,
//! so the bytes do not depend on how the input was split into writes.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, FlushCompress};

/// Input bytes per independently deflated block.
pub const BLOCK_SIZE: usize = 1 << 20;
/// Dictionary carried from one block to the next (deflate's window).
const DICT_SIZE: usize = 32 * 1024;
/// gzip header: magic, deflate, no flags, mtime 0, XFL 0, OS 3 (Unix).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
/// A final, empty fixed-Huffman block: ends the deflate stream.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

type Done = (u64, io::Result<Vec<u8>>, crc32fast::Hasher);

struct Job {
    index: u64,
    dict: Vec<u8>,
    data: Vec<u8>,
}

struct Pool {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    threads: usize,
}

/// A gzip writer compressing 1 MiB blocks on `threads` worker threads.
pub struct ParallelGzip<W: Write> {
    inner: W,
    level: u32,
    block: Vec<u8>,
    dict: Vec<u8>,
    crc: crc32fast::Hasher,
    pool: Option<Pool>,
    submitted: u64,
    written: u64,
    ready: BTreeMap<u64, (io::Result<Vec<u8>>, crc32fast::Hasher)>,
    header_done: bool,
    total: u64,
}

impl<W: Write> ParallelGzip<W> {
    /// A writer at `level` (0–9); `threads` ≤ 1 compresses on the caller's
    /// thread. Nothing is written until the first block or `finish`.
    pub fn new(inner: W, level: u32, threads: usize) -> ParallelGzip<W> {
        let pool = (threads > 1).then(|| start_pool(threads, level.min(9)));
        ParallelGzip {
            inner,
            level: level.min(9),
            block: Vec::with_capacity(BLOCK_SIZE),
            dict: Vec::new(),
            crc: crc32fast::Hasher::new(),
            pool,
            submitted: 0,
            written: 0,
            ready: BTreeMap::new(),
            header_done: false,
            total: 0,
        }
    }

    /// Compress the rest, write the final block and trailer, and give back
    /// the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.block.is_empty() {
            self.submit()?;
        }
        self.drain(0)?;
        self.write_header()?;
        self.inner.write_all(&FINAL_BLOCK)?;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.clone().finalize().to_le_bytes());
        // ISIZE is the input length modulo 2^32.
        trailer[4..].copy_from_slice(&(self.total as u32).to_le_bytes());
        self.inner.write_all(&trailer)?;
        if let Some(mut pool) = self.pool.take() {
            pool.jobs = None;
            for w in pool.workers.drain(..) {
                w.join()
                    .map_err(|_| io::Error::other("gzip worker thread panicked"))?;
            }
        }
        self.inner.flush()?;
        Ok(self.inner)
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_done {
            self.inner.write_all(&HEADER)?;
            self.header_done = true;
        }
        Ok(())
    }

    /// Hand the current block to a worker (or compress it here).
    fn submit(&mut self) -> io::Result<()> {
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_SIZE));
        let dict = std::mem::take(&mut self.dict);
        self.dict = data[data.len().saturating_sub(DICT_SIZE)..].to_vec();
        let index = self.submitted;
        self.submitted += 1;
        match &self.pool {
            None => {
                let (out, crc) = compress_block(&dict, &data, self.level);
                self.ready.insert(index, (out, crc));
                self.drain(0)
            }
            Some(pool) => {
                let limit = 2 * pool.threads as u64;
                let sent = pool
                    .jobs
                    .as_ref()
                    .map(|j| j.send(Job { index, dict, data }).is_ok())
                    .unwrap_or(false);
                if !sent {
                    return Err(io::Error::other("gzip worker threads stopped"));
                }
                self.drain(limit - 1)
            }
        }
    }

    /// Write finished blocks in order until at most `in_flight` remain.
    fn drain(&mut self, in_flight: u64) -> io::Result<()> {
        loop {
            while let Some((out, crc)) = self.ready.remove(&self.written) {
                let out = out?;
                self.write_header()?;
                self.inner.write_all(&out)?;
                self.crc.combine(&crc);
                self.written += 1;
            }
            if self.submitted - self.written <= in_flight {
                return Ok(());
            }
            let pool = self
                .pool
                .as_ref()
                .ok_or_else(|| io::Error::other("gzip block lost"))?;
            let (index, out, crc) = pool
                .done
                .recv()
                .map_err(|_| io::Error::other("gzip worker threads stopped"))?;
            self.ready.insert(index, (out, crc));
        }
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK_SIZE - self.block.len();
        let n = room.min(buf.len());
        self.block.extend_from_slice(&buf[..n]);
        self.total += n as u64;
        if self.block.len() == BLOCK_SIZE {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Take what is ready without waiting, then flush the sink.
        if let Some(pool) = &self.pool {
            while let Ok((index, out, crc)) = pool.done.try_recv() {
                self.ready.insert(index, (out, crc));
            }
        }
        let in_flight = self.submitted - self.written;
        self.drain(in_flight)?;
        self.inner.flush()
    }
}

fn start_pool(threads: usize, level: u32) -> Pool {
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let workers = (0..threads)
        .map(|_| {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            std::thread::spawn(move || loop {
                let job = match job_rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok(job) = job else { return };
                // A panic must not leave the writer waiting for this block.
                let (out, crc) =
                    std::panic::catch_unwind(|| compress_block(&job.dict, &job.data, level))
                        .unwrap_or_else(|_| {
                            let err = io::Error::other("gzip worker panicked");
                            (Err(err), crc32fast::Hasher::new())
                        });
                if done_tx.send((job.index, out, crc)).is_err() {
                    return;
                }
            })
        })
        .collect();
    Pool {
        jobs: Some(job_tx),
        done: done_rx,
        workers,
        threads,
    }
}

/// Raw-deflate `data` primed with `dict`, ending byte-aligned with a sync
/// flush and without a final block; also its CRC32.
fn compress_block(
    dict: &[u8],
    data: &[u8],
    level: u32,
) -> (io::Result<Vec<u8>>, crc32fast::Hasher) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(data);
    (deflate_sync(dict, data, level), crc)
}

fn deflate_sync(dict: &[u8], data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(flate2::Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let mut input = data;
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let before = c.total_in();
        c.compress_vec(input, &mut out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        input = &input[(c.total_in() - before) as usize..];
        // The flush is complete once deflate stops with output space left.
        if input.is_empty() && out.len() < out.capacity() {
            return Ok(out);
        }
    }
}
