//! One `onboot`/`onshutdown`/`services` entry → an [`Image`].
//!
//! Takes the entry's mapping node and its key path; gives an [`Image`] with
//! every LinuxKit image key typed, capability names normalised to
//! `CAP_XXX` (or `all`) and `resources` checked against the runtime-spec
//! `LinuxResources` keys. Keys that are absent stay `None` so a later stage
//! can fall back to the image's `org.mobyproject.config` label.

use super::fields::{
    error, index, join, mapping, opt_bool, opt_id, opt_int, opt_mode, opt_string, opt_string_map,
    opt_strings, sequence, string, u32_value, unknown_key,
};
use super::yaml::{key_text, Node, Value};
use super::{
    BindNs, Device, IdMapping, Image, ImageRef, Interface, Mount, Runtime, SpecError, CAPABILITIES,
};

/// The keys of an image entry, spelt as LinuxKit spells them.
pub const IMAGE_KEYS: &[&str] = &[
    "name",
    "image",
    "capabilities",
    "capabilities.add",
    "ambient",
    "mounts",
    "binds",
    "binds.add",
    "tmpfs",
    "devices",
    "command",
    "env",
    "cwd",
    "net",
    "pid",
    "ipc",
    "uts",
    "userns",
    "hostname",
    "readonly",
    "maskedPaths",
    "readonlyPaths",
    "uid",
    "gid",
    "additionalGids",
    "noNewPrivileges",
    "oomScoreAdj",
    "rootfsPropagation",
    "cgroupsPath",
    "resources",
    "sysctl",
    "rlimits",
    "uidMappings",
    "gidMappings",
    "annotations",
    "runtime",
];

const MOUNT_KEYS: &[&str] = &["destination", "type", "source", "options"];
const DEVICE_KEYS: &[&str] = &["path", "type", "major", "minor", "mode"];
const ID_MAPPING_KEYS: &[&str] = &["containerID", "hostID", "size"];
const RUNTIME_KEYS: &[&str] = &[
    "cgroups",
    "mounts",
    "mkdir",
    "interfaces",
    "bindNS",
    "namespace",
];
const INTERFACE_KEYS: &[&str] = &["name", "add", "peer", "createInRoot"];
const BIND_NS_KEYS: &[&str] = &["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"];
/// The keys of the OCI runtime-spec `LinuxResources` object.
const RESOURCES_KEYS: &[&str] = &[
    "devices",
    "memory",
    "cpu",
    "pids",
    "blockIO",
    "hugepageLimits",
    "network",
    "rdma",
    "unified",
];

/// Parses one image entry at `path` (e.g. `services[2]`).
pub fn image(node: &Node, path: &str) -> Result<Image, SpecError> {
    image_fields(node, path, false)
}

/// Parses an image's `org.mobyproject.config` label (JSON, read as YAML):
/// the same keys as an image entry except `name` and `image`. Errors name
/// `label` of the image as their file.
pub fn label(text: &str, image: &str) -> Result<Image, SpecError> {
    let origin = format!("{image}: label org.mobyproject.config");
    let node = super::yaml::load(&origin, text)?;
    image_fields(&node, "", true)
}

