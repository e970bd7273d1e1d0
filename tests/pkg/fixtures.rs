//! Fixtures for the `pkg` tests: a temp workspace with pinned `.deb`s
//! (written here as `ar` archives, byte by byte), and a reader that lists
//! an image of an OCI layout straight from its blobs.

use std::cell::RefCell;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::support::*;

pub use crate::support::LayerBuilder;

/// A temp workspace: `vendor-images/debs.yml`, `vendor-images/debs/`, recipes.
pub struct Workspace {
    pub dir: TestDir,
    pins: RefCell<String>,
}

impl Workspace {
    pub fn new() -> Workspace {
        let ws = Workspace {
            dir: TestDir::new(),
            pins: RefCell::new(String::from("# test pins\n")),
        };
        ws.dir
            .write("vendor-images/debs.yml", ws.pins.borrow().as_bytes());
        ws
    }

    /// Where the `.deb` of `package` at `version` lives.
    pub fn deb_path(&self, package: &str, version: &str) -> PathBuf {
        self.dir.join(format!(
            "vendor-images/debs/{package}_{}_amd64.deb",
            version.replace(':', "%3a")
        ))
    }

    /// Writes a `.deb` whose data.tar is `data`, and pins it.
    pub fn add_deb(&self, package: &str, version: &str, data: &LayerBuilder) {
        let deb = build_deb(data);
        let path = self.deb_path(package, version);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir debs");
        std::fs::write(&path, &deb).expect("write deb");
        let mut pins = self.pins.borrow_mut();
        pins.push_str(&format!(
            "- package: {package}\n  version: '{version}'\n  arch: amd64\n  sha256: {}\n  source: {package}\n  license: MIT\n",
            sha256_hex(&deb)
        ));
        self.dir.write("vendor-images/debs.yml", pins.as_bytes());
    }

    /// Writes `dir/build.yml`.
    pub fn recipe(&self, dir: &str, text: &str) {
        self.dir.write(format!("{dir}/build.yml"), text);
    }
}

/// The data.tar of a small runc package: a binary owned by uid 1000, a
/// hard link and a symlink to it, and documentation that is not kept.
pub fn runc_data() -> LayerBuilder {
    LayerBuilder::new()
        .dir("./", 0o755)
        .dir("./usr/", 0o755)
        .dir("./usr/sbin/", 0o755)
        .file("./usr/sbin/runc", "runc-binary", 0o755)
        .owner(1000, 1000)
        .hardlink("./usr/sbin/runc-hard", "./usr/sbin/runc")
        .symlink("./usr/sbin/runc-link", "runc")
        .dir("./usr/share/", 0o755)
        .dir("./usr/share/doc/", 0o755)
        .dir("./usr/share/doc/runc/", 0o755)
        .file("./usr/share/doc/runc/copyright", "Apache-2.0", 0o644)
}

/// A `.deb`: `ar` of debian-binary, control.tar.gz and data.tar.gz.
pub fn build_deb(data: &LayerBuilder) -> Vec<u8> {
    let control = LayerBuilder::new()
        .dir("./", 0o755)
        .file("./control", "Package: x\n", 0o644)
        .build_compressed(kiln::oci::Compression::Gzip);
    ar(&[
        ("debian-binary", b"2.0\n"),
        ("control.tar.gz", &control),
        (
            "data.tar.gz",
            &data.build_compressed(kiln::oci::Compression::Gzip),
        ),
    ])
}

/// A System V `ar` archive as dpkg writes it.
pub fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, data) in members {
        let header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            name,
            0,
            0,
            0,
            100644,
            data.len()
        );
        assert_eq!(header.len(), 60);
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A minimal 64-bit little-endian ELF file with program headers of the
/// given types (3 is `PT_INTERP`).
pub fn elf64(types: &[u32]) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
    b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    b[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
    for t in types {
        let mut ph = vec![0u8; 56];
        ph[..4].copy_from_slice(&t.to_le_bytes());
        b.extend(ph);
    }
    b
}

/// One member of a tar, as its header says.
#[derive(Clone, Debug)]
pub struct TarEntry {
    pub path: String,
    pub kind: char,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub uname: String,
    pub link: String,
    pub data: Vec<u8>,
}

impl TarEntry {
    /// `path kind mode [data | -> link]`, kind one of f d l h.
    pub fn line(&self) -> String {
        let mut s = format!("{} {} {:o}", self.path, self.kind, self.mode);
        match self.kind {
            'f' => s.push_str(&format!(" {}", String::from_utf8_lossy(&self.data))),
            'l' | 'h' => s.push_str(&format!(" -> {}", self.link)),
            _ => {}
        }
        s
    }
}

/// The members of an uncompressed tar.
pub fn entries_of(tar_bytes: &[u8]) -> Vec<TarEntry> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in archive.entries().expect("tar entries") {
        let mut e = e.expect("tar entry");
        let h = e.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Regular => 'f',
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            other => panic!("unexpected entry type {other:?}"),
        };
        let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("tar data");
        out.push(TarEntry {
            path,
            kind,
            mode: h.mode().expect("mode"),
            uid: h.uid().expect("uid"),
            gid: h.gid().expect("gid"),
            mtime: h.mtime().expect("mtime"),
            uname: String::from_utf8_lossy(h.username_bytes().unwrap_or_default()).into_owned(),
            link,
            data,
        });
    }
    out
}

/// An image read back from a layout.
pub struct Image {
    pub digest: String,
    pub config: serde_json::Value,
    pub entries: Vec<TarEntry>,
}

impl Image {
    pub fn listing(&self) -> Vec<String> {
        self.entries.iter().map(TarEntry::line).collect()
    }

    /// The bytes of the regular file at `path`.
    pub fn file(&self, path: &str) -> Vec<u8> {
        self.entries
            .iter()
            .find(|e| e.path == path && e.kind == 'f')
            .unwrap_or_else(|| panic!("no file {path} in {:#?}", self.listing()))
            .data
            .clone()
    }
}

/// The single-layer image tagged `name` in the layout at `dir`.
pub fn read_image(dir: &Path, name: &str) -> Image {
    let index = read_index_json(dir);
    let desc = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {index}"));
    let digest = desc["digest"].as_str().expect("digest").to_owned();
    let blob = |d: &str| std::fs::read(blob_path(dir, d)).expect("read blob");
    let json =
        |d: &str| -> serde_json::Value { serde_json::from_slice(&blob(d)).expect("blob json") };
    let manifest = json(&digest);
    let config = json(manifest["config"]["digest"].as_str().expect("config"));
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let gz = blob(layers[0]["digest"].as_str().expect("layer"));
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut tar_bytes)
        .expect("gunzip layer");
    Image {
        digest,
        config,
        entries: entries_of(&tar_bytes),
    }
}
