//! Precedence: the YAML entry over the image label over the image config
//! over the built-in default, field by field, as LinuxKit's `ConfigToOCI`.
//!
//! Takes one container's YAML [`Image`] and its [`ImageDefaults`]; gives the
//! [`Effective`] settings, still as written (names, strings). Never parses
//! or validates a value: `runtime_config` does that, so that every error is
//! reported in one place. The one deliberate difference from LinuxKit: the
//! merged `binds` and `capabilities` lists (label ++ `.add`) are
//! de-duplicated, keeping the first occurrence (LinuxKit's `mergeStrings`
//! means to, but never does).

use std::collections::BTreeMap;
use std::fmt;

use super::ImageDefaults;
use crate::spec::{Device, IdMapping, IdSpec, Image, Interface, Mount};

/// Where a list element came from, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Yaml,
    YamlAdd,
    Label,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Yaml => "the yaml",
            Origin::YamlAdd => "the yaml `.add` list",
            Origin::Label => "the image label org.mobyproject.config",
        })
    }
}

/// A container's settings after precedence, before validation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Effective {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub readonly: bool,
    pub tmpfs: Vec<(String, Origin)>,
    pub binds: Vec<(String, Origin)>,
    pub mounts: Vec<(Mount, Origin)>,
    pub capabilities: Vec<(String, Origin)>,
    pub ambient: Vec<(String, Origin)>,
    pub rlimits: Vec<(String, Origin)>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub uid: Option<IdSpec>,
    pub gid: Option<IdSpec>,
    pub additional_gids: Vec<IdSpec>,
    pub no_new_privileges: bool,
    pub oom_score_adj: Option<i64>,
    pub hostname: String,
    pub annotations: BTreeMap<String, String>,
    pub sysctl: BTreeMap<String, String>,
    pub resources: Option<serde_json::Value>,
    pub devices: Vec<(Device, Origin)>,
    pub cgroups_path: String,
    pub rootfs_propagation: String,
    pub uid_mappings: Vec<IdMapping>,
    pub gid_mappings: Vec<IdMapping>,
    /// Namespace settings; `""` means "not set anywhere".
    pub net: String,
    pub ipc: String,
    pub uts: String,
    pub pid: String,
    pub userns: String,
    pub runtime: EffectiveRuntime,
}

/// The `runtime:` section after precedence (per field, `bindNS` per key).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EffectiveRuntime {
    pub cgroups: Vec<String>,
    pub mounts: Vec<Mount>,
    pub mkdir: Vec<String>,
    pub interfaces: Vec<Interface>,
    /// cgroup, ipc, mnt, net, pid, user, uts.
    pub bind_ns: [String; 7],
    pub namespace: String,
}

/// Whether the container's root is read-only: yaml > label > false.
pub fn readonly(image: &Image, defaults: &ImageDefaults) -> bool {
    image
        .readonly
        .or(defaults.label.as_ref().and_then(|l| l.readonly))
        .unwrap_or(false)
}

/// yaml if set, else label if set, else `None`.
fn pick<'a, T>(yaml: &'a Option<T>, label: Option<&'a Option<T>>) -> Option<&'a T> {
    yaml.as_ref().or_else(|| label.and_then(|l| l.as_ref()))
}

/// Like [`pick`] for lists, remembering whether the YAML or the label won.
fn pick_tagged<T: Clone>(
    yaml: &Option<Vec<T>>,
    label: Option<&Option<Vec<T>>>,
) -> Vec<(T, Origin)> {
    if let Some(v) = yaml {
        return v.iter().map(|x| (x.clone(), Origin::Yaml)).collect();
    }
    match label.and_then(|l| l.as_ref()) {
        Some(v) => v.iter().map(|x| (x.clone(), Origin::Label)).collect(),
        None => Vec::new(),
    }
}

/// A non-empty string wins, in the order given.
fn first_non_empty<'a>(candidates: impl IntoIterator<Item = Option<&'a String>>) -> String {
    candidates
        .into_iter()
        .flatten()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_default()
}

/// `set` replaces; otherwise label ++ add, de-duplicated (first kept).
fn replace_or_merge(
    set: &Option<Vec<String>>,
    label: Option<&Vec<String>>,
    add: &Option<Vec<String>>,
) -> Vec<(String, Origin)> {
    if let Some(v) = set {
        return v.iter().map(|x| (x.clone(), Origin::Yaml)).collect();
    }
    let mut out: Vec<(String, Origin)> = Vec::new();
    let label = label.into_iter().flatten().map(|x| (x, Origin::Label));
    let add = add.iter().flatten().map(|x| (x, Origin::YamlAdd));
    for (x, origin) in label.chain(add) {
        if !out.iter().any(|(seen, _)| seen == x) {
            out.push((x.clone(), origin));
        }
    }
    out
}

