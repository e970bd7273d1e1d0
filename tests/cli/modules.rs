//! The kernel image's modules tar is unpacked while the image itself is
//! (issue 14): the modules come from the tar the finished image holds,
//! whatever its layers did to it, and a broken or missing tar fails with
//! the message it always had.

use std::io::Write;

use crate::support::{kiln, stderr, stdout, write_layout, LayerBuilder, TestDir, TestImage};

/// A modules tar holding `lib/modules/6.1.0-kiln/NAME.ko`.
fn modules_tar(name: &str) -> Vec<u8> {
    LayerBuilder::new()
        .dir("lib", 0o755)
        .dir("lib/modules", 0o755)
        .dir("lib/modules/6.1.0-kiln", 0o755)
        .file(
            &format!("lib/modules/6.1.0-kiln/{name}.ko"),
            [0x7f, b'E', b'L', b'F', name.len() as u8],
            0o644,
        )
        .build()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn kernel_layer(tar: Vec<u8>) -> Vec<u8> {
    LayerBuilder::new()
        .file("kernel", b"MZ kernel\n", 0o644)
        .file("kernel.tar", tar, 0o644)
        .build()
}

fn setup() -> TestDir {
    let t = TestDir::new();
    let truncated = modules_tar("a")[..700].to_vec();
    write_layout(
        &t.join("oci-layout"),
        &[
            // A later layer replaces the tar (with a gzipped one).
            TestImage::new("kiln.test/kernel:replaced")
                .layer(kernel_layer(modules_tar("a")))
                .layer(
                    LayerBuilder::new()
                        .file("kernel.tar", gzip(&modules_tar("b")), 0o644)
                        .build(),
                ),
            // A later layer removes it.
            TestImage::new("kiln.test/kernel:removed")
                .layer(kernel_layer(modules_tar("a")))
                .layer(LayerBuilder::new().whiteout("kernel.tar").build()),
            TestImage::new("kiln.test/kernel:broken").layer(kernel_layer(truncated)),
            TestImage::new("kiln.test/init:1").layer(
                LayerBuilder::new()
                    .dir("bin", 0o755)
                    .file("bin/sh", "#!sh\n", 0o755)
                    .build(),
            ),
        ],
    );
    for tag in ["replaced", "removed", "broken"] {
        t.write(
            format!("{tag}.yml"),
            format!(
                "kernel:\n  image: kiln.test/kernel:{tag}\n  cmdline: console=ttyS0\n\
                 init:\n  - kiln.test/init:1\n"
            ),
        );
    }
    t
}

#[test]
fn modules_come_from_the_tar_the_image_ends_with() {
    let t = setup();
    let build = |tag: &str| {
        kiln(
            t.path(),
            &[
                "build",
                "-f",
                "kernel+initrd",
                "--compress",
                "none",
                "-o",
                tag,
                &format!("{tag}.yml"),
            ],
        )
    };

    let out = build("replaced");
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = kiln(t.path(), &["inspect", "replaced/replaced-initrd.img"]);
    let listing = stdout(&listed);
    assert!(listing.contains("lib/modules/6.1.0-kiln/b.ko"), "{listing}");
    assert!(!listing.contains("a.ko"), "{listing}");
    assert!(!listing.contains("kernel.tar"), "{listing}");

    let out = build("removed");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("kernel image kiln.test/kernel:removed has no file `kernel.tar`"),
        "{}",
        stderr(&out)
    );

    let out = build("broken");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unpacking kernel.tar of kernel image kiln.test/kernel:broken"),
        "{}",
        stderr(&out)
    );
    assert!(!t.join("broken").join("broken-initrd.img").exists());
}