fn image_fields(node: &Node, path: &str, is_label: bool) -> Result<Image, SpecError> {
    let Value::Mapping(entries) = &node.value else {
        return Err(error(
            node,
            path,
            format!("expected a mapping, found {}", node.kind()),
        ));
    };
    let mut img = Image {
        pos: node.pos.clone(),
        ..Image::default()
    };
    let (mut name, mut reference) = (None, None);
    for (k, v) in entries {
        let key = key_text(k);
        let p = &join(path, key);
        if is_label && (key == "name" || key == "image") {
            return Err(error(k, path, format!("a label must not set `{key}`")));
        }
        match key {
            "name" => name = opt_string(v, p)?.map(|n| (n, v)),
            "image" => {
                reference = opt_string(v, p)?.map(|r| ImageRef {
                    reference: r,
                    pos: v.pos.clone(),
                })
            }
            "capabilities" => img.capabilities = capabilities(v, p)?,
            "capabilities.add" => img.capabilities_add = capabilities(v, p)?,
            "ambient" => img.ambient = capabilities(v, p)?,
            "mounts" => img.mounts = mounts(v, p)?,
            "binds" => img.binds = opt_strings(v, p)?,
            "binds.add" => img.binds_add = opt_strings(v, p)?,
            "tmpfs" => img.tmpfs = opt_strings(v, p)?,
            "devices" => img.devices = list(v, p, device)?,
            "command" => img.command = opt_strings(v, p)?,
            "env" => img.env = opt_strings(v, p)?,
            "cwd" => img.cwd = opt_string(v, p)?,
            "net" => img.net = opt_string(v, p)?,
            "pid" => img.pid = opt_string(v, p)?,
            "ipc" => img.ipc = opt_string(v, p)?,
            "uts" => img.uts = opt_string(v, p)?,
            "userns" => img.userns = opt_string(v, p)?,
            "hostname" => img.hostname = opt_string(v, p)?,
            "readonly" => img.readonly = opt_bool(v, p)?,
            "maskedPaths" => img.masked_paths = opt_strings(v, p)?,
            "readonlyPaths" => img.readonly_paths = opt_strings(v, p)?,
            "uid" => img.uid = opt_id(v, p)?,
            "gid" => img.gid = opt_id(v, p)?,
            "additionalGids" => img.additional_gids = list(v, p, required_id)?,
            "noNewPrivileges" => img.no_new_privileges = opt_bool(v, p)?,
            "oomScoreAdj" => img.oom_score_adj = oom_score_adj(v, p)?,
            "rootfsPropagation" => img.rootfs_propagation = opt_string(v, p)?,
            "cgroupsPath" => img.cgroups_path = opt_string(v, p)?,
            "resources" => img.resources = resources(v, p)?,
            "sysctl" => img.sysctl = opt_string_map(v, p)?,
            "rlimits" => img.rlimits = opt_strings(v, p)?,
            "uidMappings" => img.uid_mappings = list(v, p, id_mapping)?,
            "gidMappings" => img.gid_mappings = list(v, p, id_mapping)?,
            "annotations" => img.annotations = opt_string_map(v, p)?,
            "runtime" => img.runtime = runtime(v, p)?,
            _ => return Err(unknown_key(k, path, IMAGE_KEYS)),
        }
    }
    if is_label {
        return Ok(img);
    }
    let Some((name, name_node)) = name else {
        return Err(error(node, path, "missing `name`"));
    };
    check_name(&name, name_node, &join(path, "name"))?;
    img.name = name;
    match reference {
        Some(r) if !r.reference.is_empty() => img.image = r,
        _ => return Err(error(node, path, "missing `image`")),
    }
    Ok(img)
}

/// Names become directory names (`containers/services/NAME`), so they must
/// be one plain path component.
fn check_name(name: &str, node: &Node, path: &str) -> Result<(), SpecError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(error(
            node,
            path,
            format!("`{name}` is not a valid name (one path component, no `/`)"),
        ));
    }
    Ok(())
}

/// A sequence of items read by `item`; null is "not given".
fn list<T>(
    node: &Node,
    path: &str,
    item: fn(&Node, &str) -> Result<T, SpecError>,
) -> Result<Option<Vec<T>>, SpecError> {
    if node.value == Value::Null {
        return Ok(None);
    }
    let items = sequence(node, path)?;
    let out = items
        .iter()
        .enumerate()
        .map(|(i, n)| item(n, &index(path, i)))
        .collect::<Result<_, _>>()?;
    Ok(Some(out))
}

/// Normalises a capability name (any case, `CAP_` optional) to `CAP_XXX`,
/// `all` or `none`; `None` if it is not in [`CAPABILITIES`]. `none` means
/// "no capabilities" only as the list's sole entry (assemble checks that,
/// as LinuxKit does).
pub fn capability(name: &str) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    if upper == "ALL" || upper == "NONE" {
        return Some(upper.to_ascii_lowercase());
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    CAPABILITIES.contains(&full.as_str()).then_some(full)
}

