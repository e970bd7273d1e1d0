//! Kernel modules: `/etc/modules` and `modules.dep`.
//!
//! Takes the text of `/etc/modules` (one module a line, optional parameters,
//! `#` comments) and of `modules.dep` / `modules.builtin`, and gives the
//! ordered list of files to load, dependencies first, each once. Module names
//! compare with `-` and `_` as the same, as the kernel does. Never touches
//! the system.

use std::collections::{BTreeMap, BTreeSet};

/// A module asked for in `/etc/modules`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub name: String,
    /// Parameters, space-separated (`debug=1 foo=bar`).
    pub params: String,
}

/// One file to load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Load {
    pub name: String,
    /// Relative to `/lib/modules/<release>`.
    pub path: String,
    pub params: String,
    /// `.ko.xz`, `.ko.gz` or `.ko.zst`: the kernel must decompress it.
    pub compressed: bool,
}

/// What to do for one wanted module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    Load(Load),
    Builtin(String),
    NotFound(String),
}

/// Parse `/etc/modules`.
pub fn parse_wanted(text: &str) -> Vec<Wanted> {
    text.lines()
        .filter_map(|l| {
            let l = l.split('#').next().unwrap_or("").trim();
            let mut words = l.split_whitespace();
            let name = words.next()?;
            Some(Wanted {
                name: name.to_string(),
                params: words.collect::<Vec<_>>().join(" "),
            })
        })
        .collect()
}

/// The module name of a path: base name without `.ko*`, `-` as `_`.
pub fn name_of(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

fn is_compressed(path: &str) -> bool {
    !path.ends_with(".ko")
}

/// `modules.dep`: module name → (path, dependency paths).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deps {
    modules: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
}

impl Deps {
    /// Parse `modules.dep` and (possibly empty) `modules.builtin`. Malformed
    /// lines are skipped.
    pub fn parse(dep: &str, builtin: &str) -> Deps {
        let mut modules = BTreeMap::new();
        for line in dep.lines() {
            let Some((path, deps)) = line.split_once(':') else {
                continue;
            };
            let path = path.trim();
            if path.is_empty() {
                continue;
            }
            let deps = deps.split_whitespace().map(str::to_string).collect();
            modules.insert(name_of(path), (path.to_string(), deps));
        }
        let builtin = builtin
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(name_of)
            .collect();
        Deps { modules, builtin }
    }

    /// The files to load for `wanted`, in order, dependencies first; a module
    /// needed twice is loaded once (the first time, with its first params).
    pub fn resolve(&self, wanted: &[Wanted]) -> Vec<Resolved> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for w in wanted {
            let name = name_of(&w.name);
            if seen.contains(&name) {
                continue;
            }
            match self.modules.get(&name) {
                Some(_) => self.visit(&name, &w.params, &mut seen, &mut out),
                None if self.builtin.contains(&name) => {
                    seen.insert(name.clone());
                    out.push(Resolved::Builtin(name));
                }
                None => out.push(Resolved::NotFound(name)),
            }
        }
        out
    }

    fn visit(
        &self,
        name: &str,
        params: &str,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<Resolved>,
    ) {
        if !seen.insert(name.to_string()) {
            return;
        }
        let Some((path, deps)) = self.modules.get(name) else {
            out.push(Resolved::NotFound(name.to_string()));
            return;
        };
        // modules.dep lists the whole closure, the module needed last first.
        for dep in deps.iter().rev() {
            self.visit(&name_of(dep), "", seen, out);
        }
        out.push(Resolved::Load(Load {
            name: name.to_string(),
            path: path.clone(),
            params: params.to_string(),
            compressed: is_compressed(path),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/overlayfs/overlay.ko:
kernel/drivers/net/virtio_net.ko.xz: kernel/net/core/failover.ko kernel/drivers/net/net_failover.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
garbage line
";

    fn loads(r: &[Resolved]) -> Vec<&str> {
        r.iter()
            .map(|x| match x {
                Resolved::Load(l) => l.path.as_str(),
                Resolved::Builtin(n) => n.as_str(),
                Resolved::NotFound(n) => n.as_str(),
            })
            .collect()
    }

    #[test]
    fn etc_modules_skips_comments_and_blank_lines() {
        let w = parse_wanted("# hi\n\nvirtio_net  napi_tx=1 x=2 # tail\n  overlay\n");
        assert_eq!(
            w,
            [
                Wanted {
                    name: "virtio_net".into(),
                    params: "napi_tx=1 x=2".into()
                },
                Wanted {
                    name: "overlay".into(),
                    params: "".into()
                }
            ]
        );
    }

    #[test]
    fn dependencies_come_first_and_once() {
        let d = Deps::parse(DEP, "");
        let w = parse_wanted("virtio-net\nnet_failover\noverlay\n");
        let r = d.resolve(&w);
        assert_eq!(
            loads(&r),
            [
                "kernel/net/core/failover.ko",
                "kernel/drivers/net/net_failover.ko",
                "kernel/drivers/net/virtio_net.ko.xz",
                "kernel/fs/overlayfs/overlay.ko",
            ]
        );
        let Resolved::Load(v) = &r[2] else {
            panic!("not a load: {r:?}")
        };
        assert!(v.compressed);
        assert_eq!(v.name, "virtio_net");
    }

    #[test]
    fn params_go_to_the_wanted_module_only() {
        let d = Deps::parse(DEP, "");
        let r = d.resolve(&parse_wanted("net_failover a=1\n"));
        assert_eq!(
            r,
            [
                Resolved::Load(Load {
                    name: "failover".into(),
                    path: "kernel/net/core/failover.ko".into(),
                    params: "".into(),
                    compressed: false
                }),
                Resolved::Load(Load {
                    name: "net_failover".into(),
                    path: "kernel/drivers/net/net_failover.ko".into(),
                    params: "a=1".into(),
                    compressed: false
                }),
            ]
        );
    }

    #[test]
    fn builtin_and_unknown_modules_are_reported() {
        let d = Deps::parse(DEP, "kernel/fs/ext4/ext4.ko\n");
        let r = d.resolve(&parse_wanted("ext4\nnope\n"));
        assert_eq!(
            r,
            [
                Resolved::Builtin("ext4".into()),
                Resolved::NotFound("nope".into())
            ]
        );
    }

    #[test]
    fn names_ignore_directory_suffix_and_dashes() {
        assert_eq!(name_of("kernel/a/b/nf-conntrack.ko.zst"), "nf_conntrack");
        assert_eq!(name_of("overlay"), "overlay");
    }
}
