//! `kiln build --sbom`: a software bill of materials of a build, SPDX 2.3
//! JSON (or CycloneDX 1.5 JSON from the same model), byte-for-byte
//! reproducible.
//!
//! It takes the images the build used (reference as written, the manifest,
//! config and layer digests the plan resolved), their unpacked trees (for
//! the distribution packages inside: Debian's `var/lib/dpkg/status` and
//! `status.d/`, Alpine's `lib/apk/db/installed`), the YAML files, the
//! output name and the build epoch, and gives the document's bytes plus
//! warnings for package databases it could not read. One package per image
//! (SHA256 checksum = manifest digest, a `pkg:oci` purl, the layers in its
//! comment), one per distribution package (`pkg:deb`/`pkg:apk` purl),
//! `DESCRIBES` and `CONTAINS` relationships.
//!
//! Nothing in it comes from the clock, the host or randomness: `created` is
//! the build epoch, `documentNamespace` and every SPDX id are derived from
//! the content (the YAML bytes, the image digests, the kiln version), and
//! every list is sorted, so two builds of the same inputs give the same
//! bytes (LinuxKit's SBOM carries a random UUID and the current time).
//! Written by hand over serde_json: the document is a few fixed fields, and
//! no SPDX crate offers byte-stable output.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::lock::Pinned;
use crate::tree::{ContentStore, Kind, Tree};

/// The document's path inside the image: `sbom.spdx.json`, as LinuxKit
/// names it, or `sbom.cdx.json`.
pub fn in_image(format: Format) -> String {
    format!("sbom.{}", format.extension())
}

/// The image config label in which `kiln pkg build` records the pinned
/// `.deb`s and workspace crates an image was built from (JSON:
/// `{"debs": [{package, version, arch, sha256, source, license}],
/// "crates": [{name, version}]}`).
pub const PKG_LABEL: &str = "dev.kiln.pkg.inputs";

/// The most bytes of one package database read into memory.
const MAX_DB: u64 = 64 << 20;

/// One image of the build, as the SBOM describes it.
pub struct ImageFacts<'a> {
    /// The reference as written in the YAML.
    pub reference: &'a str,
    pub pinned: &'a Pinned,
    /// Its unpacked filesystem (for the package databases).
    pub tree: &'a Tree,
    /// Its config's labels (for [`PKG_LABEL`]).
    pub labels: &'a BTreeMap<String, String>,
}

/// A distribution package found in an image.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct DistroPackage {
    /// `deb` or `apk`.
    pub kind: &'static str,
    /// The distribution's id (`debian`, `alpine`, … from os-release).
    pub distro: String,
    pub name: String,
    pub version: String,
    pub arch: String,
    /// The source package (deb `Source:`, apk `o:`), when stated.
    pub source: Option<String>,
    /// The licence as the database states it (apk `L:`), when stated.
    pub license: Option<String>,
    /// A pinned SPDX licence expression (kiln's own images' `.deb` pins).
    pub declared: Option<String>,
    /// The sha256 of the package file (kiln's own images' `.deb`s).
    pub sha256: Option<String>,
}

/// A regular file of the image the SBOM lists: the spec's `files:`
/// entries, or every file with `--sbom-files`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileFact {
    /// The path in the image, without a leading `/`.
    pub path: String,
    pub sha1: String,
    pub sha256: String,
}

/// The [`FileFact`]s of the regular files at `paths` of `tree` (other
/// kinds and missing paths are skipped), sorted by path. SPDX requires a
/// SHA-1 of every file, so contents are read once through the store.
pub fn file_facts(
    tree: &Tree,
    store: &ContentStore,
    paths: impl Iterator<Item = Vec<u8>>,
) -> std::io::Result<Vec<FileFact>> {
    use sha1::Digest as _;
    let mut out = Vec::new();
    for path in paths {
        let Some(Kind::File(c)) = tree.get(&path).map(|e| &e.kind) else {
            continue;
        };
        let mut h = sha1::Sha1::new();
        std::io::copy(&mut store.reader(c), &mut h)?;
        out.push(FileFact {
            path: String::from_utf8_lossy(&path).into_owned(),
            sha1: hex::encode(h.finalize()),
            sha256: hex::encode(c.sha256()),
        });
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The SBOM document and what could not be read.
pub struct Sbom {
    pub bytes: Vec<u8>,
    pub warnings: Vec<String>,
}

/// The document's format (`--sbom-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// SPDX 2.3 JSON.
    #[default]
    #[value(name = "spdx")]
    Spdx,
    /// CycloneDX 1.5 JSON.
    #[value(name = "cyclonedx")]
    CycloneDx,
}

impl Format {
    /// The file name's ending: `NAME.spdx.json`, `NAME.cdx.json`.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Spdx => "spdx.json",
            Format::CycloneDx => "cdx.json",
        }
    }
}

