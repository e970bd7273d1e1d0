//! A small YAML loader: `saphyr-parser` events → a tree of positioned [`Node`]s.
//!
//! Takes the text of one YAML file; gives its single document as a [`Node`]
//! tree where every node knows its 1-based `file:line:col`. Aliases are
//! resolved by cloning the anchored node, under a hard budget on the total
//! number of nodes ([`MAX_NODES`]) and on nesting depth ([`MAX_DEPTH`]), so a
//! "billion laughs" document is an error rather than an out-of-memory kill.
//! Duplicate mapping keys, multi-document streams and non-scalar keys are
//! errors; YAML 1.1 merge keys (`<<: *base`) are honoured, as go-yaml (which
//! LinuxKit uses) honours them. Scalars keep their text; typing is left to
//! the caller, with the YAML 1.2 core-schema helpers here. Never reads files.

use std::collections::BTreeMap;
use std::sync::Arc;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Span};

use super::{Pos, SpecError};

/// The most nodes one document may hold: written nodes, anchored copies
/// and alias expansions together.
pub const MAX_NODES: usize = 100_000;
/// The most scalar bytes aliases may copy (each alias of an anchor counts
/// the anchor's scalar bytes again), so a few aliases of one large scalar
/// cannot multiply memory either.
pub const MAX_ALIAS_BYTES: usize = 16 << 20;
/// The deepest nesting of sequences and mappings accepted.
pub const MAX_DEPTH: usize = 64;

/// A YAML node with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// The value of a [`Node`].
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Entries in document order; keys are always [`Value::Scalar`].
    Mapping(Vec<(Node, Node)>),
    Sequence(Vec<Node>),
    /// A scalar's text; `plain` is false for quoted, block or `!!str` scalars,
    /// which are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    /// An empty value, `~` or `null` (plain).
    Null,
}

