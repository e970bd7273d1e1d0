//! PAX extended-header records (POSIX.1-2001 `x` entries) for `unpack`.
//!
//! Takes the raw bytes of one extended header and gives the fields kiln
//! keeps: path, link path, size, uid, gid, integer mtime and extended
//! attributes (`SCHILY.xattr.NAME` with raw values, `LIBARCHIVE.xattr.NAME`
//! with a percent-encoded name and a base64 value). Records are parsed by
//! their length prefix, so values may hold newlines and NUL bytes (binary
//! `security.capability` values do). It never guesses: a malformed record
//! is an error, an unknown key is ignored.

use std::collections::BTreeMap;

/// The fields of one PAX header that `unpack` uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pax {
    pub path: Option<Vec<u8>>,
    pub linkpath: Option<Vec<u8>>,
    pub size: Option<u64>,
    pub uid: Option<u64>,
    pub gid: Option<u64>,
    /// Whole seconds; a fractional part is dropped (truncated toward zero).
    pub mtime: Option<i64>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Set when a `GNU.sparse.*` record marks a sparse file (unsupported).
    pub sparse: bool,
    /// Keys other than `comment` (for global headers, which kiln ignores).
    pub other_keys: Vec<String>,
}

/// Parse the records of one extended header. The error is a short
/// description of what is malformed.
pub(crate) fn parse(mut data: &[u8]) -> Result<Pax, String> {
    let mut pax = Pax::default();
    while !data.is_empty() {
        // A header padded with NULs ends at the first NUL.
        if data[0] == 0 {
            break;
        }
        let space = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or("record without a length")?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("record with a bad length")?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(format!("record length {len} does not match its data"));
        }
        let record = &data[space + 1..len - 1];
        data = &data[len..];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or("record without '='")?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let key = std::str::from_utf8(key).map_err(|_| "record key is not UTF-8")?;
        apply_record(&mut pax, key, value)?;
    }
    Ok(pax)
}

fn apply_record(pax: &mut Pax, key: &str, value: &[u8]) -> Result<(), String> {
    match key {
        "path" => pax.path = Some(value.to_vec()),
        "linkpath" => pax.linkpath = Some(value.to_vec()),
        "size" => pax.size = Some(number(key, value)?),
        "uid" => pax.uid = Some(number(key, value)?),
        "gid" => pax.gid = Some(number(key, value)?),
        "mtime" => pax.mtime = Some(seconds(value)?),
        // Metadata kiln does not keep.
        "atime" | "ctime" | "uname" | "gname" | "charset" | "hdrcharset" | "comment" => {}
        _ => {
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                pax.xattrs.insert(name.to_owned(), value.to_vec());
            } else if let Some(name) = key.strip_prefix("LIBARCHIVE.xattr.") {
                let name =
                    percent_decode(name).ok_or_else(|| format!("bad percent-encoding in {key}"))?;
                let value =
                    base64_decode(value).ok_or_else(|| format!("bad base64 value of {key}"))?;
                pax.xattrs.insert(name, value);
            } else if key.starts_with("GNU.sparse.") {
                pax.sparse = true;
            }
        }
    }
    if key != "comment" {
        pax.other_keys.push(key.to_owned());
    }
    Ok(())
}

fn number(key: &str, value: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{key} is not a number"))
}

/// `[-]SECONDS[.FRACTION]` → whole seconds, truncated toward zero.
fn seconds(value: &[u8]) -> Result<i64, String> {
    let text = std::str::from_utf8(value).map_err(|_| "mtime is not a number")?;
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("mtime {text:?} is not a number"));
    }
    match whole {
        "" | "-" if !frac.is_empty() => Ok(0),
        _ => whole
            .parse()
            .map_err(|_| format!("mtime {text:?} is not a number")),
    }
}

/// Decode `%XX` escapes (libarchive encodes xattr names this way).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Standard base64, padding optional (libarchive omits it).
fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let s = s.strip_suffix(b"==").or(s.strip_suffix(b"=")).unwrap_or(s);
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero padding of the last byte.
    (bits < 6 && acc == 0).then_some(out)
}

/// Encode records the way tar writers do (used by tests).
#[cfg(test)]
pub(crate) fn record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while body + len.to_string().len() != len {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_values_with_newlines_survive() {
        let cap = b"\x01\x00\x00\x02\x0a\x00\n\x00".to_vec();
        let mut data = record("SCHILY.xattr.security.capability", &cap);
        data.extend(record("path", b"usr/bin/ping"));
        data.extend(record("mtime", b"1700000000.123456789"));
        data.extend(record("uid", b"4294967295"));
        let pax = parse(&data).unwrap();
        assert_eq!(pax.xattrs["security.capability"], cap);
        assert_eq!(pax.path.as_deref(), Some(&b"usr/bin/ping"[..]));
        assert_eq!(pax.mtime, Some(1_700_000_000));
        assert_eq!(pax.uid, Some(4_294_967_295));
    }

    #[test]
    fn libarchive_xattrs_are_decoded() {
        let data = record("LIBARCHIVE.xattr.user.a%3Db", b"aGVsbG8");
        let pax = parse(&data).unwrap();
        assert_eq!(pax.xattrs["user.a=b"], b"hello");
        let data = record("LIBARCHIVE.xattr.user.x", b"aGk=");
        assert_eq!(parse(&data).unwrap().xattrs["user.x"], b"hi");
    }

    #[test]
    fn mtimes_are_whole_seconds() {
        assert_eq!(seconds(b"12"), Ok(12));
        assert_eq!(seconds(b"-12.9"), Ok(-12));
        assert_eq!(seconds(b"-.5"), Ok(0));
        assert!(seconds(b"soon").is_err());
        assert!(seconds(b"1.2.3").is_err());
    }

    #[test]
    fn malformed_records_are_errors() {
        assert!(parse(b"99 path=x\n").is_err());
        assert!(parse(b"path=x\n").is_err());
        assert!(parse(b"9 pathx\n").is_err());
        assert!(parse(b"3 \n").is_err());
        assert!(parse(&record("uid", b"-1")).is_err());
    }

    #[test]
    fn sparse_records_are_flagged() {
        let pax = parse(&record("GNU.sparse.major", b"1")).unwrap();
        assert!(pax.sparse);
    }
}
