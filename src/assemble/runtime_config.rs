//! One container's OCI `config.json` and LinuxKit `runtime.json`.
//!
//! Takes the YAML [`Image`], its [`ImageDefaults`] (label and image
//! config), the [`IdMap`] and the spec's volumes; gives the two files'
//! bytes, exactly as LinuxKit's `ConfigToOCI` + `json.MarshalIndent` would
//! print them, apart from the fixes listed in `docs/linuxkit-compat.md`
//! (merged lists de-duplicated, capability lists sorted, `rbind` never
//! doubled, `["all", …]` meaning all, `none` meaning a new namespace for
//! every namespace, volume names rewritten in every bind). Pure: reads no
//! file and knows nothing about the tree layout beyond the paths it is given.

use super::merge::{self, Effective, Origin};
use super::mounts::{mounts, strs};
use super::oci_types::*;
use super::resources::ordered_resources;
use super::{AssembleError, IdMap, ImageDefaults};
use crate::spec::{self, Image, Volume};

/// What is wrong with one container's settings.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "unknown capability {cap:?} in {origin} (expected e.g. CAP_NET_ADMIN, `all` or `none`)"
    )]
    UnknownCapability { cap: String, origin: Origin },
    #[error("capability `none` in {origin} must be the list's only entry")]
    NoneWithOthers { origin: Origin },
    #[error("cannot parse bind {bind:?} from {origin}: expected source:destination[:options]")]
    BadBind { bind: String, origin: Origin },
    #[error("cannot parse tmpfs {tmpfs:?} from {origin}: expected destination[:options]")]
    BadTmpfs { tmpfs: String, origin: Origin },
    #[error("cannot parse rlimit {rlimit:?} from {origin}: {reason}")]
    BadRlimit {
        rlimit: String,
        origin: Origin,
        reason: String,
    },
    #[error("{field}: cannot find id {name:?} (not a container name, `root` or a number)")]
    UnknownId { field: &'static str, name: String },
    #[error("device {path:?} from {origin} has no mode (an octal string such as \"0666\")")]
    DeviceMode { path: String, origin: Origin },
    #[error("mount for destination {destination:?} from {origin} is missing type")]
    MountType { destination: String, origin: Origin },
    #[error("mount of type {kind:?} from {origin} is missing destination")]
    MountDestination { kind: String, origin: Origin },
    #[error("bind {bind:?}: no volume named {volume:?} (binds whose source is not absolute name a volume)")]
    NoVolume { bind: String, volume: String },
    #[error(
        "bind {bind:?}: volume {volume:?} is read-only, so the bind must be read-only (`:ro`)"
    )]
    ReadonlyVolume { bind: String, volume: String },
    #[error("resources must be a mapping, not {0}")]
    Resources(String),
}

fn fail(image: &Image, source: ConfigError) -> AssembleError {
    AssembleError::Config {
        pos: image.pos.clone(),
        name: image.name.clone(),
        source,
    }
}

/// The OCI runtime spec for one container, as a typed value.
pub fn oci_spec(
    image: &Image,
    defaults: &ImageDefaults,
    ids: &IdMap,
    volumes: &[Volume],
) -> Result<OciSpec, AssembleError> {
    let eff = merge::effective(image, defaults);
    build(&eff, ids, volumes).map_err(|e| fail(image, e))
}

/// `config.json` bytes: Go-style 4-space pretty JSON, no trailing newline.
pub fn config_json(
    image: &Image,
    defaults: &ImageDefaults,
    ids: &IdMap,
    volumes: &[Volume],
) -> Result<Vec<u8>, AssembleError> {
    let spec = oci_spec(image, defaults, ids, volumes)?;
    to_go_json(&spec).map_err(|e| AssembleError::Json {
        pos: image.pos.clone(),
        name: image.name.clone(),
        what: "config.json",
        err: e.to_string(),
    })
}

/// Where a container's bundle and image root are in the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// `containers/<section>/<dir>`, no leading `/`.
    pub dir: String,
    /// The extracted image root (this bundle's `lower`/`rootfs`, or the
    /// first bundle's root with the same image), no leading `/`.
    pub root: String,
    pub readonly: bool,
}

