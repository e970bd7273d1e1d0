//! A small, deterministic YAML writer for `metadata: yaml` files.
//!
//! Takes a JSON value; gives block-style YAML text: mappings in key order
//! (serde_json's maps are sorted), two-space indentation, sequences
//! indented under their key, empty collections as `[]`/`{}`. A string is
//! written plain only when it cannot be read back as anything else
//! (number, bool, null, or YAML syntax); otherwise it is double-quoted
//! with escapes. Never reads anything else and never fails.

use serde_json::Value;

/// `value` as a YAML document ending in a newline.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    for line in lines(value) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn lines(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, val) in m {
                if is_block(val) {
                    out.push(format!("{}:", scalar_str(k)));
                    out.extend(lines(val).into_iter().map(|l| format!("  {l}")));
                } else {
                    out.push(format!("{}: {}", scalar_str(k), scalar(val)));
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                if is_block(item) {
                    let sub = lines(item);
                    for (i, l) in sub.into_iter().enumerate() {
                        out.push(if i == 0 {
                            format!("- {l}")
                        } else {
                            format!("  {l}")
                        });
                    }
                } else {
                    out.push(format!("- {}", scalar(item)));
                }
            }
        }
        other => out.push(scalar(other)),
    }
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar_str(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Words a YAML 1.1 or 1.2 reader would not read as a string.
const RESERVED: &[&str] = &[
    "null", "~", "true", "false", "yes", "no", "on", "off", "y", "n", ".inf", "-.inf", "+.inf",
    ".nan",
];

fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return false;
    }
    if "-?:,[]{}#&*!|>'\"%@` ".contains(first) || s.ends_with(' ') || s.ends_with(':') {
        return false;
    }
    if s.contains(": ") || s.contains(" #") {
        return false;
    }
    if RESERVED.contains(&s.to_ascii_lowercase().as_str()) {
        return false;
    }
    // Anything that starts like a number is quoted (ints, floats, 0x, 0o, 1e3, …).
    let digitish = s.trim_start_matches(['+', '.']);
    !digitish.starts_with(|c: char| c.is_ascii_digit())
}

fn scalar_str(s: &str) -> String {
    if plain_ok(s) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20
                || (0x7f..=0x9f).contains(&(c as u32))
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') =>
            {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_style_with_safe_quoting() {
        let v = serde_json::json!({
            "kernel": {"image": "docker.io/linuxkit/kernel:6.6", "cmdline": "console=ttyS0"},
            "init": ["a", "b"],
            "onboot": [{"name": "x", "command": ["/bin/sh", "-c", "echo: hi # no"]}],
            "files": [{"path": "etc/x", "mode": "0644", "contents": "line1\nline2"}],
            "empty": [],
            "flags": {"yes": "yes", "n": 1, "t": true, "z": null, "s": "", "u": "ünï"}
        });
        let expected = r#"empty: []
files:
  - contents: "line1\nline2"
    mode: "0644"
    path: etc/x
flags:
  "n": 1
  s: ""
  t: true
  u: "ünï"
  "yes": "yes"
  z: null
init:
  - a
  - b
kernel:
  cmdline: console=ttyS0
  image: docker.io/linuxkit/kernel:6.6
onboot:
  - command:
      - /bin/sh
      - "-c"
      - "echo: hi # no"
    name: x
"#;
        assert_eq!(to_yaml(&v), expected);
    }

    #[test]
    fn nested_sequences_and_scalars() {
        let v = serde_json::json!([[1, "2"], {}, "-x", "1.5", "a:b"]);
        assert_eq!(
            to_yaml(&v),
            "- - 1\n  - \"2\"\n- {}\n- \"-x\"\n- \"1.5\"\n- a:b\n"
        );
        assert_eq!(to_yaml(&serde_json::json!("\u{7f}")), "\"\\u007f\"\n");
    }
}
