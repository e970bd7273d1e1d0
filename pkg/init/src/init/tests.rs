//! The whole life of PID 1 against the recording fake: boot order, onboot
//! failures, runtime.json mounts, services, supervision, and every shutdown
//! path (signals, timeouts, stubborn services).

use std::time::Duration;

use super::*;
use crate::fake::{Fake, Happening};
use crate::sys::Signal;

pub(super) const RUNC: &str = "/usr/bin/runc";

const RO_RUNTIME: &str = r#"{"cgroups":[],"mounts":[{"destination":"/containers/onboot/000-a/rootfs","source":"/containers/onboot/000-a/rootfs","options":["bind"]}],"mkdir":[],"interfaces":[],"bindNS":{},"namespace":""}"#;

/// A system with runc, two onboot containers, one onshutdown, two services.
pub(super) fn system() -> Fake {
    let mut f = Fake::new();
    f.file(RUNC, "");
    f.file("/proc/mounts", "rootfs / rootfs rw 0 0\n");
    f.file("/proc/filesystems", "nodev\toverlay\n");
    f.file("/containers/onboot/000-a/config.json", "{}");
    f.file("/containers/onboot/000-a/runtime.json", RO_RUNTIME);
    f.dir("/containers/onboot/000-a/rootfs");
    f.file("/containers/onboot/001-b/config.json", "{}");
    f.dir("/containers/onboot/001-b/rootfs");
    f.file("/containers/onshutdown/000-bye/config.json", "{}");
    f.dir("/containers/onshutdown/000-bye/rootfs");
    f.dir("/containers/services/getty/rootfs");
    f.dir("/containers/services/rngd/rootfs");
    f.exits.insert("000-a".into(), Status::Exited(0));
    f.exits.insert("001-b".into(), Status::Exited(0));
    f.exits.insert("000-bye".into(), Status::Exited(0));
    f
}

pub(super) fn run(f: Fake) -> (Fake, Halt) {
    let mut init = Init::new(f, Config::default());
    match init.run() {
        Some(how) => (init.sys, how),
        None => panic!("init handed over: {:#?}", init.sys.calls),
    }
}

pub(super) fn has(f: &Fake, line: &str) -> bool {
    f.lines().contains(&line)
}

/// The index of the first call equal to `call`.
pub(super) fn at(f: &Fake, call: &str) -> usize {
    match f.calls.iter().position(|c| c == call) {
        Some(i) => i,
        None => panic!("no call {call:?} in {:#?}", f.calls),
    }
}

#[test]
fn boot_mounts_then_onboot_in_order_each_waited_then_services() {
    let mut f = system();
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, how) = run(f);
    assert_eq!(how, Halt::Poweroff);
    let targets: Vec<&str> = f
        .only(&["mount "])
        .iter()
        .filter_map(|c| c.split(' ').nth(2))
        .take(8)
        .collect();
    assert_eq!(
        targets,
        [
            "/proc",
            "/sys",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/run",
            "/tmp",
            "/sys/fs/cgroup"
        ]
    );
    let want = [
        "kiln-init: start",
        "kiln-init: mounted /proc",
        "kiln-init: mounted /sys/fs/cgroup",
        "kiln-init: hostname kiln",
        "kiln-init: link lo up",
        "kiln-init: onboot 000-a start",
        "kiln-init: onboot 000-a exit 0",
        "kiln-init: onboot 001-b start",
        "kiln-init: onboot 001-b exit 0",
    ];
    let lines = f.lines();
    let mut pos = 0;
    for w in want {
        match lines[pos..].iter().position(|l| *l == w) {
            Some(i) => pos += i + 1,
            None => panic!("{w:?} missing or out of order in {lines:#?}"),
        }
    }
    // Onboot runs one at a time: 001-b starts only after 000-a was reaped.
    let a_exit = at(&f, "log kiln-init: onboot 000-a exit 0");
    let b_spawn = at(
        &f,
        &format!(
            "spawn {RUNC} run --bundle /containers/onboot/001-b --no-new-keyring --no-pivot 001-b"
        ),
    );
    assert!(a_exit < b_spawn);
    // Services after every onboot, in sorted order, logged to /var/log.
    let getty = at(&f, &format!("spawn {RUNC} run --bundle /containers/services/getty --no-new-keyring --no-pivot getty"));
    let rngd = at(
        &f,
        &format!(
            "spawn {RUNC} run --bundle /containers/services/rngd --no-new-keyring --no-pivot rngd"
        ),
    );
    assert!(b_spawn < getty && getty < rngd);
    assert!(has(&f, "kiln-init: service getty started pid 102"));
    assert!(has(&f, "kiln-init: service rngd started pid 103"));
    let (_, out) = &f.spawned[2];
    assert_eq!(
        out,
        &Output::Logged {
            name: "getty".into(),
            log: "/var/log/getty.log".into()
        }
    );
}