/// Builds the document for the output `name`.
pub fn document(
    format: Format,
    name: &str,
    yaml: &[String],
    images: &[ImageFacts],
    files: &[FileFact],
    store: &ContentStore,
    epoch: i64,
) -> Sbom {
    let mut warnings = Vec::new();
    let mut images: Vec<&ImageFacts> = images.iter().collect();
    images.sort_by_key(|i| i.reference);

    let mut hasher = Sha256::new();
    hasher.update(format!("kiln {}\n", env!("CARGO_PKG_VERSION")));
    for y in yaml {
        hasher.update(Sha256::digest(y));
    }
    for i in &images {
        hasher.update(format!("{} {}\n", i.reference, i.pinned.manifest));
    }
    let id = hex::encode(hasher.finalize());
    let model: Vec<(&ImageFacts, Vec<DistroPackage>)> = images
        .into_iter()
        .map(|i| (i, distro_packages(i, store, &mut warnings)))
        .collect();
    let [y, mo, d, h, mi, s] = crate::output::iso::desc::civil(epoch);
    let created = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z");
    let doc = match format {
        Format::Spdx => spdx(name, &id, &created, &model, files),
        Format::CycloneDx => cyclonedx(name, &id, &created, &model, files),
    };
    let mut bytes = serde_json::to_vec_pretty(&doc).expect("JSON of plain values");
    bytes.push(b'\n');
    Sbom { bytes, warnings }
}

fn spdx(
    name: &str,
    id: &str,
    created: &str,
    model: &[(&ImageFacts, Vec<DistroPackage>)],
    files: &[FileFact],
) -> Value {
    let mut packages = Vec::new();
    let mut relationships = Vec::new();
    for (n, (image, found)) in model.iter().enumerate() {
        let image_id = format!("SPDXRef-Image-{n}");
        packages.push(image_package(&image_id, image));
        relationships.push(relationship("SPDXRef-DOCUMENT", "DESCRIBES", &image_id));
        for (k, p) in found.iter().enumerate() {
            let pkg_id = format!("{image_id}-Package-{k}");
            packages.push(distro_package(&pkg_id, p));
            relationships.push(relationship(&image_id, "CONTAINS", &pkg_id));
        }
    }
    let mut described: Vec<String> = (0..model.len())
        .map(|n| format!("SPDXRef-Image-{n}"))
        .collect();
    let mut file_entries = Vec::new();
    for (n, f) in files.iter().enumerate() {
        let file_id = format!("SPDXRef-File-{n}");
        file_entries.push(json!({
            "SPDXID": file_id,
            "fileName": format!("./{}", f.path),
            "checksums": [
                {"algorithm": "SHA1", "checksumValue": f.sha1},
                {"algorithm": "SHA256", "checksumValue": f.sha256},
            ],
            "licenseConcluded": "NOASSERTION",
            "copyrightText": "NOASSERTION",
        }));
        relationships.push(relationship("SPDXRef-DOCUMENT", "DESCRIBES", &file_id));
        described.push(file_id);
    }
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": format!("https://kiln.dev/spdx/{name}-{}", &id[..32]),
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: kiln-{}", env!("CARGO_PKG_VERSION"))],
        },
        "documentDescribes": described,
        "packages": packages,
        "relationships": relationships,
    });
    if !file_entries.is_empty() {
        doc["files"] = json!(file_entries);
    }
    doc
}

