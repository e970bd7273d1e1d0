//! Tests for `config.json` and `runtime.json`: every precedence rule, the
//! mount, namespace, capability, rlimit, id and device handling, and the error
//! messages (snapshots are in `tests_snapshots`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::*;
use crate::spec::{BindNs, Device, IdSpec, Image, ImageRef, Mount, Pos, Runtime, Volume};

fn pos(line: usize) -> Pos {
    Pos {
        file: Arc::from("test.yml"),
        line,
        col: 5,
    }
}

fn image(name: &str) -> Image {
    Image {
        name: name.into(),
        image: ImageRef {
            reference: "alpine".into(),
            pos: pos(4),
        },
        pos: pos(3),
        ..Image::default()
    }
}

fn s(v: &[&str]) -> Option<Vec<String>> {
    Some(v.iter().map(|x| x.to_string()).collect())
}

fn label(f: impl FnOnce(&mut Image)) -> ImageDefaults {
    let mut l = Image::default();
    f(&mut l);
    ImageDefaults {
        label: Some(l),
        ..ImageDefaults::default()
    }
}

fn config(img: &Image, d: &ImageDefaults) -> Value {
    config_with(img, d, &IdMap::default(), &[])
}

fn config_with(img: &Image, d: &ImageDefaults, ids: &IdMap, vols: &[Volume]) -> Value {
    let bytes = config_json(img, d, ids, vols).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn err(img: &Image, d: &ImageDefaults) -> String {
    err_with(img, d, &IdMap::default(), &[])
}

fn err_with(img: &Image, d: &ImageDefaults, ids: &IdMap, vols: &[Volume]) -> String {
    let e = config_json(img, d, ids, vols).unwrap_err().to_string();
    assert!(e.starts_with("test.yml:3:5: container \"c\": "), "{e}");
    e
}

fn mount_for<'a>(v: &'a Value, dest: &str) -> &'a Value {
    v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == dest)
        .unwrap_or_else(|| panic!("no mount {dest} in {v}"))
}

// ---- precedence -------------------------------------------------------------

#[test]
fn args_yaml_over_label_over_entrypoint_cmd() {
    let mut d = ImageDefaults {
        entrypoint: s(&["/init"]),
        cmd: s(&["--flag"]),
        ..ImageDefaults::default()
    };
    let mut img = image("c");
    assert_eq!(
        config(&img, &d)["process"]["args"],
        json!(["/init", "--flag"])
    );
    d.label = Some(Image {
        command: s(&["/label"]),
        ..Image::default()
    });
    assert_eq!(config(&img, &d)["process"]["args"], json!(["/label"]));
    img.command = s(&["/yaml"]);
    assert_eq!(config(&img, &d)["process"]["args"], json!(["/yaml"]));
    // Nothing anywhere: args omitted.
    assert!(config(&image("c"), &ImageDefaults::default())["process"]
        .get("args")
        .is_none());
}

#[test]
fn env_yaml_over_label_over_image_without_path_default() {
    let mut d = ImageDefaults {
        env: s(&["PATH=/bin"]),
        ..ImageDefaults::default()
    };
    let mut img = image("c");
    assert_eq!(config(&img, &d)["process"]["env"], json!(["PATH=/bin"]));
    d.label = Some(Image {
        env: s(&["A=label"]),
        ..Image::default()
    });
    assert_eq!(config(&img, &d)["process"]["env"], json!(["A=label"]));
    img.env = s(&["A=yaml"]);
    assert_eq!(config(&img, &d)["process"]["env"], json!(["A=yaml"]));
    assert!(config(&image("c"), &ImageDefaults::default())["process"]
        .get("env")
        .is_none());
}

#[test]
fn cwd_non_empty_yaml_over_label_over_workdir_over_root() {
    let mut d = ImageDefaults::default();
    let mut img = image("c");
    assert_eq!(config(&img, &d)["process"]["cwd"], "/");
    d.working_dir = Some("/work".into());
    assert_eq!(config(&img, &d)["process"]["cwd"], "/work");
    d.label = Some(Image {
        cwd: Some("/label".into()),
        ..Image::default()
    });
    assert_eq!(config(&img, &d)["process"]["cwd"], "/label");
    img.cwd = Some(String::new()); // empty falls through
    assert_eq!(config(&img, &d)["process"]["cwd"], "/label");
    img.cwd = Some("/yaml".into());
    assert_eq!(config(&img, &d)["process"]["cwd"], "/yaml");
}

