//! `build.yml` → a typed [`Recipe`], every item keeping its `file:line:col`.
//!
//! Takes the text of one recipe; gives the image name, tags, the debs,
//! files, crates and tars to put in the image, and the image config. Errors
//! are [`SpecError`]s like `pkg/runc/build.yml:4:3: debs[0]: unknown key
//! `kep`; did you mean `keep`?`. Unknown keys are errors everywhere (a typo
//! must not silently drop a file from an image). Reads no files.

use crate::spec::fields::{
    error, index, join, mapping, opt_bool, opt_mode, opt_string, opt_strings, sequence, string,
    unknown_key,
};
use crate::spec::yaml::{key_text, load, Node, Value};
use crate::spec::{Pos, SpecError};

/// The label LinuxKit reads an image's defaults from.
pub const CONFIG_LABEL: &str = "org.mobyproject.config";

/// One recipe directory's `build.yml`.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    /// Repository, e.g. `kiln.dev/runc`.
    pub image: String,
    /// The stable tag, e.g. `0.1`.
    pub tag: String,
    /// Set in the recipe; `None` means the caller's default.
    pub arch: Option<String>,
    pub debs: Vec<DebUse>,
    pub files: Vec<FileRule>,
    pub crates: Vec<CrateUse>,
    pub tars: Vec<TarRule>,
    /// The `org.mobyproject.config` label value: compact JSON, sorted keys.
    pub config: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub workdir: Option<String>,
}

/// Paths taken from one pinned Debian package.
#[derive(Clone, Debug, PartialEq)]
pub struct DebUse {
    pub package: String,
    /// Globs over the data.tar paths (no leading `/`), each with its position.
    pub keep: Vec<(String, Pos)>,
    pub strip: Option<String>,
    pub prefix: Option<String>,
    /// Byte ranges cut out of the package's files (see [`Extract`]).
    pub extract: Vec<Extract>,
    pub pos: Pos,
}

/// A byte range of one file of a package, put into the image as a file of
/// its own, checked against a pinned sha256. This is how a blob that Debian
/// ships only embedded in a program (syslinux's `ldlinux.sys`, compiled into
/// `/usr/bin/syslinux`) becomes an input without running that program.
#[derive(Clone, Debug, PartialEq)]
pub struct Extract {
    /// The package path (data.tar, no leading `/`).
    pub from: String,
    pub offset: u64,
    pub length: u64,
    /// Lowercase hex sha256 of the range.
    pub sha256: String,
    /// Normalised image path of the new file (mode 0644).
    pub path: String,
    pub pos: Pos,
}

/// What one `files:` entry puts at `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A file or directory of the recipe directory (relative path).
    Source(String),
    Contents(String),
    Directory,
    Symlink(String),
}

/// One `files:` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct FileRule {
    /// Normalised image path; empty for the root.
    pub path: String,
    pub kind: FileKind,
    pub mode: Option<u32>,
    pub pos: Pos,
}

/// A binary built from a crate of the workspace.
#[derive(Clone, Debug, PartialEq)]
pub struct CrateUse {
    pub package: String,
    pub binary: String,
    /// Normalised image path of the binary.
    pub path: String,
    pub pos: Pos,
}

/// Image paths packed into a tar file inside the image.
#[derive(Clone, Debug, PartialEq)]
pub struct TarRule {
    pub path: String,
    pub from: Vec<String>,
    pub pos: Pos,
}

const TOP_KEYS: &[&str] = &[
    "image",
    "tag",
    "arch",
    "debs",
    "files",
    "crates",
    "tars",
    "config",
    "entrypoint",
    "cmd",
    "env",
    "workdir",
];

