//! The OCI runtime `config.json` and LinuxKit `runtime.json` shapes, and
//! the JSON writer that prints them byte-for-byte as LinuxKit does.
//!
//! Takes nothing but values: the structs here mirror the Go structs of the
//! vendored runtime-spec (field order = Go field order, `omitempty` =
//! `skip_serializing_if`), so serialising them needs no sorting step.
//! [`to_go_json`] pretty-prints with a 4-space indent, no trailing newline
//! and Go's HTML-safe escaping (`<`, `>`, `&`, U+2028, U+2029). Never
//! decides any value: that is `runtime_config`'s job.

use std::collections::BTreeMap;
use std::io;

use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter};

/// The runtime-spec version LinuxKit's vendored `specs-go` reports.
pub const OCI_VERSION: &str = "1.2.1";

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OciSpec {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub process: Process,
    pub root: Root,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<OciMount>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub linux: Linux,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Process {
    pub user: User,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    pub cwd: String,
    pub capabilities: Capabilities,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rlimits: Vec<Rlimit>,
    #[serde(rename = "noNewPrivileges", skip_serializing_if = "is_false")]
    pub no_new_privileges: bool,
    #[serde(rename = "oomScoreAdj", skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    #[serde(rename = "additionalGids", skip_serializing_if = "Vec::is_empty")]
    pub additional_gids: Vec<u32>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Capabilities {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bounding: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub effective: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inheritable: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permitted: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ambient: Vec<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub hard: u64,
    pub soft: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Root {
    pub path: String,
    #[serde(skip_serializing_if = "is_false")]
    pub readonly: bool,
}

/// An OCI mount (also used in `runtime.json`).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct OciMount {
    pub destination: String,
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Linux {
    #[serde(rename = "uidMappings", skip_serializing_if = "Vec::is_empty")]
    pub uid_mappings: Vec<IdMapping>,
    #[serde(rename = "gidMappings", skip_serializing_if = "Vec::is_empty")]
    pub gid_mappings: Vec<IdMapping>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctl: BTreeMap<String, String>,
    /// Always present (`{}` when empty), already in Go field order.
    pub resources: OrderedJson,
    #[serde(rename = "cgroupsPath", skip_serializing_if = "String::is_empty")]
    pub cgroups_path: String,
    pub namespaces: Vec<Namespace>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<LinuxDevice>,
    #[serde(rename = "rootfsPropagation", skip_serializing_if = "String::is_empty")]
    pub rootfs_propagation: String,
    #[serde(rename = "maskedPaths", skip_serializing_if = "Vec::is_empty")]
    pub masked_paths: Vec<String>,
    #[serde(rename = "readonlyPaths", skip_serializing_if = "Vec::is_empty")]
    pub readonly_paths: Vec<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct IdMapping {
    #[serde(rename = "containerID")]
    pub container_id: u32,
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct LinuxDevice {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub major: i64,
    pub minor: i64,
    #[serde(rename = "fileMode")]
    pub file_mode: u32,
}

/// A JSON value whose object keys keep the order they were pushed in
/// (serde_json's `Value` sorts them, Go prints struct fields in order).
#[derive(Clone, Debug, PartialEq)]
pub enum OrderedJson {
    Scalar(serde_json::Value),
    Array(Vec<OrderedJson>),
    Object(Vec<(String, OrderedJson)>),
}

impl Serialize for OrderedJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            OrderedJson::Scalar(v) => v.serialize(s),
            OrderedJson::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            OrderedJson::Object(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// LinuxKit's `runtime.json`: what init does around the container.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RuntimeJson {
    pub cgroups: Vec<String>,
    pub mounts: Vec<OciMount>,
    pub mkdir: Vec<String>,
    pub interfaces: Vec<RuntimeInterface>,
    #[serde(rename = "bindNS")]
    pub bind_ns: BindNsJson,
    pub namespace: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RuntimeInterface {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub add: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peer: String,
    #[serde(rename = "createInRoot")]
    pub create_in_root: bool,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct BindNsJson {
    pub cgroup: String,
    pub ipc: String,
    pub mnt: String,
    pub net: String,
    pub pid: String,
    pub user: String,
    pub uts: String,
}

/// A pretty formatter (4-space indent) that also escapes like Go's
/// `encoding/json`: `<`, `>`, `&`, U+2028 and U+2029 as `\uXXXX`.
struct GoFormatter<'a>(PrettyFormatter<'a>);

impl Formatter for GoFormatter<'_> {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let esc = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            w.write_all(&fragment.as_bytes()[start..i])?;
            w.write_all(esc.as_bytes())?;
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// Serialise `value` as Go's `json.MarshalIndent(v, "", "    ")` would:
/// 4-space indent, HTML-safe escapes, no trailing newline.
pub fn to_go_json<T: Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        GoFormatter(PrettyFormatter::with_indent(b"    ")),
    );
    value.serialize(&mut ser)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_escaping_and_indent() {
        let v = serde_json::json!({"a": ["sh -c \"x && y\" <z>", "\u{2028}"], "b": [], "c": {}});
        let text = String::from_utf8(to_go_json(&v).unwrap()).unwrap();
        assert_eq!(
            text,
            "{\n    \"a\": [\n        \"sh -c \\\"x \\u0026\\u0026 y\\\" \\u003cz\\u003e\",\n        \"\\u2028\"\n    ],\n    \"b\": [],\n    \"c\": {}\n}"
        );
    }

    #[test]
    fn ordered_json_keeps_push_order() {
        let v = OrderedJson::Object(vec![
            ("z".into(), OrderedJson::Scalar(1.into())),
            ("a".into(), OrderedJson::Array(vec![])),
        ]);
        assert_eq!(
            to_go_json(&v).unwrap(),
            b"{\n    \"z\": 1,\n    \"a\": []\n}"
        );
    }
}
