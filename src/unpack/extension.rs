//! Tar extension members (PAX `x`/`g` headers, GNU `L`/`K` long names),
//! read with a bound: the one reader of them for `unpack` and `inspect`.
//!
//! Takes raw members of a `tar::Archive` iterated with `raw(true)` (so the
//! `tar` crate never reads a long name itself, unbounded) and gives, for
//! each real member, the path, link target and PAX fields its extension
//! members set. Holds at most [`MAX_EXTENSION_BYTES`] of one extension in
//! memory; never reads a real member's body.

use std::io::{self, Read};

use tar::EntryType;

use super::pax::{self, Pax};

/// Largest PAX or GNU long-name member read into memory.
pub(crate) const MAX_EXTENSION_BYTES: u64 = 16 << 20;

/// Why an extension member could not be read.
#[derive(Debug)]
pub(crate) enum ExtensionError {
    TooLarge(u64),
    Read(io::Error),
    Truncated { declared: u64, found: u64 },
    Pax(String),
}

impl std::fmt::Display for ExtensionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExtensionError::TooLarge(size) => {
                write!(f, "extension header of {size} bytes is too large")
            }
            ExtensionError::Read(e) => write!(f, "cannot read an extension header: {e}"),
            ExtensionError::Truncated { declared, found } => write!(
                f,
                "extension header declares {declared} bytes but the stream ends after {found}"
            ),
            ExtensionError::Pax(reason) => write!(f, "malformed pax header: {reason}"),
        }
    }
}

/// Extension members describing the next real member.
#[derive(Default)]
pub(crate) struct Pending {
    pub pax: Option<Pax>,
    pub long_name: Option<Vec<u8>>,
    pub long_link: Option<Vec<u8>>,
}

/// What [`Pending::absorb`] made of a raw member.
pub(crate) enum Absorbed {
    /// An extension of the next member, now pending.
    Extension,
    /// A PAX global header (its records).
    Global(Pax),
    /// A real member: take the pending extensions with [`std::mem::take`].
    Member,
}

impl Pending {
    pub(crate) fn is_empty(&self) -> bool {
        self.pax.is_none() && self.long_name.is_none() && self.long_link.is_none()
    }

    /// Reads `member` if it is an extension member.
    pub(crate) fn absorb<R: Read>(
        &mut self,
        member: &mut tar::Entry<'_, R>,
    ) -> Result<Absorbed, ExtensionError> {
        match member.header().entry_type() {
            EntryType::XHeader => {
                self.pax = Some(pax::parse(&read_bounded(member)?).map_err(ExtensionError::Pax)?);
            }
            EntryType::XGlobalHeader => {
                let global = pax::parse(&read_bounded(member)?).map_err(ExtensionError::Pax)?;
                return Ok(Absorbed::Global(global));
            }
            EntryType::GNULongName => self.long_name = Some(trim_nul(read_bounded(member)?)),
            EntryType::GNULongLink => self.long_link = Some(trim_nul(read_bounded(member)?)),
            _ => return Ok(Absorbed::Member),
        }
        Ok(Absorbed::Extension)
    }

    /// The member's path: a GNU long name, else a PAX path, else the header's.
    pub(crate) fn path(&self, header_path: Vec<u8>) -> Vec<u8> {
        match (
            &self.long_name,
            self.pax.as_ref().and_then(|p| p.path.as_ref()),
        ) {
            (Some(name), _) => name.clone(),
            (None, Some(name)) => name.clone(),
            (None, None) => header_path,
        }
    }

    /// The member's link target: a GNU long link, else a PAX linkpath,
    /// else the header's.
    pub(crate) fn link<R: Read>(&self, member: &tar::Entry<'_, R>) -> Option<Vec<u8>> {
        self.long_link
            .clone()
            .or_else(|| self.pax.as_ref().and_then(|p| p.linkpath.clone()))
            .or_else(|| member.header().link_name_bytes().map(|l| l.into_owned()))
    }
}

/// An extension member's data, at most [`MAX_EXTENSION_BYTES`].
fn read_bounded<R: Read>(member: &mut tar::Entry<'_, R>) -> Result<Vec<u8>, ExtensionError> {
    let size = member.size();
    if size > MAX_EXTENSION_BYTES {
        return Err(ExtensionError::TooLarge(size));
    }
    let mut data = Vec::with_capacity(size as usize);
    member
        .take(size)
        .read_to_end(&mut data)
        .map_err(ExtensionError::Read)?;
    if data.len() as u64 != size {
        return Err(ExtensionError::Truncated {
            declared: size,
            found: data.len() as u64,
        });
    }
    Ok(data)
}

fn trim_nul(mut name: Vec<u8>) -> Vec<u8> {
    while name.last() == Some(&0) {
        name.pop();
    }
    name
}