/// Parse the text of a `build.yml`; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Recipe, SpecError> {
    let root = load(file, text)?;
    let Value::Mapping(entries) = &root.value else {
        return Err(error(
            &root,
            "",
            format!("expected a mapping, found {}", root.kind()),
        ));
    };
    let mut r = Recipe {
        image: String::new(),
        tag: String::new(),
        arch: None,
        debs: Vec::new(),
        files: Vec::new(),
        crates: Vec::new(),
        tars: Vec::new(),
        config: None,
        entrypoint: None,
        cmd: None,
        env: None,
        workdir: None,
    };
    let (mut image, mut tag) = (None, None);
    for (k, v) in entries {
        let key = key_text(k);
        match key {
            "image" => image = Some(non_empty(v, key)?),
            "tag" => tag = Some(non_empty(v, key)?),
            "arch" => {
                let a = string(v, key)?;
                if !matches!(a.as_str(), "amd64" | "arm64") {
                    return Err(error(v, key, format!("`{a}` is not amd64 or arm64")));
                }
                r.arch = Some(a);
            }
            "debs" => r.debs = list(v, key, deb)?,
            "files" => r.files = list(v, key, file_rule)?,
            "crates" => r.crates = list(v, key, crate_use)?,
            "tars" => r.tars = list(v, key, tar_rule)?,
            "config" => r.config = Some(config(v, key, image.as_deref().unwrap_or("image"))?),
            "entrypoint" => r.entrypoint = opt_strings(v, key)?,
            "cmd" => r.cmd = opt_strings(v, key)?,
            "env" => r.env = opt_strings(v, key)?,
            "workdir" => r.workdir = opt_string(v, key)?,
            _ => return Err(unknown_key(k, "", TOP_KEYS)),
        }
    }
    let missing = |what: &str| error(&root, "", format!("missing required key `{what}`"));
    r.image = image.ok_or_else(|| missing("image"))?;
    r.tag = tag.ok_or_else(|| missing("tag"))?;
    if let Err(msg) = check_tag(&r.tag) {
        let node = entries.iter().find(|(k, _)| key_text(k) == "tag");
        return Err(error(node.map_or(&root, |(_, v)| v), "tag", msg));
    }
    Ok(r)
}

/// A tag as OCI references allow: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let ok = tag.len() <= 128
        && tag.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && (b == b'.' || b == b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!("`{tag}` is not a valid tag"))
    }
}

fn non_empty(node: &Node, path: &str) -> Result<String, SpecError> {
    let s = string(node, path)?;
    if s.is_empty() {
        return Err(error(node, path, "must not be empty"));
    }
    Ok(s)
}

fn list<T>(
    node: &Node,
    path: &str,
    item: fn(&Node, &str) -> Result<T, SpecError>,
) -> Result<Vec<T>, SpecError> {
    sequence(node, path)?
        .iter()
        .enumerate()
        .map(|(i, n)| item(n, &index(path, i)))
        .collect()
}

/// A relative image path, normalised; `/` (the root) gives "" if `root_ok`.
fn image_path(node: &Node, path: &str, root_ok: bool) -> Result<String, SpecError> {
    let text = string(node, path)?;
    let parts: Vec<&str> = text
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(error(node, path, format!("`{text}` must not contain `..`")));
    }
    if parts.is_empty() && !root_ok {
        return Err(error(node, path, "the image root is not allowed here"));
    }
    Ok(parts.join("/"))
}

fn deb(node: &Node, path: &str) -> Result<DebUse, SpecError> {
    let mut d = DebUse {
        package: String::new(),
        keep: Vec::new(),
        strip: None,
        prefix: None,
        extract: Vec::new(),
        pos: node.pos.clone(),
    };
    let mut package = None;
    for (k, v) in mapping(node, path)? {
        let key = key_text(k);
        let p = &join(path, key);
        match key {
            "package" => package = Some(non_empty(v, p)?),
            "keep" => {
                for (i, g) in sequence(v, p)?.iter().enumerate() {
                    let gp = index(p, i);
                    let glob = string(g, &gp)?;
                    if glob.is_empty()
                        || glob.starts_with('/')
                        || glob.split('/').any(|c| c == "..")
                    {
                        return Err(error(
                            g,
                            &gp,
                            format!("`{glob}` must be a relative path glob without `..`"),
                        ));
                    }
                    d.keep.push((glob, g.pos.clone()));
                }
            }
            "strip" => d.strip = Some(image_path(v, p, false)?),
            "prefix" => d.prefix = Some(image_path(v, p, true)?).filter(|s| !s.is_empty()),
            "extract" => d.extract = list(v, p, extract)?,
            _ => {
                return Err(unknown_key(
                    k,
                    path,
                    &["package", "keep", "strip", "prefix", "extract"],
                ))
            }
        }
    }
    d.package = package.ok_or_else(|| error(node, path, "missing required key `package`"))?;
    if d.keep.is_empty() {
        return Err(error(node, path, "`keep` must list at least one glob"));
    }
    Ok(d)
}

