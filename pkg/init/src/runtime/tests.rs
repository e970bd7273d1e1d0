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
