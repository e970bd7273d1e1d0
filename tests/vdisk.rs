//! Integration tests: virtual-disk containers (qcow2, VHD fixed and
//! dynamic, streamOptimized VMDK) over a raw image made in the test, each
//! checked by `qemu-img` (`check`, `compare` against the raw image, `info`)
//! and written twice to prove the bytes repeat. `qemu-img` (Debian
//! `qemu-utils`) is required: its absence fails the tests.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;

use kiln::output::qcow2::write_qcow2;
use kiln::output::vhd::{write_vhd_dynamic, write_vhd_fixed};
use kiln::output::vmdk::write_vmdk_stream_optimized;

use crate::support::TestDir;

const MIB: usize = 1 << 20;
const EPOCH: i64 = 1_700_000_000;

/// `len` bytes: noise at the start, text at 3 MiB, a marked last sector,
/// zeros everywhere else.
fn raw_image(len: usize) -> Vec<u8> {
    let mut raw = vec![0u8; len];
    let mut x: u32 = 0x1234_5678;
    for b in &mut raw[..200 * 1024] {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *b = (x >> 24) as u8;
    }
    let text = b"kiln writes virtual disks without qemu-img. ".repeat(300);
    raw[3 * MIB + 1000..3 * MIB + 1000 + text.len()].copy_from_slice(&text);
    raw[len - 512..].fill(0xEE);
    raw
}

/// Which writer to run.
#[derive(Clone, Copy, Debug)]
enum Format {
    Qcow2,
    VhdFixed,
    VhdDynamic,
    Vmdk,
}

impl Format {
    /// The `qemu-img -f` name.
    fn qemu(self) -> &'static str {
        match self {
            Format::Qcow2 => "qcow2",
            Format::VhdFixed | Format::VhdDynamic => "vpc",
            Format::Vmdk => "vmdk",
        }
    }
}

/// Writes `raw` (through a file, as the pipeline does) in `format` to
/// `dir/name`; gives the container's bytes.
fn write(dir: &TestDir, raw: &[u8], format: Format, name: &str, epoch: i64) -> Vec<u8> {
    let raw_path = dir.write(format!("{name}.raw"), raw);
    let mut src = File::open(&raw_path).expect("open raw");
    let out = dir.join(name);
    let file = File::create(&out).expect("create output");
    let mut w = BufWriter::new(file);
    let len = raw.len() as u64;
    let n = match format {
        Format::Qcow2 => write_qcow2(&mut src, len, &mut w),
        Format::VhdFixed => write_vhd_fixed(&mut src, len, epoch, &mut w),
        Format::VhdDynamic => write_vhd_dynamic(&mut src, len, epoch, &mut w),
        Format::Vmdk => write_vmdk_stream_optimized(&mut src, len, &mut w),
    }
    .unwrap_or_else(|e| panic!("write {format:?}: {e}"));
    w.flush().expect("flush");
    drop(w);
    let bytes = std::fs::read(&out).expect("read output");
    assert_eq!(n, bytes.len() as u64, "{format:?}: returned length");
    bytes
}