impl Node {
    /// A short name of the node's kind, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Mapping(_) => "a mapping",
            Value::Sequence(_) => "a sequence",
            Value::Null => "null",
            Value::Scalar { text, plain } => match (*plain, core_scalar(text)) {
                (true, Some(serde_json::Value::Bool(_))) => "a boolean",
                (true, Some(serde_json::Value::Number(_))) => "a number",
                _ => "a string",
            },
        }
    }

    /// The node as JSON, typing plain scalars by the YAML 1.2 core schema.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Scalar { text, plain: true } => {
                core_scalar(text).unwrap_or_else(|| serde_json::Value::String(text.clone()))
            }
            Value::Scalar { text, plain: false } => serde_json::Value::String(text.clone()),
            Value::Sequence(items) => items.iter().map(Node::to_json).collect(),
            Value::Mapping(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (key_text(k).to_owned(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// The text of a mapping key (keys are always scalars after loading).
pub fn key_text(node: &Node) -> &str {
    match &node.value {
        Value::Scalar { text, .. } => text,
        _ => "",
    }
}

/// Types a plain scalar by the YAML 1.2 core schema: null, bool, int
/// (decimal, `0o` octal, `0x` hex) or float. `None` means "a string".
/// Floats JSON cannot hold (`.inf`, `.nan`) stay strings.
pub fn core_scalar(text: &str) -> Option<serde_json::Value> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Some(serde_json::Value::Null),
        "true" | "True" | "TRUE" => return Some(serde_json::Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(serde_json::Value::Bool(false)),
        _ => {}
    }
    if let Some(i) = core_int(text) {
        return Some(serde_json::Value::from(i));
    }
    if is_core_float(text) {
        let f: f64 = text.parse().ok()?;
        return serde_json::Number::from_f64(f).map(serde_json::Value::Number);
    }
    None
}

/// Parses a YAML 1.2 core-schema integer: `[-+]?[0-9]+`, `0o[0-7]+`, `0x[0-9a-fA-F]+`.
pub fn core_int(text: &str) -> Option<i64> {
    if let Some(oct) = text.strip_prefix("0o") {
        return digits_in(oct, 8);
    }
    if let Some(hex) = text.strip_prefix("0x") {
        return digits_in(hex, 16);
    }
    let (neg, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let n = digits_in(digits, 10)?;
    Some(if neg { -n } else { n })
}

fn digits_in(s: &str, radix: u32) -> Option<i64> {
    if s.is_empty() || !s.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    i64::from_str_radix(s, radix).ok()
}

fn is_core_float(text: &str) -> bool {
    let t = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = all_digits(int)
        && frac.is_none_or(all_digits)
        && (!int.is_empty() || frac.is_some_and(|f| !f.is_empty()));
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exp_ok
}

/// Loads the single document of `text`; an empty stream gives a null node.
pub fn load(file: &str, text: &str) -> Result<Node, SpecError> {
    let file: Arc<str> = Arc::from(file);
    let mut builder = Builder {
        file: file.clone(),
        stack: Vec::new(),
        anchors: BTreeMap::new(),
        count: 0,
        copied: 0,
        root: None,
        documents: 0,
    };
    let mut parser = Parser::new_from_str(text);
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|e| SpecError {
            pos: builder.pos(*e.marker()),
            msg: format!("yaml syntax error: {}", e.info()),
        })?;
        builder.event(event, span)?;
    }
    Ok(builder.root.unwrap_or(Node {
        pos: Pos {
            file,
            line: 1,
            col: 1,
        },
        value: Value::Null,
    }))
}

/// A sequence or mapping being built.
struct Frame {
    pos: Pos,
    anchor: usize,
    kind: FrameKind,
}

enum FrameKind {
    Sequence(Vec<Node>),
    Mapping(Vec<(Node, Node)>, Option<Node>),
}

/// An anchored node with its size and depth, for budget checks on aliases.
struct Anchored {
    node: Node,
    size: usize,
    depth: usize,
    bytes: usize,
}

struct Builder {
    file: Arc<str>,
    stack: Vec<Frame>,
    anchors: BTreeMap<usize, Anchored>,
    count: usize,
    /// Scalar bytes copied by aliases and anchor copies.
    copied: usize,
    root: Option<Node>,
    documents: usize,
}

impl Builder {
    fn pos(&self, m: Marker) -> Pos {
        Pos {
            file: self.file.clone(),
            line: m.line(),
            col: m.col() + 1,
        }
    }

    fn err(&self, pos: Pos, msg: impl Into<String>) -> SpecError {
        SpecError {
            pos,
            msg: msg.into(),
        }
    }

    fn grow(&mut self, n: usize, pos: &Pos) -> Result<(), SpecError> {
        self.count = self.count.saturating_add(n);
        if self.count > MAX_NODES {
            return Err(self.err(
                pos.clone(),
                format!("alias expansion exceeds {MAX_NODES} nodes (is this an alias bomb?)"),
            ));
        }
        Ok(())
    }

    fn copy_bytes(&mut self, n: usize, pos: &Pos) -> Result<(), SpecError> {
        self.copied = self.copied.saturating_add(n);
        if self.copied > MAX_ALIAS_BYTES {
            return Err(self.err(
                pos.clone(),
                format!("alias expansion copies more than {MAX_ALIAS_BYTES} bytes (is this an alias bomb?)"),
            ));
        }
        Ok(())
    }

    fn open(&mut self, pos: Pos, anchor: usize, kind: FrameKind) -> Result<(), SpecError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.err(pos, format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        self.grow(1, &pos)?;
        self.stack.push(Frame { pos, anchor, kind });
        Ok(())
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), SpecError> {
        let pos = self.pos(span.start);
        match event {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(self.err(
                        pos,
                        "more than one yaml document in a file; \
                         pass each document as its own file",
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.grow(1, &pos)?;
                let str_tag = tag
                    .as_ref()
                    .is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "str");
                let plain = style == ScalarStyle::Plain && !str_tag;
                let value = if plain && matches!(core_scalar(&text), Some(serde_json::Value::Null))
                {
                    Value::Null
                } else {
                    Value::Scalar {
                        text: text.into_owned(),
                        plain,
                    }
                };
                self.finish(Node { pos, value }, anchor)?;
            }
            Event::Alias(id) => {
                let Some(a) = self.anchors.get(&id) else {
                    return Err(self.err(pos, "alias refers to an anchor that is not complete"));
                };
                if self.stack.len() + a.depth > MAX_DEPTH {
                    return Err(self.err(pos, format!("nesting deeper than {MAX_DEPTH} levels")));
                }
                let (size, bytes) = (a.size, a.bytes);
                self.grow(size, &pos)?;
                self.copy_bytes(bytes, &pos)?;
                let mut node = self.anchors[&id].node.clone();
                // An alias stands where it is written, but keeps the
                // anchor's inner positions.
                node.pos = pos;
                self.finish(node, 0)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.open(pos, anchor, FrameKind::Sequence(Vec::new()))?;
            }
            Event::MappingStart(anchor, _) => {
                self.open(pos, anchor, FrameKind::Mapping(Vec::new(), None))?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return Err(self.err(pos, "unbalanced collection end"));
                };
                let value = match frame.kind {
                    FrameKind::Sequence(items) => Value::Sequence(items),
                    FrameKind::Mapping(entries, _) => Value::Mapping(self.merge_keys(entries)?),
                };
                let node = Node {
                    pos: frame.pos,
                    value,
                };
                self.finish(node, frame.anchor)?;
            }
        }
        Ok(())
    }

    /// Places a completed node into its parent (or as the root).
    fn finish(&mut self, node: Node, anchor: usize) -> Result<(), SpecError> {
        if anchor != 0 {
            let (size, depth) = measure(&node);
            let bytes = scalar_bytes(&node);
            // The stored copy counts too, so nested anchors cannot multiply
            // memory past the budget.
            self.grow(size, &node.pos)?;
            self.copy_bytes(bytes, &node.pos)?;
            self.anchors.insert(
                anchor,
                Anchored {
                    node: node.clone(),
                    size,
                    depth,
                    bytes,
                },
            );
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame {
                kind: FrameKind::Sequence(items),
                ..
            }) => items.push(node),
            Some(Frame {
                kind: FrameKind::Mapping(entries, pending),
                ..
            }) => match pending.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    if !matches!(node.value, Value::Scalar { .. }) {
                        let msg = format!("mapping key must be a string, found {}", node.kind());
                        return Err(self.err(node.pos, msg));
                    }
                    *pending = Some(node);
                }
            },
        }
        Ok(())
    }

    /// Checks for duplicate keys and applies `<<` merge keys: explicit
    /// entries win over merged ones, earlier merged mappings over later.
    fn merge_keys(&self, entries: Vec<(Node, Node)>) -> Result<Vec<(Node, Node)>, SpecError> {
        let mut seen: BTreeMap<String, Pos> = BTreeMap::new();
        let mut out = Vec::with_capacity(entries.len());
        let mut merged = Vec::new();
        for (key, value) in entries {
            if matches!(&key.value, Value::Scalar { text, plain: true } if text == "<<") {
                merged.push(value);
                continue;
            }
            let text = key_text(&key).to_owned();
            if let Some(first) = seen.get(&text) {
                let msg = format!(
                    "duplicate key `{text}` (first at line {} column {})",
                    first.line, first.col
                );
                return Err(self.err(key.pos, msg));
            }
            seen.insert(text, key.pos.clone());
            out.push((key, value));
        }
        for value in merged {
            let sources = match value.value {
                Value::Mapping(m) => vec![m],
                Value::Sequence(items) => {
                    let mut maps = Vec::new();
                    for item in items {
                        match item.value {
                            Value::Mapping(m) => maps.push(m),
                            _ => {
                                let msg = format!("`<<` merges mappings, found {}", item.kind());
                                return Err(self.err(item.pos, msg));
                            }
                        }
                    }
                    maps
                }
                _ => {
                    let msg = format!("`<<` merges mappings, found {}", value.kind());
                    return Err(self.err(value.pos, msg));
                }
            };
            for (key, v) in sources.into_iter().flatten() {
                let text = key_text(&key).to_owned();
                if let std::collections::btree_map::Entry::Vacant(slot) = seen.entry(text) {
                    slot.insert(key.pos.clone());
                    out.push((key, v));
                }
            }
        }
        Ok(out)
    }
}