/// The `runtime.json` value: the rootfs mounts init performs, then the
/// container's own `runtime:` settings.
pub fn runtime_spec(image: &Image, defaults: &ImageDefaults, bundle: &Bundle) -> RuntimeJson {
    let rt = merge::effective(image, defaults).runtime;
    let dir = &bundle.dir;
    let mut mounts = if bundle.readonly {
        vec![OciMount {
            destination: format!("/{dir}/rootfs"),
            source: format!("/{}", bundle.root),
            options: vec!["bind".into()],
            ..OciMount::default()
        }]
    } else {
        vec![
            OciMount {
                destination: format!("/{dir}/tmp"),
                kind: "tmpfs".into(),
                source: "tmpfs".into(),
                options: vec![],
            },
            OciMount {
                destination: format!("/{dir}/tmp"),
                options: vec!["remount".into(), "private".into()],
                ..OciMount::default()
            },
            OciMount {
                destination: format!("/{dir}/rootfs"),
                kind: "overlay".into(),
                source: "overlay".into(),
                options: vec![
                    format!("lowerdir=/{}", bundle.root),
                    format!("upperdir=/{dir}/tmp/upper"),
                    format!("workdir=/{dir}/tmp/work"),
                ],
            },
        ]
    };
    mounts.extend(rt.mounts.iter().map(|m| OciMount {
        destination: m.destination.clone(),
        kind: m.kind.clone().unwrap_or_default(),
        source: m.source.clone().unwrap_or_default(),
        options: m.options.clone(),
    }));
    let [cgroup, ipc, mnt, net, pid, user, uts] = rt.bind_ns;
    RuntimeJson {
        cgroups: rt.cgroups,
        mounts,
        mkdir: rt.mkdir,
        interfaces: rt
            .interfaces
            .into_iter()
            .map(|i| RuntimeInterface {
                name: i.name,
                add: i.add.unwrap_or_default(),
                peer: i.peer.unwrap_or_default(),
                create_in_root: i.create_in_root,
            })
            .collect(),
        bind_ns: BindNsJson {
            cgroup,
            ipc,
            mnt,
            net,
            pid,
            user,
            uts,
        },
        namespace: rt.namespace,
    }
}

/// `runtime.json` bytes.
pub fn runtime_json(
    image: &Image,
    defaults: &ImageDefaults,
    bundle: &Bundle,
) -> Result<Vec<u8>, AssembleError> {
    to_go_json(&runtime_spec(image, defaults, bundle)).map_err(|e| AssembleError::Json {
        pos: image.pos.clone(),
        name: image.name.clone(),
        what: "runtime.json",
        err: e.to_string(),
    })
}

fn build(eff: &Effective, ids: &IdMap, volumes: &[Volume]) -> Result<OciSpec, ConfigError> {
    let mounts = mounts(eff, volumes)?;
    let capabilities = capabilities(eff)?;
    let rlimits = eff
        .rlimits
        .iter()
        .map(|(s, origin)| rlimit(s, *origin))
        .collect::<Result<Vec<_>, _>>()?;
    let id = |field: &'static str, v: Option<&spec::IdSpec>| {
        ids.resolve(v)
            .map_err(|name| ConfigError::UnknownId { field, name })
    };
    let user = User {
        uid: id("uid", eff.uid.as_ref())?,
        gid: id("gid", eff.gid.as_ref())?,
        additional_gids: eff
            .additional_gids
            .iter()
            .map(|g| id("additionalGids", Some(g)))
            .collect::<Result<_, _>>()?,
    };
    let (devices, resources) = devices_and_resources(eff)?;
    Ok(OciSpec {
        oci_version: OCI_VERSION.into(),
        process: Process {
            user,
            args: eff.args.clone(),
            env: eff.env.clone(),
            cwd: eff.cwd.clone(),
            capabilities,
            rlimits,
            no_new_privileges: eff.no_new_privileges,
            oom_score_adj: eff.oom_score_adj,
        },
        root: Root {
            path: "rootfs".into(),
            readonly: eff.readonly,
        },
        hostname: eff.hostname.clone(),
        mounts,
        annotations: eff.annotations.clone(),
        linux: Linux {
            uid_mappings: eff.uid_mappings.iter().map(mapping).collect(),
            gid_mappings: eff.gid_mappings.iter().map(mapping).collect(),
            sysctl: eff.sysctl.clone(),
            resources,
            cgroups_path: eff.cgroups_path.clone(),
            namespaces: namespaces(eff),
            devices,
            rootfs_propagation: eff.rootfs_propagation.clone(),
            masked_paths: eff.masked_paths.clone(),
            readonly_paths: eff.readonly_paths.clone(),
        },
    })
}

fn mapping(m: &spec::IdMapping) -> IdMapping {
    IdMapping {
        container_id: m.container_id,
        host_id: m.host_id,
        size: m.size,
    }
}

/// net, ipc, uts, pid, user, then always mount.
pub(crate) fn namespaces(eff: &Effective) -> Vec<Namespace> {
    let mut out = Vec::new();
    let specs: [(&str, &str, &str); 5] = [
        ("network", &eff.net, "root"),
        ("ipc", &eff.ipc, "root"),
        ("uts", &eff.uts, "root"),
        ("pid", &eff.pid, "new"),
        ("user", &eff.userns, "root"),
    ];
    for (kind, value, default) in specs {
        let value = if value.is_empty() { default } else { value };
        match value {
            "host" | "root" => {}
            "new" | "none" => out.push(Namespace {
                kind: kind.into(),
                path: String::new(),
            }),
            path => out.push(Namespace {
                kind: kind.into(),
                path: path.into(),
            }),
        }
    }
    out.push(Namespace {
        kind: "mount".into(),
        path: String::new(),
    });
    out
}

