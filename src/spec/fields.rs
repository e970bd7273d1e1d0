//! Typed readers over YAML [`Node`]s, each naming the key path in its error.
//!
//! Takes a node and the dotted key path that led to it (`services[1].env`);
//! gives a Rust value or a [`SpecError`] such as
//! `f.yml:4:7: services[1].readonly: expected a boolean, found a string`.
//! Plain scalars are typed by the YAML 1.2 core schema; quoted scalars are
//! always strings. Never reads files.

use std::collections::BTreeMap;

use super::yaml::{core_int, key_text, Node, Value};
use super::{IdSpec, SpecError};

/// An error at `node`, prefixed with the key path (if any).
pub fn error(node: &Node, path: &str, msg: impl std::fmt::Display) -> SpecError {
    let msg = if path.is_empty() {
        msg.to_string()
    } else {
        format!("{path}: {msg}")
    };
    SpecError {
        pos: node.pos.clone(),
        msg,
    }
}

fn wrong_type(node: &Node, path: &str, expected: &str) -> SpecError {
    error(
        node,
        path,
        format!("expected {expected}, found {}", node.kind()),
    )
}

/// `path.key`, or `key` at the top level.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `path[index]`.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// The entries of a mapping; null counts as an empty mapping.
pub fn mapping<'a>(node: &'a Node, path: &str) -> Result<&'a [(Node, Node)], SpecError> {
    match &node.value {
        Value::Mapping(entries) => Ok(entries),
        Value::Null => Ok(&[]),
        _ => Err(wrong_type(node, path, "a mapping")),
    }
}

/// The items of a sequence; null counts as an empty sequence.
pub fn sequence<'a>(node: &'a Node, path: &str) -> Result<&'a [Node], SpecError> {
    match &node.value {
        Value::Sequence(items) => Ok(items),
        Value::Null => Ok(&[]),
        _ => Err(wrong_type(node, path, "a sequence")),
    }
}

/// The "unknown key" error, suggesting the closest known key.
pub fn unknown_key(key: &Node, path: &str, known: &[&str]) -> SpecError {
    let name = key_text(key);
    let best = known
        .iter()
        .map(|k| (edit_distance(&name.to_lowercase(), &k.to_lowercase()), *k))
        .min();
    let hint = match best {
        Some((d, k)) if d <= 2.max(name.len() / 3) => format!("; did you mean `{k}`?"),
        _ => String::new(),
    };
    error(key, path, format!("unknown key `{name}`{hint}"))
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// Any scalar's text; null is "not given".
pub fn opt_string(node: &Node, path: &str) -> Result<Option<String>, SpecError> {
    match &node.value {
        Value::Scalar { text, .. } => Ok(Some(text.clone())),
        Value::Null => Ok(None),
        _ => Err(wrong_type(node, path, "a string")),
    }
}

/// Any scalar's text; null is an error.
pub fn string(node: &Node, path: &str) -> Result<String, SpecError> {
    opt_string(node, path)?.ok_or_else(|| wrong_type(node, path, "a string"))
}

/// A sequence of scalars; null is "not given".
pub fn opt_strings(node: &Node, path: &str) -> Result<Option<Vec<String>>, SpecError> {
    if node.value == Value::Null {
        return Ok(None);
    }
    let items = sequence(node, path)?;
    let strings = items
        .iter()
        .enumerate()
        .map(|(i, item)| string(item, &index(path, i)))
        .collect::<Result<_, _>>()?;
    Ok(Some(strings))
}

/// A plain `true` or `false`; null is "not given".
pub fn opt_bool(node: &Node, path: &str) -> Result<Option<bool>, SpecError> {
    match &node.value {
        Value::Null => Ok(None),
        Value::Scalar { text, plain: true } => match text.as_str() {
            "true" | "True" | "TRUE" => Ok(Some(true)),
            "false" | "False" | "FALSE" => Ok(Some(false)),
            _ => Err(wrong_type(node, path, "a boolean")),
        },
        _ => Err(wrong_type(node, path, "a boolean")),
    }
}

/// A plain core-schema integer; null is "not given".
pub fn opt_int(node: &Node, path: &str) -> Result<Option<i64>, SpecError> {
    match &node.value {
        Value::Null => Ok(None),
        Value::Scalar { text, plain: true } => core_int(text)
            .map(Some)
            .ok_or_else(|| wrong_type(node, path, "an integer")),
        _ => Err(wrong_type(node, path, "an integer")),
    }
}

/// An integer that fits in `u32`.
pub fn u32_value(node: &Node, path: &str) -> Result<u32, SpecError> {
    let n = opt_int(node, path)?.ok_or_else(|| wrong_type(node, path, "an integer"))?;
    u32::try_from(n).map_err(|_| error(node, path, format!("{n} is out of range 0..=4294967295")))
}

/// A user or group: a plain integer is an id, anything else a name.
pub fn opt_id(node: &Node, path: &str) -> Result<Option<IdSpec>, SpecError> {
    match &node.value {
        Value::Null => Ok(None),
        Value::Scalar { text, plain } => {
            if *plain {
                if let Some(n) = core_int(text) {
                    let id = u32::try_from(n).map_err(|_| {
                        error(node, path, format!("id {n} is out of range 0..=4294967295"))
                    })?;
                    return Ok(Some(IdSpec::Id(id)));
                }
            }
            if text.is_empty() {
                return Err(error(node, path, "empty user or group name"));
            }
            Ok(Some(IdSpec::Name(text.clone())))
        }
        _ => Err(wrong_type(node, path, "an id or a name")),
    }
}

/// A permission mode written in octal: `"0600"`, `0600`, `600` or `0o600`.
/// LinuxKit reads the mode as a string and parses it base 8, so the digits
/// of a plain scalar are octal too.
pub fn opt_mode(node: &Node, path: &str) -> Result<Option<u32>, SpecError> {
    let Some(text) = opt_string(node, path)? else {
        return Ok(None);
    };
    let digits = text.strip_prefix("0o").unwrap_or(&text);
    let bad = || {
        error(
            node,
            path,
            format!("`{text}` is not an octal mode like \"0644\""),
        )
    };
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad());
    }
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(Some(mode)),
        _ => Err(bad()),
    }
}

