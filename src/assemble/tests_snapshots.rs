//! Snapshot tests: `config.json` and `runtime.json` of a container that
//! sets every field (over a label) and of a minimal one. Rewrite them only
//! on purpose (`INSTA_UPDATE=always`), after checking the diff.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::spec::{
    BindNs, Device, IdMapping, IdSpec, Image, ImageRef, Interface, Mount, Pos, Runtime, Volume,
};

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

/// A container that sets every field, over a label that sets many.
fn maximal() -> (Image, ImageDefaults) {
    let defaults = ImageDefaults {
        label: Some(Image {
            capabilities: s(&["CAP_SYS_ADMIN", "CAP_CHOWN"]),
            binds: s(&["/lib/modules:/lib/modules:ro"]),
            env: s(&["FROM_LABEL=1"]),
            readonly: Some(true),
            devices: Some(vec![Device {
                path: "/dev/console".into(),
                kind: "c".into(),
                major: 5,
                minor: 1,
                mode: Some(0o620),
            }]),
            runtime: Some(Runtime {
                cgroups: s(&["systemreserved"]),
                ..Runtime::default()
            }),
            ..Image::default()
        }),
        entrypoint: s(&["/usr/bin/entry"]),
        cmd: s(&["--cmd"]),
        env: s(&["PATH=/usr/bin"]),
        working_dir: Some("/srv".into()),
    };
    let img = Image {
        capabilities_add: s(&["CAP_NET_ADMIN"]),
        ambient: s(&["CAP_NET_BIND_SERVICE"]),
        mounts: Some(vec![Mount {
            destination: "/dev/mqueue".into(),
            kind: Some("mqueue".into()),
            source: None,
            options: vec!["nosuid".into()],
        }]),
        binds_add: s(&["/var:/var:rshared,rbind", "data:/data"]),
        tmpfs: s(&["/tmp:size=10m"]),
        devices: Some(vec![
            Device {
                path: "all".into(),
                kind: "b".into(),
                major: 0,
                minor: 0,
                mode: None,
            },
            Device {
                path: "/dev/null".into(),
                kind: "c".into(),
                major: 1,
                minor: 3,
                mode: Some(0o666),
            },
        ]),
        command: s(&["/bin/sh", "-c", "exec a && b < c"]),
        cwd: Some("/root".into()),
        net: Some("new".into()),
        pid: Some("host".into()),
        ipc: Some("new".into()),
        uts: Some("new".into()),
        userns: Some("new".into()),
        hostname: Some("box".into()),
        readonly: Some(false),
        masked_paths: s(&["/proc/kcore"]),
        readonly_paths: s(&["/proc/sys"]),
        uid: Some(IdSpec::Name("getty".into())),
        gid: Some(IdSpec::Id(10)),
        additional_gids: Some(vec![IdSpec::Id(20), IdSpec::Name("getty".into())]),
        no_new_privileges: Some(true),
        oom_score_adj: Some(-500),
        rootfs_propagation: Some("shared".into()),
        cgroups_path: Some("/kiln/box".into()),
        resources: Some(json!({"pids": {"limit": 64}, "memory": {"swap": 1, "limit": 2}})),
        sysctl: Some(BTreeMap::from([("net.ipv4.ip_forward".into(), "1".into())])),
        rlimits: s(&["nofile,1024,unlimited"]),
        uid_mappings: Some(vec![IdMapping {
            container_id: 0,
            host_id: 1000,
            size: 1,
        }]),
        gid_mappings: Some(vec![IdMapping {
            container_id: 0,
            host_id: 2000,
            size: 2,
        }]),
        annotations: Some(BTreeMap::from([("org.example".into(), "yes".into())])),
        runtime: Some(Runtime {
            mounts: Some(vec![Mount {
                destination: "/var/lib".into(),
                kind: Some("bind".into()),
                source: Some("/var/lib/box".into()),
                options: vec!["rbind".into()],
            }]),
            mkdir: s(&["/var/lib/box"]),
            interfaces: Some(vec![Interface {
                name: "eth1".into(),
                add: Some("veth".into()),
                peer: Some("veth-box".into()),
                create_in_root: true,
            }]),
            bind_ns: Some(BindNs {
                net: Some("/run/netns/box".into()),
                ..BindNs::default()
            }),
            namespace: Some("box".into()),
            ..Runtime::default()
        }),
        ..image("c")
    };
    (img, defaults)
}

fn data_volume() -> Volume {
    Volume {
        name: "data".into(),
        image: None,
        readonly: false,
        format: None,
        platforms: vec![],
        pos: pos(30),
    }
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap()
}

#[test]
fn snapshot_config_maximal() {
    let (img, d) = maximal();
    let ids = IdMap::from_names(["getty"]);
    let json = text(config_json(&img, &d, &ids, &[data_volume()]).unwrap());
    assert!(!json.ends_with('\n'));
    insta::assert_snapshot!(json);
}

#[test]
fn snapshot_runtime_maximal_writable_deduplicated() {
    let (img, d) = maximal();
    let bundle = Bundle {
        dir: "containers/services/c".into(),
        root: "containers/onboot/000-first/rootfs".into(),
        readonly: false,
    };
    insta::assert_snapshot!(text(runtime_json(&img, &d, &bundle).unwrap()));
}

#[test]
fn snapshot_config_minimal() {
    let d = ImageDefaults {
        cmd: s(&["sh"]),
        env: s(&["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]),
        ..ImageDefaults::default()
    };
    insta::assert_snapshot!(text(
        config_json(&image("c"), &d, &IdMap::default(), &[]).unwrap()
    ));
}

#[test]
fn snapshot_runtime_minimal_readonly() {
    let bundle = Bundle {
        dir: "containers/onboot/000-c".into(),
        root: "containers/onboot/000-c/rootfs".into(),
        readonly: true,
    };
    insta::assert_snapshot!(text(
        runtime_json(&image("c"), &ImageDefaults::default(), &bundle).unwrap()
    ));
}