/// Apply LinuxKit's precedence to one container.
pub fn effective(image: &Image, defaults: &ImageDefaults) -> Effective {
    let label = defaults.label.as_ref();
    let l = |f: fn(&Image) -> &Option<Vec<String>>| label.map(f);

    let args = match pick(&image.command, label.map(|l| &l.command)) {
        Some(v) => v.clone(),
        None => {
            let mut v = defaults.entrypoint.clone().unwrap_or_default();
            v.extend(defaults.cmd.iter().flatten().cloned());
            v
        }
    };
    let env = pick(&image.env, label.map(|l| &l.env))
        .or(defaults.env.as_ref())
        .cloned()
        .unwrap_or_default();
    let mut cwd = first_non_empty([
        image.cwd.as_ref(),
        label.and_then(|l| l.cwd.as_ref()),
        defaults.working_dir.as_ref(),
    ]);
    if cwd.is_empty() {
        cwd = "/".to_string();
    }

    let label_str = |f: fn(&Image) -> &Option<String>| label.and_then(|l| f(l).as_ref());
    let ns = |f: fn(&Image) -> &Option<String>| first_non_empty([f(image).as_ref(), label_str(f)]);

    Effective {
        args,
        env,
        cwd,
        readonly: readonly(image, defaults),
        tmpfs: pick_tagged(&image.tmpfs, l(|i| &i.tmpfs)),
        binds: replace_or_merge(
            &image.binds,
            label.and_then(|l| l.binds.as_ref()),
            &image.binds_add,
        ),
        mounts: pick_tagged(&image.mounts, label.map(|l| &l.mounts)),
        capabilities: replace_or_merge(
            &image.capabilities,
            label.and_then(|l| l.capabilities.as_ref()),
            &image.capabilities_add,
        ),
        ambient: pick_tagged(&image.ambient, l(|i| &i.ambient)),
        rlimits: pick_tagged(&image.rlimits, l(|i| &i.rlimits)),
        masked_paths: pick(&image.masked_paths, l(|i| &i.masked_paths))
            .cloned()
            .unwrap_or_default(),
        readonly_paths: pick(&image.readonly_paths, l(|i| &i.readonly_paths))
            .cloned()
            .unwrap_or_default(),
        uid: pick(&image.uid, label.map(|l| &l.uid)).cloned(),
        gid: pick(&image.gid, label.map(|l| &l.gid)).cloned(),
        additional_gids: pick(&image.additional_gids, label.map(|l| &l.additional_gids))
            .cloned()
            .unwrap_or_default(),
        no_new_privileges: image
            .no_new_privileges
            .or(label.and_then(|l| l.no_new_privileges))
            .unwrap_or(false),
        oom_score_adj: image.oom_score_adj.or(label.and_then(|l| l.oom_score_adj)),
        hostname: ns(|i| &i.hostname),
        annotations: pick(&image.annotations, label.map(|l| &l.annotations))
            .cloned()
            .unwrap_or_default(),
        sysctl: pick(&image.sysctl, label.map(|l| &l.sysctl))
            .cloned()
            .unwrap_or_default(),
        resources: pick(&image.resources, label.map(|l| &l.resources)).cloned(),
        devices: pick_tagged(&image.devices, label.map(|l| &l.devices)),
        cgroups_path: pick(&image.cgroups_path, label.map(|l| &l.cgroups_path))
            .cloned()
            .unwrap_or_default(),
        rootfs_propagation: pick(
            &image.rootfs_propagation,
            label.map(|l| &l.rootfs_propagation),
        )
        .cloned()
        .unwrap_or_default(),
        uid_mappings: pick(&image.uid_mappings, label.map(|l| &l.uid_mappings))
            .cloned()
            .unwrap_or_default(),
        gid_mappings: pick(&image.gid_mappings, label.map(|l| &l.gid_mappings))
            .cloned()
            .unwrap_or_default(),
        net: ns(|i| &i.net),
        ipc: ns(|i| &i.ipc),
        uts: ns(|i| &i.uts),
        pid: ns(|i| &i.pid),
        userns: ns(|i| &i.userns),
        runtime: effective_runtime(image, label),
    }
}

fn effective_runtime(image: &Image, label: Option<&Image>) -> EffectiveRuntime {
    let y = image.runtime.as_ref();
    let l = label.and_then(|l| l.runtime.as_ref());
    fn field<'a, T>(
        y: Option<&'a crate::spec::Runtime>,
        l: Option<&'a crate::spec::Runtime>,
        f: fn(&crate::spec::Runtime) -> &Option<T>,
    ) -> Option<&'a T> {
        y.and_then(|r| f(r).as_ref())
            .or_else(|| l.and_then(|r| f(r).as_ref()))
    }
    let ns = |f: fn(&crate::spec::BindNs) -> &Option<String>| -> String {
        let get = |r: Option<&crate::spec::Runtime>| {
            r.and_then(|r| r.bind_ns.as_ref())
                .and_then(|b| f(b).clone())
        };
        get(y).or_else(|| get(l)).unwrap_or_default()
    };
    EffectiveRuntime {
        cgroups: field(y, l, |r| &r.cgroups).cloned().unwrap_or_default(),
        mounts: field(y, l, |r| &r.mounts).cloned().unwrap_or_default(),
        mkdir: field(y, l, |r| &r.mkdir).cloned().unwrap_or_default(),
        interfaces: field(y, l, |r| &r.interfaces).cloned().unwrap_or_default(),
        bind_ns: [
            ns(|b| &b.cgroup),
            ns(|b| &b.ipc),
            ns(|b| &b.mnt),
            ns(|b| &b.net),
            ns(|b| &b.pid),
            ns(|b| &b.user),
            ns(|b| &b.uts),
        ],
        namespace: field(y, l, |r| &r.namespace).cloned().unwrap_or_default(),
    }
}
