//! LinuxKit YAML files → one merged [`Spec`].
//!
//! Takes YAML file paths (or one YAML text with its name and directory);
//! gives the typed [`Spec`], merged the way `linuxkit build a.yml b.yml`
//! merges: list sections concatenate in file order, and a later file's
//! non-empty kernel field wins. Every error names `file:line:col` and the
//! key path. Reads only the YAML files and checks that `files: source:`
//! paths can be opened; never touches the OCI layout or the network.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fields::{
    error, index, join, mapping, opt_bool, opt_id, opt_mode, opt_string, opt_strings, sequence,
    string, unknown_key,
};
use super::image::image;
use super::yaml::{self, key_text, Node};
use super::{
    FileEntry, FileSource, Image, ImageRef, Kernel, MetadataFormat, Pos, Spec, SpecError, Volume,
};

const TOP_KEYS: &[&str] = &[
    "kernel",
    "init",
    "onboot",
    "onshutdown",
    "services",
    "files",
    "volumes",
    "trust",
];
const KERNEL_KEYS: &[&str] = &["image", "cmdline", "binary", "tar", "ucode"];
const FILE_KEYS: &[&str] = &[
    "path",
    "directory",
    "symlink",
    "contents",
    "source",
    "metadata",
    "optional",
    "mode",
    "uid",
    "gid",
];
const VOLUME_KEYS: &[&str] = &["name", "image", "readonly", "format", "platforms"];
/// The sections whose lists concatenate when files are merged.
const LIST_SECTIONS: &[&str] = &[
    "init",
    "onboot",
    "onshutdown",
    "services",
    "files",
    "volumes",
];

/// Loads and merges the YAML files in order. No files give an empty spec.
pub fn load(paths: &[PathBuf]) -> Result<Spec, SpecError> {
    let mut merged = empty_spec();
    for path in paths {
        let name = path.display().to_string();
        // A FIFO or device is refused, not read (it could block forever).
        let text = crate::hostfile::open_regular(path)
            .and_then(std::io::read_to_string)
            .map_err(|e| SpecError {
                pos: Pos {
                    file: Arc::from(name.as_str()),
                    line: 0,
                    col: 0,
                },
                msg: format!("cannot read yaml file: {e}"),
            })?;
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        merge(&mut merged, parse_file(&name, &text, base)?);
    }
    check_unique(&merged)?;
    Ok(merged)
}

/// Parses one YAML text named `file_name`; relative `source:` paths resolve
/// against `base_dir`.
pub fn load_str(file_name: &str, text: &str, base_dir: &Path) -> Result<Spec, SpecError> {
    let mut merged = empty_spec();
    merge(&mut merged, parse_file(file_name, text, base_dir)?);
    check_unique(&merged)?;
    Ok(merged)
}

fn empty_spec() -> Spec {
    Spec {
        raw: serde_json::Value::Object(serde_json::Map::new()),
        ..Spec::default()
    }
}

fn parse_file(file_name: &str, text: &str, base_dir: &Path) -> Result<Spec, SpecError> {
    let root = yaml::load(file_name, text)?;
    let mut spec = Spec {
        raw: root.to_json(),
        sources: vec![text.to_owned()],
        ..Spec::default()
    };
    if spec.raw.is_null() {
        spec.raw = serde_json::Value::Object(serde_json::Map::new());
    }
    for (k, v) in mapping(&root, "")? {
        let key = key_text(k);
        match key {
            "kernel" => spec.kernel = kernel(v)?,
            "init" => spec.init = image_refs(v, key)?,
            "onboot" => spec.onboot = images(v, key)?,
            "onshutdown" => spec.onshutdown = images(v, key)?,
            "services" => spec.services = images(v, key)?,
            "files" => {
                for (i, n) in sequence(v, key)?.iter().enumerate() {
                    spec.files.push(file_entry(n, &index(key, i), base_dir)?);
                }
            }
            "volumes" => {
                for (i, n) in sequence(v, key)?.iter().enumerate() {
                    spec.volumes.push(volume(n, &index(key, i))?);
                }
            }
            "trust" => spec.warnings.push(format!(
                "{}: `trust:` is ignored: kiln checks digest pins and signatures instead",
                k.pos
            )),
            _ => return Err(unknown_key(k, "", TOP_KEYS)),
        }
    }
    Ok(spec)
}

