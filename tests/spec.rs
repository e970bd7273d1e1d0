//! Integration tests: spec. LinuxKit YAML files written to temp dirs and
//! read with `kiln::spec::load`; each bad input pins its `file:line:col`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln::spec::{
    load, load_str, BindNs, Device, FileSource, IdMapping, IdSpec, Interface, MetadataFormat,
    Mount, Spec, SpecError,
};
use tempfile::TempDir;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn load_one(text: &str) -> (TempDir, PathBuf, Result<Spec, SpecError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "test.yml", text);
    let result = load(std::slice::from_ref(&path));
    (dir, path, result)
}

/// Asserts that `text` fails at `line:col` of its file with a message
/// containing `fragment`.
#[track_caller]
fn check_err(text: &str, line: usize, col: usize, fragment: &str) {
    let (_dir, path, result) = load_one(text);
    let err = match result {
        Ok(spec) => panic!("expected an error containing {fragment:?}, got {spec:#?}"),
        Err(e) => e,
    };
    let shown = err.to_string();
    let want_prefix = format!("{}:{line}:{col}: ", path.display());
    assert!(
        shown.starts_with(&want_prefix),
        "want prefix {want_prefix:?}, got {shown:?}"
    );
    assert!(shown.contains(fragment), "want {fragment:?} in {shown:?}");
}

const EXAMPLE: &str = r#"kernel:
  image: linuxkit/kernel:6.6.13
  cmdline: "console=tty0 console=ttyS0 console=ttyAMA0"
init:
  - linuxkit/init:v1.0.0
  - linuxkit/runc:v1.0.0
  - linuxkit/containerd:v1.0.0
  - linuxkit/ca-certificates:v1.0.0
onboot:
  - name: sysctl
    image: linuxkit/sysctl:v1.0.0
  - name: dhcpcd
    image: linuxkit/dhcpcd:v1.0.0
    command: ["/sbin/dhcpcd", "--nobackground", "-f", "/dhcpcd.conf", "-1"]
onshutdown:
  - name: shutdown
    image: busybox:latest
    command: ["/bin/echo", "so long and thanks for all the fish"]
services:
  - name: getty
    image: linuxkit/getty:v1.0.0
    env:
     - INSECURE=true
  - name: rngd
    image: linuxkit/rngd:v1.0.0
  - name: nginx
    image: nginx:1.19.5-alpine
    capabilities:
     - CAP_NET_BIND_SERVICE
     - CAP_CHOWN
     - CAP_SETUID
     - CAP_SETGID
     - CAP_DAC_OVERRIDE
    binds:
     - /etc/resolv.conf:/etc/resolv.conf
files:
  - path: etc/linuxkit-config
    metadata: yaml
"#;

#[test]
fn linuxkit_example_parses() {
    let (_dir, path, result) = load_one(EXAMPLE);
    let spec = result.unwrap();
    let file = path.display().to_string();
    let kernel_image = spec.kernel.image.as_ref().unwrap();
    assert_eq!(kernel_image.reference, "linuxkit/kernel:6.6.13");
    assert_eq!(
        (
            &*kernel_image.pos.file,
            kernel_image.pos.line,
            kernel_image.pos.col
        ),
        (file.as_str(), 2, 10)
    );
    assert_eq!(
        spec.kernel.cmdline.as_deref(),
        Some("console=tty0 console=ttyS0 console=ttyAMA0")
    );
    let init: Vec<_> = spec.init.iter().map(|r| r.reference.as_str()).collect();
    assert_eq!(init[0], "linuxkit/init:v1.0.0");
    assert_eq!(init.len(), 4);
    assert_eq!(spec.init[3].pos.line, 8);
    let names = |imgs: &[kiln::spec::Image]| -> Vec<String> {
        imgs.iter().map(|i| i.name.clone()).collect()
    };
    assert_eq!(names(&spec.onboot), ["sysctl", "dhcpcd"]);
    assert_eq!(names(&spec.onshutdown), ["shutdown"]);
    assert_eq!(names(&spec.services), ["getty", "rngd", "nginx"]);
    assert_eq!(spec.onboot[1].command.as_ref().unwrap().len(), 5);
    assert_eq!(spec.onboot[0].command, None);
    assert_eq!(spec.services[0].env, Some(vec!["INSECURE=true".to_owned()]));
    assert_eq!(spec.services[2].capabilities.as_ref().unwrap().len(), 5);
    assert_eq!(spec.services[2].image.pos.line, 27);
    assert_eq!(spec.files[0].path, "etc/linuxkit-config");
    assert_eq!(
        spec.files[0].source,
        FileSource::Metadata(MetadataFormat::Yaml)
    );
    assert!(spec.warnings.is_empty());
    assert_eq!(spec.raw["services"][2]["name"], "nginx");
    assert_eq!(spec.raw["kernel"]["image"], "linuxkit/kernel:6.6.13");
}