/// The same model as CycloneDX 1.5: images are `container` components,
/// packages `library` components, and each image depends on its packages.
fn cyclonedx(
    name: &str,
    id: &str,
    created: &str,
    model: &[(&ImageFacts, Vec<DistroPackage>)],
    files: &[FileFact],
) -> Value {
    let mut components = Vec::new();
    for (n, f) in files.iter().enumerate() {
        components.push(json!({
            "type": "file",
            "bom-ref": format!("file-{n}"),
            "name": format!("/{}", f.path),
            "hashes": [
                {"alg": "SHA-1", "content": f.sha1},
                {"alg": "SHA-256", "content": f.sha256},
            ],
        }));
    }
    let mut dependencies = Vec::new();
    for (n, (image, found)) in model.iter().enumerate() {
        let image_ref = format!("image-{n}");
        let p = image.pinned;
        let hex = p.manifest.strip_prefix("sha256:").unwrap_or(&p.manifest);
        let mut depends = Vec::new();
        for (k, pkg) in found.iter().enumerate() {
            let pkg_ref = format!("{image_ref}-package-{k}");
            let mut c = json!({
                "type": "library",
                "bom-ref": pkg_ref,
                "name": pkg.name,
                "version": pkg.version,
                "purl": distro_purl(pkg),
            });
            if let Some(l) = &pkg.declared {
                c["licenses"] = json!([{"expression": l}]);
            } else if let Some(l) = &pkg.license {
                c["licenses"] = json!([{"license": {"name": l}}]);
            }
            if let Some(sha) = &pkg.sha256 {
                c["hashes"] = json!([{"alg": "SHA-256", "content": sha}]);
            }
            components.push(c);
            depends.push(pkg_ref);
        }
        components.push(json!({
            "type": "container",
            "bom-ref": image_ref,
            "name": image.reference,
            "version": p.manifest,
            "hashes": [{"alg": "SHA-256", "content": hex}],
            "purl": oci_purl(&p.name, &p.manifest),
            "properties": std::iter::once(json!({"name": "kiln:config", "value": p.config}))
                .chain(p.layers.iter().map(|l| json!({"name": "kiln:layer", "value": l})))
                .collect::<Vec<_>>(),
        }));
        dependencies.push(json!({"ref": image_ref, "dependsOn": depends}));
    }
    // A version 4 UUID's shape, its bits from the content hash.
    let u = &id[..32];
    let serial = format!(
        "urn:uuid:{}-{}-4{}-8{}-{}",
        &u[0..8],
        &u[8..12],
        &u[13..16],
        &u[17..20],
        &u[20..32]
    );
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": serial,
        "version": 1,
        "metadata": {
            "timestamp": created,
            "tools": {"components": [{
                "type": "application",
                "name": "kiln",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": {"type": "operating-system", "bom-ref": "build", "name": name},
        },
        "components": components,
        "dependencies": dependencies,
    })
}

fn relationship(from: &str, kind: &str, to: &str) -> Value {
    json!({"spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to})
}

fn image_package(id: &str, image: &ImageFacts) -> Value {
    let p = image.pinned;
    let hex = p.manifest.strip_prefix("sha256:").unwrap_or(&p.manifest);
    let mut layers = String::from("layers (bottom first):");
    for l in &p.layers {
        layers.push(' ');
        layers.push_str(l);
    }
    json!({
        "SPDXID": id,
        "name": image.reference,
        "versionInfo": p.manifest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": hex}],
        "externalRefs": [purl_ref(&oci_purl(&p.name, &p.manifest))],
        "comment": format!("{layers}; config {}", p.config),
    })
}

fn distro_package(id: &str, p: &DistroPackage) -> Value {
    let mut v = json!({
        "SPDXID": id,
        "name": p.name,
        "versionInfo": p.version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "externalRefs": [purl_ref(&distro_purl(p))],
    });
    if let Some(src) = &p.source {
        v["sourceInfo"] = json!(format!("built from source package {src}"));
    }
    if let Some(l) = &p.declared {
        v["licenseDeclared"] = json!(l);
    }
    if let Some(sha) = &p.sha256 {
        v["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": sha}]);
    }
    if let Some(l) = &p.license {
        // Databases state licences in their own syntax, not always a valid
        // SPDX expression: kept as said, not as a declared expression.
        v["comment"] = json!(format!("licence as the {} database states it: {l}", p.kind));
    }
    v
}

fn purl_ref(purl: &str) -> Value {
    json!({"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl})
}

/// `pkg:oci/NAME@DIGEST?repository_url=HOST/PATH&tag=TAG` for a canonical
/// image name (`HOST/PATH:TAG`).
fn oci_purl(canonical: &str, manifest: &str) -> String {
    let (repo, tag) = match canonical.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, Some(t)),
        _ => (canonical, None),
    };
    let repo = repo.split('@').next().unwrap_or(repo);
    let last = repo.rsplit('/').next().unwrap_or(repo);
    let mut purl = format!(
        "pkg:oci/{}@{}?repository_url={}",
        encode(&last.to_ascii_lowercase()),
        encode(manifest),
        encode(repo)
    );
    if let Some(t) = tag {
        purl.push_str(&format!("&tag={}", encode(t)));
    }
    purl
}

fn distro_purl(p: &DistroPackage) -> String {
    if p.kind == "cargo" {
        // A workspace crate of kiln, built from source, not from crates.io.
        return format!("pkg:cargo/{}@{}", encode(&p.name), encode(&p.version));
    }
    let mut purl = format!(
        "pkg:{}/{}/{}@{}?arch={}",
        p.kind,
        encode(&p.distro),
        encode(&p.name),
        encode(&p.version),
        encode(&p.arch)
    );
    if let Some(src) = &p.source {
        let upstream = src.split_whitespace().next().unwrap_or(src);
        if upstream != p.name {
            purl.push_str(&format!("&upstream={}", encode(upstream)));
        }
    }
    purl
}

/// Percent-encodes everything but purl's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The distribution packages of an image, sorted; unreadable databases
/// become warnings naming the image and the file.
fn distro_packages(
    image: &ImageFacts,
    store: &ContentStore,
    warnings: &mut Vec<String>,
) -> Vec<DistroPackage> {
    let tree = image.tree;
    let mut text_of = |path: &str| -> Option<String> {
        let entry = tree.get(path.as_bytes())?;
        let Kind::File(c) = &entry.kind else {
            return None;
        };
        if c.len() > MAX_DB {
            warnings.push(format!(
                "image {}: /{path} is {} bytes, more than the {MAX_DB} an SBOM reads; its packages are not listed",
                image.reference,
                c.len()
            ));
            return None;
        }
        match store.read(c) {
            Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) => {
                warnings.push(format!("image {}: reading /{path}: {e}", image.reference));
                None
            }
        }
    };
    let os_id = text_of("etc/os-release")
        .or_else(|| text_of("usr/lib/os-release"))
        .and_then(|t| os_release_id(&t));
    let mut out = Vec::new();
    let mut dpkg_files = vec!["var/lib/dpkg/status".to_string()];
    let status_d = b"var/lib/dpkg/status.d";
    for (path, _) in tree.children_of(status_d) {
        dpkg_files.push(String::from_utf8_lossy(path).into_owned());
    }
    let mut problems = Vec::new();
    for file in dpkg_files {
        if let Some(text) = text_of(&file) {
            let distro = os_id.clone().unwrap_or_else(|| "debian".into());
            out.extend(parse_dpkg(&text, &distro, &mut |line, msg| {
                problems.push(format!("image {}: /{file}:{line}: {msg}", image.reference))
            }));
        }
    }
    if let Some(text) = text_of("lib/apk/db/installed") {
        let distro = os_id.clone().unwrap_or_else(|| "alpine".into());
        out.extend(parse_apk(&text, &distro, &mut |line, msg| {
            problems.push(format!(
                "image {}: /lib/apk/db/installed:{line}: {msg}",
                image.reference
            ))
        }));
    }
    warnings.extend(problems);
    out.extend(pkg_inputs(image, warnings));
    out.sort();
    out.dedup();
    out
}

