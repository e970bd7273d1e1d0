//! Reading the PE/COFF headers of an EFI program: the fields and section
//! table the UKI writer keeps or rewrites, with every offset bounds-checked.
//!
//! Takes the image's bytes; gives a [`PeInfo`]. Never panics and never
//! allocates by a size read from the file: a malformed image is an
//! `InvalidData` error (`uki stub: …`) naming the field that is wrong.

use std::io;

use crate::output::invalid;

/// One entry of a PE section table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// The name, NUL-padded to 8 bytes.
    pub name: [u8; 8],
    pub virtual_size: u32,
    pub virtual_address: u32,
    pub raw_size: u32,
    pub raw_offset: u32,
    pub characteristics: u32,
}

impl Section {
    /// The name without its NUL padding.
    pub fn name(&self) -> &[u8] {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(8);
        &self.name[..end]
    }
}

/// The header fields of a PE image that [`super::write_uki`] reads or changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeInfo {
    pub time_date_stamp: u32,
    pub section_alignment: u32,
    pub file_alignment: u32,
    pub size_of_initialized_data: u32,
    pub size_of_image: u32,
    pub size_of_headers: u32,
    pub checksum: u32,
    /// The certificate table's data directory entry (file offset, size).
    pub certificate_table: (u32, u32),
    pub sections: Vec<Section>,
    /// Where the section table starts in the file.
    pub(super) section_table: usize,
    /// Where the optional header starts in the file.
    pub(super) optional: usize,
    /// Where the data directories start, and how many there are.
    pub(super) directories: (usize, u32),
    pub(super) coff: usize,
    pub(super) symbol_table: u32,
}

/// Size of one section table entry.
pub(super) const SECTION_HEADER: usize = 40;
/// Index of the certificate table among the data directories.
pub(super) const CERTIFICATE_DIRECTORY: u32 = 4;

/// Read the headers and section table of the PE image `image`.
pub fn read_pe(image: &[u8]) -> io::Result<PeInfo> {
    if image.get(..2) != Some(b"MZ") {
        return Err(bad("no MZ signature"));
    }
    let pe = u32_at(image, 0x3c, "e_lfanew")? as usize;
    if image.get(pe..pe.saturating_add(4)) != Some(b"PE\0\0") {
        return Err(bad(&format!("no PE signature at offset {pe:#x}")));
    }
    let coff = pe + 4;
    let nsections = u16_at(image, coff + 2, "NumberOfSections")? as usize;
    let symbol_table = u32_at(image, coff + 8, "PointerToSymbolTable")?;
    let optional_size = u16_at(image, coff + 16, "SizeOfOptionalHeader")? as usize;
    let optional = coff + 20;
    let (directories, min_size) = match u16_at(image, optional, "optional header magic")? {
        0x10b => (optional + 96, 96),
        0x20b => (optional + 112, 112),
        magic => return Err(bad(&format!("unknown optional header magic {magic:#x}"))),
    };
    if optional_size < min_size {
        return Err(bad(&format!(
            "optional header of {optional_size} bytes is too short"
        )));
    }
    let ndirs = u32_at(image, directories - 4, "NumberOfRvaAndSizes")?;
    if (ndirs as usize).saturating_mul(8) > optional_size - min_size {
        return Err(bad(&format!(
            "{ndirs} data directories do not fit in the optional header"
        )));
    }
    let certificate_table = if ndirs > CERTIFICATE_DIRECTORY {
        let at = directories + 8 * CERTIFICATE_DIRECTORY as usize;
        (
            u32_at(image, at, "certificate table")?,
            u32_at(image, at + 4, "certificate table")?,
        )
    } else {
        (0, 0)
    };
    let section_table = optional + optional_size;
    let mut sections = Vec::with_capacity(nsections);
    for i in 0..nsections {
        let at = section_table + i * SECTION_HEADER;
        let field = |off: usize| u32_at(image, at + off, "section table");
        let mut name = [0u8; 8];
        name.copy_from_slice(
            image
                .get(at..at + 8)
                .ok_or_else(|| bad("section table runs past the end of the file"))?,
        );
        let s = Section {
            name,
            virtual_size: field(8)?,
            virtual_address: field(12)?,
            raw_size: field(16)?,
            raw_offset: field(20)?,
            characteristics: field(36)?,
        };
        if s.raw_size > 0 && s.raw_offset as u64 + s.raw_size as u64 > image.len() as u64 {
            return Err(bad(&format!(
                "section {} runs past the end of the file",
                String::from_utf8_lossy(s.name())
            )));
        }
        sections.push(s);
    }
    let info = PeInfo {
        time_date_stamp: u32_at(image, coff + 4, "TimeDateStamp")?,
        section_alignment: u32_at(image, optional + 32, "SectionAlignment")?,
        file_alignment: u32_at(image, optional + 36, "FileAlignment")?,
        size_of_initialized_data: u32_at(image, optional + 8, "SizeOfInitializedData")?,
        size_of_image: u32_at(image, optional + 56, "SizeOfImage")?,
        size_of_headers: u32_at(image, optional + 60, "SizeOfHeaders")?,
        checksum: u32_at(image, optional + 64, "CheckSum")?,
        certificate_table,
        sections,
        section_table,
        optional,
        directories: (directories, ndirs),
        coff,
        symbol_table,
    };
    for (what, a) in [
        ("SectionAlignment", info.section_alignment),
        ("FileAlignment", info.file_alignment),
    ] {
        if !a.is_power_of_two() {
            return Err(bad(&format!("{what} {a:#x} is not a power of two")));
        }
    }
    if info.size_of_headers as usize > image.len() {
        return Err(bad(&format!(
            "SizeOfHeaders {:#x} is past the end of the file",
            info.size_of_headers
        )));
    }
    Ok(info)
}

pub(super) fn bad(msg: &str) -> io::Error {
    invalid(format!("uki stub: {msg}"))
}

fn u16_at(b: &[u8], at: usize, what: &str) -> io::Result<u16> {
    b.get(at..at.saturating_add(2))
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| bad(&format!("file ends before {what} (offset {at:#x})")))
}

fn u32_at(b: &[u8], at: usize, what: &str) -> io::Result<u32> {
    b.get(at..at.saturating_add(4))
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| bad(&format!("file ends before {what} (offset {at:#x})")))
}
