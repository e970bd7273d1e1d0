//! Tests for `runtime.json` parsing and the mount plan, on the exact shapes
//! kiln's assemble stage writes.

use super::*;

const WRITABLE: &str = r#"{
    "cgroups": ["systemreserved"],
    "mounts": [
        {"destination": "/containers/services/c/tmp", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/containers/services/c/tmp", "options": ["remount", "private"]},
        {"destination": "/containers/services/c/rootfs", "type": "overlay", "source": "overlay",
         "options": ["lowerdir=/containers/services/c/lower",
                     "upperdir=/containers/services/c/tmp/upper",
                     "workdir=/containers/services/c/tmp/work"]},
        {"destination": "/var/lib", "type": "bind", "source": "/var/lib/box", "options": ["rbind"]}
    ],
    "mkdir": ["/var/lib/box"],
    "interfaces": [{"name": "eth1", "add": "veth", "peer": "veth-box", "createInRoot": true}],
    "bindNS": {"cgroup": "", "ipc": "", "mnt": "", "net": "/run/netns/box", "pid": "", "user": "", "uts": ""},
    "namespace": "box"
}"#;

fn call(source: &str, target: &str, fstype: &str, flags: u64, data: &str) -> Step {
    Step::Mount(MountCall {
        source: source.into(),
        target: target.into(),
        fstype: fstype.into(),
        flags,
        data: data.into(),
    })
}

fn dir(p: &str) -> Step {
    Step::Target {
        path: p.into(),
        like: None,
    }
}

#[test]
fn parses_every_field() {
    let rt = parse(WRITABLE.as_bytes()).unwrap();
    assert_eq!(rt.cgroups, ["systemreserved"]);
    assert_eq!(rt.mounts.len(), 4);
    assert_eq!(rt.mounts[1].kind, "");
    assert_eq!(rt.mounts[1].options, ["remount", "private"]);
    assert_eq!(rt.mkdir, ["/var/lib/box"]);
    assert_eq!(
        rt.interfaces,
        [Interface {
            name: "eth1".into(),
            add: "veth".into(),
            peer: "veth-box".into(),
            create_in_root: true
        }]
    );
    assert_eq!(rt.bind_ns.len(), 1);
    assert_eq!(rt.bind_ns["net"], "/run/netns/box");
    assert_eq!(rt.namespace, "box");
}

#[test]
fn writable_plan_mounts_tmpfs_then_makes_upper_and_work_then_overlay() {
    let rt = parse(WRITABLE.as_bytes()).unwrap();
    let c = "/containers/services/c";
    let want = vec![
        Step::Mkdir("/var/lib/box".into()),
        dir(&format!("{c}/tmp")),
        call("tmpfs", &format!("{c}/tmp"), "tmpfs", 0, ""),
        call("", &format!("{c}/tmp"), "", libc::MS_REMOUNT, ""),
        call("", &format!("{c}/tmp"), "", libc::MS_PRIVATE, ""),
        dir(&format!("{c}/rootfs")),
        Step::Mkdir(format!("{c}/tmp/upper")),
        Step::Mkdir(format!("{c}/tmp/work")),
        call(
            "overlay",
            &format!("{c}/rootfs"),
            "overlay",
            0,
            &format!("lowerdir={c}/lower,upperdir={c}/tmp/upper,workdir={c}/tmp/work"),
        ),
        Step::Target {
            path: "/var/lib".into(),
            like: Some("/var/lib/box".into()),
        },
        call(
            "/var/lib/box",
            "/var/lib",
            "bind",
            libc::MS_BIND | libc::MS_REC,
            "",
        ),
    ];
    assert_eq!(plan(&rt), want);
}

#[test]
fn readonly_bind_is_remounted_read_only() {
    let rt = parse(
        br#"{"mounts": [{"destination": "etc/resolv.conf", "source": "/run/resolv.conf", "options": ["bind", "ro"]}]}"#,
    )
    .unwrap();
    assert_eq!(
        plan(&rt),
        vec![
            Step::Target {
                path: "/etc/resolv.conf".into(),
                like: Some("/run/resolv.conf".into())
            },
            call(
                "/run/resolv.conf",
                "/etc/resolv.conf",
                "",
                libc::MS_BIND | libc::MS_RDONLY,
                ""
            ),
            call(
                "",
                "/etc/resolv.conf",
                "",
                libc::MS_RDONLY | libc::MS_BIND | libc::MS_REMOUNT,
                ""
            ),
        ]
    );
}

#[test]
fn default_mounts_match_what_kiln_writes() {
    let ro = default_mounts("/containers/onboot/000-a", false);
    assert_eq!(ro.len(), 1);
    assert_eq!(ro[0].destination, "/containers/onboot/000-a/rootfs");
    assert_eq!(ro[0].source, "/containers/onboot/000-a/rootfs");
    assert_eq!(ro[0].options, ["bind"]);
    let rw = default_mounts("/containers/onboot/000-a", true);
    let parsed = parse(WRITABLE.replace("services/c", "onboot/000-a").as_bytes()).unwrap();
    assert_eq!(rw, parsed.mounts[..3]);
}