#[test]
fn a_failing_onboot_is_logged_and_boot_goes_on() {
    let mut f = system();
    f.exits.insert("000-a".into(), Status::Exited(3));
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    assert!(has(&f, "kiln-init: onboot 000-a exit 3"));
    assert!(has(&f, "kiln-init: onboot 001-b exit 0"));
    assert!(has(&f, "kiln-init: service getty started pid 102"));
}

#[test]
fn sigterm_runs_onshutdown_then_stops_services_then_powers_off() {
    let mut f = system();
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    let order = [
        "log kiln-init: shutdown poweroff".to_string(),
        format!("spawn {RUNC} run --bundle /containers/onshutdown/000-bye --no-new-keyring --no-pivot 000-bye"),
        "log kiln-init: onshutdown 000-bye exit 0".to_string(),
        format!("spawn {RUNC} kill getty TERM"),
        format!("spawn {RUNC} kill rngd TERM"),
        "kill_all 15".to_string(),
        "sync".to_string(),
        "log kiln-init: poweroff".to_string(),
        "reboot poweroff".to_string(),
    ];
    let idx: Vec<usize> = order.iter().map(|c| at(&f, c)).collect();
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "out of order: {idx:?}");
    assert!(has(&f, "kiln-init: service getty stopped signal 15"));
    assert!(has(&f, "kiln-init: service rngd stopped signal 15"));
    // Services stopped in time: no KILL, no delete.
    assert!(f.only(&[&format!("spawn {RUNC} delete")]).is_empty());
    assert!(f.calls.last().is_some_and(|c| c == "reboot poweroff"));
}

#[test]
fn sigint_reboots_and_sigusr1_halts() {
    let mut f = system();
    f.script.push_back(Happening::Signal(Signal::Int));
    let (f, how) = run(f);
    assert_eq!(how, Halt::Reboot);
    assert!(has(&f, "kiln-init: shutdown reboot"));
    assert!(f.calls.contains(&"reboot reboot".to_string()));

    let mut f = system();
    f.script.push_back(Happening::Signal(Signal::Hup));
    f.script.push_back(Happening::Signal(Signal::Usr1));
    let (f, how) = run(f);
    assert_eq!(how, Halt::Halt);
    assert!(f.calls.contains(&"reboot halt".to_string()));
}

#[test]
fn a_service_exit_is_logged_and_not_restarted() {
    let mut f = system();
    f.script
        .push_back(Happening::Exit("getty", Status::Exited(1)));
    f.script.push_back(Happening::Orphan(7, Status::Exited(0)));
    f.script.push_back(Happening::Signal(Signal::Usr2));
    let (f, how) = run(f);
    assert_eq!(how, Halt::Poweroff);
    assert!(has(&f, "kiln-init: service getty exited 1"));
    assert!(has(&f, "kiln-init: reaped pid 7 exit 0"));
    let getty_runs = f.only(&[&format!(
        "spawn {RUNC} run --bundle /containers/services/getty"
    )]);
    assert_eq!(getty_runs.len(), 1);
    // Only the service still running is stopped.
    assert!(f.only(&[&format!("spawn {RUNC} kill getty")]).is_empty());
    assert_eq!(f.only(&[&format!("spawn {RUNC} kill rngd TERM")]).len(), 1);
}

#[test]
fn a_hanging_onshutdown_times_out_and_is_killed() {
    let mut f = system();
    f.exits.remove("000-bye");
    f.script.push_back(Happening::Signal(Signal::Term));
    let mut init = Init::new(f, Config::default());
    init.run();
    let f = init.sys;
    assert!(has(&f, "kiln-init: onshutdown 000-bye timeout"));
    let kill = at(&f, &format!("spawn {RUNC} kill --all 000-bye KILL"));
    let delete = at(&f, &format!("spawn {RUNC} delete --force 000-bye"));
    assert!(at(&f, "log kiln-init: onshutdown 000-bye timeout") < kill && kill < delete);
    assert!(delete < at(&f, &format!("spawn {RUNC} kill getty TERM")));
    assert!(f.calls.contains(&"reboot poweroff".to_string()));
}

#[test]
fn a_stubborn_service_gets_kill_after_the_stop_timeout() {
    let mut f = system();
    f.stubborn.insert("getty".into());
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    assert!(has(&f, "kiln-init: note: service getty did not stop: KILL"));
    let term = at(&f, &format!("spawn {RUNC} kill getty TERM"));
    let kill = at(&f, &format!("spawn {RUNC} kill --all getty KILL"));
    assert!(term < kill && kill < at(&f, "reboot poweroff"));
    assert!(has(&f, "kiln-init: service getty stopped signal 9"));
    assert!(f
        .only(&[&format!("spawn {RUNC} kill --all rngd")])
        .is_empty());
}