/// A mapping of scalar keys to scalar values; null is "not given".
pub fn opt_string_map(
    node: &Node,
    path: &str,
) -> Result<Option<BTreeMap<String, String>>, SpecError> {
    if node.value == Value::Null {
        return Ok(None);
    }
    let mut map = BTreeMap::new();
    for (k, v) in mapping(node, path)? {
        let key = key_text(k).to_owned();
        let value = match &v.value {
            Value::Null => String::new(),
            _ => string(v, &join(path, &key))?,
        };
        map.insert(key, value);
    }
    Ok(Some(map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::load;

    fn value(text: &str) -> Node {
        let root = load("t.yml", &format!("v: {text}\n")).unwrap();
        match root.value {
            Value::Mapping(mut e) => e.remove(0).1,
            _ => panic!("not a mapping"),
        }
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(opt_mode(&value("\"0600\""), "m").unwrap(), Some(0o600));
        assert_eq!(opt_mode(&value("0755"), "m").unwrap(), Some(0o755));
        assert_eq!(opt_mode(&value("0o4755"), "m").unwrap(), Some(0o4755));
        let e = opt_mode(&value("0800"), "m").unwrap_err().to_string();
        assert_eq!(e, "t.yml:1:4: m: `0800` is not an octal mode like \"0644\"");
        assert!(opt_mode(&value("77777"), "m").is_err());
    }

    #[test]
    fn ids_are_numbers_or_names() {
        assert_eq!(opt_id(&value("0"), "u").unwrap(), Some(IdSpec::Id(0)));
        assert_eq!(
            opt_id(&value("'0'"), "u").unwrap(),
            Some(IdSpec::Name("0".into()))
        );
        assert_eq!(
            opt_id(&value("nobody"), "u").unwrap(),
            Some(IdSpec::Name("nobody".into()))
        );
        assert!(opt_id(&value("-1"), "u").is_err());
    }

    #[test]
    fn booleans_must_be_plain() {
        assert_eq!(opt_bool(&value("true"), "b").unwrap(), Some(true));
        let e = opt_bool(&value("'true'"), "b").unwrap_err().to_string();
        assert_eq!(e, "t.yml:1:4: b: expected a boolean, found a string");
    }

    #[test]
    fn suggestions_pick_the_closest_key() {
        let key = value("capabilites");
        let e = unknown_key(&key, "services[0]", &["capabilities", "command"]);
        assert!(e.msg.ends_with("did you mean `capabilities`?"), "{e}");
        let e = unknown_key(&value("zzz"), "x", &["capabilities"]);
        assert_eq!(e.msg, "x: unknown key `zzz`");
    }

    #[test]
    fn distance() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