#[test]
fn cleanup_unmounts_only_bundle_mounts_innermost_first() {
    let rt = parse(WRITABLE.as_bytes()).unwrap();
    assert_eq!(
        cleanup(&plan(&rt), "/containers/services/c"),
        [
            "/containers/services/c/rootfs",
            "/containers/services/c/tmp"
        ]
    );
}

#[test]
fn missing_and_null_fields_are_empty() {
    assert_eq!(parse(b"{}").unwrap(), Runtime::default());
    assert_eq!(
        parse(br#"{"mounts": null, "mkdir": null, "bindNS": null}"#).unwrap(),
        Runtime::default()
    );
}

#[test]
fn bad_input_is_an_error_naming_the_field() {
    let e = parse(br#"{"mounts": [{"destination": 3}]}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "runtime.json: mounts[0].destination must be a string"
    );
    let e = parse(br#"{"mkdir": "x"}"#).unwrap_err();
    assert_eq!(e.to_string(), "runtime.json: mkdir must be an array");
    let e = parse(b"[]").unwrap_err();
    assert_eq!(
        e.to_string(),
        "runtime.json: the top level must be an object"
    );
    assert!(matches!(parse(b"{").unwrap_err(), RuntimeError::Json(_)));
}

fn iface(name: &str, add: &str, peer: &str, create_in_root: bool) -> Interface {
    Interface {
        name: name.into(),
        add: add.into(),
        peer: peer.into(),
        create_in_root,
    }
}

fn add(name: &str, kind: &str, peer: Option<&str>, netns: Option<Pid>) -> LinkRequest {
    LinkRequest::Add {
        name: name.into(),
        kind: kind.into(),
        peer: peer.map(str::to_string),
        netns,
    }
}

fn mv(name: &str, pid: Pid) -> LinkRequest {
    LinkRequest::Move {
        name: name.into(),
        pid,
    }
}

#[test]
fn veth_is_created_in_root_and_only_its_name_moved() {
    let got = link_requests(&[iface("vethA", "veth", "vethB", false)], 42).unwrap();
    assert_eq!(
        got,
        [add("vethA", "veth", Some("vethB"), None), mv("vethA", 42)]
    );
}

#[test]
fn a_peer_without_add_means_veth() {
    let got = link_requests(&[iface("v0", "", "v1", false)], 7).unwrap();
    assert_eq!(got, [add("v0", "veth", Some("v1"), None), mv("v0", 7)]);
}

#[test]
fn other_kinds_are_created_in_the_container_unless_create_in_root() {
    let got = link_requests(
        &[
            iface("d0", "dummy", "", false),
            iface("d1", "dummy", "", true),
        ],
        9,
    )
    .unwrap();
    assert_eq!(
        got,
        [
            add("d0", "dummy", None, Some(9)),
            add("d1", "dummy", None, None),
            mv("d1", 9)
        ]
    );
}

#[test]
fn an_entry_without_add_moves_an_existing_link() {
    let got = link_requests(
        &[iface("eth1", "", "", false), iface("eth2", "", "", true)],
        5,
    )
    .unwrap();
    assert_eq!(got, [mv("eth1", 5), mv("eth2", 5)]);
}

#[test]
fn bad_interfaces_are_errors_before_anything_is_done() {
    let err = link_requests(
        &[
            iface("ok", "veth", "peer", false),
            iface("", "veth", "x", false),
        ],
        5,
    )
    .unwrap_err();
    assert_eq!(err, "interfaces[1]: an interface needs a name");
    let err = link_requests(&[iface("v", "veth", "", true)], 5).unwrap_err();
    assert_eq!(err, "interfaces[0]: veth v needs a peer");
}

#[test]
fn bind_ns_makes_parent_and_file_then_binds_in_linuxkit_order() {
    let mut b = BTreeMap::new();
    b.insert("uts".to_string(), "/run/uts/x".to_string());
    b.insert("net".to_string(), "run/netns/x".to_string());
    b.insert("ipc".to_string(), "/ipcx".to_string());
    let bind = |src: &str, dst: &str| {
        Step::Mount(MountCall {
            source: src.into(),
            target: dst.into(),
            fstype: String::new(),
            flags: libc::MS_BIND,
            data: String::new(),
        })
    };
    assert_eq!(
        bind_ns_steps(&b, 31),
        [
            Step::File("/ipcx".into()),
            bind("/proc/31/ns/ipc", "/ipcx"),
            Step::Mkdir("/run/netns".into()),
            Step::File("/run/netns/x".into()),
            bind("/proc/31/ns/net", "/run/netns/x"),
            Step::Mkdir("/run/uts".into()),
            Step::File("/run/uts/x".into()),
            bind("/proc/31/ns/uts", "/run/uts/x"),
        ]
    );
}

#[test]
fn only_interfaces_and_bind_ns_need_the_process() {
    let mut rt = Runtime {
        namespace: "services.linuxkit".into(),
        cgroups: vec!["x".into()],
        ..Runtime::default()
    };
    assert!(!rt.acts_on_process());
    rt.bind_ns.insert("net".into(), "/run/netns/a".into());
    assert!(rt.acts_on_process());
    rt.bind_ns.clear();
    rt.interfaces.push(iface("eth1", "", "", false));
    assert!(rt.acts_on_process());
}