fn kernel(node: &Node) -> Result<Kernel, SpecError> {
    let mut k = Kernel {
        pos: Some(node.pos.clone()),
        ..Kernel::default()
    };
    for (key_node, v) in mapping(node, "kernel")? {
        let key = key_text(key_node);
        let p = &join("kernel", key);
        let text = opt_string(v, p)?;
        match key {
            "image" => {
                k.image = text.filter(|t| !t.is_empty()).map(|reference| ImageRef {
                    reference,
                    pos: v.pos.clone(),
                })
            }
            "cmdline" => k.cmdline = text.filter(|t| !t.is_empty()),
            "binary" => k.binary = text.filter(|t| !t.is_empty()),
            "tar" => k.tar = text,
            "ucode" => k.ucode = text,
            _ => return Err(unknown_key(key_node, "kernel", KERNEL_KEYS)),
        }
    }
    Ok(k)
}

fn image_refs(node: &Node, path: &str) -> Result<Vec<ImageRef>, SpecError> {
    let mut refs = Vec::new();
    for (i, n) in sequence(node, path)?.iter().enumerate() {
        let p = index(path, i);
        let reference = string(n, &p)?;
        if reference.is_empty() {
            return Err(error(n, &p, "empty image reference"));
        }
        refs.push(ImageRef {
            reference,
            pos: n.pos.clone(),
        });
    }
    Ok(refs)
}

fn images(node: &Node, path: &str) -> Result<Vec<Image>, SpecError> {
    sequence(node, path)?
        .iter()
        .enumerate()
        .map(|(i, n)| image(n, &index(path, i)))
        .collect()
}

fn file_entry(node: &Node, path: &str, base_dir: &Path) -> Result<FileEntry, SpecError> {
    let mut file_path: Option<(String, &Node)> = None;
    let mut sources: Vec<(&str, &Node, FileSource)> = Vec::new();
    let (mut optional, mut mode, mut uid, mut gid) = (false, None, None, None);
    for (k, v) in mapping(node, path)? {
        let key = key_text(k);
        let p = &join(path, key);
        let source = match key {
            "path" => {
                file_path = Some((string(v, p)?, v));
                None
            }
            "directory" => opt_bool(v, p)?
                .filter(|d| *d)
                .map(|_| FileSource::Directory),
            "symlink" => opt_string(v, p)?
                .filter(|s| !s.is_empty())
                .map(FileSource::Symlink),
            "contents" => opt_string(v, p)?.map(FileSource::Contents),
            "source" => opt_string(v, p)?
                .filter(|s| !s.is_empty())
                .map(|s| resolve_source(&s, base_dir, v, p))
                .transpose()?,
            "metadata" => match opt_string(v, p)?.as_deref() {
                None | Some("") => None,
                Some("yaml") => Some(FileSource::Metadata(MetadataFormat::Yaml)),
                Some("json") => Some(FileSource::Metadata(MetadataFormat::Json)),
                Some(other) => {
                    let msg = format!("metadata must be `yaml` or `json`, not `{other}`");
                    return Err(error(v, p, msg));
                }
            },
            "optional" => {
                optional = opt_bool(v, p)?.unwrap_or(false);
                None
            }
            "mode" => {
                mode = opt_mode(v, p)?;
                None
            }
            "uid" => {
                uid = opt_id(v, p)?;
                None
            }
            "gid" => {
                gid = opt_id(v, p)?;
                None
            }
            _ => return Err(unknown_key(k, path, FILE_KEYS)),
        };
        if let Some(source) = source {
            if let Some((first, _, _)) = sources.first() {
                let msg = format!("more than one content source: `{first}` and `{key}`");
                return Err(error(k, path, msg));
            }
            sources.push((key, v, source));
        }
    }
    let Some((raw_path, path_node)) = file_path else {
        return Err(error(node, path, "missing `path`"));
    };
    let clean = check_file_path(&raw_path, path_node, &join(path, "path"))?;
    let source = match sources.pop() {
        // LinuxKit refuses an entry with no content: almost always a typo.
        None => {
            let msg = "no content: give one of `contents`, `source`, `metadata`, `symlink` or `directory: true`";
            return Err(error(node, path, msg));
        }
        Some((key, v, FileSource::Source(host))) => {
            if !optional {
                if let Err(e) = crate::hostfile::open_regular(&host) {
                    let msg = format!("cannot read `{}`: {e}", host.display());
                    return Err(error(v, &join(path, key), msg));
                }
            }
            FileSource::Source(host)
        }
        Some((_, _, s)) => s,
    };
    Ok(FileEntry {
        path: clean,
        pos: node.pos.clone(),
        source,
        optional,
        mode,
        uid,
        gid,
    })
}

