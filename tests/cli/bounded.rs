//! Large inputs stream: a build's peak RSS grows with the metadata it
//! reads, not with the size of a file inside an image (issue 13, item 5).
//! The kernel image's `kernel.tar` and the init images' APK databases are
//! read out of the content store as streams; this test makes them far
//! larger than the bound it asserts.

use std::io::{self, Read, Write};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::support::rss::{kiln_measured, Bounds};
use crate::support::{stderr, write_layout, LayerBuilder, TestDir, TestImage};

const MIB: u64 = 1 << 20;

/// A writer that hashes what passes through it: the layer's diff id.
struct Hashing<W> {
    hasher: Sha256,
    inner: W,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn header(path: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(1);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    h
}

/// A gzip layer of `files`, each `(path, size, reader)`, streamed so the
/// test never holds a large file either: returns the blob and its diff id.
fn streamed_layer(files: Vec<(&str, u64, Box<dyn Read>)>) -> (Vec<u8>, String) {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(Hashing {
        hasher: Sha256::new(),
        inner: gz,
    });
    for (path, size, reader) in files {
        tar.append(&header(path, size), reader).unwrap();
    }
    let Hashing { hasher, inner } = tar.into_inner().unwrap();
    let diff_id = format!("sha256:{}", hex(&hasher.finalize()));
    (inner.finish().unwrap(), diff_id)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A tar holding one file of `size` zero bytes, as a stream, and its length.
fn zero_tar(path: &str, size: u64) -> (u64, Box<dyn Read>) {
    let head = header(path, size).as_bytes().to_vec();
    let padded = size.div_ceil(512) * 512;
    let len = 512 + padded + 1024;
    (
        len,
        Box::new(io::Cursor::new(head).chain(io::repeat(0).take(padded + 1024))),
    )
}

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

#[test]
fn kernel_tar_and_apk_databases_stream() {
    let t = TestDir::new();
    let (tar_len, tar) = zero_tar("lib/modules/6.1.0-kiln/kernel/huge.ko", 160 * MIB);
    let (kernel_layer, kernel_diff) = streamed_layer(vec![
        ("kernel", 4, Box::new(&b"MZ\0\0"[..])),
        ("kernel.tar", tar_len, tar),
    ]);
    let db = |i: u8| {
        let size = 48 * MIB;
        streamed_layer(vec![(
            "lib/apk/db/installed",
            size,
            Box::new(io::repeat(b'a' + i).take(size)),
        )])
    };
    let ((db1, db1_diff), (db2, db2_diff)) = (db(0), db(1));
    let busybox = LayerBuilder::new()
        .dir("bin", 0o755)
        .file("bin/sh", "#!sh\n", 0o755)
        .build();
    write_layout(
        &t.join("oci-layout"),
        &[
            TestImage::new("kiln.test/kernel:1").raw_layer(kernel_layer, GZIP, &kernel_diff),
            TestImage::new("kiln.test/init:1")
                .raw_layer(db1, GZIP, &db1_diff)
                .layer(busybox),
            TestImage::new("kiln.test/runc:1").raw_layer(db2, GZIP, &db2_diff),
        ],
    );
    t.write(
        "big.yml",
        "kernel:\n  image: kiln.test/kernel:1\n  cmdline: console=ttyS0\n\
         init:\n  - kiln.test/init:1\n  - kiln.test/runc:1\n",
    );
    let run = kiln_measured(&Bounds {
        dir: t.path(),
        args: &["build", "-f", "kernel+initrd", "-o", "out", "big.yml"],
        env: &[],
        file_size_limit: None,
        deadline: Duration::from_secs(120),
    });
    assert!(run.output.status.success(), "{}", stderr(&run.output));
    let rss_mib = run.peak_rss >> 20;
    eprintln!("peak RSS {rss_mib} MiB in {:.1} s", run.secs);
    // The old reader held kernel.tar (160 MiB) and both databases in memory.
    assert!(
        rss_mib < 80,
        "peak RSS {rss_mib} MiB with a 160 MiB kernel.tar"
    );

    // The image holds what streamed through: the module and the merged database.
    let listing = Command::new("sh")
        .current_dir(t.path())
        .arg("-c")
        .arg("zcat out/big-initrd.img | cpio -t -v 2>/dev/null")
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let size_of = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .and_then(|l| l.split_whitespace().nth(4))
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{path} not in the initrd:\n{listing}"))
    };
    assert_eq!(size_of("lib/modules/6.1.0-kiln/kernel/huge.ko"), 160 * MIB);
    assert_eq!(size_of("lib/apk/db/installed"), 2 * (48 * MIB + 2));
}
