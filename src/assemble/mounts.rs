//! The `mounts` list of `config.json`: defaults, `tmpfs:`, `binds:` and
//! `mounts:`, keyed by destination (later wins), sorted by destination.
//!
//! Takes the [`Effective`] settings and the spec's volumes; gives the OCI
//! mounts with LinuxKit's exact default options, bind sources naming a
//! volume pointed at `/containers/volumes/<name>/merged`. Never looks at
//! the tree and never cleans a destination path (`/dev` and `/dev/` are
//! different keys, as in LinuxKit).

use std::collections::BTreeMap;

use super::merge::{Effective, Origin};
use super::oci_types::OciMount;
use super::runtime_config::ConfigError;
use crate::spec::{self, Volume};

pub(crate) fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn mount(dest: &str, kind: &str, options: Vec<String>) -> OciMount {
    OciMount {
        destination: dest.into(),
        kind: kind.into(),
        source: kind.into(),
        options,
    }
}

/// The default mounts, then tmpfs, binds and mounts, later destinations
/// replacing earlier ones; sorted by destination bytes.
pub(crate) fn mounts(eff: &Effective, volumes: &[Volume]) -> Result<Vec<OciMount>, ConfigError> {
    let ro = |mut v: Vec<String>| {
        if eff.readonly {
            v.push("ro".into());
        }
        v
    };
    let mut map: BTreeMap<String, OciMount> = BTreeMap::new();
    for m in [
        mount(
            "/proc",
            "proc",
            strs(&["nosuid", "nodev", "noexec", "relatime"]),
        ),
        mount(
            "/dev",
            "tmpfs",
            ro(strs(&["nosuid", "strictatime", "mode=755", "size=65536k"])),
        ),
        mount(
            "/dev/pts",
            "devpts",
            strs(&[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ]),
        ),
        mount("/sys", "sysfs", ro(strs(&["nosuid", "noexec", "nodev"]))),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            strs(&["nosuid", "noexec", "nodev", "relatime", "ro"]),
        ),
    ] {
        map.insert(m.destination.clone(), m);
    }
    for (t, origin) in &eff.tmpfs {
        let m = parse_tmpfs(t).ok_or_else(|| ConfigError::BadTmpfs {
            tmpfs: t.clone(),
            origin: *origin,
        })?;
        map.insert(m.destination.clone(), m);
    }
    for (b, origin) in &eff.binds {
        let mut m = parse_bind(b).ok_or_else(|| ConfigError::BadBind {
            bind: b.clone(),
            origin: *origin,
        })?;
        resolve_volume(&mut m, b, volumes)?;
        map.insert(m.destination.clone(), m);
    }
    for (m, origin) in &eff.mounts {
        let mut m = full_mount(m, *origin)?;
        if m.kind == "bind" {
            let text = format!("{}:{}", m.source, m.destination);
            resolve_volume(&mut m, &text, volumes)?;
        }
        map.insert(m.destination.clone(), m);
    }
    Ok(map.into_values().collect())
}

/// `dest[:opt,opt]` → a tmpfs mount; `None` if there are too many `:`.
pub(crate) fn parse_tmpfs(s: &str) -> Option<OciMount> {
    let mut parts = s.split(':');
    let dest = parts.next()?;
    let options = match parts.next() {
        Some(o) => split_options(o),
        None => Vec::new(),
    };
    if parts.next().is_some() {
        return None;
    }
    Some(mount(dest, "tmpfs", options))
}

/// `src:dest[:opts]` → a bind mount; `None` unless 2 or 3 parts.
/// Without options: `rw,rbind,rshared`. With options: those, plus `rbind`
/// unless `bind` or `rbind` is already there.
pub(crate) fn parse_bind(s: &str) -> Option<OciMount> {
    let parts: Vec<&str> = s.split(':').collect();
    let options = match parts.len() {
        2 => strs(&["rw", "rbind", "rshared"]),
        3 => {
            let mut o = split_options(parts[2]);
            if !o.iter().any(|x| x == "rbind" || x == "bind") {
                o.push("rbind".into());
            }
            o
        }
        _ => return None,
    };
    Some(OciMount {
        destination: parts[1].into(),
        kind: "bind".into(),
        source: parts[0].into(),
        options,
    })
}

fn split_options(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|o| !o.is_empty())
        .map(str::to_string)
        .collect()
}

/// A non-absolute bind source names a volume: point it at the volume's
/// `merged` directory, refusing a writable bind of a read-only volume.
fn resolve_volume(m: &mut OciMount, text: &str, volumes: &[Volume]) -> Result<(), ConfigError> {
    if m.source.starts_with('/') {
        return Ok(());
    }
    let vol = volumes
        .iter()
        .find(|v| v.name == m.source)
        .ok_or_else(|| ConfigError::NoVolume {
            bind: text.into(),
            volume: m.source.clone(),
        })?;
    if vol.readonly {
        let first = m.options.iter().find(|o| *o == "ro" || *o == "rw");
        if first.map(String::as_str) != Some("ro") {
            return Err(ConfigError::ReadonlyVolume {
                bind: text.into(),
                volume: vol.name.clone(),
            });
        }
    }
    m.source = format!("/{}/merged", super::layout::volume_dir(&vol.name));
    Ok(())
}

/// Fill in a `mounts:` entry's type, source and destination defaults.
fn full_mount(m: &spec::Mount, origin: Origin) -> Result<OciMount, ConfigError> {
    let source = m.source.clone().unwrap_or_default();
    let mut kind = m.kind.clone().unwrap_or_default();
    if kind.is_empty()
        && matches!(
            source.as_str(),
            "mqueue" | "devpts" | "proc" | "sysfs" | "cgroup"
        )
    {
        kind = source.clone();
    }
    if kind.is_empty() && m.destination == "/dev" {
        kind = "tmpfs".into();
    }
    if kind.is_empty() {
        return Err(ConfigError::MountType {
            destination: m.destination.clone(),
            origin,
        });
    }
    let mut destination = m.destination.clone();
    if destination.is_empty() {
        destination = match kind.as_str() {
            "proc" => "/proc",
            "devpts" => "/dev/pts",
            "sysfs" => "/sys",
            "cgroup" => "/sys/fs/cgroup",
            "mqueue" => "/dev/mqueue",
            _ => return Err(ConfigError::MountDestination { kind, origin }),
        }
        .into();
    }
    Ok(OciMount {
        destination,
        source: if source.is_empty() {
            kind.clone()
        } else {
            source
        },
        kind,
        options: m.options.clone(),
    })
}