fn capabilities(node: &Node, path: &str) -> Result<Option<Vec<String>>, SpecError> {
    list(node, path, |n, p| {
        let name = string(n, p)?;
        capability(&name).ok_or_else(|| error(n, p, format!("unknown capability `{name}`")))
    })
}

fn mounts(node: &Node, path: &str) -> Result<Option<Vec<Mount>>, SpecError> {
    list(node, path, mount)
}

fn mount(node: &Node, path: &str) -> Result<Mount, SpecError> {
    let mut m = Mount::default();
    for (k, v) in mapping(node, path)? {
        let key = key_text(k);
        let p = &join(path, key);
        match key {
            // Optional, as in LinuxKit: assemble gives a default by type
            // (`proc` → `/proc`, …) and names the mount if there is none.
            "destination" => m.destination = opt_string(v, p)?.unwrap_or_default(),
            "type" => m.kind = opt_string(v, p)?,
            "source" => m.source = opt_string(v, p)?,
            "options" => m.options = opt_strings(v, p)?.unwrap_or_default(),
            _ => return Err(unknown_key(k, path, MOUNT_KEYS)),
        }
    }
    Ok(m)
}

fn device(node: &Node, path: &str) -> Result<Device, SpecError> {
    let (mut dev_path, mut kind, mut major, mut minor, mut mode) = (None, None, 0, 0, None);
    for (k, v) in mapping(node, path)? {
        let key = key_text(k);
        let p = &join(path, key);
        match key {
            "path" => dev_path = opt_string(v, p)?,
            "type" => {
                let t = string(v, p)?;
                if !matches!(t.as_str(), "a" | "b" | "c" | "u" | "p") {
                    let msg = format!("device type `{t}` is not one of a, b, c, u, p");
                    return Err(error(v, p, msg));
                }
                kind = Some(t);
            }
            "major" => major = opt_int(v, p)?.unwrap_or(0),
            "minor" => minor = opt_int(v, p)?.unwrap_or(0),
            "mode" => mode = opt_mode(v, p)?,
            _ => return Err(unknown_key(k, path, DEVICE_KEYS)),
        }
    }
    Ok(Device {
        path: dev_path.ok_or_else(|| error(node, path, "missing `path`"))?,
        kind: kind.ok_or_else(|| error(node, path, "missing `type`"))?,
        major,
        minor,
        mode,
    })
}

fn required_id(node: &Node, path: &str) -> Result<super::IdSpec, SpecError> {
    opt_id(node, path)?.ok_or_else(|| error(node, path, "expected an id or a name, found null"))
}

fn id_mapping(node: &Node, path: &str) -> Result<IdMapping, SpecError> {
    let (mut container, mut host, mut size) = (None, None, None);
    for (k, v) in mapping(node, path)? {
        let key = key_text(k);
        let p = &join(path, key);
        match key {
            "containerID" => container = Some(u32_value(v, p)?),
            "hostID" => host = Some(u32_value(v, p)?),
            "size" => size = Some(u32_value(v, p)?),
            _ => return Err(unknown_key(k, path, ID_MAPPING_KEYS)),
        }
    }
    let missing = |key: &str| error(node, path, format!("missing `{key}`"));
    Ok(IdMapping {
        container_id: container.ok_or_else(|| missing("containerID"))?,
        host_id: host.ok_or_else(|| missing("hostID"))?,
        size: size.ok_or_else(|| missing("size"))?,
    })
}

fn oom_score_adj(node: &Node, path: &str) -> Result<Option<i64>, SpecError> {
    let value = opt_int(node, path)?;
    if let Some(n) = value {
        if !(-1000..=1000).contains(&n) {
            return Err(error(node, path, format!("{n} is outside -1000..=1000")));
        }
    }
    Ok(value)
}

fn resources(node: &Node, path: &str) -> Result<Option<serde_json::Value>, SpecError> {
    if node.value == Value::Null {
        return Ok(None);
    }
    for (k, _) in mapping(node, path)? {
        if !RESOURCES_KEYS.contains(&key_text(k)) {
            return Err(unknown_key(k, path, RESOURCES_KEYS));
        }
    }
    Ok(Some(node.to_json()))
}

