//! Reading blobs from a layout while checking their size and digest.
//!
//! Takes a layout root, a descriptor's digest and size, and the name of the
//! image asking (for error messages); gives either the whole verified bytes
//! of a small JSON blob, or a [`BlobReader`] that hashes as it streams and
//! fails at EOF if the content is not what the descriptor promised. Never
//! hands out bytes of a JSON blob before they are verified, and never opens
//! a path not derived from a validated [`Digest`].

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::digest::{Digest, Hasher};
use super::error::OciError;
use super::json::Compression;

/// The largest index, manifest or config kiln reads (they are JSON; real
/// ones are a few KiB).
pub const MAX_JSON_BLOB: u64 = 4 << 20;

/// Which blob, where, and for which image: the context of every blob error.
#[derive(Clone, Debug)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
    pub path: PathBuf,
    pub image: String,
}

impl BlobRef {
    pub fn new(root: &Path, digest: Digest, size: u64, image: &str) -> BlobRef {
        BlobRef {
            path: root.join(digest.blob_path()),
            digest,
            size,
            image: image.to_string(),
        }
    }

    fn open(&self) -> Result<File, OciError> {
        crate::hostfile::open_regular(&self.path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                OciError::MissingBlob {
                    digest: self.digest.to_string(),
                    path: self.path.clone(),
                    image: self.image.clone(),
                }
            } else {
                OciError::io(&self.path, e)
            }
        })
    }

    fn size_mismatch(&self, actual: u64) -> OciError {
        OciError::SizeMismatch {
            digest: self.digest.to_string(),
            path: self.path.clone(),
            image: self.image.clone(),
            expected: self.size,
            actual,
        }
    }

    fn too_long(&self) -> OciError {
        OciError::TooLong {
            digest: self.digest.to_string(),
            path: self.path.clone(),
            image: self.image.clone(),
            expected: self.size,
        }
    }

    fn check_digest(&self, hasher: Hasher) -> Result<(), OciError> {
        let actual = hasher.finish();
        if actual != self.digest {
            return Err(OciError::DigestMismatch {
                digest: self.digest.to_string(),
                path: self.path.clone(),
                image: self.image.clone(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    }

    /// Reads the whole blob (at most [`MAX_JSON_BLOB`] bytes) and verifies it.
    pub fn read_verified(&self) -> Result<Vec<u8>, OciError> {
        if self.size > MAX_JSON_BLOB {
            return Err(OciError::JsonTooLarge {
                digest: self.digest.to_string(),
                path: self.path.clone(),
                image: self.image.clone(),
                size: self.size,
                limit: MAX_JSON_BLOB,
            });
        }
        let file = self.open()?;
        let mut bytes = Vec::with_capacity(self.size as usize);
        file.take(self.size + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| OciError::io(&self.path, e))?;
        if bytes.len() as u64 != self.size {
            return Err(if bytes.len() as u64 > self.size {
                self.too_long()
            } else {
                self.size_mismatch(bytes.len() as u64)
            });
        }
        let mut hasher = Hasher::new(self.digest.algorithm());
        hasher.update(&bytes);
        self.check_digest(hasher)?;
        Ok(bytes)
    }

    /// Opens the blob for streaming; a file whose length already differs
    /// from the descriptor is refused here.
    pub fn open_stream(&self) -> Result<BlobReader, OciError> {
        let file = self.open()?;
        let len = file
            .metadata()
            .map_err(|e| OciError::io(&self.path, e))?
            .len();
        if len != self.size {
            return Err(self.size_mismatch(len));
        }
        Ok(BlobReader {
            hasher: Some(Hasher::new(self.digest.algorithm())),
            file,
            read: 0,
            blob: self.clone(),
            failure: None,
        })
    }
}

/// A blob's bytes, hashed as they are read. At EOF the size and digest are
/// checked; a mismatch is an [`io::ErrorKind::InvalidData`] error whose
/// message names the digest, the path and the image. Read it to the end
/// (or call [`BlobReader::finish`]) before trusting anything read from it.
pub struct BlobReader {
    file: File,
    hasher: Option<Hasher>,
    read: u64,
    blob: BlobRef,
    /// Set once verification failed, so later reads fail the same way.
    failure: Option<String>,
}

impl BlobReader {
    /// Reads the rest of the blob and verifies it.
    pub fn finish(mut self) -> io::Result<()> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(())
    }

    /// Reads the rest of the blob and verifies it, giving the error as the
    /// [`OciError`] it is (missing, short, long or corrupt blob).
    pub fn verify(self) -> Result<(), OciError> {
        let path = self.blob.path.clone();
        self.finish().map_err(|e| {
            let kind = e.kind();
            match e.into_inner().map(|inner| inner.downcast::<OciError>()) {
                Some(Ok(oci)) => *oci,
                Some(Err(other)) => OciError::io(path, io::Error::new(kind, other)),
                None => OciError::io(path, io::Error::from(kind)),
            }
        })
    }

    /// The blob being read.
    pub fn blob(&self) -> &BlobRef {
        &self.blob
    }
}

impl BlobReader {
    fn fail(&mut self, e: OciError) -> io::Error {
        self.hasher = None;
        self.failure = Some(e.to_string());
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(f) = &self.failure {
            return Err(io::Error::new(io::ErrorKind::InvalidData, f.clone()));
        }
        let Some(hasher) = self.hasher.as_mut() else {
            return Ok(0);
        };
        // Never read past the declared end plus one byte: that byte is
        // enough to know the blob is too long.
        let room = (self.blob.size + 1 - self.read).min(buf.len() as u64) as usize;
        let n = self.file.read(&mut buf[..room])?;
        if n == 0 {
            if self.read != self.blob.size {
                let e = self.blob.size_mismatch(self.read);
                return Err(self.fail(e));
            }
            if let Some(hasher) = self.hasher.take() {
                if let Err(e) = self.blob.check_digest(hasher) {
                    return Err(self.fail(e));
                }
            }
            return Ok(0);
        }
        if self.read + n as u64 > self.blob.size {
            let e = self.blob.too_long();
            return Err(self.fail(e));
        }
        self.read += n as u64;
        hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A layer's uncompressed tar stream over a verified [`BlobReader`].
/// Call [`LayerReader::finish`] after the tar reader stops (tar readers stop
/// at the end-of-archive blocks, before the blob's EOF): it drains the rest
/// and runs the blob's size and digest checks.
pub struct LayerReader {
    inner: Decoder,
}

enum Decoder {
    None(BlobReader),
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<BlobReader>>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<BlobReader>>),
}

impl LayerReader {
    pub fn new(blob: BlobReader, compression: Compression) -> io::Result<LayerReader> {
        let inner = match compression {
            Compression::None => Decoder::None(blob),
            Compression::Gzip => Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(
                BufReader::new(blob),
            ))),
            Compression::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(
                BufReader::new(blob),
            )?),
        };
        Ok(LayerReader { inner })
    }

    /// Drains the decompressed stream, then the blob, and verifies the blob.
    pub fn finish(mut self) -> io::Result<()> {
        io::copy(&mut self, &mut io::sink())?;
        let blob = match self.inner {
            Decoder::None(b) => b,
            Decoder::Gzip(d) => d.into_inner().into_inner(),
            Decoder::Zstd(d) => d.finish().into_inner(),
        };
        blob.finish()
    }
}

impl Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Decoder::None(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
}
