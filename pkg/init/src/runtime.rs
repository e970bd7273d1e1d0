//! LinuxKit's `runtime.json`: what init does around one container.
//!
//! Takes the bytes of a bundle's `runtime.json` and gives a typed [`Runtime`],
//! then a list of [`Step`]s (directories, mounts) to perform in order before
//! the container is created. A bundle without `runtime.json` gets the rootfs
//! mounts kiln would have written. For `interfaces` and `bindNS`, which act
//! on the created container's process (after `runc create`, before
//! `runc start`), it gives the link requests and the namespace binds for
//! that pid. `namespace` (LinuxKit's containerd namespace) is parsed and has
//! no effect under runc. Never touches the system; bad input is an error
//! naming the field, never a panic.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::mountopt;
use crate::netlink::LinkRequest;
use crate::sys::{MountCall, Pid};

/// One entry of `runtime.json` `mounts` (an OCI mount).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mount {
    pub destination: String,
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

/// One entry of `interfaces`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub add: String,
    pub peer: String,
    pub create_in_root: bool,
}

/// The parsed `runtime.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Runtime {
    pub cgroups: Vec<String>,
    pub mounts: Vec<Mount>,
    pub mkdir: Vec<String>,
    pub interfaces: Vec<Interface>,
    /// Namespace kind → path, only the non-empty ones.
    pub bind_ns: BTreeMap<String, String>,
    pub namespace: String,
}

/// Why a `runtime.json` could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum RuntimeError {
    Json(String),
    Type { field: String, want: &'static str },
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::Json(e) => write!(f, "runtime.json is not valid json: {e}"),
            RuntimeError::Type { field, want } => {
                write!(f, "runtime.json: {field} must be {want}")
            }
        }
    }
}

impl std::error::Error for RuntimeError {}

fn type_err(field: &str, want: &'static str) -> RuntimeError {
    RuntimeError::Type {
        field: field.to_string(),
        want,
    }
}

/// A string field; missing or null is empty.
fn string(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<String, RuntimeError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(type_err(&format!("{at}{key}"), "a string")),
    }
}

/// An array field; missing or null is empty.
fn array<'a>(
    obj: &'a serde_json::Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<&'a [Value], RuntimeError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(type_err(&format!("{at}{key}"), "an array")),
    }
}

fn strings(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<Vec<String>, RuntimeError> {
    array(obj, key, at)?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err(type_err(&format!("{at}{key}[{i}]"), "a string")),
        })
        .collect()
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a serde_json::Map<String, Value>, RuntimeError> {
    v.as_object().ok_or_else(|| type_err(at, "an object"))
}

/// Parse `runtime.json`. Unknown keys are ignored, as LinuxKit does.
pub fn parse(bytes: &[u8]) -> Result<Runtime, RuntimeError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| RuntimeError::Json(e.to_string()))?;
    let top = object(&v, "the top level")?;
    let mut rt = Runtime {
        cgroups: strings(top, "cgroups", "")?,
        mkdir: strings(top, "mkdir", "")?,
        namespace: string(top, "namespace", "")?,
        ..Runtime::default()
    };
    for (i, m) in array(top, "mounts", "")?.iter().enumerate() {
        let at = format!("mounts[{i}].");
        let m = object(m, &format!("mounts[{i}]"))?;
        rt.mounts.push(Mount {
            destination: string(m, "destination", &at)?,
            kind: string(m, "type", &at)?,
            source: string(m, "source", &at)?,
            options: strings(m, "options", &at)?,
        });
    }
    for (i, n) in array(top, "interfaces", "")?.iter().enumerate() {
        let at = format!("interfaces[{i}].");
        let n = object(n, &format!("interfaces[{i}]"))?;
        let create_in_root = match n.get("createInRoot") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(type_err(&format!("{at}createInRoot"), "a boolean")),
        };
        rt.interfaces.push(Interface {
            name: string(n, "name", &at)?,
            add: string(n, "add", &at)?,
            peer: string(n, "peer", &at)?,
            create_in_root,
        });
    }
    match top.get("bindNS") {
        None | Some(Value::Null) => {}
        Some(b) => {
            let b = object(b, "bindNS")?;
            for key in ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"] {
                let path = string(b, key, "bindNS.")?;
                if !path.is_empty() {
                    rt.bind_ns.insert(key.to_string(), path);
                }
            }
        }
    }
    Ok(rt)
}

