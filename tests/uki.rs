//! Integration tests: the `uki` writer through the public API, on small PE
//! stubs built here byte by byte (a real systemd-stub is checked by the
//! boot tests). `objdump` (binutils) must be installed: the test that runs
//! it fails, not skips, without it.

use kiln::output::uki::{read_pe, write_uki, Blob, UkiParts};
use kiln::tree::ContentStore;

use crate::support::{run_tool, stdout, TestDir};

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// An EFI application (PE32+, x86-64) with `.text` and `.data`, laid out
/// like an objcopy-made stub: headers in 0x400 bytes, file alignment 0x200,
/// the given section alignment, and a COFF symbol table after the sections.
fn stub(section_alignment: u32) -> Vec<u8> {
    let mut b = vec![0u8; 0x800];
    b[..2].copy_from_slice(b"MZ");
    put32(&mut b, 0x3c, 0x80);
    b[0x80..0x84].copy_from_slice(b"PE\0\0");
    let coff = 0x84;
    put16(&mut b, coff, 0x8664);
    put16(&mut b, coff + 2, 2);
    put32(&mut b, coff + 8, 0x800);
    put16(&mut b, coff + 16, 240);
    put16(&mut b, coff + 18, 0x206);
    let opt = coff + 20;
    put16(&mut b, opt, 0x20b);
    put32(&mut b, opt + 4, 0x200); // SizeOfCode
    put32(&mut b, opt + 8, 0x200); // SizeOfInitializedData
    put32(&mut b, opt + 16, section_alignment); // AddressOfEntryPoint
    put32(&mut b, opt + 32, section_alignment);
    put32(&mut b, opt + 36, 0x200);
    put32(&mut b, opt + 56, 3 * section_alignment); // SizeOfImage
    put32(&mut b, opt + 60, 0x400); // SizeOfHeaders
    put32(&mut b, opt + 64, 0x1234); // CheckSum
    put16(&mut b, opt + 68, 10); // EFI application
    put32(&mut b, opt + 108, 16);
    let table = opt + 240;
    for (i, (name, chars)) in [(&b".text"[..], 0x6000_0020u32), (b".data", 0xc000_0040)]
        .into_iter()
        .enumerate()
    {
        let at = table + 40 * i;
        b[at..at + name.len()].copy_from_slice(name);
        put32(&mut b, at + 8, 0x100);
        put32(&mut b, at + 12, section_alignment * (i as u32 + 1));
        put32(&mut b, at + 16, 0x200);
        put32(&mut b, at + 20, 0x400 + 0x200 * i as u32);
        put32(&mut b, at + 36, chars);
        b[0x400 + 0x200 * i..0x500 + 0x200 * i].fill(0xc3);
    }
    // A symbol table of no symbols: a 4-byte string table size.
    b.extend_from_slice(&4u32.to_le_bytes());
    b
}

/// A UKI of `stub` with a stored initrd piece followed by a file's bytes.
fn uki(stub: &[u8], store: &ContentStore, dir: &TestDir) -> Vec<u8> {
    let ucode = store.add(b"ucode cpio").unwrap();
    let mut initrd = std::fs::File::open(dir.write("initrd", [0x42; 5000])).unwrap();
    let mut out = Vec::new();
    let parts = UkiParts {
        stub,
        osrel: b"ID=kiln\nNAME=kiln\n",
        cmdline: b"console=ttyS0",
        initrd: vec![
            Blob::Stored(&ucode),
            Blob::Reader {
                reader: &mut initrd,
                len: 5000,
            },
        ],
        linux: Blob::Bytes(&[0x4b; 3000]),
    };
    let n = write_uki(parts, store, &mut out).unwrap();
    assert_eq!(n, out.len() as u64);
    out
}

#[test]
fn uki_sections_follow_the_stub_aligned_with_linux_last() {
    let dir = TestDir::new();
    let store = ContentStore::new().unwrap();
    for alignment in [0x200, 0x1000] {
        let stub = stub(alignment);
        let image = uki(&stub, &store, &dir);
        let pe = read_pe(&image).unwrap();
        let names: Vec<String> = pe
            .sections
            .iter()
            .map(|s| String::from_utf8_lossy(s.name()).into_owned())
            .collect();
        assert_eq!(
            names,
            [".text", ".data", ".osrel", ".cmdline", ".initrd", ".linux"]
        );
        let mut end = 3 * alignment;
        let mut file_end = 0x800;
        for s in &pe.sections[2..] {
            assert_eq!(s.virtual_address % alignment, 0);
            assert!(s.virtual_address >= end, "sections overlap in memory");
            assert_eq!(s.raw_offset % 0x200, 0);
            assert!(s.raw_offset >= file_end, "sections overlap in the file");
            assert_eq!(s.raw_size, s.virtual_size.div_ceil(0x200) * 0x200);
            end = s.virtual_address + s.virtual_size;
            file_end = s.raw_offset + s.raw_size;
        }
        let initrd = &pe.sections[4];
        assert_eq!(initrd.virtual_size, 10 + 5000);
        let body = &image[initrd.raw_offset as usize..][..initrd.virtual_size as usize];
        assert_eq!(&body[..10], b"ucode cpio");
        assert!(body[10..].iter().all(|&b| b == 0x42));
        assert_eq!(pe.size_of_image, end.div_ceil(alignment) * alignment);
        assert_eq!(image.len() as u32, file_end);
        assert_eq!((pe.time_date_stamp, pe.checksum), (0, 0));
        // The stub's own sections are unchanged.
        assert_eq!(&image[0x400..0x800], &stub[0x400..0x800]);
    }
}

#[test]
fn uki_bytes_depend_only_on_the_inputs() {
    let stub = stub(0x1000);
    let a = uki(&stub, &ContentStore::new().unwrap(), &TestDir::new());
    let b = uki(&stub, &ContentStore::new().unwrap(), &TestDir::new());
    assert!(a == b, "two builds of the same UKI differ");
}

#[test]
fn objdump_lists_the_uki_sections() {
    let dir = TestDir::new();
    let image = uki(&stub(0x1000), &ContentStore::new().unwrap(), &dir);
    let path = dir.write("kiln.efi", &image);
    let out = run_tool("objdump", &["-h", path.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(text.contains("file format pei-x86-64"), "{text}");
    // Section lines start with the index, then the name.
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.next()?.parse::<u32>().ok()?;
            words.next()
        })
        .collect();
    assert_eq!(
        names,
        [".text", ".data", ".osrel", ".cmdline", ".initrd", ".linux"],
        "{text}"
    );
}

#[test]
fn uki_rejects_truncated_and_garbage_stubs() {
    let store = ContentStore::new().unwrap();
    let good = stub(0x1000);
    let cases: [(&str, Vec<u8>); 3] = [
        ("truncated", good[..0x100].to_vec()),
        ("garbage", vec![0xa5; 4096]),
        ("empty", Vec::new()),
    ];
    for (what, stub) in cases {
        let parts = UkiParts {
            stub: &stub,
            osrel: b"",
            cmdline: b"",
            initrd: vec![],
            linux: Blob::Bytes(b"kernel"),
        };
        let err = write_uki(parts, &store, &mut Vec::new())
            .err()
            .unwrap_or_else(|| panic!("a {what} stub was accepted"));
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{what}");
        assert!(err.to_string().starts_with("uki stub: "), "{what}: {err}");
    }
}