#[test]
fn a_shutdown_signal_during_onboot_skips_the_rest_and_the_services() {
    let mut f = system();
    f.exits.remove("000-a");
    f.script.push_back(Happening::Signal(Signal::Term));
    f.script
        .push_back(Happening::Exit("000-a", Status::Exited(0)));
    let (f, how) = run(f);
    assert_eq!(how, Halt::Poweroff);
    assert!(has(&f, "kiln-init: onboot 000-a exit 0"));
    assert!(has(
        &f,
        "kiln-init: note: onboot 001-b skipped: shutting down"
    ));
    assert!(f
        .only(&[&format!("spawn {RUNC} run --bundle /containers/services")])
        .is_empty());
    assert!(f.calls.contains(&"reboot poweroff".to_string()));
}

#[test]
fn writable_bundle_mounts_in_order_and_is_cleaned_up() {
    let mut f = system();
    let b = "/containers/onboot/001-b";
    let rt = format!(
        r#"{{"mounts":[{{"destination":"{b}/tmp","type":"tmpfs","source":"tmpfs"}},
            {{"destination":"{b}/tmp","options":["remount","private"]}},
            {{"destination":"{b}/rootfs","type":"overlay","source":"overlay",
              "options":["lowerdir={b}/lower","upperdir={b}/tmp/upper","workdir={b}/tmp/work"]}}],
            "mkdir":["/var/lib/b"]}}"#
    );
    f.file(&format!("{b}/runtime.json"), &rt);
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    let order = [
        "mkdir /var/lib/b".to_string(),
        format!("mount tmpfs {b}/tmp tmpfs 0x0 "),
        format!("mount  {b}/tmp  {:#x} ", libc::MS_REMOUNT),
        format!("mount  {b}/tmp  {:#x} ", libc::MS_PRIVATE),
        format!("mkdir {b}/tmp/upper"),
        format!("mkdir {b}/tmp/work"),
        format!("mount overlay {b}/rootfs overlay 0x0 lowerdir={b}/lower,upperdir={b}/tmp/upper,workdir={b}/tmp/work"),
        format!("spawn {RUNC} run --bundle {b} --no-new-keyring --no-pivot 001-b"),
        format!("umount {b}/rootfs"),
        format!("umount {b}/tmp"),
    ];
    let idx: Vec<usize> = order.iter().map(|c| at(&f, c)).collect();
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "out of order: {idx:?}");
}

#[test]
fn a_bundle_without_runtime_json_gets_a_readonly_bind() {
    let (f, _) = run({
        let mut f = system();
        f.script.push_back(Happening::Signal(Signal::Term));
        f
    });
    let b = "/containers/services/rngd";
    at(
        &f,
        &format!("mount {b}/rootfs {b}/rootfs  {:#x} ", libc::MS_BIND),
    );
}

