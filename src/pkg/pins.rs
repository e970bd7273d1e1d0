//! `vendor-images/debs.yml`: the pins every `.deb` is checked against.
//!
//! Takes the text of the pin file; gives one [`Pin`] per package and
//! architecture (name, version, arch, sha256, Debian source package,
//! licence). Also finds the pin file by walking up from a recipe
//! directory. Errors are `debs.yml:line:col: ...`. Never reads a `.deb`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::spec::fields::{error, index, join, mapping, sequence, string, unknown_key};
use crate::spec::yaml::{key_text, load};
use crate::spec::SpecError;

/// Where the pin file lives, relative to the workspace root.
pub const PINS_PATH: &str = "vendor-images/debs.yml";

/// One pinned Debian package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    pub package: String,
    pub version: String,
    /// A Debian architecture (`amd64`, `arm64`) or `all`.
    pub arch: String,
    /// Lowercase hex sha256 of the whole `.deb`.
    pub sha256: String,
    pub source: String,
    pub license: String,
}

impl Pin {
    /// The file name `apt-get download` gives the package:
    /// `NAME_VERSION_ARCH.deb`, with the epoch's `:` written `%3a`.
    pub fn file_name(&self) -> String {
        format!(
            "{}_{}_{}.deb",
            self.package,
            self.version.replace(':', "%3a"),
            self.arch
        )
    }
}

/// All pins, keyed by (package, arch).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pins {
    pub file: PathBuf,
    pub pins: BTreeMap<(String, String), Pin>,
}

impl Pins {
    /// The pin of `package` for `arch`, or its `all` pin.
    pub fn get(&self, package: &str, arch: &str) -> Option<&Pin> {
        self.pins
            .get(&(package.to_owned(), arch.to_owned()))
            .or_else(|| self.pins.get(&(package.to_owned(), "all".to_owned())))
    }
}

const KEYS: &[&str] = &["package", "version", "arch", "sha256", "source", "license"];

/// Parse the text of a pin file; `file` names it in errors.
pub fn parse(file: &Path, text: &str) -> Result<Pins, SpecError> {
    let root = load(&file.display().to_string(), text)?;
    let mut out = Pins {
        file: file.to_owned(),
        pins: BTreeMap::new(),
    };
    for (i, item) in sequence(&root, "")?.iter().enumerate() {
        let path = index("", i);
        let mut fields: BTreeMap<&str, String> = BTreeMap::new();
        for (k, v) in mapping(item, &path)? {
            let key = key_text(k);
            let Some(known) = KEYS.iter().find(|n| **n == key) else {
                return Err(unknown_key(k, &path, KEYS));
            };
            fields.insert(known, string(v, &join(&path, key))?);
        }
        let mut take = |key: &str| {
            fields
                .remove(key)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| error(item, &path, format!("missing required key `{key}`")))
        };
        let pin = Pin {
            package: take("package")?,
            version: take("version")?,
            arch: take("arch")?,
            sha256: take("sha256")?,
            source: take("source")?,
            license: take("license")?,
        };
        // Names become file names and apt-get arguments: only what Debian
        // allows in them, so none can name a path.
        if let Err(msg) = check_names(&pin) {
            return Err(error(item, &path, msg));
        }
        if pin.sha256.len() != 64 || !pin.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(error(
                item,
                &path,
                format!("{}: sha256 must be 64 hex digits", pin.package),
            ));
        }
        let key = (pin.package.clone(), pin.arch.clone());
        if out.pins.contains_key(&key) {
            return Err(error(
                item,
                &path,
                format!("{} ({}) is pinned twice", pin.package, pin.arch),
            ));
        }
        out.pins.insert(
            key,
            Pin {
                sha256: pin.sha256.to_ascii_lowercase(),
                ..pin
            },
        );
    }
    Ok(out)
}

/// Debian's rules for package names, versions and architectures.
fn check_names(pin: &Pin) -> Result<(), String> {
    let allowed = |s: &str, extra: &str| {
        s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(c))
    };
    if !allowed(&pin.package, ".+-") || pin.package.starts_with(['.', '-', '+']) {
        return Err(format!("{:?} is not a Debian package name", pin.package));
    }
    let version_ok = pin
        .version
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c))
        && pin.version.starts_with(|c: char| c.is_ascii_digit());
    if !version_ok {
        return Err(format!("{:?} is not a Debian version", pin.version));
    }
    if !allowed(&pin.arch, "-") {
        return Err(format!("{:?} is not a Debian architecture", pin.arch));
    }
    Ok(())
}

/// The first `vendor-images/debs.yml` in `dir` or one of its ancestors.
pub fn find(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .map(|d| d.join(PINS_PATH))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

    #[test]
    fn pins_parse_and_name_their_files() {
        let text = format!(
            "- package: runc\n  version: 1:1.1+ds1\n  arch: amd64\n  sha256: {HASH}\n  source: runc\n  license: Apache-2.0\n"
        );
        let pins = parse(Path::new("debs.yml"), &text).unwrap();
        let pin = pins.get("runc", "amd64").unwrap();
        assert_eq!(pin.file_name(), "runc_1%3a1.1+ds1_amd64.deb");
        assert_eq!(pin.sha256, HASH.to_ascii_lowercase());
        assert!(pins.get("runc", "arm64").is_none());
    }

    #[test]
    fn bad_pins_are_errors() {
        let e = parse(Path::new("debs.yml"), "- package: runc\n  sha265: x\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "debs.yml:2:3: [0]: unknown key `sha265`; did you mean `sha256`?"
        );
        let e = parse(
            Path::new("debs.yml"),
            "- {package: a, version: 1, arch: all, sha256: abc, source: a, license: MIT}\n",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("a: sha256 must be 64 hex digits"),
            "{e}"
        );
        let one = format!(
            "- {{package: a, version: 1.0-1, arch: all, sha256: {HASH}, source: a, license: MIT}}\n"
        );
        assert!(parse(Path::new("debs.yml"), &one).is_ok());
        for (from, to, want) in [
            ("package: a", "package: ../a", "not a Debian package name"),
            ("version: 1.0-1", "version: /1.0", "not a Debian version"),
            ("arch: all", "arch: ../x", "not a Debian architecture"),
        ] {
            let e = parse(Path::new("debs.yml"), &one.replace(from, to)).unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
            assert!(e.to_string().starts_with("debs.yml:1:"), "{e}");
        }
    }
}
