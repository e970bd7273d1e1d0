//! Tests for the assembled tree: kernel, init, volumes, container bundles
//! (readonly, writable, de-duplicated) and image filtering; shared
//! fixtures for `tests_files`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::spec::{Image, ImageRef, Pos, Volume};

pub(super) const EPOCH: i64 = 1_000;

pub(super) fn pos(line: usize) -> Pos {
    Pos {
        file: Arc::from("test.yml"),
        line,
        col: 3,
    }
}

pub(super) fn r(reference: &str, line: usize) -> ImageRef {
    ImageRef {
        reference: reference.into(),
        pos: pos(line),
    }
}

pub(super) fn container(name: &str, reference: &str, line: usize) -> Image {
    Image {
        name: name.into(),
        image: r(reference, line + 1),
        pos: pos(line),
        ..Image::default()
    }
}

pub(super) struct Fixture {
    pub(super) store: ContentStore,
    pub(super) spec: Spec,
    pub(super) images: BTreeMap<String, ImageInput>,
    pub(super) modules: Option<Tree>,
}

impl Fixture {
    pub(super) fn new() -> Fixture {
        Fixture {
            store: ContentStore::new().unwrap(),
            spec: Spec::default(),
            images: BTreeMap::new(),
            modules: None,
        }
    }

    pub(super) fn file(&self, bytes: &[u8], mode: u32) -> Entry {
        Entry::file(self.store.add(bytes).unwrap(), mode, 5)
    }

    /// An image whose tree holds `files` (path, contents) plus their
    /// parents, with `Entrypoint: ["/bin/run"]`.
    pub(super) fn image(&mut self, reference: &str, canonical: &str, files: &[(&str, &str)]) {
        let mut tree = Tree::new();
        for (path, contents) in files {
            let e = self.file(contents.as_bytes(), 0o644);
            tree.insert_with_parents(path.as_bytes().to_vec(), e, 0o755, 5);
        }
        self.images.insert(
            reference.into(),
            ImageInput {
                tree,
                reference: reference.into(),
                canonical: canonical.into(),
                defaults: ImageDefaults {
                    entrypoint: Some(vec!["/bin/run".into()]),
                    ..ImageDefaults::default()
                },
            },
        );
    }

    pub(super) fn tree_mut(&mut self, reference: &str) -> &mut Tree {
        &mut self.images.get_mut(reference).unwrap().tree
    }

    pub(super) fn run(&self) -> Result<Assembled, AssembleError> {
        assemble(&Inputs {
            oci_volumes: &BTreeMap::new(),
            spec: &self.spec,
            images: &self.images,
            kernel_modules: self.modules.clone(),
            store: &self.store,
            epoch: EPOCH,
        })
    }

    pub(super) fn read(&self, tree: &Tree, path: &str) -> String {
        match &tree
            .get(path.as_bytes())
            .unwrap_or_else(|| panic!("{path} missing"))
            .kind
        {
            Kind::File(c) => String::from_utf8(self.store.read(c).unwrap()).unwrap(),
            other => panic!("{path} is {other:?}"),
        }
    }
}

pub(super) fn mode(tree: &Tree, path: &str) -> u32 {
    tree.get(path.as_bytes())
        .unwrap_or_else(|| panic!("{path} missing"))
        .mode
}

pub(super) fn has(tree: &Tree, path: &str) -> bool {
    tree.get(path.as_bytes()).is_some()
}

pub(super) fn link(tree: &Tree, path: &str) -> String {
    match &tree.get(path.as_bytes()).unwrap().kind {
        Kind::Symlink(t) => String::from_utf8(t.clone()).unwrap(),
        other => panic!("{path} is {other:?}"),
    }
}

pub(super) fn kernel_fixture() -> Fixture {
    let mut f = Fixture::new();
    f.image(
        "linuxkit/kernel:6.6",
        "docker.io/linuxkit/kernel:6.6",
        &[
            ("kernel", "KERNEL"),
            ("kernel.tar", "TAR"),
            ("ucode.cpio", "UCODE"),
        ],
    );
    f.spec.kernel = crate::spec::Kernel {
        image: Some(r("linuxkit/kernel:6.6", 2)),
        cmdline: Some("console=ttyS0".into()),
        pos: Some(pos(1)),
        ..Default::default()
    };
    let mut modules = Tree::new();
    modules.insert_with_parents(
        b"lib/modules/6.6/x.ko".to_vec(),
        f.file(b"KO", 0o644),
        0o755,
        5,
    );
    f.modules = Some(modules);
    f
}