#[test]
fn explicit_empty_yaml_list_overrides_label() {
    let d = label(|l| l.tmpfs = s(&["/run"]));
    let mut img = image("c");
    assert!(config(&img, &d)["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["destination"] == "/run"));
    img.tmpfs = Some(vec![]);
    assert!(!config(&img, &d)["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["destination"] == "/run"));
}

#[test]
fn binds_replace_or_label_plus_add_deduplicated() {
    let d = label(|l| {
        l.binds = s(&["/a:/a", "/b:/b"]);
        // A label's own `.add` is ignored, as in LinuxKit.
        l.binds_add = s(&["/ignored:/ignored"]);
    });
    let mut img = image("c");
    img.binds_add = s(&["/b:/b", "/c:/c"]);
    let v = config(&img, &d);
    let dests: Vec<_> = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "bind")
        .map(|m| m["destination"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(dests, ["/a", "/b", "/c"]);
    let eff = merge::effective(&img, &d);
    assert_eq!(eff.binds.len(), 3, "duplicates removed: {:?}", eff.binds);
    // yaml binds replace, and make binds.add ignored.
    img.binds = s(&["/y:/y"]);
    let v = config(&img, &d);
    let binds: Vec<_> = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "bind")
        .collect();
    assert_eq!(binds.len(), 1);
    assert_eq!(binds[0]["source"], "/y");
}

#[test]
fn capabilities_replace_or_label_plus_add() {
    let d = label(|l| l.capabilities = s(&["CAP_SYS_ADMIN", "CAP_CHOWN"]));
    let mut img = image("c");
    img.capabilities_add = s(&["CAP_NET_ADMIN", "CAP_CHOWN"]);
    let caps = &config(&img, &d)["process"]["capabilities"];
    assert_eq!(
        caps["effective"],
        json!(["CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"])
    );
    img.capabilities = s(&["CAP_KILL"]);
    let caps = &config(&img, &d)["process"]["capabilities"];
    assert_eq!(caps["effective"], json!(["CAP_KILL"]));
    assert_eq!(caps["bounding"], json!(["CAP_KILL"]));
}

#[test]
fn scalar_fields_yaml_over_label_over_default() {
    let d = label(|l| {
        l.readonly = Some(true);
        l.no_new_privileges = Some(true);
        l.oom_score_adj = Some(-100);
        l.hostname = Some("label".into());
        l.cgroups_path = Some("/label".into());
        l.rootfs_propagation = Some("shared".into());
        l.uid = Some(IdSpec::Id(5));
        l.gid = Some(IdSpec::Id(6));
        l.additional_gids = Some(vec![IdSpec::Id(7)]);
        l.sysctl = Some(BTreeMap::from([("a".into(), "1".into())]));
        l.annotations = Some(BTreeMap::from([("x".into(), "1".into())]));
        l.masked_paths = s(&["/m"]);
        l.readonly_paths = s(&["/r"]);
    });
    let img = image("c");
    let v = config(&img, &d);
    assert_eq!(v["root"], json!({"path": "rootfs", "readonly": true}));
    assert_eq!(v["process"]["noNewPrivileges"], true);
    assert_eq!(v["process"]["oomScoreAdj"], -100);
    assert_eq!(v["hostname"], "label");
    assert_eq!(v["linux"]["cgroupsPath"], "/label");
    assert_eq!(v["linux"]["rootfsPropagation"], "shared");
    assert_eq!(
        v["process"]["user"],
        json!({"uid": 5, "gid": 6, "additionalGids": [7]})
    );
    assert_eq!(v["linux"]["sysctl"], json!({"a": "1"}));
    assert_eq!(v["annotations"], json!({"x": "1"}));
    assert_eq!(v["linux"]["maskedPaths"], json!(["/m"]));
    assert_eq!(v["linux"]["readonlyPaths"], json!(["/r"]));
    assert_eq!(
        mount_for(&v, "/dev")["options"]
            .as_array()
            .unwrap()
            .last()
            .unwrap(),
        "ro"
    );

    let mut img = image("c");
    img.readonly = Some(false);
    img.no_new_privileges = Some(false);
    img.oom_score_adj = Some(0);
    img.hostname = Some("yaml".into());
    img.cgroups_path = Some(String::new());
    img.uid = Some(IdSpec::Id(1));
    img.sysctl = Some(BTreeMap::from([("b".into(), "2".into())]));
    img.annotations = Some(BTreeMap::new());
    let v = config(&img, &d);
    assert_eq!(v["root"], json!({"path": "rootfs"}));
    assert!(v["process"].get("noNewPrivileges").is_none());
    assert_eq!(v["process"]["oomScoreAdj"], 0);
    assert_eq!(v["hostname"], "yaml");
    assert!(
        v["linux"].get("cgroupsPath").is_none(),
        "explicit empty wins"
    );
    assert_eq!(v["process"]["user"]["uid"], 1);
    assert_eq!(
        v["linux"]["sysctl"],
        json!({"b": "2"}),
        "maps replaced, not merged"
    );
    assert!(v.get("annotations").is_none());
}

#[test]
fn runtime_per_field_and_bind_ns_per_key() {
    let d = label(|l| {
        l.runtime = Some(Runtime {
            cgroups: s(&["label"]),
            mkdir: s(&["/label"]),
            bind_ns: Some(BindNs {
                net: Some("/run/netns/label".into()),
                pid: Some("/run/pid/label".into()),
                ..BindNs::default()
            }),
            ..Runtime::default()
        })
    });
    let mut img = image("c");
    img.runtime = Some(Runtime {
        mkdir: s(&["/yaml"]),
        bind_ns: Some(BindNs {
            net: Some("/run/netns/yaml".into()),
            ..BindNs::default()
        }),
        namespace: Some("ns".into()),
        ..Runtime::default()
    });
    let rt = runtime_spec(
        &img,
        &d,
        &Bundle {
            dir: "containers/services/c".into(),
            root: "containers/services/c/rootfs".into(),
            readonly: true,
        },
    );
    assert_eq!(rt.cgroups, ["label"]);
    assert_eq!(rt.mkdir, ["/yaml"]);
    assert_eq!(rt.bind_ns.net, "/run/netns/yaml");
    assert_eq!(rt.bind_ns.pid, "/run/pid/label");
    assert_eq!(rt.bind_ns.ipc, "");
    assert_eq!(rt.namespace, "ns");
}

// ---- mounts -----------------------------------------------------------------

#[test]
fn default_mounts_sorted_with_exact_options() {
    let v = config(&image("c"), &ImageDefaults::default());
    let compact: Vec<String> = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.to_string())
        .collect();
    assert_eq!(
        compact,
        [
            r#"{"destination":"/dev","options":["nosuid","strictatime","mode=755","size=65536k"],"source":"tmpfs","type":"tmpfs"}"#,
            r#"{"destination":"/dev/pts","options":["nosuid","noexec","newinstance","ptmxmode=0666","mode=0620"],"source":"devpts","type":"devpts"}"#,
            r#"{"destination":"/proc","options":["nosuid","nodev","noexec","relatime"],"source":"proc","type":"proc"}"#,
            r#"{"destination":"/sys","options":["nosuid","noexec","nodev"],"source":"sysfs","type":"sysfs"}"#,
            r#"{"destination":"/sys/fs/cgroup","options":["nosuid","noexec","nodev","relatime","ro"],"source":"cgroup","type":"cgroup"}"#,
        ]
    );
}

#[test]
fn bind_parsing() {
    use super::mounts::parse_bind;
    let b = parse_bind("/var:/var").unwrap();
    assert_eq!(
        (b.source.as_str(), b.destination.as_str()),
        ("/var", "/var")
    );
    assert_eq!(b.options, ["rw", "rbind", "rshared"]);
    assert_eq!(parse_bind("/a:/b:ro").unwrap().options, ["ro", "rbind"]);
    // rbind is never doubled; an explicit `bind` stays non-recursive.
    assert_eq!(
        parse_bind("/a:/b:rshared,rbind").unwrap().options,
        ["rshared", "rbind"]
    );
    assert_eq!(parse_bind("/a:/b:bind,ro").unwrap().options, ["bind", "ro"]);
    assert!(parse_bind("/a").is_none());
    assert!(parse_bind("/a:/b:ro:x").is_none());
}

#[test]
fn tmpfs_parsing() {
    use super::mounts::parse_tmpfs;
    let t = parse_tmpfs("/run").unwrap();
    assert_eq!((t.kind.as_str(), t.source.as_str()), ("tmpfs", "tmpfs"));
    assert!(t.options.is_empty());
    assert_eq!(
        parse_tmpfs("/tmp:size=1m,mode=1777").unwrap().options,
        ["size=1m", "mode=1777"]
    );
    assert!(parse_tmpfs("/a:b:c").is_none());
}

#[test]
fn full_mounts_fill_type_source_destination_and_override_defaults() {
    let mut img = image("c");
    img.mounts = Some(vec![
        Mount {
            destination: String::new(),
            kind: None,
            source: Some("mqueue".into()),
            options: vec![],
        },
        Mount {
            destination: "/dev".into(),
            kind: None,
            source: None,
            options: vec!["size=1k".into()],
        },
        Mount {
            destination: "/data".into(),
            kind: Some("bind".into()),
            source: Some("/host".into()),
            options: vec!["rbind".into()],
        },
    ]);
    let v = config(&img, &ImageDefaults::default());
    assert_eq!(
        mount_for(&v, "/dev/mqueue"),
        &json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"})
    );
    assert_eq!(
        mount_for(&v, "/dev"),
        &json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["size=1k"]})
    );
    assert_eq!(mount_for(&v, "/data")["source"], "/host");
}

#[test]
fn volume_names_in_binds_and_mounts_are_rewritten() {
    let vols = [
        Volume {
            name: "data".into(),
            image: None,
            readonly: false,
            format: None,
            platforms: vec![],
            pos: pos(20),
        },
        Volume {
            name: "ro".into(),
            image: None,
            readonly: true,
            format: None,
            platforms: vec![],
            pos: pos(21),
        },
    ];
    let mut img = image("c");
    img.binds = s(&["data:/data", "ro:/ro:ro,rshared"]);
    img.mounts = Some(vec![Mount {
        destination: "/m".into(),
        kind: Some("bind".into()),
        source: Some("data".into()),
        options: vec!["rw".into()],
    }]);
    let v = config_with(&img, &ImageDefaults::default(), &IdMap::default(), &vols);
    assert_eq!(
        mount_for(&v, "/data")["source"],
        "/containers/volumes/data/merged"
    );
    assert_eq!(
        mount_for(&v, "/ro")["source"],
        "/containers/volumes/ro/merged"
    );
    assert_eq!(
        mount_for(&v, "/m")["source"],
        "/containers/volumes/data/merged"
    );

    img.binds = s(&["ro:/ro"]);
    let e = err_with(&img, &ImageDefaults::default(), &IdMap::default(), &vols);
    assert!(e.contains("volume \"ro\" is read-only"), "{e}");
    img.binds = s(&["nope:/x"]);
    let e = err_with(&img, &ImageDefaults::default(), &IdMap::default(), &vols);
    assert!(e.contains("no volume named \"nope\""), "{e}");
}

// ---- namespaces, capabilities, rlimits, ids, devices ------------------------

fn ns(img: &Image) -> Value {
    config(img, &ImageDefaults::default())["linux"]["namespaces"].clone()
}

#[test]
fn namespace_rules() {
    let mut img = image("c");
    assert_eq!(ns(&img), json!([{"type": "pid"}, {"type": "mount"}]));
    img.net = Some("new".into());
    img.ipc = Some("none".into());
    img.uts = Some("/run/uts".into());
    img.pid = Some("host".into());
    img.userns = Some("new".into());
    assert_eq!(
        ns(&img),
        json!([
            {"type": "network"}, {"type": "ipc"}, {"type": "uts", "path": "/run/uts"},
            {"type": "user"}, {"type": "mount"}
        ])
    );
    let mut img = image("c");
    img.net = Some("none".into());
    img.pid = Some("/proc/1/ns/pid".into());
    assert_eq!(
        ns(&img),
        json!([{"type": "network"}, {"type": "pid", "path": "/proc/1/ns/pid"}, {"type": "mount"}])
    );
    // An empty yaml value falls through to the label.
    let d = label(|l| l.net = Some("new".into()));
    img.net = Some(String::new());
    assert_eq!(
        config(&img, &d)["linux"]["namespaces"][0],
        json!({"type": "network"})
    );
}

#[test]
fn capability_all_none_sorting_and_ambient() {
    let mut img = image("c");
    img.capabilities = s(&["all"]);
    let caps = &config(&img, &ImageDefaults::default())["process"]["capabilities"];
    assert_eq!(
        caps["effective"].as_array().unwrap().len(),
        spec::CAPABILITIES.len()
    );
    // `["all", X]` (label `[all]` plus `.add`) is all.
    let d = label(|l| l.capabilities = s(&["all"]));
    let mut img = image("c");
    img.capabilities_add = s(&["CAP_SYS_ADMIN"]);
    let caps = &config(&img, &d)["process"]["capabilities"];
    assert_eq!(
        caps["bounding"].as_array().unwrap().len(),
        spec::CAPABILITIES.len()
    );
    // none → no capabilities at all, object kept.
    let mut img = image("c");
    img.capabilities = s(&["NONE"]);
    assert_eq!(
        config(&img, &ImageDefaults::default())["process"]["capabilities"],
        json!({})
    );
    // none among other names is an error that says so (LinuxKit: "unknown
    // capability: none").
    let mut with_others = image("c");
    with_others.ambient = s(&["none", "CAP_CHOWN"]);
    assert!(err(&with_others, &ImageDefaults::default())
        .contains("capability `none` in the yaml must be the list's only entry"));
    // ambient joins the bounding set; effective and ambient are sorted.
    img.capabilities = s(&["CAP_SYS_ADMIN", "CAP_CHOWN", "CAP_SYS_ADMIN"]);
    img.ambient = s(&["CAP_NET_RAW", "CAP_KILL"]);
    let caps = &config(&img, &ImageDefaults::default())["process"]["capabilities"];
    assert_eq!(caps["effective"], json!(["CAP_CHOWN", "CAP_SYS_ADMIN"]));
    assert_eq!(caps["ambient"], json!(["CAP_KILL", "CAP_NET_RAW"]));
    let all4 = json!(["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SYS_ADMIN"]);
    assert_eq!(caps["bounding"], all4);
    assert_eq!(caps["permitted"], all4);
    assert_eq!(caps["inheritable"], all4);
}

#[test]
fn rlimit_parsing() {
    use super::runtime_config::rlimit;
    let r = rlimit(" nofile , 100, unlimited", Origin::Yaml).unwrap();
    assert_eq!(
        (r.kind.as_str(), r.soft, r.hard),
        ("RLIMIT_NOFILE", 100, u64::MAX)
    );
    let r = rlimit("RLIMIT_CORE,0,UNLIMITED", Origin::Yaml).unwrap();
    assert_eq!(
        (r.kind.as_str(), r.soft, r.hard),
        ("RLIMIT_CORE", 0, u64::MAX)
    );
    assert!(rlimit("nofile,100", Origin::Yaml).is_err());
    assert!(rlimit("nofile,1,-2", Origin::Yaml).is_err());
    let e = rlimit("bogus,1,2", Origin::Label).unwrap_err().to_string();
    assert!(
        e.contains("unknown limit RLIMIT_BOGUS") && e.contains("label"),
        "{e}"
    );
    let mut img = image("c");
    img.rlimits = s(&["nofile,1,2", "core,3,4"]);
    assert_eq!(
        config(&img, &ImageDefaults::default())["process"]["rlimits"],
        json!([{"type": "RLIMIT_NOFILE", "hard": 2, "soft": 1}, {"type": "RLIMIT_CORE", "hard": 4, "soft": 3}])
    );
}

#[test]
fn ids_from_container_names_and_numbers() {
    let ids = IdMap::from_names(["first", "c"]);
    let mut img = image("c");
    img.uid = Some(IdSpec::Name("c".into()));
    img.gid = Some(IdSpec::Name("1000".into()));
    img.additional_gids = Some(vec![
        IdSpec::Name("first".into()),
        IdSpec::Name("root".into()),
    ]);
    let v = config_with(&img, &ImageDefaults::default(), &ids, &[]);
    assert_eq!(
        v["process"]["user"],
        json!({"uid": 101, "gid": 1000, "additionalGids": [100, 0]})
    );
}

#[test]
fn devices_and_cgroup_rules() {
    let mut img = image("c");
    img.resources =
        Some(json!({"memory": {"limit": 1000}, "devices": [{"allow": false, "access": "rwm"}]}));
    img.devices = Some(vec![
        Device {
            path: "all".into(),
            kind: "b".into(),
            major: 0,
            minor: 0,
            mode: None,
        },
        Device {
            path: "/dev/console".into(),
            kind: "c".into(),
            major: 5,
            minor: 1,
            mode: Some(0o666),
        },
    ]);
    let v = config(&img, &ImageDefaults::default());
    assert_eq!(
        v["linux"]["devices"],
        json!([{"path": "/dev/console", "type": "c", "major": 5, "minor": 1, "fileMode": 438}])
    );
    assert_eq!(
        v["linux"]["resources"],
        json!({
            "devices": [
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "b", "access": "rwm"},
                {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"}
            ],
            "memory": {"limit": 1000}
        })
    );
    assert_eq!(
        config(&image("c"), &ImageDefaults::default())["linux"]["resources"],
        json!({})
    );
}

// ---- errors -----------------------------------------------------------------

#[test]
fn error_unknown_capability_from_label_names_label_and_position() {
    let d = label(|l| l.capabilities = s(&["CAP_BOGUS"]));
    let e = err(&image("c"), &d);
    assert!(
        e.contains("unknown capability \"CAP_BOGUS\" in the image label"),
        "{e}"
    );
    let mut img = image("c");
    img.ambient = s(&["net_admin"]);
    assert!(err(&img, &ImageDefaults::default()).contains("\"net_admin\" in the yaml"));
}

#[test]
fn error_bad_bind_tmpfs_mount() {
    let mut img = image("c");
    img.binds = s(&["/a:/b:c:d"]);
    assert!(err(&img, &ImageDefaults::default()).contains("cannot parse bind \"/a:/b:c:d\""));
    img.binds = s(&["/a"]);
    assert!(err(&img, &ImageDefaults::default()).contains("cannot parse bind \"/a\""));
    let mut img = image("c");
    img.tmpfs = s(&["/a:b:c"]);
    assert!(err(&img, &ImageDefaults::default()).contains("cannot parse tmpfs \"/a:b:c\""));
    let mut img = image("c");
    img.mounts = Some(vec![Mount {
        destination: "/x".into(),
        ..Mount::default()
    }]);
    assert!(err(&img, &ImageDefaults::default()).contains("\"/x\" from the yaml is missing type"));
    img.mounts = Some(vec![Mount {
        kind: Some("nfs".into()),
        ..Mount::default()
    }]);
    assert!(err(&img, &ImageDefaults::default())
        .contains("\"nfs\" from the yaml is missing destination"));
}

#[test]
fn error_bad_rlimit_uid_device() {
    let mut img = image("c");
    img.rlimits = s(&["nofile"]);
    assert!(err(&img, &ImageDefaults::default()).contains("cannot parse rlimit \"nofile\""));
    let mut img = image("c");
    img.uid = Some(IdSpec::Name("nobody".into()));
    assert!(err(&img, &ImageDefaults::default()).contains("uid: cannot find id \"nobody\""));
    let mut img = image("c");
    img.additional_gids = Some(vec![IdSpec::Name("wheel".into())]);
    assert!(
        err(&img, &ImageDefaults::default()).contains("additionalGids: cannot find id \"wheel\"")
    );
    let d = label(|l| {
        l.devices = Some(vec![Device {
            path: "/dev/tty".into(),
            kind: "c".into(),
            major: 5,
            minor: 0,
            mode: None,
        }])
    });
    assert!(err(&image("c"), &d).contains("device \"/dev/tty\" from the image label"));
}