/// Strips leading `/` (LinuxKit does) and rejects empty paths and `..`.
fn check_file_path(raw: &str, node: &Node, path: &str) -> Result<String, SpecError> {
    let clean = raw.trim_start_matches('/');
    if clean.is_empty() {
        return Err(error(node, path, "empty file path"));
    }
    if clean.split('/').any(|c| c == "..") {
        return Err(error(
            node,
            path,
            format!("`{raw}` has a `..` component; files must stay inside the image"),
        ));
    }
    if clean.contains('\0') {
        return Err(error(node, path, "file path contains a NUL byte"));
    }
    // Linux's NAME_MAX and PATH_MAX, as for paths from layers.
    if clean.split('/').any(|c| c.len() > 255) || clean.len() > 4096 {
        return Err(error(
            node,
            path,
            "file path has a name over 255 bytes or is over 4096 bytes",
        ));
    }
    Ok(clean.to_owned())
}

/// `~/x` → `$HOME/x`; relative paths → under the YAML file's directory.
fn resolve_source(
    source: &str,
    base_dir: &Path,
    node: &Node,
    path: &str,
) -> Result<FileSource, SpecError> {
    let resolved = if let Some(rest) = source.strip_prefix("~/") {
        match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(rest),
            None => return Err(error(node, path, "`~/` used but $HOME is not set")),
        }
    } else {
        base_dir.join(source)
    };
    Ok(FileSource::Source(resolved))
}

fn volume(node: &Node, path: &str) -> Result<Volume, SpecError> {
    let (mut name, mut image, mut readonly, mut format, mut platforms) =
        (None, None, false, None, Vec::new());
    for (k, v) in mapping(node, path)? {
        let key = key_text(k);
        let p = &join(path, key);
        match key {
            "name" => name = opt_string(v, p)?.map(|n| (n, v)),
            "image" => {
                image = opt_string(v, p)?
                    .filter(|r| !r.is_empty())
                    .map(|reference| ImageRef {
                        reference,
                        pos: v.pos.clone(),
                    })
            }
            "readonly" => readonly = opt_bool(v, p)?.unwrap_or(false),
            "format" => format = opt_string(v, p)?,
            "platforms" => platforms = opt_strings(v, p)?.unwrap_or_default(),
            _ => return Err(unknown_key(k, path, VOLUME_KEYS)),
        }
    }
    let Some((name, name_node)) = name else {
        return Err(error(node, path, "missing `name`"));
    };
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    if name.is_empty() || !name.chars().all(valid) {
        let msg = format!("invalid volume name `{name}` (use a-z, 0-9, `_` and `-`)");
        return Err(error(name_node, &join(path, "name"), msg));
    }
    Ok(Volume {
        name,
        image,
        readonly,
        format,
        platforms,
        pos: node.pos.clone(),
    })
}

/// Appends `next` to `acc` as LinuxKit's `AppendConfig` does.
fn merge(acc: &mut Spec, next: Spec) {
    let k = next.kernel;
    if k.image.is_some() {
        acc.kernel.image = k.image;
        acc.kernel.pos = k.pos.clone();
    }
    if acc.kernel.pos.is_none() {
        acc.kernel.pos = k.pos;
    }
    if k.cmdline.is_some() {
        acc.kernel.cmdline = k.cmdline;
    }
    if k.binary.is_some() {
        acc.kernel.binary = k.binary;
    }
    if k.tar.is_some() {
        acc.kernel.tar = k.tar;
    }
    if k.ucode.is_some() {
        acc.kernel.ucode = k.ucode;
    }
    acc.init.extend(next.init);
    acc.onboot.extend(next.onboot);
    acc.onshutdown.extend(next.onshutdown);
    acc.services.extend(next.services);
    acc.files.extend(next.files);
    acc.volumes.extend(next.volumes);
    acc.warnings.extend(next.warnings);
    acc.sources.extend(next.sources);
    merge_raw(&mut acc.raw, next.raw);
}