/// The number of nodes in `node` and its nesting depth (0 for a scalar).
/// The bytes of every scalar (keys included) under `node`.
fn scalar_bytes(node: &Node) -> usize {
    match &node.value {
        Value::Null => 0,
        Value::Scalar { text, .. } => text.len(),
        Value::Sequence(items) => items.iter().map(scalar_bytes).sum(),
        Value::Mapping(entries) => entries
            .iter()
            .map(|(k, v)| scalar_bytes(k) + scalar_bytes(v))
            .sum(),
    }
}

fn measure(node: &Node) -> (usize, usize) {
    match &node.value {
        Value::Null | Value::Scalar { .. } => (1, 0),
        Value::Sequence(items) => items.iter().fold((1, 1), |(n, d), i| {
            let (ni, di) = measure(i);
            (n + ni, d.max(di + 1))
        }),
        Value::Mapping(entries) => entries.iter().fold((1, 1), |(n, d), (_, v)| {
            let (nv, dv) = measure(v);
            // Keys are scalars: one node each.
            (n + nv + 1, d.max(dv + 1))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(node: &Node) -> (usize, usize) {
        (node.pos.line, node.pos.col)
    }

    fn err(text: &str) -> String {
        match load("t.yml", text) {
            Ok(n) => panic!("expected an error, got {n:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn positions_are_one_based() {
        let root = load("t.yml", "a:\n  - x\n  - 'y'\nb: 3\n").unwrap();
        let Value::Mapping(entries) = &root.value else {
            panic!("not a mapping")
        };
        assert_eq!(at(&entries[0].0), (1, 1));
        let Value::Sequence(items) = &entries[0].1.value else {
            panic!("not a sequence")
        };
        assert_eq!(at(&items[0]), (2, 5));
        assert_eq!(at(&items[1]), (3, 5));
        assert_eq!(
            items[1].value,
            Value::Scalar {
                text: "y".into(),
                plain: false
            }
        );
        assert_eq!(at(&entries[1].1), (4, 4));
    }

    #[test]
    fn json_typing_follows_the_core_schema() {
        let root = load(
            "t.yml",
            "a: true\nb: 0o17\nc: 0x1f\nd: -12\ne: ~\nf: '12'\ng: !!str 12\nh: 1.5\ni: yes\nj:\n",
        )
        .unwrap();
        let want = serde_json::json!({
            "a": true, "b": 15, "c": 31, "d": -12, "e": null, "f": "12",
            "g": "12", "h": 1.5, "i": "yes", "j": null
        });
        assert_eq!(root.to_json(), want);
    }

    #[test]
    fn aliases_and_merge_keys_resolve() {
        let root = load(
            "t.yml",
            "base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\nlist: [*b]\n",
        )
        .unwrap();
        let want = serde_json::json!({
            "base": {"x": 1, "y": 2}, "use": {"y": 3, "x": 1}, "list": [{"x": 1, "y": 2}]
        });
        assert_eq!(root.to_json(), want);
    }

    #[test]
    fn empty_stream_is_null() {
        assert_eq!(load("t.yml", "# nothing\n").unwrap().value, Value::Null);
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        assert_eq!(
            err("a: 1\nb: 2\na: 3\n"),
            "t.yml:3:1: duplicate key `a` (first at line 1 column 1)"
        );
    }

    #[test]
    fn second_document_is_rejected() {
        assert!(err("a: 1\n---\nb: 2\n").starts_with("t.yml:2:1: more than one yaml document"));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let e = err("a: [1, 2\nb: 3\n");
        assert!(e.starts_with("t.yml:"), "{e}");
        assert!(e.contains("yaml syntax error"), "{e}");
    }

    #[test]
    fn aliases_of_a_large_scalar_are_bounded_in_bytes() {
        // One 1 MiB scalar, aliased: few nodes, many bytes.
        let big = "x".repeat(1 << 20);
        let mut text = format!("a: &big \"{big}\"\nb: [");
        text.push_str(&vec!["*big"; 40].join(", "));
        text.push_str("]\n");
        let e = err(&text);
        assert!(e.contains("alias expansion copies more than"), "{e}");
        // A few copies are fine.
        let ok = format!("a: &big \"{big}\"\nb: [*big, *big]\n");
        load("t.yml", &ok).unwrap();
    }

    #[test]
    fn alias_bomb_is_an_error() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = err(&text);
        assert!(e.contains("alias expansion exceeds 100000 nodes"), "{e}");
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let text = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(err(&text).contains("nesting deeper than 64 levels"));
    }

    #[test]
    fn complex_keys_are_rejected() {
        assert!(err("? [a]\n: 1\n").contains("mapping key must be a string, found a sequence"));
    }

    #[test]
    fn core_ints() {
        assert_eq!(core_int("0600"), Some(600));
        assert_eq!(core_int("0o600"), Some(384));
        assert_eq!(core_int("+7"), Some(7));
        assert_eq!(core_int("0x"), None);
        assert_eq!(core_int("1_000"), None);
        assert_eq!(core_int("99999999999999999999"), None);
    }
}