fn runtime(node: &Node, path: &str) -> Result<Option<Runtime>, SpecError> {
    if node.value == Value::Null {
        return Ok(None);
    }
    let mut rt = Runtime::default();
    for (k, v) in mapping(node, path)? {
        let key = key_text(k);
        let p = &join(path, key);
        match key {
            "cgroups" => rt.cgroups = opt_strings(v, p)?,
            "mounts" => rt.mounts = mounts(v, p)?,
            "mkdir" => rt.mkdir = opt_strings(v, p)?,
            "interfaces" => rt.interfaces = list(v, p, interface)?,
            "bindNS" => rt.bind_ns = bind_ns(v, p)?,
            "namespace" => rt.namespace = opt_string(v, p)?,
            _ => return Err(unknown_key(k, path, RUNTIME_KEYS)),
        }
    }
    Ok(Some(rt))
}

fn interface(node: &Node, path: &str) -> Result<Interface, SpecError> {
    let mut i = Interface::default();
    for (k, v) in mapping(node, path)? {
        let key = key_text(k);
        let p = &join(path, key);
        match key {
            "name" => i.name = opt_string(v, p)?.unwrap_or_default(),
            "add" => i.add = opt_string(v, p)?,
            "peer" => i.peer = opt_string(v, p)?,
            "createInRoot" => i.create_in_root = opt_bool(v, p)?.unwrap_or(false),
            _ => return Err(unknown_key(k, path, INTERFACE_KEYS)),
        }
    }
    Ok(i)
}

fn bind_ns(node: &Node, path: &str) -> Result<Option<BindNs>, SpecError> {
    if node.value == Value::Null {
        return Ok(None);
    }
    let mut ns = BindNs::default();
    for (k, v) in mapping(node, path)? {
        let key = key_text(k);
        let p = &join(path, key);
        let slot = match key {
            "cgroup" => &mut ns.cgroup,
            "ipc" => &mut ns.ipc,
            "mnt" => &mut ns.mnt,
            "net" => &mut ns.net,
            "pid" => &mut ns.pid,
            "user" => &mut ns.user,
            "uts" => &mut ns.uts,
            _ => return Err(unknown_key(k, path, BIND_NS_KEYS)),
        };
        *slot = opt_string(v, p)?;
    }
    Ok(Some(ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_normalise() {
        assert_eq!(capability("net_admin").as_deref(), Some("CAP_NET_ADMIN"));
        assert_eq!(capability("cap_chown").as_deref(), Some("CAP_CHOWN"));
        assert_eq!(
            capability("CAP_SYS_ADMIN").as_deref(),
            Some("CAP_SYS_ADMIN")
        );
        assert_eq!(capability("ALL").as_deref(), Some("all"));
        assert_eq!(capability("none").as_deref(), Some("none"));
        assert_eq!(capability("None").as_deref(), Some("none"));
        assert_eq!(capability("CAP_FLY"), None);
        assert_eq!(capability("CAP_"), None);
    }
}

#[cfg(test)]
mod label_tests {
    use super::*;

    #[test]
    fn label_parses_image_keys() {
        let img = label(
            r#"{"capabilities":["CAP_NET_ADMIN"],"binds":["/a:/b"],"pid":"host"}"#,
            "x:1",
        )
        .unwrap();
        assert_eq!(img.capabilities, Some(vec!["CAP_NET_ADMIN".to_string()]));
        assert_eq!(img.binds, Some(vec!["/a:/b".to_string()]));
        assert_eq!(img.pid.as_deref(), Some("host"));
        assert!(img.name.is_empty());
    }

    #[test]
    fn label_rejects_name_and_bad_caps() {
        let err = label(r#"{"name":"x"}"#, "x:1").unwrap_err().to_string();
        assert!(
            err.contains("x:1: label org.mobyproject.config:1:2")
                && err.contains("must not set `name`"),
            "{err}"
        );
        let err = label(r#"{"capabilities":["CAP_BOGUS"]}"#, "x:1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("CAP_BOGUS"), "{err}");
    }
}
