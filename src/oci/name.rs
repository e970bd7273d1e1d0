//! Image references: parsing, LinuxKit's name expansion, and "did you mean".
//!
//! Takes a reference as a user wrote it (`alpine`, `foo/bar:1`,
//! `localhost:5000/x@sha256:…`) and gives its parts and its canonical form
//! (`docker.io/library/alpine:latest`), the way LinuxKit expands names.
//! Never looks at a layout.

use super::digest::Digest;
use super::error::OciError;

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// As written.
    pub written: String,
    /// `registry/path`, e.g. `docker.io/library/alpine`.
    pub repository: String,
    pub tag: Option<String>,
    /// The `@alg:hex` pin, if any.
    pub pin: Option<Digest>,
}

impl Reference {
    /// Parses and expands a reference: a missing registry becomes
    /// `docker.io`, a one-component Docker Hub path gains `library/`.
    pub fn parse(written: &str) -> Result<Reference, OciError> {
        let bad = |message: &str| OciError::BadReference {
            reference: written.to_string(),
            message: message.to_string(),
        };
        if written.is_empty() {
            return Err(bad("empty"));
        }
        if written.starts_with('@') {
            return Err(OciError::Template {
                reference: written.to_string(),
            });
        }
        if written.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains whitespace"));
        }
        let (rest, pin) = match written.split_once('@') {
            Some((rest, pin)) => {
                let d = Digest::parse(pin).map_err(|e| bad(&e.to_string()))?;
                (rest, Some(d))
            }
            None => (written, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !ok {
                return Err(bad("malformed tag"));
            }
        }
        if name.is_empty() || name.split('/').any(str::is_empty) {
            return Err(bad("empty name component"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let path = if domain == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad("repository names must be lowercase"));
        }
        // The distribution spec's path components: lowercase letters and
        // digits, joined by `.`, `_`, `__` or dashes; never `.` or `..`.
        let component_ok = |c: &str| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'.' | b'_' | b'-'))
                && !c.contains("..")
        };
        let (host, port) = domain.split_once(':').unwrap_or((&domain, ""));
        let host_ok = host.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        if !host_ok || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(&format!("{domain:?} is not a registry host[:port]")));
        }
        if let Some(c) = path.split('/').find(|c| !component_ok(c)) {
            return Err(bad(&format!(
                "repository path component {c:?} is not lowercase letters and digits joined by `.`, `_` or `-`"
            )));
        }
        Ok(Reference {
            written: written.to_string(),
            repository: format!("{domain}/{path}"),
            tag,
            pin,
        })
    }

    /// `repository:tag`, with `latest` for a missing tag.
    pub fn tagged(&self) -> String {
        format!(
            "{}:{}",
            self.repository,
            self.tag.as_deref().unwrap_or("latest")
        )
    }

    /// The full canonical form: `repository:tag[@digest]`, the tag
    /// defaulting to `latest` only when there is no pin.
    pub fn canonical(&self) -> String {
        match (&self.tag, &self.pin) {
            (Some(t), Some(p)) => format!("{}:{t}@{p}", self.repository),
            (None, Some(p)) => format!("{}@{p}", self.repository),
            _ => self.tagged(),
        }
    }

    /// The short form `skopeo copy … oci:DIR:TAG` stores: the tag alone.
    pub fn short_tag(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }
}

/// The canonical `repository:tag` of a name found in a layout, if it parses.
pub fn canonical_name(name: &str) -> Option<String> {
    let r = Reference::parse(name).ok()?;
    Some(r.canonical())
}

/// Levenshtein distance over chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Up to `n` names closest to `wanted` (by edit distance to the name as
/// written or to its canonical form), ties broken by name.
pub fn closest<'a>(
    wanted: &Reference,
    names: impl Iterator<Item = &'a str>,
    n: usize,
) -> Vec<String> {
    let canonical = wanted.canonical();
    let mut scored: Vec<(usize, &str)> = names
        .map(|name| {
            let d = edit_distance(&wanted.written, name).min(edit_distance(
                &canonical,
                &canonical_name(name).unwrap_or_else(|| name.to_string()),
            ));
            (d, name)
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(n)
        .map(|(_, s)| s.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Reference::parse(s)
            .map(|r| r.canonical())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn expands_like_linuxkit() {
        assert_eq!(canon("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(canon("alpine:3.19"), "docker.io/library/alpine:3.19");
        assert_eq!(canon("foo/bar:1"), "docker.io/foo/bar:1");
        assert_eq!(canon("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(canon("localhost/x:2"), "localhost/x:2");
        assert_eq!(canon("ghcr.io/a/b/c:v1"), "ghcr.io/a/b/c:v1");
        assert_eq!(
            canon("docker.io/library/alpine"),
            "docker.io/library/alpine:latest"
        );
        let pin = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            canon(&format!("alpine@{pin}")),
            format!("docker.io/library/alpine@{pin}")
        );
        assert_eq!(
            canon(&format!("linuxkit/init:v1@{pin}")),
            format!("docker.io/linuxkit/init:v1@{pin}")
        );
    }

    #[test]
    fn package_templates_say_they_are_not_expanded() {
        let e = Reference::parse("@pkg:../pkg/init")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"@pkg:../pkg/init\" is a LinuxKit package template")
                && e.contains("`kiln pkg build`"),
            "{e}"
        );
    }

    #[test]
    fn path_components_follow_the_distribution_grammar() {
        for bad in ["evil/../../x", "a/../b:1", "x_/y", "-x", "a/.b"] {
            let e = Reference::parse(bad).unwrap_err().to_string();
            assert!(e.contains("repository path component"), "{bad}: {e}");
        }
        for bad in ["../../evil", "./x", "a..b/c", "-h.io/x", "h.io:p/x"] {
            let e = Reference::parse(bad).unwrap_err().to_string();
            assert!(e.contains("is not a registry host[:port]"), "{bad}: {e}");
        }
        for ok in [
            "a.b/c_d/e-f:1",
            "localhost:5000/x__y",
            "linuxkit/kernel:6.6.13",
            "x--y/z",
        ] {
            Reference::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["", "a b", "Alpine", "x:", "x@sha256:zz", "/x", "x//y"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn distance() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