/// A document using every key kiln reads (LinuxKit spelling).
const EVERY_KEY: &str = include_str!("data/spec/every-key.yml");

#[test]
fn every_key_is_typed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    write(dir.path(), "data/src.txt", "x");
    let path = write(dir.path(), "all.yml", EVERY_KEY);
    let spec = load(std::slice::from_ref(&path)).unwrap();

    let k = &spec.kernel;
    assert_eq!(k.image.as_ref().unwrap().reference, "k:1");
    assert_eq!(k.cmdline.as_deref(), Some("console=ttyS0"));
    assert_eq!(k.binary.as_deref(), Some("vmlinuz"));
    assert_eq!(k.tar.as_deref(), Some("none"));
    assert_eq!(k.ucode.as_deref(), Some("intel-ucode.cpio"));
    assert_eq!(k.pos.as_ref().unwrap().line, 2);

    let s = |v: &[&str]| -> Option<Vec<String>> { Some(v.iter().map(|x| x.to_string()).collect()) };
    let img = &spec.onboot[0];
    assert_eq!(img.name, "full");
    assert_eq!(img.image.reference, "full:1");
    assert_eq!(img.capabilities, s(&["all"]));
    assert_eq!(img.capabilities_add, s(&["CAP_NET_ADMIN", "CAP_SYS_TIME"]));
    assert_eq!(img.ambient, s(&["CAP_NET_RAW"]));
    assert_eq!(
        img.mounts,
        Some(vec![Mount {
            destination: "/tmp".into(),
            kind: Some("tmpfs".into()),
            source: Some("tmpfs".into()),
            options: vec!["nosuid".into(), "nodev".into()],
        }])
    );
    assert_eq!(img.binds, s(&["/a:/a"]));
    assert_eq!(img.binds_add, s(&["/b:/b:ro"]));
    assert_eq!(img.tmpfs, s(&["/run"]));
    assert_eq!(
        img.devices,
        Some(vec![
            Device {
                path: "/dev/console".into(),
                kind: "c".into(),
                major: 5,
                minor: 1,
                mode: Some(0o666),
            },
            Device {
                path: "all".into(),
                kind: "a".into(),
                major: 0,
                minor: 0,
                mode: None,
            },
        ])
    );
    assert_eq!(img.command, s(&["/bin/sh", "-c", "echo hi"]));
    assert_eq!(img.env, s(&["A=1"]));
    assert_eq!(img.cwd.as_deref(), Some("/root"));
    for ns in [&img.net, &img.pid, &img.ipc, &img.uts, &img.userns] {
        assert_eq!(ns.as_deref(), Some("host"));
    }
    assert_eq!(img.hostname.as_deref(), Some("box"));
    assert_eq!(img.readonly, Some(true));
    assert_eq!(img.masked_paths, s(&["/proc/kcore"]));
    assert_eq!(img.readonly_paths, s(&["/proc/sys"]));
    assert_eq!(img.uid, Some(IdSpec::Id(1000)));
    assert_eq!(img.gid, Some(IdSpec::Name("wheel".into())));
    assert_eq!(
        img.additional_gids,
        Some(vec![IdSpec::Id(10), IdSpec::Name("audio".into())])
    );
    assert_eq!(img.no_new_privileges, Some(true));
    assert_eq!(img.oom_score_adj, Some(-500));
    assert_eq!(img.rootfs_propagation.as_deref(), Some("shared"));
    assert_eq!(img.cgroups_path.as_deref(), Some("/kiln/full"));
    assert_eq!(
        img.resources,
        Some(serde_json::json!({"memory": {"limit": 1048576}, "pids": {"limit": 100}}))
    );
    let sysctl = img.sysctl.as_ref().unwrap();
    assert_eq!(sysctl["net.ipv4.ip_forward"], "1");
    assert_eq!(img.rlimits, s(&["nofile,1024,2048"]));
    let mapping = |h| IdMapping {
        container_id: 0,
        host_id: h,
        size: if h == 100000 { 65536 } else { 1 },
    };
    assert_eq!(img.uid_mappings, Some(vec![mapping(100000)]));
    assert_eq!(img.gid_mappings, Some(vec![mapping(200000)]));
    assert_eq!(img.annotations.as_ref().unwrap()["org.example/x"], "y");
    let rt = img.runtime.as_ref().unwrap();
    assert_eq!(rt.cgroups, s(&["systemreserved"]));
    assert_eq!(rt.mounts.as_ref().unwrap()[0].options, ["rbind"]);
    assert_eq!(rt.mkdir, s(&["/var/lib/full"]));
    assert_eq!(
        rt.interfaces,
        Some(vec![Interface {
            name: "eth0".into(),
            add: Some("veth".into()),
            peer: Some("veth-full".into()),
            create_in_root: true,
        }])
    );
    let p = |x: &str| Some(format!("/run/netns/{x}"));
    assert_eq!(
        rt.bind_ns,
        Some(BindNs {
            cgroup: p("c"),
            ipc: p("i"),
            mnt: p("m"),
            net: p("n"),
            pid: p("p"),
            user: p("u"),
            uts: p("t"),
        })
    );
    assert_eq!(rt.namespace.as_deref(), Some("ns"));
    assert!(spec.onshutdown.is_empty() && spec.services.is_empty());

    let f = &spec.files;
    assert_eq!(
        (f[0].path.as_str(), &f[0].source, f[0].mode),
        ("etc/dir", &FileSource::Directory, Some(0o755))
    );
    assert_eq!(f[1].source, FileSource::Symlink("/etc/target".into()));
    assert_eq!(f[2].source, FileSource::Contents("hello\n".into()));
    assert_eq!(f[2].mode, Some(0o644));
    assert_eq!(f[2].uid, Some(IdSpec::Id(0)));
    assert_eq!(f[2].gid, Some(IdSpec::Name("root".into())));
    assert_eq!(
        f[3].source,
        FileSource::Source(dir.path().join("data/src.txt"))
    );
    assert_eq!(f[4].source, FileSource::Metadata(MetadataFormat::Json));
    assert!(f[5].optional);
    assert_eq!(
        f[5].source,
        FileSource::Source(dir.path().join("missing.txt"))
    );
    assert_eq!(f[6].source, FileSource::Contents(String::new()));

    let v = &spec.volumes[0];
    assert_eq!(v.name, "vol_1");
    assert_eq!(v.image.as_ref().unwrap().reference, "v:1");
    assert!(v.readonly);
    assert_eq!(v.format.as_deref(), Some("oci"));
    assert_eq!(v.platforms, ["linux/amd64", "linux/arm64"]);
    assert_eq!(spec.volumes[1].image, None);

    assert_eq!(spec.warnings.len(), 1);
    assert_eq!(
        spec.warnings[0],
        format!(
            "{}:113:1: `trust:` is ignored: kiln checks digest pins and signatures instead",
            path.display()
        )
    );
    assert!(spec.raw.get("trust").is_none());
    assert_eq!(spec.raw["onboot"][0]["oomScoreAdj"], -500);
}

