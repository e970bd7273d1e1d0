//! The `uki` format: a Unified Kernel Image (`NAME.efi`), the systemd-stub
//! EFI program with the kernel, initrd, command line and os-release
//! appended as PE sections, bootable straight from an ESP by UEFI firmware.
//!
//! Takes the stub's bytes, the section payloads and the content store; gives
//! the image's bytes, streamed to a writer (the initrd and the kernel may be
//! large and are never held in memory when they live in the store or a
//! file). The layout follows systemd's `ukify`: the stub's headers and
//! sections are kept, and `.osrel`, `.cmdline`, `.initrd` and `.linux` are
//! appended in that order, `.linux` last because the kernel may use memory
//! past its own end. Each new section starts at the next `SectionAlignment`
//! boundary in memory and the next `FileAlignment` boundary in the file.
//!
//! The PE writing is done by hand here because no maintained Rust crate
//! rewrites an existing PE image deterministically: `object`'s PE writer
//! builds images from scratch and `goblin` only reads. What is rewritten is
//! small: the COFF and optional header fields below, and the section table.
//!
//! Determinism: `TimeDateStamp` and `CheckSum` are set to 0 (UEFI firmware,
//! systemd-stub and shim ignore the checksum; signing tools recompute it),
//! and the certificate table is cleared, since a signature of the stub would
//! not cover the new sections. Whatever the stub carries after its last
//! section (a COFF symbol table, a signature) is dropped. This module never
//! reads the clock or the host; a malformed stub is an `InvalidData` error
//! naming the problem, never a panic.

use std::io::{self, Read, Write};

use super::{invalid, Counter, ZEROS};
use crate::tree::{Content, ContentStore};
use pe::{bad, CERTIFICATE_DIRECTORY, SECTION_HEADER};
pub use pe::{read_pe, PeInfo, Section};

mod pe;