// ---- kernel -------------------------------------------------------------------

#[test]
fn kernel_file_name_defaults() {
    let k = |tar: Option<&str>, binary: Option<&str>| crate::spec::Kernel {
        tar: tar.map(str::to_string),
        binary: binary.map(str::to_string),
        ..Default::default()
    };
    let d = kernel_file_names(&k(None, None));
    assert_eq!(
        (d.binary.as_str(), d.tar.as_deref(), d.ucode),
        ("kernel", Some("kernel.tar"), None)
    );
    assert_eq!(kernel_file_names(&k(Some("none"), None)).tar, None);
    assert_eq!(kernel_file_names(&k(Some(""), None)).tar, None);
    assert_eq!(
        kernel_file_names(&k(Some("m.tar"), Some("bzImage"))).binary,
        "bzImage"
    );
}

#[test]
fn kernel_cmdline_ucode_and_modules() {
    let mut f = kernel_fixture();
    f.spec.kernel.ucode = Some("ucode.cpio".into());
    let out = f.run().unwrap();
    assert_eq!(f.read(&out.tree, "boot/kernel"), "KERNEL");
    assert_eq!(f.read(&out.tree, "boot/cmdline"), "console=ttyS0");
    assert_eq!(f.read(&out.tree, "boot/ucode.cpio"), "UCODE");
    assert_eq!(mode(&out.tree, "boot"), 0o755);
    assert_eq!(out.tree.get(b"boot/cmdline").unwrap().mtime, EPOCH);
    assert_eq!(f.read(&out.tree, "lib/modules/6.6/x.ko"), "KO");
    assert_eq!(out.cmdline, "console=ttyS0");
    assert_eq!(f.store.read(&out.kernel.unwrap()).unwrap(), b"KERNEL");
    assert_eq!(f.store.read(&out.ucode.unwrap()).unwrap(), b"UCODE");
    // Nothing else of the kernel image lands in the tree.
    assert!(!has(&out.tree, "kernel.tar") && !has(&out.tree, "etc"));
}

#[test]
fn error_kernel_binary_missing_names_image_and_file() {
    let mut f = kernel_fixture();
    f.spec.kernel.binary = Some("bzImage".into());
    let e = f.run().unwrap_err().to_string();
    assert_eq!(
        e,
        "test.yml:1:3: kernel binary \"bzImage\" not found in kernel image docker.io/linuxkit/kernel:6.6"
    );
}

#[test]
fn error_kernel_tar_and_ucode_missing() {
    let mut f = kernel_fixture();
    f.spec.kernel.tar = Some("modules.tar".into());
    let e = f.run().unwrap_err().to_string();
    assert!(
        e.starts_with("test.yml:1:3: kernel tar \"modules.tar\" not found"),
        "{e}"
    );
    f.spec.kernel.tar = Some("none".into());
    f.spec.kernel.ucode = Some("intel.cpio".into());
    let e = f.run().unwrap_err().to_string();
    assert!(
        e.starts_with("test.yml:1:3: kernel ucode \"intel.cpio\" not found"),
        "{e}"
    );
}

#[test]
fn error_image_not_provided() {
    let mut f = Fixture::new();
    f.spec.init = vec![r("linuxkit/init:1", 7)];
    let e = f.run().unwrap_err().to_string();
    assert!(
        e.starts_with("test.yml:7:3: image \"linuxkit/init:1\" was not unpacked"),
        "{e}"
    );
}

// ---- init and image filtering ----------------------------------------------------