/// The `.deb`s and crates [`PKG_LABEL`] records for an image `kiln pkg
/// build` made; a label that does not parse is a warning.
fn pkg_inputs(image: &ImageFacts, warnings: &mut Vec<String>) -> Vec<DistroPackage> {
    let Some(text) = image.labels.get(PKG_LABEL) else {
        return Vec::new();
    };
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            warnings.push(format!("image {}: label {PKG_LABEL}: {e}", image.reference));
            return Vec::new();
        }
    };
    let s = |v: &Value| v.as_str().map(str::to_owned);
    let mut out = Vec::new();
    for d in v["debs"].as_array().into_iter().flatten() {
        if let (Some(name), Some(version)) = (s(&d["package"]), s(&d["version"])) {
            out.push(DistroPackage {
                kind: "deb",
                distro: "debian".into(),
                name,
                version,
                arch: s(&d["arch"]).unwrap_or_default(),
                source: s(&d["source"]),
                declared: s(&d["license"]),
                sha256: s(&d["sha256"]),
                ..DistroPackage::default()
            });
        }
    }
    for c in v["crates"].as_array().into_iter().flatten() {
        if let (Some(name), Some(version)) = (s(&c["name"]), s(&c["version"])) {
            out.push(DistroPackage {
                kind: "cargo",
                name,
                version,
                ..DistroPackage::default()
            });
        }
    }
    out
}