#[test]
fn a_bad_runtime_json_skips_that_container_only() {
    let mut f = system();
    f.file("/containers/onboot/000-a/runtime.json", r#"{"mounts": 1}"#);
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    assert!(has(
        &f,
        "kiln-init: error: onboot 000-a: /containers/onboot/000-a/runtime.json: runtime.json: mounts must be an array"
    ));
    assert!(f
        .only(&[&format!(
            "spawn {RUNC} run --bundle /containers/onboot/000-a"
        )])
        .is_empty());
    assert!(has(&f, "kiln-init: onboot 001-b exit 0"));
}

#[test]
fn a_failed_mount_skips_that_container_only() {
    let mut f = system();
    f.fail_mounts
        .insert("/containers/onboot/000-a/rootfs".into());
    f.fail_mounts.insert("/dev/shm".into());
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    assert!(has(
        &f,
        "kiln-init: mount /dev/shm failed: Invalid argument (os error 22)"
    ));
    assert!(has(
        &f,
        "kiln-init: error: onboot 000-a: mount /containers/onboot/000-a/rootfs: Invalid argument (os error 22)"
    ));
    assert!(has(&f, "kiln-init: onboot 001-b exit 0"));
}

#[test]
fn without_runc_nothing_runs_and_shutdown_still_works() {
    let mut f = system();
    f.files.remove(RUNC);
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    assert!(has(
        &f,
        "kiln-init: error: runc not found in /usr/sbin:/usr/bin:/sbin:/bin"
    ));
    assert!(f.only(&["spawn "]).is_empty());
    assert!(f.calls.contains(&"reboot poweroff".to_string()));
}

#[test]
fn runc_in_usr_sbin_and_a_real_root_need_no_pivot_flag() {
    let mut f = system();
    f.files.remove(RUNC);
    f.file("/usr/sbin/runc", "");
    f.file("/proc/mounts", "/dev/vda / ext4 rw 0 0\n");
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    at(
        &f,
        "spawn /usr/sbin/runc run --bundle /containers/onboot/000-a --no-new-keyring 000-a",
    );
}

#[test]
fn modules_load_dependencies_first_and_overlay_when_missing() {
    let mut f = system();
    f.file("/proc/filesystems", "nodev\tproc\n");
    f.file("/etc/modules", "# net\nvirtio_net\n");
    f.file(
        "/lib/modules/6.6.0-kiln/modules.dep",
        "kernel/net/core/failover.ko:\nkernel/drivers/net/virtio_net.ko: kernel/net/core/failover.ko\nkernel/fs/overlayfs/overlay.ko.xz:\n",
    );
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    let m = "/lib/modules/6.6.0-kiln/kernel";
    assert_eq!(
        f.only(&["finit_module"]),
        [
            format!("finit_module {m}/net/core/failover.ko [] false"),
            format!("finit_module {m}/drivers/net/virtio_net.ko [] false"),
            format!("finit_module {m}/fs/overlayfs/overlay.ko.xz [] true"),
        ]
    );
    assert!(has(&f, "kiln-init: module virtio_net loaded"));
    assert!(has(&f, "kiln-init: module overlay loaded"));
}

#[test]
fn no_modules_wanted_means_no_module_calls() {
    let mut f = system();
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    assert!(f.only(&["finit_module"]).is_empty());
}

#[test]
fn hostname_cgroups_and_dev_links() {
    let mut f = system();
    f.file("/etc/hostname", "box\n");
    f.file("/sys/fs/cgroup/cgroup.controllers", "cpu memory pids\n");
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    assert!(f.calls.contains(&"sethostname box".to_string()));
    assert!(has(&f, "kiln-init: hostname box"));
    assert_eq!(
        f.only(&["write /sys/fs/cgroup/cgroup.subtree_control"]),
        [
            "write /sys/fs/cgroup/cgroup.subtree_control +cpu",
            "write /sys/fs/cgroup/cgroup.subtree_control +memory",
            "write /sys/fs/cgroup/cgroup.subtree_control +pids",
        ]
    );
    assert!(at(&f, "attach_console") > at(&f, "log kiln-init: mounted /dev"));
    at(&f, "symlink /dev/ptmx -> pts/ptmx");
}

#[test]
fn already_mounted_filesystems_are_not_mounted_again() {
    let mut f = system();
    f.file(
        "/proc/mounts",
        "proc /proc proc rw 0 0\ndev /dev devtmpfs rw 0 0\n",
    );
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    assert!(has(&f, "kiln-init: note: /dev already mounted"));
    assert!(!f.calls.iter().any(|c| c.starts_with("mount dev /dev ")));
}

#[test]
fn shutdown_unmounts_innermost_first() {
    let mut f = system();
    f.file(
        "/proc/mounts",
        "rootfs / rootfs rw 0 0\nproc /proc proc rw 0 0\ntmpfs /run tmpfs rw 0 0\n/dev/vda /var/lib ext4 rw 0 0\n",
    );
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    let lib = at(&f, "umount /var/lib");
    assert!(lib < at(&f, "umount /run") && at(&f, "umount /run") < at(&f, "reboot poweroff"));
    assert!(!f.calls.contains(&"umount /proc".to_string()));
}

#[test]
fn onshutdown_timeout_is_measured_on_the_clock() {
    let mut f = system();
    f.exits.remove("000-bye");
    f.script.push_back(Happening::Signal(Signal::Term));
    let cfg = Config {
        onshutdown_timeout: Duration::from_secs(30),
        ..Config::default()
    };
    let mut init = Init::new(f, cfg);
    init.run();
    // The fake clock advances only by the timeouts init asks for.
    assert!(init.sys.now() >= Duration::from_secs(30));
    assert!(init.sys.now() < Duration::from_secs(3600));
}

#[test]
fn leftover_processes_get_term_then_kill_and_are_reaped() {
    let mut f = system();
    f.background(7, "daemon");
    f.stubborn.insert("daemon".into());
    f.background(8, "polite");
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    let term = at(&f, "kill_all 15");
    let kill = at(&f, "kill_all 9");
    assert!(term < kill && kill < at(&f, "reboot poweroff"));
    assert!(has(&f, "kiln-init: reaped pid 8 exit signal 15"));
    assert!(has(&f, "kiln-init: reaped pid 7 exit signal 9"));
    assert!(has(
        &f,
        "kiln-init: note: KILL sent to every remaining process"
    ));
}

#[test]
fn nothing_left_means_no_kill() {
    let mut f = system();
    f.script.push_back(Happening::Signal(Signal::Term));
    let (f, _) = run(f);
    assert!(!f.calls.contains(&"kill_all 9".to_string()));
    assert!(!has(
        &f,
        "kiln-init: note: TERM sent to every remaining process"
    ));
}