#[test]
fn merge_concatenates_lists_and_later_kernel_fields_win() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        dir.path(),
        "a.yml",
        "kernel:\n  image: k:1\n  cmdline: a\ninit: [i:1]\nservices:\n  - name: s1\n    image: s:1\nfiles:\n  - path: a\n    contents: a\n",
    );
    let b = write(
        dir.path(),
        "b.yml",
        "kernel:\n  cmdline: b\n  binary: bz\ninit: [i:2]\nonboot:\n  - name: o1\n    image: o:1\nservices:\n  - name: s2\n    image: s:2\nfiles:\n  - path: b\n    contents: b\n",
    );
    let spec = load(&[a.clone(), b.clone()]).unwrap();
    let kimg = spec.kernel.image.as_ref().unwrap();
    assert_eq!(kimg.reference, "k:1");
    assert_eq!(&*kimg.pos.file, a.display().to_string());
    assert_eq!(spec.kernel.cmdline.as_deref(), Some("b"));
    assert_eq!(spec.kernel.binary.as_deref(), Some("bz"));
    let refs: Vec<_> = spec.init.iter().map(|r| r.reference.as_str()).collect();
    assert_eq!(refs, ["i:1", "i:2"]);
    let names: Vec<_> = spec.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["s1", "s2"]);
    assert_eq!(&*spec.services[1].pos.file, b.display().to_string());
    assert_eq!(spec.onboot[0].name, "o1");
    assert_eq!(spec.files.len(), 2);
    assert_eq!(
        spec.raw,
        serde_json::json!({
            "kernel": {"image": "k:1", "cmdline": "b", "binary": "bz"},
            "init": ["i:1", "i:2"],
            "onboot": [{"name": "o1", "image": "o:1"}],
            "services": [{"name": "s1", "image": "s:1"}, {"name": "s2", "image": "s:2"}],
            "files": [{"path": "a", "contents": "a"}, {"path": "b", "contents": "b"}],
        })
    );
    // Reversed order: the other file's kernel image and cmdline win.
    let spec = load(&[b, a]).unwrap();
    assert_eq!(spec.kernel.cmdline.as_deref(), Some("a"));
    assert_eq!(spec.init[0].reference, "i:2");
}