#[test]
fn init_images_in_order_later_wins_with_resolv_symlink() {
    let mut f = Fixture::new();
    f.image(
        "init",
        "docker.io/linuxkit/init",
        &[("bin/a", "one"), ("etc/hostname", "h"), ("Dockerfile", "x")],
    );
    f.image(
        "runc",
        "docker.io/linuxkit/runc",
        &[("bin/a", "two"), ("etc/resolv.conf", "nameserver 1.1.1.1")],
    );
    f.tree_mut("init")
        .insert(b"etc".to_vec(), Entry::dir(0o750, 5));
    f.tree_mut("init").insert(
        b"dev/console".to_vec(),
        Entry::new(Kind::Char { major: 5, minor: 1 }, 0o600, 5),
    );
    f.tree_mut("runc")
        .insert(b"etc".to_vec(), Entry::dir(0o751, 5));
    f.spec.init = vec![r("init", 3), r("runc", 4)];
    let out = f.run().unwrap();
    let t = &out.tree;
    assert_eq!(f.read(t, "bin/a"), "two");
    assert_eq!(link(t, "etc/resolv.conf"), "/run/resolvconf/resolv.conf");
    assert_eq!(f.read(t, "etc/hosts"), layout::HOSTS);
    assert_eq!(mode(t, "etc/hosts"), 0o644);
    assert_eq!(link(t, "etc/mtab"), "/proc/mounts");
    // Excluded names are gone; mount points exist; an image's dir keeps its mode.
    assert!(!has(t, "etc/hostname") && !has(t, "Dockerfile") && !has(t, "dev/console"));
    for d in ["dev", "dev/pts", "dev/shm", "proc", "sys"] {
        assert_eq!(mode(t, d), 0o755, "{d}");
    }
    assert_eq!(mode(t, "etc"), 0o751);
}

#[test]
fn init_apk_databases_are_merged() {
    let mut f = Fixture::new();
    f.image("a", "docker.io/a", &[("lib/apk/db/installed", "P:a")]);
    f.image("b", "docker.io/b", &[("lib/apk/db/installed", "P:b")]);
    f.spec.init = vec![r("a", 3), r("b", 4)];
    let out = f.run().unwrap();
    assert_eq!(f.read(&out.tree, "lib/apk/db/installed"), "P:a\n\nP:b\n\n");
    // A single database is left as it is.
    f.spec.init = vec![r("a", 3)];
    assert_eq!(
        f.read(&f.run().unwrap().tree, "lib/apk/db/installed"),
        "P:a"
    );
}

#[test]
fn image_resolv_symlink_and_hosts_dir_are_replaced() {
    let mut f = Fixture::new();
    f.image(
        "alpine",
        "docker.io/library/alpine:latest",
        &[("bin/sh", "sh")],
    );
    let t = f.tree_mut("alpine");
    t.insert(b"etc".to_vec(), Entry::dir(0o755, 5));
    t.insert(
        b"etc/resolv.conf".to_vec(),
        Entry::symlink("../run/resolv.conf", 5),
    );
    t.insert(b"etc/hosts".to_vec(), Entry::dir(0o755, 5));
    t.insert(b"etc/hosts/x".to_vec(), Entry::dir(0o755, 5));
    f.spec.services = vec![container("svc", "alpine", 10)];
    let out = f.run().unwrap();
    let root = "containers/services/svc/lower";
    assert_eq!(
        f.read(&out.tree, &format!("{root}/etc/resolv.conf")),
        layout::RESOLV
    );
    assert_eq!(
        f.read(&out.tree, &format!("{root}/etc/hosts")),
        layout::HOSTS
    );
    assert!(!has(&out.tree, &format!("{root}/etc/hosts/x")));
}

// ---- containers -----------------------------------------------------------------