/// Expand `all`/`none`, check every name, sort and de-duplicate.
fn capability_set(list: &[(String, Origin)]) -> Result<Vec<String>, ConfigError> {
    if list.iter().any(|(c, _)| c.eq_ignore_ascii_case("all")) {
        return Ok(strs(spec::CAPABILITIES));
    }
    if let [(c, _)] = list {
        if c.eq_ignore_ascii_case("none") {
            return Ok(Vec::new());
        }
    }
    let mut out = Vec::new();
    for (c, origin) in list {
        if c.eq_ignore_ascii_case("none") {
            return Err(ConfigError::NoneWithOthers { origin: *origin });
        }
        if !spec::CAPABILITIES.contains(&c.as_str()) {
            return Err(ConfigError::UnknownCapability {
                cap: c.clone(),
                origin: *origin,
            });
        }
        out.push(c.clone());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub(crate) fn capabilities(eff: &Effective) -> Result<Capabilities, ConfigError> {
    let effective = capability_set(&eff.capabilities)?;
    let ambient = capability_set(&eff.ambient)?;
    let mut bounding: Vec<String> = effective.iter().chain(&ambient).cloned().collect();
    bounding.sort();
    bounding.dedup();
    Ok(Capabilities {
        inheritable: bounding.clone(),
        permitted: bounding.clone(),
        bounding,
        effective,
        ambient,
    })
}

const RLIMITS: &[&str] = &[
    "CPU",
    "FSIZE",
    "DATA",
    "STACK",
    "CORE",
    "RSS",
    "NPROC",
    "NOFILE",
    "MEMLOCK",
    "AS",
    "LOCKS",
    "SIGPENDING",
    "MSGQUEUE",
    "NICE",
    "RTPRIO",
    "RTTIME",
];

/// `name,soft,hard`; the name case-insensitive with optional `RLIMIT_`;
/// limits decimal or `unlimited`.
pub(crate) fn rlimit(s: &str, origin: Origin) -> Result<Rlimit, ConfigError> {
    let bad = |reason: String| ConfigError::BadRlimit {
        rlimit: s.into(),
        origin,
        reason,
    };
    let parts: Vec<&str> = s.splitn(3, ',').collect();
    let [name, soft, hard] = parts[..] else {
        return Err(bad("expected name,soft,hard".into()));
    };
    let mut name = name.trim().to_ascii_uppercase();
    if !name.starts_with("RLIMIT_") {
        name.insert_str(0, "RLIMIT_");
    }
    if !RLIMITS.contains(&&name["RLIMIT_".len()..]) {
        return Err(bad(format!("unknown limit {name}")));
    }
    let limit = |v: &str| -> Result<u64, ConfigError> {
        let v = v.trim();
        if v.eq_ignore_ascii_case("unlimited") {
            return Ok(u64::MAX);
        }
        v.parse::<u64>()
            .map_err(|_| bad(format!("{v:?} is not a number or `unlimited`")))
    };
    Ok(Rlimit {
        soft: limit(soft)?,
        hard: limit(hard)?,
        kind: name,
    })
}

/// `linux.devices` and `linux.resources` (the chosen resources plus one
/// cgroup rule per device).
fn devices_and_resources(eff: &Effective) -> Result<(Vec<LinuxDevice>, OrderedJson), ConfigError> {
    let mut resources = match &eff.resources {
        None | Some(serde_json::Value::Null) => serde_json::Map::new(),
        Some(serde_json::Value::Object(m)) => m.clone(),
        Some(other) => return Err(ConfigError::Resources(other.to_string())),
    };
    let mut rules: Vec<serde_json::Value> = match resources.remove("devices") {
        Some(serde_json::Value::Array(v)) => v,
        _ => Vec::new(),
    };
    let mut devices = Vec::new();
    for (d, origin) in &eff.devices {
        if d.path == "all" {
            rules.push(serde_json::json!({"allow": true, "type": d.kind, "access": "rwm"}));
            continue;
        }
        let mode = d.mode.ok_or_else(|| ConfigError::DeviceMode {
            path: d.path.clone(),
            origin: *origin,
        })?;
        devices.push(LinuxDevice {
            path: d.path.clone(),
            kind: d.kind.clone(),
            major: d.major,
            minor: d.minor,
            file_mode: mode,
        });
        rules.push(serde_json::json!({
            "allow": true, "type": d.kind, "major": d.major, "minor": d.minor, "access": "rwm"
        }));
    }
    if !rules.is_empty() {
        resources.insert("devices".into(), serde_json::Value::Array(rules));
    }
    Ok((devices, ordered_resources(&resources)))
}