/// Runs `qemu-img args`; gives (success, stdout + stderr).
fn qemu_img(args: &[&str]) -> (bool, String) {
    let out = Command::new("qemu-img")
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| panic!("qemu-img is required (Debian package qemu-utils): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// `qemu-img compare` says the container reads back as the raw image.
fn assert_identical(dir: &TestDir, name: &str, format: Format) {
    let raw = dir.join(format!("{name}.raw"));
    let img = dir.join(name);
    let (ok, text) = qemu_img(&[
        "compare",
        "-f",
        "raw",
        "-F",
        format.qemu(),
        path_str(&raw),
        path_str(&img),
    ]);
    assert!(ok && text.contains("Images are identical"), "{text}");
}

/// `qemu-img info --output=json` of the container.
fn info(dir: &TestDir, name: &str, format: Format) -> serde_json::Value {
    let img = dir.join(name);
    let (ok, text) = qemu_img(&["info", "--output=json", "-f", format.qemu(), path_str(&img)]);
    assert!(ok, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("info json: {e}\n{text}"))
}

/// `qemu-img check` finds no errors.
fn assert_checks(dir: &TestDir, name: &str, format: Format) {
    let img = dir.join(name);
    let (ok, text) = qemu_img(&["check", "-f", format.qemu(), path_str(&img)]);
    assert!(ok && text.contains("No errors were found"), "{text}");
}

#[test]
fn qcow2_reads_back_and_checks_clean() {
    let dir = TestDir::new();
    let raw = raw_image(8 * MIB);
    let bytes = write(&dir, &raw, Format::Qcow2, "a.qcow2", EPOCH);
    assert_checks(&dir, "a.qcow2", Format::Qcow2);
    assert_identical(&dir, "a.qcow2", Format::Qcow2);
    let info = info(&dir, "a.qcow2", Format::Qcow2);
    assert_eq!(info["virtual-size"], 8 * MIB, "{info}");
    assert_eq!(info["cluster-size"], 65536, "{info}");
    assert_eq!(info["format-specific"]["data"]["compat"], "1.1", "{info}");
    assert_eq!(
        info["format-specific"]["data"]["refcount-bits"], 16,
        "{info}"
    );
    // Header, 4 + 1 + 1 data clusters, one L2 table, the L1 table, the
    // refcount table and one refcount block: zero clusters take no space.
    assert_eq!(bytes.len(), 11 * 65536);
}

#[test]
fn qcow2_unaligned_length() {
    let dir = TestDir::new();
    let raw = raw_image(5 * MIB + 1536);
    write(&dir, &raw, Format::Qcow2, "b.qcow2", EPOCH);
    assert_checks(&dir, "b.qcow2", Format::Qcow2);
    assert_identical(&dir, "b.qcow2", Format::Qcow2);
    assert_eq!(
        info(&dir, "b.qcow2", Format::Qcow2)["virtual-size"],
        raw.len()
    );
}

#[test]
fn vhd_fixed_reads_back_at_chs_size() {
    let dir = TestDir::new();
    let raw = raw_image(8 * MIB);
    let bytes = write(&dir, &raw, Format::VhdFixed, "a.vhd", EPOCH);
    // 8 MiB rounds up to 17 MiB: 512 cylinders × 4 heads × 17 sectors.
    assert_eq!(bytes.len(), 17 * MIB + 512);
    assert_eq!(&bytes[..8 * MIB], &raw[..]);
    assert_identical(&dir, "a.vhd", Format::VhdFixed);
    let info = info(&dir, "a.vhd", Format::VhdFixed);
    assert_eq!(info["virtual-size"], 17 * MIB, "{info}");
    assert_eq!(info["format"], "vpc", "{info}");
}

#[test]
fn vhd_dynamic_reads_back_and_skips_zero_blocks() {
    let dir = TestDir::new();
    let raw = raw_image(8 * MIB);
    let bytes = write(&dir, &raw, Format::VhdDynamic, "a.vhd", EPOCH);
    assert_identical(&dir, "a.vhd", Format::VhdDynamic);
    let info = info(&dir, "a.vhd", Format::VhdDynamic);
    assert_eq!(info["virtual-size"], 17 * MIB, "{info}");
    // Blocks 0, 1 and 3 of 9 hold data.
    let block = (2 * MIB + 512) as u64;
    assert_eq!(bytes.len() as u64, 512 + 1024 + 512 + 3 * block + 512);
    // Converting back gives the raw data followed by the padding's zeros.
    let back = dir.join("back.raw");
    let (ok, text) = qemu_img(&[
        "convert",
        "-f",
        "vpc",
        "-O",
        "raw",
        path_str(&dir.join("a.vhd")),
        path_str(&back),
    ]);
    assert!(ok, "{text}");
    let back = std::fs::read(back).expect("read converted");
    assert_eq!(back.len(), 17 * MIB);
    assert_eq!(&back[..8 * MIB], &raw[..]);
    assert!(back[8 * MIB..].iter().all(|&b| b == 0));
}

#[test]
fn vmdk_stream_optimized_reads_back_and_checks_clean() {
    let dir = TestDir::new();
    let raw = raw_image(8 * MIB);
    let bytes = write(&dir, &raw, Format::Vmdk, "a.vmdk", EPOCH);
    assert_checks(&dir, "a.vmdk", Format::Vmdk);
    assert_identical(&dir, "a.vmdk", Format::Vmdk);
    let info = info(&dir, "a.vmdk", Format::Vmdk);
    assert_eq!(info["virtual-size"], 8 * MIB, "{info}");
    let data = &info["format-specific"]["data"];
    assert_eq!(data["create-type"], "streamOptimized", "{info}");
    assert_eq!(data["extents"][0]["compressed"], true, "{info}");
    // The 200 KiB of noise does not compress; the rest nearly vanishes.
    assert!(bytes.len() < 400 * 1024, "{}", bytes.len());
}

#[test]
fn vmdk_unaligned_length() {
    let dir = TestDir::new();
    let raw = raw_image(5 * MIB + 1536);
    write(&dir, &raw, Format::Vmdk, "b.vmdk", EPOCH);
    assert_checks(&dir, "b.vmdk", Format::Vmdk);
    assert_identical(&dir, "b.vmdk", Format::Vmdk);
}

#[test]
fn every_format_repeats_its_bytes() {
    let dir = TestDir::new();
    let raw = raw_image(8 * MIB);
    for format in [
        Format::Qcow2,
        Format::VhdFixed,
        Format::VhdDynamic,
        Format::Vmdk,
    ] {
        let a = write(&dir, &raw, format, "one", EPOCH);
        let b = write(&dir, &raw, format, "two", EPOCH);
        assert!(a == b, "{format:?}: two writes differ");
    }
    // The epoch reaches the VHD footer (timestamp and unique id) only.
    let a = write(&dir, &raw, Format::VhdFixed, "one", EPOCH);
    let b = write(&dir, &raw, Format::VhdFixed, "two", EPOCH + 1);
    let end = a.len() - 512;
    assert_eq!(a[..end], b[..end]);
    assert_ne!(a[end..], b[end..]);
}

#[test]
fn mostly_zero_image_stays_small() {
    let dir = TestDir::new();
    let mut raw = vec![0u8; 64 * MIB];
    raw[40 * MIB] = 1;
    let q = write(&dir, &raw, Format::Qcow2, "z.qcow2", EPOCH);
    assert_eq!(q.len(), 6 * 65536);
    assert_identical(&dir, "z.qcow2", Format::Qcow2);
    let v = write(&dir, &raw, Format::Vmdk, "z.vmdk", EPOCH);
    assert!(v.len() < 128 * 1024, "{}", v.len());
    assert_identical(&dir, "z.vmdk", Format::Vmdk);
    let d = write(&dir, &raw, Format::VhdDynamic, "z.vhd", EPOCH);
    assert!(d.len() < 3 * MIB, "{}", d.len());
    assert_identical(&dir, "z.vhd", Format::VhdDynamic);
}