fn os_release_id(text: &str) -> Option<String> {
    let v = text.lines().find_map(|l| l.strip_prefix("ID="))?;
    let v = v.trim().trim_matches('"').trim_matches('\'');
    (!v.is_empty()).then(|| v.to_ascii_lowercase())
}

/// The installed packages of a dpkg status file (paragraphs of `Key: value`
/// fields). `problem(line, message)` hears of paragraphs it skips.
pub fn parse_dpkg(
    text: &str,
    distro: &str,
    problem: &mut dyn FnMut(usize, &str),
) -> Vec<DistroPackage> {
    let mut out = Vec::new();
    for (start, para) in paragraphs(text) {
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        let mut any_field = false;
        for (i, line) in para.iter().enumerate() {
            if line.starts_with([' ', '\t']) {
                if !any_field {
                    problem(start + i, "a continuation line before any field");
                }
                continue;
            }
            match line.split_once(':') {
                Some((k, v)) => {
                    any_field = true;
                    fields.insert(k.to_ascii_lowercase(), v.trim().to_string());
                }
                None => problem(start + i, "a line that is not `Field: value`"),
            }
        }
        let installed = fields
            .get("status")
            .is_none_or(|s| s.ends_with(" installed"));
        match (fields.get("package"), fields.get("version")) {
            (Some(name), Some(version)) if installed => out.push(DistroPackage {
                kind: "deb",
                distro: distro.to_string(),
                name: name.clone(),
                version: version.clone(),
                arch: fields.get("architecture").cloned().unwrap_or_default(),
                source: fields.get("source").cloned(),
                ..DistroPackage::default()
            }),
            (Some(_), Some(_)) => {}
            _ => problem(start, "a package without Package: or Version:"),
        }
    }
    out
}

/// The packages of an apk `installed` database (`K:value` lines, a blank
/// line between packages).
pub fn parse_apk(
    text: &str,
    distro: &str,
    problem: &mut dyn FnMut(usize, &str),
) -> Vec<DistroPackage> {
    let mut out = Vec::new();
    for (start, para) in paragraphs(text) {
        let mut fields: BTreeMap<char, String> = BTreeMap::new();
        for (i, line) in para.iter().enumerate() {
            let mut chars = line.chars();
            match (chars.next(), chars.next()) {
                (Some(k), Some(':')) => {
                    fields
                        .entry(k)
                        .or_insert_with(|| chars.as_str().to_string());
                }
                _ => problem(start + i, "a line that is not `K:value`"),
            }
        }
        match (fields.get(&'P'), fields.get(&'V')) {
            (Some(name), Some(version)) => out.push(DistroPackage {
                kind: "apk",
                distro: distro.to_string(),
                name: name.clone(),
                version: version.clone(),
                arch: fields.get(&'A').cloned().unwrap_or_default(),
                source: fields.get(&'o').cloned(),
                license: fields.get(&'L').cloned(),
                ..DistroPackage::default()
            }),
            _ => problem(start, "a package without P: or V:"),
        }
    }
    out
}