#[test]
fn merge_checks_duplicate_names_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        dir.path(),
        "a.yml",
        "services:\n  - name: x\n    image: x:1\n",
    );
    let b = write(
        dir.path(),
        "b.yml",
        "services:\n  - name: y\n    image: y:1\n  - name: x\n    image: x:2\n",
    );
    let err = load(&[a.clone(), b.clone()]).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}:4:5: services[1]: duplicate service name `x` (first used at {}:2:5)",
            b.display(),
            a.display()
        )
    );
}

#[test]
fn load_str_resolves_sources_against_base_dir() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "s.txt", "x");
    let spec = load_str(
        "inline.yml",
        "files:\n  - path: s\n    source: s.txt\n",
        dir.path(),
    )
    .unwrap();
    assert_eq!(
        spec.files[0].source,
        FileSource::Source(dir.path().join("s.txt"))
    );
    let err = load_str(
        "inline.yml",
        "files:\n  - path: s\n    source: s.txt\n",
        Path::new("/nonexistent-kiln"),
    )
    .unwrap_err();
    assert_eq!((err.pos.line, err.pos.col), (3, 13));
}

#[test]
fn empty_file_is_an_empty_spec() {
    let (_dir, _path, result) = load_one("# nothing here\n");
    let spec = result.unwrap();
    assert!(spec.services.is_empty() && spec.kernel.image.is_none());
    assert_eq!(spec.raw, serde_json::json!({}));
}

#[test]
fn unreadable_yaml_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.yml");
    let err = load(std::slice::from_ref(&path)).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: cannot read yaml file: ", path.display())),
        "{err}"
    );
}

// ---- one test per bad input ----

/// One test per bad input: `name: yaml, line:col, message fragment;`.
macro_rules! bad_input {
    ($($name:ident: $yaml:expr, $line:literal:$col:literal, $fragment:expr;)*) => {
        $(
            #[test]
            fn $name() {
                check_err($yaml, $line, $col, $fragment);
            }
        )*
    };
}

