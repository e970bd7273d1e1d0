//! Switching from the boot initrd to the real root against the recording
//! fake: the order of every step, a late device, the time limit, mount and
//! exec failures, and the second init that must not switch again.

use std::time::Duration;

use super::*;
use crate::fake::Fake;
use crate::init::Config;

const DEP: &str = "\
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/squashfs/squashfs.ko:
kernel/fs/overlayfs/overlay.ko:
";

/// A boot initrd: `/` is the initramfs, the modules are there, the device
/// node appears 1.5 s after boot and the real root has `/init`.
fn initrd(cmdline: &str) -> Fake {
    let mut f = Fake::new();
    f.track_mounts = true;
    f.file("/proc/mounts", "rootfs / rootfs rw 0 0\n");
    f.file("/proc/cmdline", cmdline);
    f.file("/lib/modules/6.6.0-kiln/modules.dep", DEP);
    f.file("/newroot/init", "");
    f.appear
        .insert("/dev/vda".into(), Duration::from_millis(1500));
    f
}

fn boot(f: Fake) -> (Fake, Switch) {
    let mut init = Init::new(f, Config::default());
    let s = init.boot();
    (init.sys, s)
}

const SQUASHFS: &str = "console=ttyS0 root=/dev/vda rootfstype=squashfs\n";

#[test]
fn modules_wait_mounts_moves_chroot_exec_in_order() {
    let (mut f, s) = boot(initrd(SQUASHFS));
    assert_eq!(s, Switch::Handed);
    let m = "/lib/modules/6.6.0-kiln/kernel";
    let want = [
        format!("finit_module {m}/drivers/virtio/virtio_ring.ko [] false"),
        format!("finit_module {m}/drivers/virtio/virtio.ko [] false"),
        format!("finit_module {m}/drivers/virtio/virtio_pci.ko [] false"),
        format!("finit_module {m}/drivers/block/virtio_blk.ko [] false"),
        format!("finit_module {m}/fs/squashfs/squashfs.ko [] false"),
        format!("finit_module {m}/fs/overlayfs/overlay.ko [] false"),
        "mount /dev/vda /.kiln/lower squashfs 0x1 ".into(),
        "mount tmpfs /.kiln/rw tmpfs 0x0 mode=0755".into(),
        "mkdir /.kiln/rw/upper".into(),
        "mkdir /.kiln/rw/work".into(),
        "mount overlay /newroot overlay 0x0 lowerdir=/.kiln/lower,upperdir=/.kiln/rw/upper,workdir=/.kiln/rw/work".into(),
        "mount /proc /newroot/proc  0x2000 ".into(),
        "mount /sys /newroot/sys  0x2000 ".into(),
        "mount /dev /newroot/dev  0x2000 ".into(),
        "mount /run /newroot/run  0x2000 ".into(),
        "mount /tmp /newroot/tmp  0x2000 ".into(),
        "chdir /newroot".into(),
        "mount . /  0x2000 ".into(),
        "chroot .".into(),
        "chdir /".into(),
        "exec /init".into(),
    ];
    let got = f.only(&[
        "finit_module",
        "mount /dev/vda",
        "mount tmpfs /.kiln",
        "mkdir /.kiln/rw/",
        "mount overlay",
        "mount /",
        "mount .",
        "chdir",
        "chroot",
        "exec",
    ]);
    assert_eq!(got, want);
    // Not-shipped drivers are noted, not fatal; the device was polled for.
    assert!(f.lines().contains(
        &"kiln-init: module virtio_mmio failed: not in /lib/modules/6.6.0-kiln/modules.dep"
    ));
    assert!(f.now() >= Duration::from_millis(1500) && f.now() < Duration::from_secs(2));
    // The submounts moved with their parents.
    let mounts = String::from_utf8_lossy(&f.files["/proc/mounts"]).into_owned();
    assert!(
        mounts.contains("devpts /newroot/dev/pts devpts"),
        "{mounts}"
    );
    assert!(mounts.contains("cgroup2 /newroot/sys/fs/cgroup cgroup2"));
    // The first init stops there: nothing of the normal boot ran.
    assert!(f
        .only(&["sethostname", "link_up", "spawn", "reboot"])
        .is_empty());
    assert_eq!(
        f.lines().last(),
        Some(&"kiln-init: note: switched root to /dev/vda (squashfs): exec /init")
    );
}