/// The same merge on the JSON form; `trust` is dropped.
fn merge_raw(acc: &mut serde_json::Value, next: serde_json::Value) {
    let (serde_json::Value::Object(acc), serde_json::Value::Object(next)) = (acc, next) else {
        return;
    };
    for (key, value) in next {
        if key == "kernel" {
            let serde_json::Value::Object(fields) = value else {
                continue;
            };
            let kernel = acc
                .entry("kernel")
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if let serde_json::Value::Object(kernel) = kernel {
                for (f, v) in fields {
                    let empty = v.is_null() || v.as_str() == Some("");
                    if !empty || !kernel.contains_key(&f) {
                        kernel.insert(f, v);
                    }
                }
            }
        } else if LIST_SECTIONS.contains(&key.as_str()) {
            let serde_json::Value::Array(items) = value else {
                continue;
            };
            let list = acc
                .entry(key)
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let serde_json::Value::Array(list) = list {
                list.extend(items);
            }
        }
    }
}

/// Service names must be unique among services, as in LinuxKit: they run
/// side by side as `containers/services/NAME`. onboot and onshutdown entries
/// may repeat a name (their directories carry an index prefix), and a name may
/// appear in several sections; assemble warns where that makes a uid/gid name
/// ambiguous. Volume names must be unique among volumes.
fn check_unique(spec: &Spec) -> Result<(), SpecError> {
    let mut seen: BTreeMap<&str, &Pos> = BTreeMap::new();
    for (i, img) in spec.services.iter().enumerate() {
        if let Some(first) = seen.insert(&img.name, &img.pos) {
            let at = file_index(&spec.services, i, |im| &im.pos);
            return Err(SpecError {
                pos: img.pos.clone(),
                msg: format!(
                    "services[{at}]: duplicate service name `{}` (first used at {first})",
                    img.name
                ),
            });
        }
    }
    let mut volumes: BTreeMap<&str, &Pos> = BTreeMap::new();
    for (i, vol) in spec.volumes.iter().enumerate() {
        if let Some(first) = volumes.insert(&vol.name, &vol.pos) {
            let at = file_index(&spec.volumes, i, |v| &v.pos);
            return Err(SpecError {
                pos: vol.pos.clone(),
                msg: format!(
                    "volumes[{at}]: duplicate volume name `{}` (first used at {first})",
                    vol.name
                ),
            });
        }
    }
    Ok(())
}

/// The index of item `i` within its own file's list (lists from several
/// files are concatenated, but messages should match what the user wrote).
fn file_index<T>(items: &[T], i: usize, pos: fn(&T) -> &Pos) -> usize {
    let file = &pos(&items[i]).file;
    items[..i].iter().filter(|t| &pos(t).file == file).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> Node {
        yaml::load("t.yml", "x").unwrap()
    }

    #[test]
    fn file_paths_lose_leading_slashes_and_keep_inside() {
        let n = node();
        assert_eq!(check_file_path("/etc/x", &n, "p").unwrap(), "etc/x");
        assert_eq!(check_file_path("etc/x/", &n, "p").unwrap(), "etc/x/");
        assert_eq!(check_file_path("a/..b", &n, "p").unwrap(), "a/..b");
        assert!(check_file_path("//", &n, "p").is_err());
        assert!(check_file_path("a/../b", &n, "p").is_err());
        assert!(check_file_path("..", &n, "p").is_err());
    }

    #[test]
    fn raw_merge_follows_linuxkit() {
        let mut acc = json!({"kernel": {"image": "k:1", "cmdline": "a"}, "init": ["i:1"]});
        let next = json!({
            "kernel": {"image": "", "cmdline": "b", "tar": null},
            "init": ["i:2"], "files": [{"path": "x"}], "trust": {"org": ["x"]}
        });
        merge_raw(&mut acc, next);
        assert_eq!(
            acc,
            json!({
                "kernel": {"image": "k:1", "cmdline": "b", "tar": null},
                "init": ["i:1", "i:2"], "files": [{"path": "x"}]
            })
        );
    }

    #[test]
    fn file_index_counts_within_one_file() {
        let pos = |f: &str| Pos {
            file: Arc::from(f),
            line: 1,
            col: 1,
        };
        let items = [pos("a"), pos("b"), pos("a"), pos("b")];
        assert_eq!(file_index(&items, 3, |p| p), 1);
        assert_eq!(file_index(&items, 2, |p| p), 1);
        assert_eq!(file_index(&items, 0, |p| p), 0);
    }
}