fn extract(node: &Node, path: &str) -> Result<Extract, SpecError> {
    let (mut from, mut offset, mut length, mut sha256, mut target) = (None, None, None, None, None);
    for (k, v) in mapping(node, path)? {
        let key = key_text(k);
        let p = &join(path, key);
        match key {
            "from" => from = Some(image_path(v, p, false)?),
            "offset" => offset = Some(number(v, p)?),
            "length" => length = Some(number(v, p)?).filter(|n| *n > 0),
            "sha256" => {
                let h = string(v, p)?;
                if h.len() != 64 || !h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err(error(v, p, "must be 64 lowercase hex digits"));
                }
                sha256 = Some(h);
            }
            "path" => target = Some(image_path(v, p, false)?),
            _ => {
                return Err(unknown_key(
                    k,
                    path,
                    &["from", "offset", "length", "sha256", "path"],
                ))
            }
        }
    }
    let missing = |what: &str| error(node, path, format!("missing required key `{what}`"));
    Ok(Extract {
        from: from.ok_or_else(|| missing("from"))?,
        offset: offset.ok_or_else(|| missing("offset"))?,
        length: length.ok_or_else(|| missing("length (a positive number)"))?,
        sha256: sha256.ok_or_else(|| missing("sha256"))?,
        path: target.ok_or_else(|| missing("path"))?,
        pos: node.pos.clone(),
    })
}

/// A non-negative integer, decimal or `0x` hex.
fn number(node: &Node, path: &str) -> Result<u64, SpecError> {
    let text = string(node, path)?;
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| {
        error(
            node,
            path,
            format!("`{text}` is not a non-negative integer"),
        )
    })
}

fn file_rule(node: &Node, path: &str) -> Result<FileRule, SpecError> {
    let (mut target, mut kind, mut mode) = (None, None, None);
    let set = |k: &Node, new: FileKind, kind: &mut Option<FileKind>| {
        if kind.is_some() {
            return Err(error(
                k,
                path,
                "give only one of `source`, `contents`, `directory`, `symlink`",
            ));
        }
        *kind = Some(new);
        Ok(())
    };
    for (k, v) in mapping(node, path)? {
        let key = key_text(k);
        let p = &join(path, key);
        match key {
            "path" => target = Some(image_path(v, p, true)?),
            "source" => {
                let s = string(v, p)?;
                if s.starts_with('/') || s.split('/').any(|c| c == "..") {
                    return Err(error(
                        v,
                        p,
                        format!("`{s}` must be a path inside the recipe directory"),
                    ));
                }
                set(k, FileKind::Source(s), &mut kind)?;
            }
            "contents" => set(k, FileKind::Contents(string(v, p)?), &mut kind)?,
            "directory" => {
                if opt_bool(v, p)? != Some(true) {
                    return Err(error(v, p, "only `directory: true` is meaningful"));
                }
                set(k, FileKind::Directory, &mut kind)?;
            }
            "symlink" => set(k, FileKind::Symlink(non_empty(v, p)?), &mut kind)?,
            "mode" => mode = opt_mode(v, p)?,
            _ => {
                return Err(unknown_key(
                    k,
                    path,
                    &["path", "source", "contents", "directory", "symlink", "mode"],
                ))
            }
        }
    }
    let target = target.ok_or_else(|| error(node, path, "missing required key `path`"))?;
    let kind = kind.ok_or_else(|| {
        error(
            node,
            path,
            "needs one of `source`, `contents`, `directory`, `symlink`",
        )
    })?;
    if target.is_empty() && !matches!(kind, FileKind::Source(_)) {
        return Err(error(node, path, "only a `source` directory may go at `/`"));
    }
    if mode.is_some() && matches!(kind, FileKind::Symlink(_)) {
        return Err(error(node, path, "a symlink has no `mode`"));
    }
    Ok(FileRule {
        path: target,
        kind,
        mode,
        pos: node.pos.clone(),
    })
}

fn crate_use(node: &Node, path: &str) -> Result<CrateUse, SpecError> {
    let (mut package, mut binary, mut target) = (None, None, None);
    for (k, v) in mapping(node, path)? {
        let key = key_text(k);
        let p = &join(path, key);
        match key {
            "package" => package = Some(non_empty(v, p)?),
            "binary" => binary = Some(non_empty(v, p)?),
            "path" => target = Some(image_path(v, p, false)?),
            _ => return Err(unknown_key(k, path, &["package", "binary", "path"])),
        }
    }
    let package = package.ok_or_else(|| error(node, path, "missing required key `package`"))?;
    let target = target.ok_or_else(|| error(node, path, "missing required key `path`"))?;
    Ok(CrateUse {
        binary: binary.unwrap_or_else(|| package.clone()),
        package,
        path: target,
        pos: node.pos.clone(),
    })
}