/// The rootfs mounts for a bundle without `runtime.json`, the same as kiln's
/// assemble stage writes: a bind of `rootfs` onto itself, or a tmpfs on `tmp`
/// and an overlay of `lower` on `rootfs`.
pub fn default_mounts(bundle: &str, writable: bool) -> Vec<Mount> {
    if !writable {
        return vec![Mount {
            destination: format!("{bundle}/rootfs"),
            source: format!("{bundle}/rootfs"),
            options: vec!["bind".into()],
            ..Mount::default()
        }];
    }
    vec![
        Mount {
            destination: format!("{bundle}/tmp"),
            kind: "tmpfs".into(),
            source: "tmpfs".into(),
            options: vec![],
        },
        Mount {
            destination: format!("{bundle}/tmp"),
            options: vec!["remount".into(), "private".into()],
            ..Mount::default()
        },
        Mount {
            destination: format!("{bundle}/rootfs"),
            kind: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                format!("lowerdir={bundle}/lower"),
                format!("upperdir={bundle}/tmp/upper"),
                format!("workdir={bundle}/tmp/work"),
            ],
        },
    ]
}

/// One thing to do before a container starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `mkdir -p`.
    Mkdir(String),
    /// Make `path` exist as a mount point: a directory, or an empty file when
    /// `like` (a bind source) is not a directory.
    Target {
        path: String,
        like: Option<String>,
    },
    Mount(MountCall),
    /// Create an empty file (and its parents) if nothing is there.
    File(String),
}

