//! The pure half of switching root: command-line words, `root=` parsing, the
//! module list and the mounts.

use std::collections::BTreeSet;

use super::*;

fn kv(k: &str, v: Option<&str>) -> (String, Option<String>) {
    (k.to_string(), v.map(str::to_string))
}

#[test]
fn words_follow_the_kernel_quoting() {
    assert_eq!(
        words("console=ttyS0  root=/dev/vda ro quiet\n"),
        [
            kv("console", Some("ttyS0")),
            kv("root", Some("/dev/vda")),
            kv("ro", None),
            kv("quiet", None)
        ]
    );
    assert_eq!(
        words(r#"rootflags="a b" "x=y z" "flag" k="#),
        [
            kv("rootflags", Some("a b")),
            kv("x", Some("y z")),
            kv("flag", None),
            kv("k", Some("")),
        ]
    );
    assert_eq!(words("a=1 -- root=/dev/vda"), [kv("a", Some("1"))]);
    assert!(words("   ").is_empty());
}

#[test]
fn no_root_asks_for_nothing() {
    assert_eq!(parse("console=ttyS0 quiet"), Ok(None));
    assert_eq!(parse(""), Ok(None));
    // root= after `--` belongs to init's argv, not to the kernel.
    assert_eq!(parse("quiet -- root=/dev/vda"), Ok(None));
}

#[test]
fn squashfs_root_with_defaults() {
    let r = parse("console=ttyS0 root=/dev/vda rootfstype=squashfs")
        .unwrap()
        .unwrap();
    assert_eq!(
        r,
        Root {
            device: "/dev/vda".into(),
            fstypes: vec!["squashfs".into()],
            flags: libc::MS_RDONLY,
            data: String::new(),
            wait: DEFAULT_WAIT,
        }
    );
    assert_eq!(r.describe(), "/dev/vda (squashfs)");
}

#[test]
fn the_last_value_wins_and_flags_and_wait_are_read() {
    let r = parse(
        r#"root=/dev/sda root=/dev/sr0 rootfstype=iso9660,udf rootflags="noatime,map=off" rootwait=30"#,
    )
    .unwrap()
    .unwrap();
    assert_eq!(r.device, "/dev/sr0");
    assert_eq!(r.fstypes, ["iso9660", "udf"]);
    assert_eq!(r.flags, libc::MS_RDONLY | libc::MS_NOATIME);
    assert_eq!(r.data, "map=off");
    assert_eq!(r.wait, Duration::from_secs(30));
}

#[test]
fn unsupported_roots_are_errors_naming_the_key() {
    for (cmdline, word) in [
        ("root=LABEL=kiln rootfstype=iso9660", "root=LABEL=kiln"),
        ("root=UUID=1234 rootfstype=ext4", "root=UUID=1234"),
        ("root=/dev/ rootfstype=ext4", "root=/dev/:"),
        ("root=/dev/../etc rootfstype=ext4", "root=/dev/../etc"),
        ("root=vda rootfstype=ext4", "root=vda"),
        ("root=/dev/vda", "needs rootfstype="),
        ("root=/dev/vda rootfstype=", "needs rootfstype="),
        ("root=/dev/vda rootfstype=squashfs rootwait=0", "rootwait=0"),
        (
            "root=/dev/vda rootfstype=squashfs rootwait=soon",
            "rootwait=soon",
        ),
    ] {
        match parse(cmdline) {
            Err(e) => assert!(e.contains(word), "{cmdline}: {e}"),
            Ok(r) => panic!("{cmdline}: accepted as {r:?}"),
        }
    }
}

fn names(w: &[Wanted]) -> Vec<&str> {
    w.iter().map(|w| w.name.as_str()).collect()
}

#[test]
fn modules_are_drivers_then_filesystems_then_overlay_then_extra() {
    let r = parse("root=/dev/vda rootfstype=squashfs").unwrap().unwrap();
    let extra = vec![Wanted {
        name: "e1000".into(),
        params: "x=1".into(),
    }];
    assert_eq!(
        names(&modules(&r, extra)),
        [
            "virtio_pci",
            "virtio_mmio",
            "virtio_blk",
            "squashfs",
            "overlay",
            "e1000"
        ]
    );
    let r = parse("root=/dev/sr0 rootfstype=iso9660").unwrap().unwrap();
    assert_eq!(
        names(&modules(&r, Vec::new())),
        [
            "ata_piix",
            "ahci",
            "virtio_pci",
            "virtio_scsi",
            "sr_mod",
            "isofs",
            "overlay"
        ]
    );
    assert_eq!(device_modules("/dev/nvme0n1"), ["nvme"]);
    assert_eq!(device_modules("/dev/sda1").last(), Some(&"sd_mod"));
    assert!(device_modules("/dev/mmcblk0").is_empty());
    assert_eq!(fs_module("ext3"), "ext4");
}

#[test]
fn mounts_stack_a_tmpfs_upper_on_the_read_only_root() {
    let r = parse("root=/dev/vda rootfstype=squashfs rootflags=noexec,x=1")
        .unwrap()
        .unwrap();
    let lower = lower_mount(&r, "squashfs");
    assert_eq!(lower.source, "/dev/vda");
    assert_eq!(lower.target, LOWER);
    assert_eq!(lower.flags, libc::MS_RDONLY | libc::MS_NOEXEC);
    assert_eq!(lower.data, "x=1");
    let [rw, ovl] = overlay_mounts();
    assert_eq!((rw.target.as_str(), rw.fstype.as_str()), (RW, "tmpfs"));
    assert_eq!(ovl.target, NEWROOT);
    assert_eq!(
        ovl.data,
        "lowerdir=/.kiln/lower,upperdir=/.kiln/rw/upper,workdir=/.kiln/rw/work"
    );
}

#[test]
fn only_top_level_mounted_system_mounts_move() {
    let system = [
        "/proc",
        "/sys",
        "/dev",
        "/dev/pts",
        "/run",
        "/sys/fs/cgroup",
    ];
    let mounted: BTreeSet<String> = ["/", "/proc", "/sys", "/dev", "/dev/pts", "/sys/fs/cgroup"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(moves(&system, &mounted), ["/proc", "/sys", "/dev"]);
    let m = move_mount("/dev");
    assert_eq!(
        (m.source.as_str(), m.target.as_str(), m.flags),
        ("/dev", "/newroot/dev", libc::MS_MOVE)
    );
}