/// Blank-line separated paragraphs, each with the 1-based line it starts on.
fn paragraphs(text: &str) -> Vec<(usize, Vec<&str>)> {
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push((start, std::mem::take(&mut current)));
            }
            start = i + 2;
        } else {
            current.push(line);
        }
    }
    if !current.is_empty() {
        out.push((start, current));
    }
    out
}

/// What `kiln inspect --sbom` says of an SBOM: its format, name, time,
/// images with their package counts, and the licences stated.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub format: String,
    pub name: String,
    pub created: String,
    /// Image name → (version, number of packages it contains).
    pub images: BTreeMap<String, (String, usize)>,
    pub packages: usize,
    pub files: usize,
    /// Licence as stated → number of packages.
    pub licences: BTreeMap<String, usize>,
}

/// The most bytes of an SBOM `kiln inspect --sbom` reads.
const MAX_SBOM: u64 = 64 << 20;

/// Reads an SPDX 2.3 or CycloneDX JSON SBOM (kiln's or another tool's).
pub fn summarize(path: &std::path::Path) -> Result<Summary, String> {
    let file =
        crate::hostfile::open_regular(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_SBOM + 1), &mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_SBOM {
        return Err(format!("{}: more than {MAX_SBOM} bytes", path.display()));
    }
    let v: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let mut sum = Summary {
        format: String::new(),
        name: String::new(),
        created: String::new(),
        images: BTreeMap::new(),
        packages: 0,
        files: 0,
        licences: BTreeMap::new(),
    };
    if let Some(version) = v["spdxVersion"].as_str() {
        sum.format = version.to_string();
        sum.name = text(&v["name"]);
        sum.created = text(&v["creationInfo"]["created"]);
        let empty = Vec::new();
        sum.files = v["files"].as_array().map_or(0, Vec::len);
        let packages = v["packages"].as_array().unwrap_or(&empty);
        let contains = v["relationships"].as_array().unwrap_or(&empty);
        for p in packages {
            if p["primaryPackagePurpose"] == "CONTAINER" {
                let id = p["SPDXID"].as_str().unwrap_or("");
                let n = contains
                    .iter()
                    .filter(|r| r["spdxElementId"] == id && r["relationshipType"] == "CONTAINS")
                    .count();
                sum.images
                    .insert(text(&p["name"]), (text(&p["versionInfo"]), n));
            } else {
                sum.packages += 1;
                let declared = p["licenseDeclared"]
                    .as_str()
                    .filter(|l| *l != "NOASSERTION");
                let stated = p["comment"]
                    .as_str()
                    .and_then(|c| c.split_once("states it: ").map(|(_, l)| l));
                if let Some(l) = declared.or(stated) {
                    *sum.licences.entry(l.to_string()).or_default() += 1;
                }
            }
        }
    } else if v["bomFormat"] == "CycloneDX" {
        sum.format = format!("CycloneDX-{}", text(&v["specVersion"]));
        sum.name = text(&v["metadata"]["component"]["name"]);
        sum.created = text(&v["metadata"]["timestamp"]);
        let empty = Vec::new();
        let deps = v["dependencies"].as_array().unwrap_or(&empty);
        for c in v["components"].as_array().unwrap_or(&empty) {
            if c["type"] == "container" {
                let r = &c["bom-ref"];
                let n = deps
                    .iter()
                    .find(|d| &d["ref"] == r)
                    .and_then(|d| d["dependsOn"].as_array())
                    .map_or(0, Vec::len);
                sum.images
                    .insert(text(&c["name"]), (text(&c["version"]), n));
            } else if c["type"] == "file" {
                sum.files += 1;
            } else {
                sum.packages += 1;
                for l in c["licenses"].as_array().unwrap_or(&empty) {
                    let e = &l["expression"];
                    let l = &l["license"];
                    let name = e
                        .as_str()
                        .or(l["id"].as_str())
                        .or(l["name"].as_str())
                        .unwrap_or("");
                    if !name.is_empty() {
                        *sum.licences.entry(name.to_string()).or_default() += 1;
                    }
                }
            }
        }
    } else {
        return Err(format!(
            "{}: neither an SPDX (spdxVersion) nor a CycloneDX (bomFormat) document",
            path.display()
        ));
    }
    Ok(sum)
}