fn absolute(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// The steps for a runtime: `mkdir` entries, then each mount in order (its
/// target first; for an overlay its upper and work directories; then the
/// mount, a read-only remount for binds, and a propagation change).
pub fn plan(rt: &Runtime) -> Vec<Step> {
    let mut steps: Vec<Step> = rt.mkdir.iter().map(|d| Step::Mkdir(absolute(d))).collect();
    for m in &rt.mounts {
        let target = absolute(&m.destination);
        let opts = mountopt::parse(&m.options);
        let bind = opts.has(libc::MS_BIND);
        let remount = opts.has(libc::MS_REMOUNT);
        if !remount {
            let like = (bind && !m.source.is_empty()).then(|| m.source.clone());
            steps.push(Step::Target {
                path: target.clone(),
                like,
            });
        }
        if m.kind == "overlay" {
            for key in ["upperdir", "workdir"] {
                if let Some(dir) = mountopt::data_value(&opts.data, key) {
                    steps.push(Step::Mkdir(dir.to_string()));
                }
            }
        }
        let only_propagation =
            opts.flags == 0 && opts.data.is_empty() && m.kind.is_empty() && opts.propagation != 0;
        if !only_propagation {
            let source = match (m.source.is_empty(), m.kind.is_empty()) {
                (false, _) => m.source.clone(),
                (true, false) => m.kind.clone(),
                (true, true) => String::new(),
            };
            steps.push(Step::Mount(MountCall {
                source,
                target: target.clone(),
                fstype: m.kind.clone(),
                flags: opts.flags,
                data: opts.data.clone(),
            }));
            // The kernel ignores flags other than MS_REC on a bind; applying
            // them (ro, nosuid, ...) takes a remount.
            let extra = opts.flags & !(libc::MS_BIND | libc::MS_REC);
            if bind && !remount && extra != 0 {
                steps.push(Step::Mount(MountCall {
                    source: String::new(),
                    target: target.clone(),
                    fstype: String::new(),
                    flags: extra | libc::MS_BIND | libc::MS_REMOUNT,
                    data: String::new(),
                }));
            }
        }
        if opts.propagation != 0 {
            steps.push(Step::Mount(MountCall {
                source: String::new(),
                target,
                fstype: String::new(),
                flags: opts.propagation,
                data: String::new(),
            }));
        }
    }
    steps
}

/// The mount points inside `bundle` that `steps` mount, innermost (last
/// mounted) first: what to unmount once a run-to-completion container is done.
/// Mounts outside the bundle stay, as later containers may rely on them.
pub fn cleanup(steps: &[Step], bundle: &str) -> Vec<String> {
    let inside = format!("{}/", bundle.trim_end_matches('/'));
    let mut out: Vec<String> = Vec::new();
    for s in steps.iter().rev() {
        if let Step::Mount(m) = s {
            let fresh = m.flags
                & (libc::MS_REMOUNT
                    | libc::MS_PRIVATE
                    | libc::MS_SHARED
                    | libc::MS_SLAVE
                    | libc::MS_UNBINDABLE)
                == 0;
            if fresh && m.target.starts_with(&inside) {
                out.push(m.target.clone());
            }
        }
    }
    out
}

impl Runtime {
    /// Whether anything has to happen between `runc create` and
    /// `runc start`: then init needs the container's pid.
    pub fn acts_on_process(&self) -> bool {
        !self.interfaces.is_empty() || !self.bind_ns.is_empty()
    }
}

/// The link requests that give the process `pid` its `interfaces`, in
/// order, as LinuxKit does them: a `peer` without `add` means a veth pair; a
/// veth pair, or any link with `createInRoot`, is created in init's
/// namespace and then `name` is moved to `pid` (the peer stays behind, for
/// a later container to take by name); another `add` kind is created
/// directly in the process's namespace; an entry without `add` moves the
/// existing link `name`. Every entry is checked before any is used: the
/// error names the first bad one.
pub fn link_requests(interfaces: &[Interface], pid: Pid) -> Result<Vec<LinkRequest>, String> {
    let mut out = Vec::new();
    for (i, iface) in interfaces.iter().enumerate() {
        if iface.name.is_empty() {
            return Err(format!("interfaces[{i}]: an interface needs a name"));
        }
        let kind = match (iface.add.as_str(), iface.peer.is_empty()) {
            ("", false) => "veth",
            (kind, _) => kind,
        };
        let peer = (!iface.peer.is_empty()).then(|| iface.peer.clone());
        let move_name = LinkRequest::Move {
            name: iface.name.clone(),
            pid,
        };
        match kind {
            "" => out.push(move_name),
            "veth" => {
                let Some(peer) = peer else {
                    return Err(format!("interfaces[{i}]: veth {} needs a peer", iface.name));
                };
                out.push(LinkRequest::Add {
                    name: iface.name.clone(),
                    kind: kind.into(),
                    peer: Some(peer),
                    netns: None,
                });
                out.push(move_name);
            }
            _ => {
                let netns = (!iface.create_in_root).then_some(pid);
                out.push(LinkRequest::Add {
                    name: iface.name.clone(),
                    kind: kind.into(),
                    peer: None,
                    netns,
                });
                if iface.create_in_root {
                    out.push(move_name);
                }
            }
        }
    }
    Ok(out)
}

/// The steps that bind the namespaces of process `pid` at the `bindNS`
/// paths, in LinuxKit's order (cgroup, ipc, mnt, net, pid, user, uts): the
/// parent directory, an empty file as the mount point, then a bind of
/// `/proc/PID/ns/KIND` onto it.
pub fn bind_ns_steps(bind_ns: &BTreeMap<String, String>, pid: Pid) -> Vec<Step> {
    let mut steps = Vec::new();
    for (kind, path) in bind_ns {
        let path = absolute(path);
        if let Some((parent, _)) = path.rsplit_once('/') {
            if !parent.is_empty() {
                steps.push(Step::Mkdir(parent.to_string()));
            }
        }
        steps.push(Step::File(path.clone()));
        steps.push(Step::Mount(MountCall {
            source: format!("/proc/{pid}/ns/{kind}"),
            target: path,
            fstype: String::new(),
            flags: libc::MS_BIND,
            data: String::new(),
        }));
    }
    steps
}

#[cfg(test)]
#[path = "runtime/tests.rs"]
mod tests;