/// The bytes of one section, or one piece of it.
pub enum Blob<'a> {
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// Content of the store, copied without loading it whole.
    Stored(&'a Content),
    /// A reader that must yield exactly `len` bytes (e.g. a temp file
    /// rewound to its start).
    Reader { reader: &'a mut dyn Read, len: u64 },
}

impl Blob<'_> {
    pub fn len(&self) -> u64 {
        match self {
            Blob::Bytes(b) => b.len() as u64,
            Blob::Stored(c) => c.len(),
            Blob::Reader { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What goes into a UKI.
pub struct UkiParts<'a> {
    /// The systemd-stub PE image (`linuxx64.efi.stub`).
    pub stub: &'a [u8],
    /// The `.osrel` section: os-release text (empty: no section).
    pub osrel: &'a [u8],
    /// The `.cmdline` section: the kernel command line (empty: no section).
    pub cmdline: &'a [u8],
    /// The `.initrd` section, the concatenation of these pieces in order
    /// (e.g. a microcode cpio, then the initrd); none or empty: no section.
    pub initrd: Vec<Blob<'a>>,
    /// The `.linux` section: the kernel (a bzImage); must not be empty.
    pub linux: Blob<'a>,
}

/// Section characteristics of the appended sections: initialised, readable data.
const DATA_READ: u32 = 0x0000_0040 | 0x4000_0000;

/// Write the UKI made of `parts` to `w`; gives the number of bytes written.
///
/// Fails with `InvalidData` if the stub is not a well-formed PE image, has
/// no room for four more section headers before its first section, or the
/// result would not fit the 32-bit sizes of PE; with `UnexpectedEof` or
/// `InvalidData` if a [`Blob::Reader`] yields fewer or more bytes than it
/// declared.
pub fn write_uki(parts: UkiParts<'_>, store: &ContentStore, w: &mut dyn Write) -> io::Result<u64> {
    let UkiParts {
        stub,
        osrel,
        cmdline,
        initrd,
        linux,
    } = parts;
    if linux.is_empty() {
        return Err(invalid("uki: the kernel (.linux) is empty".to_string()));
    }
    let pe = read_pe(stub)?;
    let mut added: Vec<(&[u8; 8], Vec<Blob>)> = Vec::new();
    for (name, blobs) in [
        (b".osrel\0\0", vec![Blob::Bytes(osrel)]),
        (b".cmdline", vec![Blob::Bytes(cmdline)]),
        (b".initrd\0", initrd),
        (b".linux\0\0", vec![linux]),
    ] {
        if blobs.iter().any(|b| !b.is_empty()) {
            added.push((name, blobs));
        }
    }
    let (header, sections) = plan(stub, &pe, &added)?;

    let mut out = Counter { inner: w, count: 0 };
    out.write_all(&header)?;
    for (section, (_, blobs)) in sections.iter().zip(added) {
        pad_to(&mut out, section.raw_offset as u64)?;
        let label = String::from_utf8_lossy(section.name()).into_owned();
        for blob in blobs {
            copy_blob(blob, store, &mut out, &label)?;
        }
        pad_to(
            &mut out,
            section.raw_offset as u64 + section.raw_size as u64,
        )?;
    }
    Ok(out.count)
}

/// The new headers (the stub's bytes up to the end of its last section,
/// patched) and the appended sections' table entries.
fn plan(
    stub: &[u8],
    pe: &PeInfo,
    added: &[(&[u8; 8], Vec<Blob>)],
) -> io::Result<(Vec<u8>, Vec<Section>)> {
    // Room for the new section headers: before SizeOfHeaders and before
    // the first byte of any section's data.
    let table_end = pe.section_table + (pe.sections.len() + added.len()) * SECTION_HEADER;
    let first_data = pe
        .sections
        .iter()
        .filter(|s| s.raw_size > 0)
        .map(|s| s.raw_offset as usize)
        .min()
        .unwrap_or(usize::MAX)
        .min(pe.size_of_headers as usize);
    if table_end > first_data {
        return Err(bad(&format!(
            "no room for {} more section headers: the table would end at {table_end:#x}, \
             but the headers end at {first_data:#x}",
            added.len()
        )));
    }

    // The stub is kept up to the end of its headers and last section (all
    // inside the file: `read_pe` checked them).
    let keep = pe
        .sections
        .iter()
        .filter(|s| s.raw_size > 0)
        .map(|s| s.raw_offset as usize + s.raw_size as usize)
        .chain([pe.size_of_headers as usize, table_end])
        .max()
        .unwrap_or(table_end);
    let mut header = stub[..keep.min(stub.len())].to_vec();
    header.resize(keep, 0);

    let mut va = pe
        .sections
        .iter()
        .map(|s| s.virtual_address as u64 + s.virtual_size.max(s.raw_size) as u64)
        .chain([pe.size_of_image as u64])
        .max()
        .unwrap_or(0);
    let mut offset = keep as u64;
    let mut sections = Vec::new();
    let mut initialized = pe.size_of_initialized_data as u64;
    for (name, blobs) in added {
        let len = blobs
            .iter()
            .fold(0u64, |sum, b| sum.saturating_add(b.len()));
        let len = u64::from(fit(len, *name)?);
        va = align(va, pe.section_alignment);
        offset = align(offset, pe.file_alignment);
        let raw_size = align(len, pe.file_alignment);
        let s = Section {
            name: **name,
            virtual_size: fit(len, *name)?,
            virtual_address: fit(va, *name)?,
            raw_size: fit(raw_size, *name)?,
            raw_offset: fit(offset, *name)?,
            characteristics: DATA_READ,
        };
        fit(offset + raw_size, *name)?;
        va += len;
        offset += raw_size;
        initialized += raw_size;
        sections.push(s);
    }
    let size_of_image = fit(align(va, pe.section_alignment), b"image")?;

    let total = pe.sections.len() + sections.len();
    let nsections = u16::try_from(total).map_err(|_| bad("too many sections"))?;
    put16(&mut header, pe.coff + 2, nsections);
    put32(&mut header, pe.coff + 4, 0); // TimeDateStamp
    if pe.symbol_table as usize >= keep {
        // The COFF symbol table was past the kept bytes: it is gone.
        put32(&mut header, pe.coff + 8, 0);
        put32(&mut header, pe.coff + 12, 0);
    }
    put32(
        &mut header,
        pe.optional + 8,
        initialized.min(u32::MAX as u64) as u32,
    );
    put32(&mut header, pe.optional + 56, size_of_image);
    put32(&mut header, pe.optional + 64, 0); // CheckSum
    if pe.directories.1 > CERTIFICATE_DIRECTORY {
        let at = pe.directories.0 + 8 * CERTIFICATE_DIRECTORY as usize;
        put32(&mut header, at, 0);
        put32(&mut header, at + 4, 0);
    }
    for (i, s) in sections.iter().enumerate() {
        let at = pe.section_table + (pe.sections.len() + i) * SECTION_HEADER;
        let entry = &mut header[at..at + SECTION_HEADER];
        entry.fill(0);
        entry[..8].copy_from_slice(&s.name);
        entry[8..12].copy_from_slice(&s.virtual_size.to_le_bytes());
        entry[12..16].copy_from_slice(&s.virtual_address.to_le_bytes());
        entry[16..20].copy_from_slice(&s.raw_size.to_le_bytes());
        entry[20..24].copy_from_slice(&s.raw_offset.to_le_bytes());
        entry[36..40].copy_from_slice(&s.characteristics.to_le_bytes());
    }
    Ok((header, sections))
}

/// Copy one blob, checking that a reader gives exactly its declared length.
fn copy_blob(blob: Blob, store: &ContentStore, out: &mut Counter, section: &str) -> io::Result<()> {
    match blob {
        Blob::Bytes(b) => out.write_all(b),
        Blob::Stored(c) => store.copy_to(c, out),
        Blob::Reader { reader, len } => {
            let n = io::copy(&mut (&mut *reader).take(len), out)?;
            if n < len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("uki: {section}: the input ended after {n} of {len} bytes"),
                ));
            }
            let mut extra = [0u8; 1];
            if reader.read(&mut extra)? > 0 {
                return Err(invalid(format!(
                    "uki: {section}: the input is longer than the {len} bytes declared"
                )));
            }
            Ok(())
        }
    }
}

