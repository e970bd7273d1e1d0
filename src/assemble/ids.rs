//! Container names → numeric uids/gids, as LinuxKit allocates them.
//!
//! Takes the [`Spec`]; gives an [`IdMap`] that numbers every container name
//! from 100 upwards in onboot, onshutdown, services order (a repeated name
//! keeps the later number, as in LinuxKit). Never reads an image's
//! `/etc/passwd` or `/etc/group`: LinuxKit does not either.

use std::collections::BTreeMap;

use crate::spec::{IdSpec, Spec};

/// The first id LinuxKit hands out.
pub const FIRST_ID: u32 = 100;

/// Name → id, shared by `uid`, `gid`, `additionalGids` and `files:`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdMap {
    ids: BTreeMap<String, u32>,
    /// Names given to more than one container (the later id wins).
    duplicates: Vec<String>,
}

impl IdMap {
    pub fn from_spec(spec: &Spec) -> IdMap {
        let names = spec
            .onboot
            .iter()
            .chain(&spec.onshutdown)
            .chain(&spec.services)
            .map(|i| i.name.as_str());
        IdMap::from_names(names)
    }

    /// Number `names` from [`FIRST_ID`] in the order given.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> IdMap {
        let mut map = IdMap::default();
        for (i, name) in names.into_iter().enumerate() {
            let id = FIRST_ID.saturating_add(u32::try_from(i).unwrap_or(u32::MAX));
            if map.ids.insert(name.to_string(), id).is_some()
                && !map.duplicates.iter().any(|d| d == name)
            {
                map.duplicates.push(name.to_string());
            }
        }
        map
    }

    pub fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// Names that more than one container uses, in first-seen order.
    pub fn duplicates(&self) -> &[String] {
        &self.duplicates
    }

    /// Resolve a `uid`/`gid` value. `None`, `""` and `root` are 0; a
    /// container name is its id; a decimal string is that number (LinuxKit
    /// rejects `"1000"`; kiln accepts it, after the names).
    /// The error is the name that could not be found.
    pub fn resolve(&self, id: Option<&IdSpec>) -> Result<u32, String> {
        match id {
            None => Ok(0),
            Some(IdSpec::Id(n)) => Ok(*n),
            Some(IdSpec::Name(name)) => {
                if name.is_empty() || name == "root" {
                    return Ok(0);
                }
                if let Some(id) = self.get(name) {
                    return Ok(id);
                }
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
                    if let Ok(n) = name.parse::<u32>() {
                        return Ok(n);
                    }
                }
                Err(name.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_from_100_in_section_order_later_duplicate_wins() {
        let map = IdMap::from_names(["sysctl", "dhcpcd", "shutdown", "getty", "dhcpcd"]);
        assert_eq!(map.get("sysctl"), Some(100));
        assert_eq!(map.get("shutdown"), Some(102));
        assert_eq!(map.get("getty"), Some(103));
        assert_eq!(map.get("dhcpcd"), Some(104));
        assert_eq!(map.duplicates(), ["dhcpcd".to_string()]);
    }

    #[test]
    fn resolve_rules() {
        let map = IdMap::from_names(["getty", "7"]);
        let name = |s: &str| IdSpec::Name(s.to_string());
        assert_eq!(map.resolve(None), Ok(0));
        assert_eq!(map.resolve(Some(&IdSpec::Id(42))), Ok(42));
        assert_eq!(map.resolve(Some(&name(""))), Ok(0));
        assert_eq!(map.resolve(Some(&name("root"))), Ok(0));
        assert_eq!(map.resolve(Some(&name("getty"))), Ok(100));
        // A container name wins over the number it spells.
        assert_eq!(map.resolve(Some(&name("7"))), Ok(101));
        assert_eq!(map.resolve(Some(&name("1000"))), Ok(1000));
        assert_eq!(map.resolve(Some(&name("nobody"))), Err("nobody".into()));
        assert_eq!(map.resolve(Some(&name("-1"))), Err("-1".into()));
        assert_eq!(
            map.resolve(Some(&name("99999999999"))),
            Err("99999999999".into())
        );
    }
}