fn tar_rule(node: &Node, path: &str) -> Result<TarRule, SpecError> {
    let (mut target, mut from) = (None, Vec::new());
    for (k, v) in mapping(node, path)? {
        let key = key_text(k);
        let p = &join(path, key);
        match key {
            "path" => target = Some(image_path(v, p, false)?),
            "from" => {
                from = sequence(v, p)?
                    .iter()
                    .enumerate()
                    .map(|(i, n)| image_path(n, &index(p, i), false))
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(unknown_key(k, path, &["path", "from"])),
        }
    }
    let target = target.ok_or_else(|| error(node, path, "missing required key `path`"))?;
    if from.is_empty() {
        return Err(error(node, path, "`from` must list at least one path"));
    }
    Ok(TarRule {
        path: target,
        from,
        pos: node.pos.clone(),
    })
}

/// The `config:` mapping as the label's compact JSON, checked by the
/// LinuxKit label rules ([`crate::spec::label`]); a problem is reported at
/// the `config:` node.
fn config(node: &Node, path: &str, image: &str) -> Result<String, SpecError> {
    if !matches!(node.value, Value::Mapping(_)) {
        return Err(error(
            node,
            path,
            format!("expected a mapping, found {}", node.kind()),
        ));
    }
    let mut json = String::new();
    canonical_json(&node.to_json(), &mut json);
    crate::spec::label(&json, image).map_err(|e| error(node, path, e.msg))?;
    Ok(json)
}

/// Compact JSON with object keys sorted by their bytes, whatever order
/// serde_json's map keeps (it depends on a cargo feature).
fn canonical_json(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(&map[k], out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse("b.yml", text).unwrap_err().to_string()
    }

    #[test]
    fn full_recipe_parses() {
        let r = parse(
            "b.yml",
            "image: kiln.dev/runc\ntag: '0.1'\ndebs:\n  - package: runc\n    keep: [usr/sbin/runc]\n    strip: /usr/sbin/\n    prefix: bin\nfiles:\n  - path: etc/motd\n    contents: hi\n    mode: '0600'\n  - path: /\n    source: rootfs\ncrates:\n  - package: kiln-init\n    path: /init\ntars:\n  - path: kernel.tar\n    from: [lib/modules]\nconfig:\n  net: host\n  capabilities: [CAP_SYS_ADMIN]\nentrypoint: [/bin/runc]\n",
        )
        .unwrap();
        assert_eq!(r.image, "kiln.dev/runc");
        assert_eq!(r.debs[0].strip.as_deref(), Some("usr/sbin"));
        assert_eq!(r.files[0].mode, Some(0o600));
        assert_eq!(r.files[1].path, "");
        assert_eq!(r.crates[0].binary, "kiln-init");
        assert_eq!(r.crates[0].path, "init");
        assert_eq!(
            r.config.as_deref(),
            Some(r#"{"capabilities":["CAP_SYS_ADMIN"],"net":"host"}"#)
        );
    }

    #[test]
    fn extract_ranges_parse_with_hex_offsets() {
        let h = "a".repeat(64);
        let r = parse(
            "b.yml",
            &format!("image: x\ntag: '1'\ndebs:\n  - package: p\n    keep: [a]\n    extract:\n      - {{from: usr/bin/p, offset: 0x10, length: 512, sha256: {h}, path: boot/x.bin}}\n"),
        )
        .unwrap();
        let x = &r.debs[0].extract[0];
        assert_eq!(
            (x.offset, x.length, x.path.as_str()),
            (16, 512, "boot/x.bin")
        );
        let bad = err(&format!("image: x\ntag: '1'\ndebs:\n  - package: p\n    keep: [a]\n    extract:\n      - {{from: a, offset: 1, length: 0, sha256: {h}, path: b}}\n"));
        assert!(bad.contains("length"), "{bad}");
        let bad = err("image: x\ntag: '1'\ndebs:\n  - package: p\n    keep: [a]\n    extract:\n      - {from: a, offset: -1, length: 2, sha256: AB, path: b}\n");
        assert!(bad.starts_with("b.yml:7:"), "{bad}");
    }

    #[test]
    fn errors_point_at_the_yaml() {
        assert_eq!(
            err("image: a\ntag: b\nfiles:\n  - path: x\n    contens: y\n"),
            "b.yml:5:5: files[0]: unknown key `contens`; did you mean `contents`?"
        );
        assert_eq!(err("image: a\n"), "b.yml:1:1: missing required key `tag`");
        assert_eq!(
            err("image: a\ntag: b\ndebs: {}\n"),
            "b.yml:3:7: debs: expected a sequence, found a mapping"
        );
        assert!(err("image: a\ntag: b\nconfig:\n  bogus: 1\n").starts_with("b.yml:4:3: config:"));
        assert!(err("image: a\ntag: 'x y'\n").contains("not a valid tag"));
        assert!(
            err("image: a\ntag: b\nfiles:\n  - path: x\n    source: ../up\n")
                .contains("inside the recipe directory")
        );
    }
}