#[test]
fn a_device_that_never_appears_powers_off_after_the_time_limit() {
    let mut f = initrd("root=/dev/vda rootfstype=squashfs rootwait=3");
    f.appear.clear();
    let mut init = Init::new(f, Config::default());
    assert_eq!(init.run(), Some(Halt::Poweroff));
    let mut f = init.sys;
    assert!(f.lines().contains(
        &"kiln-init: error: root /dev/vda (squashfs): /dev/vda did not appear within 3 s; powering off"
    ));
    assert_eq!(f.calls.last().map(String::as_str), Some("reboot poweroff"));
    assert!(f.only(&["mount /dev/vda", "exec", "chroot"]).is_empty());
    assert!(f.now() >= Duration::from_secs(3) && f.now() < Duration::from_secs(4));
}

#[test]
fn a_root_that_does_not_mount_names_every_type_tried() {
    let mut f = initrd("root=/dev/vda rootfstype=squashfs,iso9660");
    f.fail_mounts.insert("/.kiln/lower".into());
    let (f, s) = boot(f);
    assert_eq!(s, Switch::Failed);
    let line = "kiln-init: error: root /dev/vda (squashfs,iso9660): cannot mount read-only: \
                squashfs: Invalid argument (os error 22); iso9660: Invalid argument (os error 22); \
                powering off";
    assert!(f.lines().contains(&line), "{:#?}", f.lines());
    assert!(f.only(&["mount overlay", "exec"]).is_empty());
    assert_eq!(f.calls.last().map(String::as_str), Some("reboot poweroff"));
}

#[test]
fn the_next_type_is_tried_when_one_fails() {
    let mut f = initrd("root=/dev/vda rootfstype=squashfs,iso9660");
    f.fail_mounts.insert("/.kiln/lower squashfs".into());
    let (f, s) = boot(f);
    assert_eq!(s, Switch::Handed);
    assert_eq!(
        f.only(&["mount /dev/vda"]),
        [
            "mount /dev/vda /.kiln/lower squashfs 0x1 ",
            "mount /dev/vda /.kiln/lower iso9660 0x1 "
        ]
    );
}

#[test]
fn a_root_without_init_or_a_failing_exec_powers_off() {
    let mut f = initrd(SQUASHFS);
    f.files.remove("/newroot/init");
    let (f, s) = boot(f);
    assert_eq!(s, Switch::Failed);
    assert!(f.lines().contains(
        &"kiln-init: error: root /dev/vda (squashfs): no /init in the root filesystem; powering off"
    ));
    assert!(f.only(&["chroot", "exec"]).is_empty());

    let mut f = initrd(SQUASHFS);
    f.fail_exec = true;
    let (f, s) = boot(f);
    assert_eq!(s, Switch::Failed);
    assert!(f.lines().contains(
        &"kiln-init: error: root /dev/vda (squashfs): exec /init: No such file or directory (os error 2); powering off"
    ));
}

#[test]
fn a_bad_root_powers_off_on_the_initramfs_only() {
    let (f, s) = boot(initrd("root=LABEL=kiln rootfstype=iso9660"));
    assert_eq!(s, Switch::Failed);
    assert!(f.lines().iter().any(|l| l
        .starts_with("kiln-init: error: root=LABEL=kiln: only /dev/NAME devices are supported")
        && l.ends_with("; powering off")));

    let mut f = initrd("root=LABEL=kiln rootfstype=iso9660");
    f.file("/proc/mounts", "/dev/sda1 / ext4 rw 0 0\n");
    let (_, s) = boot(f);
    assert_eq!(s, Switch::Continue);
}

#[test]
fn the_init_of_the_new_root_does_not_switch_again() {
    // What the exec'd init sees: the overlay as /, the moved system mounts.
    let mut f = initrd(SQUASHFS);
    f.file(
        "/proc/mounts",
        "overlay / overlay rw 0 0\nproc /proc proc rw 0 0\nsysfs /sys sysfs rw 0 0\n\
         dev /dev devtmpfs rw 0 0\ndevpts /dev/pts devpts rw 0 0\nshm /dev/shm tmpfs rw 0 0\n\
         tmpfs /run tmpfs rw 0 0\ntmpfs /tmp tmpfs rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n",
    );
    let (f, s) = boot(f);
    assert_eq!(s, Switch::Continue);
    assert!(f
        .lines()
        .contains(&"kiln-init: note: / is not the initramfs: root= needs no switch"));
    assert!(f
        .lines()
        .contains(&"kiln-init: note: /proc already mounted"));
    assert!(f.only(&["mount", "chroot", "exec"]).is_empty());
    // The normal boot went on.
    assert!(f.lines().contains(&"kiln-init: hostname kiln"));
}

#[test]
fn without_root_nothing_is_switched() {
    let (f, s) = boot(initrd("console=ttyS0"));
    assert_eq!(s, Switch::Continue);
    assert!(f.only(&["mount /dev/vda", "chroot", "exec"]).is_empty());
    assert!(!f.lines().iter().any(|l| l.contains("root")));
}