bad_input! {
    unknown_top_level_key_suggests:
        "kernel:\n  image: k\nservice:\n  - name: a\n",
        3:1, "unknown key `service`; did you mean `services`?";
    unknown_image_key_names_the_path:
        "services:\n  - name: a\n    image: a:1\n  - name: b\n    image: b:1\n    capabilites: [all]\n",
        6:5, "services[1]: unknown key `capabilites`; did you mean `capabilities`?";
    unknown_kernel_key:
        "kernel:\n  imgae: k\n",
        2:3, "kernel: unknown key `imgae`; did you mean `image`?";
    unknown_resources_key:
        "onboot:\n  - name: a\n    image: a:1\n    resources:\n      memroy: {}\n",
        5:7, "onboot[0].resources: unknown key `memroy`; did you mean `memory`?";
    wrong_type_sequence_for_string:
        "services:\n  - name: a\n    image: a:1\n    cwd: [x]\n",
        4:10, "services[0].cwd: expected a string, found a sequence";
    wrong_type_string_for_boolean:
        "services:\n  - name: a\n    image: a:1\n    readonly: \"yes\"\n",
        4:15, "services[0].readonly: expected a boolean, found a string";
    wrong_type_mapping_for_list:
        "init:\n  a: b\n",
        2:3, "init: expected a sequence, found a mapping";
    unknown_capability:
        "services:\n  - name: a\n    image: a:1\n    capabilities:\n      - CAP_CHOWN\n      - CAP_FLY\n",
        6:9, "services[0].capabilities[1]: unknown capability `CAP_FLY`";
    missing_name:
        "onboot:\n  - image: a:1\n",
        2:5, "onboot[0]: missing `name`";
    missing_image:
        "onshutdown:\n  - name: a\n",
        2:5, "onshutdown[0]: missing `image`";
    duplicate_volume_name:
        "volumes:\n  - name: v\n  - name: v\n",
        3:5, "volumes[1]: duplicate volume name `v`";
    invalid_volume_name:
        "volumes:\n  - name: Big/Vol\n",
        2:11, "invalid volume name `Big/Vol`";
    image_name_with_slash:
        "services:\n  - name: ../evil\n    image: a:1\n",
        2:11, "services[0].name: `../evil` is not a valid name";
    two_content_sources:
        "files:\n  - path: etc/x\n    contents: a\n    symlink: /b\n",
        4:5, "files[0]: more than one content source: `contents` and `symlink`";
    directory_with_metadata:
        "files:\n  - path: etc/x\n    directory: true\n    metadata: yaml\n",
        4:5, "more than one content source: `directory` and `metadata`";
    file_path_with_dotdot:
        "files:\n  - path: etc/../../x\n    contents: a\n",
        2:11, "files[0].path: `etc/../../x` has a `..` component";
    file_path_empty:
        "files:\n  - path: \"/\"\n    contents: a\n",
        2:11, "files[0].path: empty file path";
    file_path_missing:
        "files:\n  - contents: a\n",
        2:5, "files[0]: missing `path`";
    source_unreadable:
        "files:\n  - path: etc/x\n    source: does-not-exist.txt\n",
        3:13, "files[0].source: cannot read `";
    invalid_metadata:
        "files:\n  - path: etc/x\n    metadata: toml\n",
        3:15, "files[0].metadata: metadata must be `yaml` or `json`, not `toml`";
    invalid_file_mode:
        "files:\n  - path: etc/x\n    contents: a\n    mode: \"0999\"\n",
        4:11, "files[0].mode: `0999` is not an octal mode";
    uid_mapping_out_of_range:
        "services:\n  - name: a\n    image: a:1\n    uidMappings: [{containerID: -1, hostID: 0, size: 1}]\n",
        4:33, "services[0].uidMappings[0].containerID: -1 is out of range";
    duplicate_key:
        "services:\n  - name: a\n    image: a:1\n    name: b\n",
        4:5, "duplicate key `name` (first at line 2 column 5)";
    second_document:
        "init: [a]\n---\ninit: [b]\n",
        2:1, "more than one yaml document";
    file_name_over_name_max:
        &format!("files:\n  - path: etc/{}\n    contents: x\n", "n".repeat(256)),
        2:11, "file path has a name over 255 bytes";
    file_name_with_nul:
        "files:\n  - path: \"etc/a\\0b\"\n    contents: x\n",
        2:11, "file path contains a NUL byte";
    syntax_error_has_parser_position:
        "services:\n  - name: a\n   image: b\n",
        3:4, "yaml syntax error: ";
}