#[test]
fn bundles_numbered_and_readonly_vs_writable_layout() {
    let mut f = Fixture::new();
    f.image(
        "alpine",
        "docker.io/library/alpine:latest",
        &[("bin/sh", "sh")],
    );
    f.image(
        "busybox",
        "docker.io/library/busybox:latest",
        &[("bin/busybox", "bb")],
    );
    let mut ro = container("sysctl", "alpine", 10);
    ro.readonly = Some(true);
    f.spec.onboot = vec![container("first", "busybox", 8), ro];
    f.spec.onshutdown = vec![container("bye", "busybox", 12)];
    f.spec.services = vec![container("getty", "busybox", 14)];
    let out = f.run().unwrap();
    let t = &out.tree;
    // Readonly: the image is the rootfs, no lower/tmp.
    let p = "containers/onboot/001-sysctl";
    assert_eq!(f.read(t, &format!("{p}/rootfs/bin/sh")), "sh");
    assert!(!has(t, &format!("{p}/lower")) && !has(t, &format!("{p}/tmp")));
    let rt: serde_json::Value =
        serde_json::from_str(&f.read(t, &format!("{p}/runtime.json"))).unwrap();
    assert_eq!(
        rt["mounts"][0],
        json!({"destination": "/containers/onboot/001-sysctl/rootfs", "source": "/containers/onboot/001-sysctl/rootfs", "options": ["bind"]})
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&f.read(t, &format!("{p}/config.json"))).unwrap();
    assert_eq!(cfg["root"]["readonly"], true);
    // Writable: lower + empty tmp and rootfs.
    let p = "containers/onboot/000-first";
    assert_eq!(f.read(t, &format!("{p}/lower/bin/busybox")), "bb");
    assert!(t.get(format!("{p}/tmp").as_bytes()).unwrap().is_dir());
    assert_eq!(t.children_of(format!("{p}/rootfs").as_bytes()).count(), 0);
    assert_eq!(mode(t, &format!("{p}/config.json")), 0o644);
    assert_eq!(
        t.get(format!("{p}/runtime.json").as_bytes()).unwrap().mtime,
        EPOCH
    );
    assert_eq!(mode(t, "containers"), 0o755);
    // Later containers with the same image share the first copy.
    for p in ["containers/onshutdown/000-bye", "containers/services/getty"] {
        assert!(!has(t, &format!("{p}/lower")), "{p} has its own copy");
        assert!(has(t, &format!("{p}/tmp")) && has(t, &format!("{p}/rootfs")));
        let rt: serde_json::Value =
            serde_json::from_str(&f.read(t, &format!("{p}/runtime.json"))).unwrap();
        assert_eq!(
            rt["mounts"][2]["options"][0],
            "lowerdir=/containers/onboot/000-first/lower"
        );
    }
    // Container images get a plain resolv.conf, not the symlink.
    assert_eq!(
        f.read(t, "containers/onboot/000-first/lower/etc/resolv.conf"),
        layout::RESOLV
    );
}

#[test]
fn readonly_dedup_binds_the_first_root() {
    let mut f = Fixture::new();
    f.image(
        "alpine",
        "docker.io/library/alpine:latest",
        &[("bin/sh", "sh")],
    );
    let mut a = container("a", "alpine", 10);
    a.readonly = Some(true);
    let mut b = container("b", "alpine", 12);
    b.readonly = Some(true);
    f.spec.services = vec![a, b];
    let out = f.run().unwrap();
    let t = &out.tree;
    assert!(t.get(b"containers/services/b/rootfs").unwrap().is_dir());
    assert_eq!(t.children_of(b"containers/services/b/rootfs").count(), 0);
    let rt: serde_json::Value =
        serde_json::from_str(&f.read(t, "containers/services/b/runtime.json")).unwrap();
    assert_eq!(rt["mounts"][0]["source"], "/containers/services/a/rootfs");
}

#[test]
fn error_bad_container_name_and_config_error_name_position() {
    let mut f = Fixture::new();
    f.image("alpine", "docker.io/library/alpine:latest", &[]);
    f.spec.services = vec![container("../x", "alpine", 10)];
    let e = f.run().unwrap_err().to_string();
    assert!(e.starts_with("test.yml:10:3: service name \"../x\""), "{e}");
    let mut c = container("c", "alpine", 10);
    c.binds = Some(vec!["a:b:c:d".into()]);
    f.spec.services = vec![c];
    let e = f.run().unwrap_err().to_string();
    assert!(
        e.starts_with("test.yml:10:3: container \"c\": cannot parse bind \"a:b:c:d\""),
        "{e}"
    );
}

// ---- volumes ------------------------------------------------------------------------

fn volume(name: &str, image: Option<ImageRef>) -> Volume {
    Volume {
        name: name.into(),
        image,
        readonly: false,
        format: None,
        platforms: vec![],
        pos: pos(20),
    }
}

