//! A layer's raw read, digest check and decompression on a thread of their
//! own, so they overlap the tar parsing, hashing and storing of the entries
//! on the caller's thread.
//!
//! The thread hands over the decompressed stream in [`CHUNK`]-byte pieces
//! through a channel holding at most [`IN_FLIGHT`] of them, so memory stays
//! bounded whatever the layer claims; the pieces' buffers go back to the
//! thread to be filled again. After the decompressed stream ends, the
//! thread reads the raw stream to its end (so a digest-checking reader
//! underneath sees every byte) and reports an error there separately.
//! When the caller stops reading (an error in the tar), it drops the
//! [`ReadAhead`], the thread's next send fails and it returns. Only the
//! timing changes: the bytes read are the ones a plain read would give.

use std::io::{self, BufRead, Read};
use std::sync::mpsc::{self, Receiver, SyncSender};

/// Bytes per piece handed over.
const CHUNK: usize = 256 << 10;
/// Pieces in the channel at most (the thread may fill one more).
const IN_FLIGHT: usize = 4;

/// What the thread sends.
enum Piece {
    /// The next decompressed bytes (never empty).
    Data(Vec<u8>),
    /// The decompressed stream ended; the raw stream is being drained.
    End,
    /// Reading or decompressing failed.
    Failed(io::Error),
    /// Draining the raw stream after the decompressed end failed.
    FailedAfter(io::Error),
}

/// The reading side: a [`Read`] of the decompressed stream.
pub(super) struct ReadAhead {
    pieces: Receiver<Piece>,
    empties: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    ended: bool,
}

/// Start reading `decoder` (the decompressed stream) on a thread of `scope`;
/// `into_raw` gives back its raw stream once it has ended.
pub(super) fn start<'scope, D, R>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    mut decoder: D,
    into_raw: impl FnOnce(D) -> R + Send + 'scope,
) -> ReadAhead
where
    D: Read + Send + 'scope,
    R: BufRead,
{
    let (piece_tx, pieces) = mpsc::sync_channel(IN_FLIGHT);
    let (empties, empty_rx) = mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT + 2);
    scope.spawn(move || {
        loop {
            let mut buf = empty_rx.try_recv().unwrap_or_default();
            buf.resize(CHUNK, 0);
            let piece = match crate::tree::fill(&mut decoder, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    Piece::Data(buf)
                }
                Err(e) => Piece::Failed(e),
            };
            let failed = matches!(piece, Piece::Failed(_));
            if piece_tx.send(piece).is_err() || failed {
                return;
            }
        }
        if piece_tx.send(Piece::End).is_err() {
            return;
        }
        let mut raw = into_raw(decoder);
        if let Err(e) = io::copy(&mut raw, &mut io::sink()) {
            let _ = piece_tx.send(Piece::FailedAfter(e));
        }
    });
    ReadAhead {
        pieces,
        empties,
        current: Vec::new(),
        pos: 0,
        ended: false,
    }
}

impl ReadAhead {
    /// Wait for the thread to drain the raw stream; its error, if any.
    /// Call after this reader gave its end (0 bytes).
    pub(super) fn finish_raw(self) -> io::Result<()> {
        for piece in self.pieces.iter() {
            match piece {
                Piece::FailedAfter(e) | Piece::Failed(e) => return Err(e),
                Piece::Data(_) | Piece::End => {}
            }
        }
        Ok(())
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.ended {
                return Ok(0);
            }
            let piece = self.pieces.recv().map_err(|_| {
                io::Error::other("the decompressing thread stopped without saying why")
            })?;
            match piece {
                Piece::Data(data) => {
                    let spent = std::mem::replace(&mut self.current, data);
                    self.pos = 0;
                    // The thread allocates anew when none comes back.
                    let _ = self.empties.try_send(spent);
                }
                Piece::End => self.ended = true,
                Piece::Failed(e) | Piece::FailedAfter(e) => return Err(e),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives `data` in odd-sized reads, then fails if `fail` is set.
    struct Source {
        data: Vec<u8>,
        pos: usize,
        fail: Option<&'static str>,
    }

    impl Read for Source {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.data.len() {
                return match self.fail {
                    Some(m) => Err(io::Error::other(m)),
                    None => Ok(0),
                };
            }
            let n = buf.len().min(7919).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn gives_the_stream_unchanged_then_drains_the_raw_stream() {
        let input = data(CHUNK * 5 + 123);
        let raw_drained = std::sync::atomic::AtomicBool::new(false);
        let (out, after) = std::thread::scope(|s| {
            let source = Source {
                data: input.clone(),
                pos: 0,
                fail: None,
            };
            let mut r = start(s, source, |_| {
                raw_drained.store(true, std::sync::atomic::Ordering::SeqCst);
                &b"trailing raw bytes"[..]
            });
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            (out, r.finish_raw())
        });
        assert_eq!(out, input);
        after.unwrap();
        assert!(raw_drained.into_inner());
    }

    #[test]
    fn an_error_in_the_stream_reaches_the_reader() {
        let err = std::thread::scope(|s| {
            let source = Source {
                data: data(CHUNK + 5),
                pos: 0,
                fail: Some("digest mismatch"),
            };
            let mut r = start(s, source, |_| &b""[..]);
            r.read_to_end(&mut Vec::new()).unwrap_err()
        });
        assert_eq!(err.to_string(), "digest mismatch");
    }

    #[test]
    fn an_error_after_the_stream_is_reported_by_finish_raw() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("raw stream broken"))
            }
        }
        let (out, after) = std::thread::scope(|s| {
            let mut r = start(s, &b"abc"[..], |_| io::BufReader::new(Failing));
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            (out, r.finish_raw())
        });
        assert_eq!(out, b"abc");
        assert_eq!(after.unwrap_err().to_string(), "raw stream broken");
    }

    #[test]
    fn a_reader_that_stops_early_ends_the_thread() {
        // An endless stream: the scope returns only if the thread stops
        // once the reader is dropped.
        struct Endless;
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                buf.fill(7);
                Ok(buf.len())
            }
        }
        let first = std::thread::scope(|s| {
            let mut r = start(s, Endless, |_| &b""[..]);
            let mut first = [0u8; 10];
            r.read_exact(&mut first).unwrap();
            first
        });
        assert_eq!(first, [7; 10]);
    }
}