#[test]
fn duplicate_service_name_reports_both_positions() {
    let (_dir, path, result) =
        load_one("services:\n  - name: dup\n    image: a:1\n  - name: dup\n    image: b:1\n");
    let err = result.unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{0}:4:5: services[1]: duplicate service name `dup` (first used at {0}:2:5)",
            path.display()
        )
    );
}

/// As in LinuxKit: onboot and onshutdown entries may share a name (their
/// directories are `000-mount`, `001-mount`), and so may entries of different
/// sections.
#[test]
fn repeated_onboot_names_and_names_across_sections_are_accepted() {
    let (_dir, _path, result) = load_one(
        "onboot:\n  - name: mount\n    image: a:1\n  - name: mount\n    image: a:1\n\
         onshutdown:\n  - name: mount\n    image: a:1\n  - name: mount\n    image: a:1\n\
         services:\n  - name: mount\n    image: b:1\n",
    );
    let spec = result.unwrap();
    let names =
        |imgs: &[kiln::spec::Image]| imgs.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&spec.onboot), ["mount", "mount"]);
    assert_eq!(names(&spec.onshutdown), ["mount", "mount"]);
    assert_eq!(names(&spec.services), ["mount"]);
}

/// `destination` is optional in `mounts:` (image entries, labels and
/// `runtime.mounts`), as in LinuxKit's schema; assemble fills it in.
#[test]
fn mounts_without_destination_parse() {
    let (_dir, _path, result) = load_one(
        "services:\n  - name: a\n    image: a:1\n    mounts:\n      - type: cgroup\n        options: [rw]\n\
         \x20   runtime:\n      mounts:\n        - type: bind\n          source: /x\n",
    );
    let spec = result.unwrap();
    let img = &spec.services[0];
    let m = &img.mounts.as_ref().unwrap()[0];
    assert_eq!(
        (m.destination.as_str(), m.kind.as_deref()),
        ("", Some("cgroup"))
    );
    let rt = img.runtime.as_ref().unwrap().mounts.as_ref().unwrap();
    assert_eq!(
        (rt[0].destination.as_str(), rt[0].source.as_deref()),
        ("", Some("/x"))
    );
    let label = kiln::spec::label(r#"{"mounts":[{"type":"proc"}]}"#, "x:1").unwrap();
    assert_eq!(label.mounts.unwrap()[0].destination, "");
}

#[test]
fn capabilities_none_parses_for_capabilities_and_ambient() {
    let (_dir, _path, result) = load_one(
        "services:\n  - name: a\n    image: a:1\n    capabilities: [none]\n    ambient: [NONE]\n",
    );
    let img = &result.unwrap().services[0];
    let none = Some(vec!["none".to_string()]);
    assert_eq!(img.capabilities, none);
    assert_eq!(img.ambient, none);
}

#[test]
fn optional_source_may_be_missing() {
    let (_dir, _path, result) =
        load_one("files:\n  - path: etc/x\n    optional: true\n    source: ~/kiln-test-absent\n");
    let spec = result.unwrap();
    let FileSource::Source(p) = &spec.files[0].source else {
        panic!("not a source: {:?}", spec.files[0].source)
    };
    assert!(
        p.ends_with("kiln-test-absent") && !p.starts_with("~"),
        "{p:?}"
    );
}

#[test]
fn alias_bomb_fails_fast() {
    let mut text = String::from("x: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..12 {
        let p = format!("*a{}", i - 1);
        let row = [p.as_str(); 9].join(", ");
        text.push_str(&format!("x{i}: &a{i} [{row}]\n"));
    }
    text.push_str("services: [*a11]\n");
    let start = Instant::now();
    check_err(&text, 5, 5, "alias expansion exceeds 100000 nodes");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn file_without_content_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "f.yml",
        "files:\n  - path: etc/x\n    mode: \"0644\"\n",
    );
    let err = load(std::slice::from_ref(&path)).unwrap_err().to_string();
    assert!(err.ends_with("f.yml:2:5: files[0]: no content: give one of `contents`, `source`, `metadata`, `symlink` or `directory: true`"), "{err}");
}