impl Summary {
    /// The summary as text, one line per image, then the licences.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{} {:?}, created {}: {} images, {} packages, {} files\n",
            self.format,
            self.name,
            self.created,
            self.images.len(),
            self.packages,
            self.files
        );
        for (name, (version, n)) in &self.images {
            out.push_str(&format!("image {name}  {version}  {n} packages\n"));
        }
        for (l, n) in &self.licences {
            out.push_str(&format!("licence {l}: {n} packages\n"));
        }
        out
    }

    pub fn to_json(&self) -> Value {
        json!({
            "format": self.format,
            "name": self.name,
            "created": self.created,
            "packages": self.packages,
            "files": self.files,
            "images": self.images.iter().map(|(name, (version, n))| {
                json!({"name": name, "version": version, "packages": n})
            }).collect::<Vec<_>>(),
            "licences": self.licences,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database parser, as [`parse_dpkg`] and [`parse_apk`] are.
    type Parser = fn(&str, &str, &mut dyn FnMut(usize, &str)) -> Vec<DistroPackage>;

    fn problems_of(f: Parser, text: &str) -> (Vec<DistroPackage>, Vec<String>) {
        let mut problems = Vec::new();
        let pkgs = f(text, "d", &mut |line, msg| {
            problems.push(format!("{line}: {msg}"))
        });
        (pkgs, problems)
    }

    #[test]
    fn dpkg_status_lists_installed_packages_only() {
        let text = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\n\
                    Source: glibc\nVersion: 2.36-9+deb12u4\nDescription: x\n more\n\n\
                    Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n\
                    Package: broken\nStatus: install ok installed\n\n\
                    junk line\nPackage: b\nVersion: 2\n";
        let (pkgs, problems) = problems_of(parse_dpkg, text);
        assert_eq!(pkgs.len(), 2, "{pkgs:?}");
        assert_eq!(pkgs[0].name, "libc6");
        assert_eq!(pkgs[0].source.as_deref(), Some("glibc"));
        assert_eq!(
            distro_purl(&pkgs[0]),
            "pkg:deb/d/libc6@2.36-9%2Bdeb12u4?arch=amd64&upstream=glibc"
        );
        assert_eq!(pkgs[1].name, "b");
        assert_eq!(
            problems,
            [
                "13: a package without Package: or Version:",
                "16: a line that is not `Field: value`"
            ]
        );
    }

    #[test]
    fn apk_database_gives_name_version_arch_origin_and_licence() {
        let text = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\n\n\
                    P:busybox\nV:1.36.1-r5\nA:x86_64\nL:GPL-2.0-only\no:busybox\n\nnot a field\nV:1\n";
        let (pkgs, problems) = problems_of(parse_apk, text);
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[0].license.as_deref(), Some("MIT"));
        assert_eq!(
            distro_purl(&pkgs[1]),
            "pkg:apk/d/busybox@1.36.1-r5?arch=x86_64"
        );
        assert_eq!(
            problems,
            [
                "14: a line that is not `K:value`",
                "14: a package without P: or V:"
            ]
        );
    }

    #[test]
    fn oci_purl_names_the_repository_digest_and_tag() {
        assert_eq!(
            oci_purl("docker.io/library/alpine:3.19", "sha256:ab"),
            "pkg:oci/alpine@sha256%3Aab?repository_url=docker.io/library/alpine&tag=3.19"
        );
        assert_eq!(
            oci_purl("127.0.0.1:5000/x/Kiln", "sha256:ab"),
            "pkg:oci/kiln@sha256%3Aab?repository_url=127.0.0.1%3A5000/x/Kiln"
        );
    }
}