#[test]
fn volumes_blank_and_from_image() {
    let mut f = Fixture::new();
    f.image(
        "alpine",
        "docker.io/library/alpine:latest",
        &[("data/x", "x")],
    );
    f.spec.volumes = vec![volume("blank", None), volume("full", Some(r("alpine", 21)))];
    let out = f.run().unwrap();
    let t = &out.tree;
    for sub in ["lower", "tmp", "merged"] {
        assert!(t
            .get(format!("containers/volumes/blank/{sub}").as_bytes())
            .unwrap()
            .is_dir());
    }
    assert_eq!(t.children_of(b"containers/volumes/blank/lower").count(), 0);
    assert_eq!(f.read(t, "containers/volumes/full/lower/data/x"), "x");
    assert_eq!(
        link(t, "containers/volumes/full/lower/etc/resolv.conf"),
        layout::RESOLV_LINK
    );
}

#[test]
fn error_container_without_command_names_it_and_its_image() {
    let mut f = Fixture::new();
    f.image("bare", "docker.io/library/bare:1", &[("bin/x", "x")]);
    f.images.get_mut("bare").unwrap().defaults.entrypoint = None;
    let mut img = container("svc", "bare", 9);
    f.spec.services = vec![img.clone()];
    let e = f.run().unwrap_err().to_string();
    assert!(
        e.contains("container \"svc\" has no command")
            && e.contains("image docker.io/library/bare:1"),
        "{e}"
    );
    // A command from the YAML is enough.
    img.command = Some(vec!["/bin/x".into()]);
    f.spec.services = vec![img];
    f.run().unwrap();
}

#[test]
fn error_volume_format_unknown() {
    let mut f = Fixture::new();
    let mut v = volume("v", None);
    v.format = Some("squashfs".into());
    f.spec.volumes = vec![v];
    let e = f.run().unwrap_err().to_string();
    assert!(
        e.starts_with("test.yml:20:3: volume \"v\": format \"squashfs\" is not supported (only `filesystem` or `oci`)"),
        "{e}"
    );
}

/// `format: oci` without an image is a blank volume, as in LinuxKit.
#[test]
fn oci_volume_without_image_is_blank() {
    let mut f = Fixture::new();
    let mut v = volume("v", None);
    v.format = Some("oci".into());
    f.spec.volumes = vec![v];
    let out = f.run().unwrap();
    for sub in ["lower", "tmp", "merged"] {
        let path = format!("containers/volumes/v/{sub}");
        assert!(
            out.tree.get(path.as_bytes()).is_some_and(Entry::is_dir),
            "{path}"
        );
    }
    assert!(out
        .tree
        .get(b"containers/volumes/v/lower/index.json")
        .is_none());
}

#[test]
fn later_layer_replacing_a_directory_drops_its_contents_with_a_warning() {
    let mut f = Fixture::new();
    f.image("a", "docker.io/a", &[("lib/x", "x")]);
    f.image("b", "docker.io/b", &[("usr/lib/y", "y")]);
    f.tree_mut("b")
        .insert(b"lib".to_vec(), Entry::symlink("usr/lib", 5));
    // c has no entry for its parent directories (a sparse layer).
    f.image("c", "docker.io/c", &[]);
    let z = f.file(b"z", 0o644);
    f.tree_mut("c").insert(b"usr/lib/y/z".to_vec(), z);
    f.spec.init = vec![r("a", 3), r("b", 4), r("c", 5)];
    let out = f.run().unwrap();
    assert_eq!(link(&out.tree, "lib"), "usr/lib");
    assert!(!has(&out.tree, "lib/x"));
    // c's `usr/lib/y/z` turns b's file `usr/lib/y` into a directory.
    assert!(out.tree.get(b"usr/lib/y").unwrap().is_dir());
    assert_eq!(f.read(&out.tree, "usr/lib/y/z"), "z");
    assert_eq!(out.warnings.len(), 2, "{:?}", out.warnings);
    assert!(out.warnings[0].contains("lib replaces a non-empty directory"));
    assert!(out.warnings[1].contains("replaces the non-directory usr/lib/y"));
}

#[test]
fn duplicate_container_names_warn() {
    let mut f = Fixture::new();
    f.image("alpine", "docker.io/library/alpine:latest", &[]);
    f.spec.onboot = vec![container("x", "alpine", 8), container("x", "alpine", 9)];
    let out = f.run().unwrap();
    assert!(has(&out.tree, "containers/onboot/000-x/config.json"));
    assert!(has(&out.tree, "containers/onboot/001-x/config.json"));
    assert_eq!(out.warnings.len(), 1);
    assert!(out.warnings[0].contains("\"x\" is used more than once"));
}
