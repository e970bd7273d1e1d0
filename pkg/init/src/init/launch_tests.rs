//! `interfaces` and `bindNS` against the recording fake: `runc create`,
//! the links and namespace binds for the created process, `runc start`,
//! waiting for the container's own pid, and every failure on the way.

use super::tests::{at, has, run, system, RUNC};
use super::*;
use crate::fake::{Fake, Happening};
use crate::sys::Signal;

const NET_RUNTIME: &str = r#"{"cgroups":[],"mounts":[],"mkdir":[],
    "interfaces":[{"name":"vethA","add":"veth","peer":"vethB","createInRoot":false}],
    "bindNS":{"cgroup":"","ipc":"","mnt":"","net":"/run/netns/shared","pid":"","user":"","uts":""},
    "namespace":""}"#;

const JOIN_RUNTIME: &str = r#"{"interfaces":[{"name":"vethB"}],"namespace":"services.linuxkit"}"#;

const NS_ONLY_RUNTIME: &str = r#"{"bindNS":{},"interfaces":[],"namespace":"services.linuxkit"}"#;

/// `system()` plus an onboot `002-net` with a veth pair and a bound net
/// namespace, and a service `web` that takes the veth's peer.
fn net_system() -> Fake {
    let mut f = system();
    f.file("/containers/onboot/002-net/runtime.json", NET_RUNTIME);
    f.dir("/containers/onboot/002-net/rootfs");
    f.exits.insert("002-net".into(), Status::Exited(0));
    f.file("/containers/services/web/runtime.json", JOIN_RUNTIME);
    f.dir("/containers/services/web/rootfs");
    f
}

fn create(section: &str, name: &str) -> String {
    format!(
        "spawn {RUNC} create --bundle /containers/{section}/{name} --pid-file /run/kiln-init/{name}.pid --no-new-keyring --no-pivot {name}"
    )
}

#[test]
fn onboot_is_created_linked_bound_started_waited_then_deleted() {
    let mut f = net_system();
    f.exits.insert("002-net".into(), Status::Exited(4));
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    // 000-a runs as 100, 001-b as 101; runc create is 102, the container 103.
    let order = [
        create("onboot", "002-net"),
        "link add vethA veth peer vethB".into(),
        "link move vethA 103".into(),
        "mkdir /run/netns".into(),
        "touch /run/netns/shared".into(),
        "mount /proc/103/ns/net /run/netns/shared  0x1000 ".into(),
        format!("spawn {RUNC} start 002-net"),
        "log kiln-init: onboot 002-net exit 4".into(),
        format!("spawn {RUNC} delete --force 002-net"),
        format!("spawn {RUNC} create --bundle /containers/services/web --pid-file /run/kiln-init/web.pid --no-new-keyring --no-pivot web"),
    ];
    let mut last = 0;
    for call in &order {
        let i = at(&f, call);
        assert!(i >= last, "{call:?} out of order in {:#?}", f.calls);
        last = i;
    }
    assert!(has(
        &f,
        "kiln-init: note: created interface vethA type veth"
    ));
    assert!(has(&f, "kiln-init: note: moved interface vethA to pid 103"));
    assert!(f
        .only(&[&format!(
            "spawn {RUNC} run --bundle /containers/onboot/002-net"
        )])
        .is_empty());
    // The container's own exit was waited for, not runc start's.
    assert!(!f.lines().iter().any(|l| l.contains("reaped pid 103")));
}