/// Write zeros until `out` has written `to` bytes.
fn pad_to(out: &mut Counter, to: u64) -> io::Result<()> {
    while out.count < to {
        let n = (to - out.count).min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..n])?;
    }
    Ok(())
}

fn align(v: u64, a: u32) -> u64 {
    let a = a.max(1) as u64;
    v.div_ceil(a) * a
}

/// `v` as a PE 32-bit field, or an error naming what is too large.
fn fit(v: u64, what: &[u8]) -> io::Result<u32> {
    u32::try_from(v).map_err(|_| {
        invalid(format!(
            "uki: {} does not fit the 4 GiB limit of a PE image",
            String::from_utf8_lossy(what).trim_end_matches('\0')
        ))
    })
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PE32+ image with one `.text` section: headers end at `headers`,
    /// `.text` (0x200 bytes of 0xcc) follows, then an 8-byte "signature".
    fn stub(headers: u32) -> Vec<u8> {
        let mut b = vec![0u8; headers as usize + 0x208];
        b[..2].copy_from_slice(b"MZ");
        put32(&mut b, 0x3c, 0x40);
        b[0x40..0x44].copy_from_slice(b"PE\0\0");
        put16(&mut b, 0x44, 0x8664);
        put16(&mut b, 0x46, 1);
        put32(&mut b, 0x48, 0x1234_5678);
        put32(&mut b, 0x4c, headers + 0x200); // symbol table past .text
        put32(&mut b, 0x50, 1);
        put16(&mut b, 0x54, 240);
        let opt = 0x58;
        put16(&mut b, opt, 0x20b);
        put32(&mut b, opt + 8, 0x200);
        put32(&mut b, opt + 32, 0x1000);
        put32(&mut b, opt + 36, 0x200);
        put32(&mut b, opt + 56, 0x2000);
        put32(&mut b, opt + 60, headers);
        put32(&mut b, opt + 64, 0xdead);
        put32(&mut b, opt + 108, 16);
        put32(&mut b, opt + 112 + 32, headers + 0x200);
        put32(&mut b, opt + 112 + 36, 8);
        let t = opt + 240;
        b[t..t + 5].copy_from_slice(b".text");
        put32(&mut b, t + 8, 0x10);
        put32(&mut b, t + 12, 0x1000);
        put32(&mut b, t + 16, 0x200);
        put32(&mut b, t + 20, headers);
        put32(&mut b, t + 36, 0x6000_0020);
        b[headers as usize..headers as usize + 0x200].fill(0xcc);
        b[headers as usize + 0x200..].fill(0x55);
        b
    }

    fn build<'a>(stub: &'a [u8], cmdline: &'a [u8], initrd: Vec<Blob<'a>>) -> io::Result<Vec<u8>> {
        let store = ContentStore::new()?;
        let mut out = Vec::new();
        let parts = UkiParts {
            stub,
            osrel: b"ID=kiln\n",
            cmdline,
            initrd,
            linux: Blob::Bytes(b"MZ kernel"),
        };
        let n = write_uki(parts, &store, &mut out)?;
        assert_eq!(n, out.len() as u64);
        Ok(out)
    }

    #[test]
    fn sections_are_appended_aligned_with_linux_last() {
        let stub = stub(0x400);
        let uki = build(&stub, b"console=ttyS0", vec![Blob::Bytes(b"cpio")]).unwrap();
        let pe = read_pe(&uki).unwrap();
        let names: Vec<&[u8]> = pe.sections.iter().map(Section::name).collect();
        assert_eq!(
            names,
            [&b".text"[..], b".osrel", b".cmdline", b".initrd", b".linux"]
        );
        let vas: Vec<u32> = pe.sections.iter().map(|s| s.virtual_address).collect();
        assert_eq!(vas, [0x1000, 0x2000, 0x3000, 0x4000, 0x5000]);
        let offsets: Vec<u32> = pe.sections.iter().map(|s| s.raw_offset).collect();
        assert_eq!(offsets, [0x400, 0x600, 0x800, 0xa00, 0xc00]);
        assert_eq!(pe.size_of_image, 0x6000);
        assert_eq!(pe.size_of_initialized_data, 0x200 + 4 * 0x200);
        assert_eq!((pe.time_date_stamp, pe.checksum), (0, 0));
        assert_eq!(pe.certificate_table, (0, 0));
        assert_eq!(uki.len(), 0xe00);
        // The stub's section is intact; its signature and symbols are gone.
        assert_eq!(
            &uki[..0x148],
            &{
                let mut h = stub[..0x148].to_vec();
                h[0x46] = 5;
                h[0x48..0x54].fill(0);
                put32(&mut h, 0x58 + 56, 0x6000);
                put32(&mut h, 0x58 + 8, 0xa00);
                put32(&mut h, 0x58 + 64, 0);
                h[0x58 + 144..0x58 + 152].fill(0);
                h
            }[..]
        );
        assert_eq!(&uki[0x400..0x600], &stub[0x400..0x600]);
        let body = |i: usize| {
            let s = &pe.sections[i];
            &uki[s.raw_offset as usize..][..s.virtual_size as usize]
        };
        assert_eq!(body(2), b"console=ttyS0");
        assert_eq!(body(4), b"MZ kernel");
    }

    #[test]
    fn empty_parts_get_no_section() {
        let uki = build(&stub(0x400), b"", vec![]).unwrap();
        let pe = read_pe(&uki).unwrap();
        let names: Vec<&[u8]> = pe.sections.iter().map(Section::name).collect();
        assert_eq!(names, [&b".text"[..], b".osrel", b".linux"]);
    }

    #[test]
    fn a_stub_without_room_for_headers_is_an_error() {
        let stub = stub(0x200);
        let Err(err) = build(&stub, b"x", vec![Blob::Bytes(b"i")]) else {
            panic!("a stub without room for the section headers was accepted");
        };
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err
            .to_string()
            .contains("no room for 4 more section headers"));
    }

    #[test]
    fn truncated_or_garbage_stubs_are_errors() {
        let stub = stub(0x400);
        for len in (0..0x600).step_by(7) {
            assert!(build(&stub[..len], b"x", vec![]).is_err(), "length {len}");
        }
        let err = build(&[0x4d; 300], b"x", vec![]).unwrap_err();
        assert_eq!(err.to_string(), "uki stub: no MZ signature");
        let mut odd = stub.clone();
        put32(&mut odd, 0x58 + 36, 0x300);
        let err = build(&odd, b"x", vec![]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "uki stub: FileAlignment 0x300 is not a power of two"
        );
        let mut far = stub.clone();
        put32(&mut far, 0x58 + 240 + 20, 0xffff_ff00);
        let err = build(&far, b"x", vec![]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "uki stub: section .text runs past the end of the file"
        );
    }

    #[test]
    fn readers_must_give_their_declared_length() {
        let stub = stub(0x400);
        let mut short: &[u8] = b"abc";
        let err = build(
            &stub,
            b"x",
            vec![Blob::Reader {
                reader: &mut short,
                len: 4,
            }],
        );
        assert_eq!(
            err.unwrap_err().to_string(),
            "uki: .initrd: the input ended after 3 of 4 bytes"
        );
        let mut long: &[u8] = b"abcde";
        let err = build(
            &stub,
            b"x",
            vec![Blob::Reader {
                reader: &mut long,
                len: 4,
            }],
        );
        assert_eq!(
            err.unwrap_err().to_string(),
            "uki: .initrd: the input is longer than the 4 bytes declared"
        );
    }

    #[test]
    fn an_empty_kernel_is_an_error() {
        let store = ContentStore::new().unwrap();
        let parts = UkiParts {
            stub: &stub(0x400),
            osrel: b"",
            cmdline: b"",
            initrd: vec![],
            linux: Blob::Bytes(b""),
        };
        let err = write_uki(parts, &store, &mut Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), "uki: the kernel (.linux) is empty");
    }
}
