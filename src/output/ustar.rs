//! Encoding of ustar header blocks and PAX extended-header records, the
//! byte-level half of the tar writer.
//!
//! It takes already-decided field values and gives 512-byte blocks and
//! record bytes; it never decides what goes into PAX (see `tar`) and never
//! fails: callers keep values within the fields (`MAX_OCTAL_*`).

/// Largest value of a 7-digit octal field (mode, uid, gid, device numbers).
pub(crate) const MAX_OCTAL_7: u64 = 0o7777777;
/// Largest value of an 11-digit octal field (size, mtime).
pub(crate) const MAX_OCTAL_11: u64 = 0o77777777777;

/// Split a name into ustar's (prefix ≤ 155, name ≤ 100) at a `/`, or
/// `None` if it cannot be split.
pub(crate) fn split_name(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= 100 {
        return Some((b"", name));
    }
    // Prefer the longest prefix that fits, so the name part is shortest.
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    (1..trimmed.len())
        .rev()
        .filter(|&i| trimmed[i] == b'/')
        .find(|&i| i <= 155 && name.len() - i - 1 <= 100)
        .map(|i| (&name[..i], &name[i + 1..]))
}

/// PAX records `"<len> <key>=<value>\n"`, where len counts the whole record.
pub(crate) fn pax_records(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        let rest = k.len() + v.len() + 3; // space, '=', newline
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

pub(crate) struct UstarFields<'a> {
    pub(crate) name: (&'a [u8], &'a [u8]),
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) size: u64,
    pub(crate) mtime: u64,
    pub(crate) typeflag: u8,
    pub(crate) linkname: &'a [u8],
    pub(crate) dev: (u64, u64),
}

pub(crate) fn ustar_header(f: &UstarFields<'_>) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[0..f.name.1.len()].copy_from_slice(f.name.1);
    octal(&mut h[100..108], f.mode.into());
    octal(&mut h[108..116], f.uid);
    octal(&mut h[116..124], f.gid);
    octal(&mut h[124..136], f.size);
    octal(&mut h[136..148], f.mtime);
    h[156] = f.typeflag;
    h[157..157 + f.linkname.len()].copy_from_slice(f.linkname);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], f.dev.0);
    octal(&mut h[337..345], f.dev.1);
    h[345..345 + f.name.0.len()].copy_from_slice(f.name.0);
    let sum = header_checksum(&h);
    octal(&mut h[148..155], sum.into());
    h[155] = b' ';
    h
}

/// A tar header's checksum: the sum of its bytes with the checksum field
/// itself (bytes 148..156) counted as spaces.
pub(crate) fn header_checksum(block: &[u8]) -> u32 {
    block
        .iter()
        .take(512)
        .enumerate()
        .map(|(i, &b)| match i {
            148..156 => u32::from(b' '),
            _ => u32::from(b),
        })
        .sum()
}

/// Zero-padded octal filling all but the last byte of `field`, then NUL.
/// Callers keep values within the field (see `MAX_OCTAL_*`).
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    let s = s.as_bytes();
    field[..digits].copy_from_slice(&s[s.len() - digits..]);
    field[digits] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        let r = pax_records(&[(b"k".to_vec(), vec![b'v'; 4])]);
        assert_eq!(r, b"9 k=vvvv\n");
        let r = pax_records(&[(b"k".to_vec(), vec![b'v'; 94])]);
        assert_eq!(&r[..4], b"101 ");
        assert_eq!(r.len(), 101);
    }

    #[test]
    fn header_checksum_and_fields() {
        let h = ustar_header(&UstarFields {
            name: (b"pre", b"name"),
            mode: 0o755,
            uid: 1,
            gid: 2,
            size: 3,
            mtime: 4,
            typeflag: b'0',
            linkname: b"",
            dev: (0, 0),
        });
        assert_eq!(&h[..5], b"name\0");
        assert_eq!(&h[100..108], b"0000755\0");
        assert_eq!(&h[124..136], b"00000000003\0");
        assert_eq!(&h[345..349], b"pre\0");
        // By hand, as a reader checks it.
        let sum: u32 = h[..148]
            .iter()
            .chain(&h[156..])
            .map(|&b| u32::from(b))
            .sum();
        assert_eq!(header_checksum(&h), sum + 8 * 32);
        assert_eq!(&h[148..156], format!("{:06o}\0 ", sum + 8 * 32).as_bytes());
    }
}