#[test]
fn a_service_is_supervised_by_its_container_pid() {
    let mut f = net_system();
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    // getty and rngd use runc run; web is created after them: 108, its
    // container 109 (onboot: 100, 101, 102-105 for 002-net; getty 106, rngd 107).
    assert!(has(&f, "kiln-init: service web started pid 109"));
    assert!(has(&f, "kiln-init: note: moved interface vethB to pid 109"));
    assert_eq!(f.only(&["link "]).len(), 3);
    assert!(at(&f, "link move vethB 109") < at(&f, &format!("spawn {RUNC} start web")));
    // Stopped at shutdown like any service, through its container pid.
    assert!(has(&f, "kiln-init: service web stopped signal 15"));
    let (_, out) = f
        .spawned
        .iter()
        .find(|(a, _)| a.get(1).map(String::as_str) == Some("create") && a.last().unwrap() == "web")
        .unwrap();
    assert_eq!(
        out,
        &Output::Logged {
            name: "web".into(),
            log: "/var/log/web.log".into()
        }
    );
}

#[test]
fn a_service_that_exits_at_once_is_not_lost() {
    let mut f = net_system();
    f.exits.insert("web".into(), Status::Exited(2));
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    assert!(has(&f, "kiln-init: service web started pid 109"));
    assert!(has(&f, "kiln-init: service web exited 2"));
    assert!(f.only(&[&format!("spawn {RUNC} kill web")]).is_empty());
}

#[test]
fn a_failed_link_deletes_the_container_and_boot_goes_on() {
    let mut f = net_system();
    f.fail_links.insert("vethA".into());
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    assert!(has(
        &f,
        "kiln-init: error: onboot 002-net: link add vethA of type veth: File exists (os error 17)"
    ));
    assert!(f.only(&[&format!("spawn {RUNC} start 002-net")]).is_empty());
    assert!(
        f.only(&["mount /proc/"]).is_empty(),
        "no bind after a failure"
    );
    assert_eq!(
        f.only(&[&format!("spawn {RUNC} delete --force 002-net")])
            .len(),
        1
    );
    assert!(!f.lines().iter().any(|l| l.contains("onboot 002-net exit")));
    // runc create 102, the container 103, runc delete 104; getty is 105.
    assert!(has(&f, "kiln-init: service getty started pid 105"));
    assert!(!f.lines().iter().any(|l| l.contains("reaped pid 103")));
}

#[test]
fn a_missing_link_to_move_is_an_error_naming_it() {
    let mut f = net_system();
    f.fail_links.insert("vethB".into());
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    assert!(has(
        &f,
        "kiln-init: error: service web: cannot move interface vethB into namespace: File exists (os error 17)"
    ));
    assert!(f.only(&[&format!("spawn {RUNC} start web")]).is_empty());
    assert!(!f.lines().iter().any(|l| l.contains("service web started")));
}

#[test]
fn a_failed_create_starts_nothing() {
    let mut f = net_system();
    f.create_fails.insert("002-net".into());
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    assert!(has(
        &f,
        "kiln-init: error: onboot 002-net: runc create exit 1"
    ));
    assert!(f.only(&["link "]).iter().all(|c| !c.contains("vethA")));
    assert!(f.only(&[&format!("spawn {RUNC} start 002-net")]).is_empty());
}

#[test]
fn a_bad_interface_is_refused_before_any_link_changes() {
    let mut f = net_system();
    f.file(
        "/containers/onboot/002-net/runtime.json",
        r#"{"interfaces":[{"name":"ok","add":"veth","peer":"p"},{"name":"v","add":"veth"}]}"#,
    );
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    assert!(has(
        &f,
        "kiln-init: error: onboot 002-net: interfaces[1]: veth v needs a peer"
    ));
    assert!(f.only(&["link add ok"]).is_empty());
    assert_eq!(
        f.only(&[&format!("spawn {RUNC} delete --force 002-net")])
            .len(),
        1
    );
}

#[test]
fn namespace_alone_changes_nothing() {
    let mut f = system();
    f.file("/containers/services/getty/runtime.json", NS_ONLY_RUNTIME);
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    assert!(f.only(&[&format!("spawn {RUNC} create")]).is_empty());
    assert!(has(&f, "kiln-init: service getty started pid 102"));
    assert!(!f.lines().iter().any(|l| l.contains("namespace")));
}
