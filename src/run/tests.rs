//! Unit tests of `kiln run`: which files boot, and the qemu arguments.
use super::*;

#[test]
fn finds_kernel_initrd_by_name() {
    let d = tempfile::tempdir().unwrap();
    for (n, c) in [
        ("x-kernel", "k"),
        ("x-initrd.img", "i"),
        ("x-cmdline", "console=ttyS0\n"),
    ] {
        std::fs::write(d.path().join(n), c).unwrap();
    }
    let b = find_boot(&d.path().join("x")).unwrap();
    assert_eq!(
        b,
        Boot::KernelInitrd {
            kernel: d.path().join("x-kernel"),
            initrd: d.path().join("x-initrd.img"),
            cmdline: "console=ttyS0".into()
        }
    );
    assert!(matches!(
        find_boot(&d.path().join("y")),
        Err(RunError::NotFound(_))
    ));
    std::fs::write(d.path().join("y-efi.iso"), "").unwrap();
    assert!(matches!(
        find_boot(&d.path().join("y")).unwrap(),
        Boot::Iso { efi: true, .. }
    ));
}

#[test]
fn qemu_args_for_direct_boot() {
    let b = Boot::KernelInitrd {
        kernel: "k".into(),
        initrd: "i".into(),
        cmdline: "console=ttyS0".into(),
    };
    let opts = QemuOptions {
        publish: vec!["8080:80".into()],
        cmdline_append: Some("quiet".into()),
        ..QemuOptions::default()
    };
    let a = qemu_args(&b, &opts, "tcg", None).unwrap().join(" ");
    assert!(a.contains("-accel tcg -m 1024M -smp 1"), "{a}");
    assert!(
        a.contains("-kernel k -initrd i -append console=ttyS0 quiet"),
        "{a}"
    );
    assert!(a.contains("hostfwd=tcp::8080-:80"), "{a}");
    assert!(!a.contains("pflash"));
    let bad = QemuOptions {
        publish: vec!["x".into()],
        ..QemuOptions::default()
    };
    assert!(qemu_args(&b, &bad, "tcg", None).is_err());
}

#[test]
fn finds_kernel_squashfs_by_file_and_by_name() {
    let d = tempfile::tempdir().unwrap();
    let sq = d.path().join("x-squashfs.img");
    std::fs::write(&sq, "hsqs").unwrap();
    // Without the kernel and the root initrd beside it, the error says which is missing.
    let err = find_boot(&sq).unwrap_err();
    assert!(err.to_string().contains("x-kernel"), "{err}");
    for (n, c) in [
        ("x-kernel", "k"),
        ("x-root-initrd.img", "i"),
        ("x-cmdline", "console=ttyS0\n"),
    ] {
        std::fs::write(d.path().join(n), c).unwrap();
    }
    let want = Boot::KernelSquashfs {
        kernel: d.path().join("x-kernel"),
        initrd: d.path().join("x-root-initrd.img"),
        squashfs: sq.clone(),
        cmdline: "console=ttyS0".into(),
    };
    assert_eq!(find_boot(&sq).unwrap(), want);
    assert_eq!(find_boot(&d.path().join("x")).unwrap(), want);
    assert_eq!(find_boot(&d.path().join("x-kernel")).unwrap(), want);
    // A kernel+initrd build beside it is what the name boots.
    std::fs::write(d.path().join("x-initrd.img"), "i").unwrap();
    assert!(matches!(
        find_boot(&d.path().join("x")).unwrap(),
        Boot::KernelInitrd { .. }
    ));
    assert_eq!(find_boot(&sq).unwrap(), want);
}

#[test]
fn qemu_args_for_kernel_squashfs() {
    let b = Boot::KernelSquashfs {
        kernel: "k".into(),
        initrd: "r".into(),
        squashfs: "s.img".into(),
        cmdline: "console=ttyS0".into(),
    };
    let opts = QemuOptions {
        cmdline_append: Some("quiet".into()),
        ..QemuOptions::default()
    };
    let a = qemu_args(&b, &opts, "tcg", None).unwrap().join(" ");
    assert!(
        a.contains(
            "-kernel k -initrd r -append console=ttyS0 root=/dev/vda rootfstype=squashfs quiet"
        ),
        "{a}"
    );
    assert!(
        a.contains("-drive file=s.img,if=virtio,format=raw,readonly=on"),
        "{a}"
    );
    assert!(!a.contains("pflash"));
}

#[test]
fn uefi_firmware_is_a_copy() {
    let b = Boot::Iso {
        path: "a-efi.iso".into(),
        efi: true,
    };
    let a = qemu_args(
        &b,
        &QemuOptions::default(),
        "tcg",
        Some((Path::new("/fw/CODE.fd"), Path::new("/tmp/x/VARS.fd"))),
    )
    .unwrap()
    .join(" ");
    assert!(a.contains("readonly=on,file=/fw/CODE.fd"), "{a}");
    assert!(a.contains("unit=1,file=/tmp/x/VARS.fd"), "{a}");
}

#[test]
fn probe_firmware_runs_under_tcg() {
    // The probe must report success where guest code does run; TCG
    // always runs it (qemu is installed by .ci/run for the boot tests).
    let rom = probe_firmware();
    assert_eq!(rom.len(), 65536);
    assert_eq!(rom[0xfff0], 0xe9);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.rom");
    std::fs::write(&path, &rom).unwrap();
    let status = Command::new(QEMU)
        .args([
            "-accel",
            "tcg",
            "-machine",
            "q35",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-bios"])
        .arg(&path)
        .status()
        .expect("qemu-system-x86_64 (Debian qemu-system-x86) must be installed");
    assert_eq!(status.code(), Some(3));
}

#[test]
fn an_iso_without_el_torito_is_a_kernel_iso_root() {
    let d = tempfile::tempdir().unwrap();
    let mut boot = vec![0u8; 18 * 2048];
    boot[17 * 2048..17 * 2048 + 30].copy_from_slice(b"\0CD001\x01EL TORITO SPECIFICATION");
    std::fs::write(d.path().join("b.iso"), &boot).unwrap();
    assert_eq!(
        find_boot(&d.path().join("b.iso")).unwrap(),
        Boot::Iso {
            path: d.path().join("b.iso"),
            efi: false
        }
    );
    let root = d.path().join("r.iso");
    std::fs::write(&root, vec![0u8; 18 * 2048]).unwrap();
    let err = find_boot(&root).unwrap_err();
    assert!(err.to_string().contains("r-kernel"), "{err}");
    for n in ["r-kernel", "r-root-initrd.img"] {
        std::fs::write(d.path().join(n), "x").unwrap();
    }
    let b = find_boot(&root).unwrap();
    assert!(
        matches!(&b, Boot::KernelIso { iso, .. } if *iso == root),
        "{b:?}"
    );
    let a = qemu_args(&b, &QemuOptions::default(), "tcg", None)
        .unwrap()
        .join(" ");
    assert!(
        a.contains("-append root=/dev/sr0 rootfstype=iso9660 "),
        "{a}"
    );
    assert!(a.contains("media=cdrom,readonly=on"), "{a}");
}

#[test]
fn a_bootable_iso_can_be_attached_as_a_disk() {
    let b = Boot::Iso {
        path: "h.iso".into(),
        efi: false,
    };
    let opts = QemuOptions {
        iso_as_disk: true,
        ..QemuOptions::default()
    };
    let a = qemu_args(&b, &opts, "tcg", None).unwrap().join(" ");
    assert!(
        a.contains("-drive file=h.iso,format=raw,if=virtio,readonly=on"),
        "{a}"
    );
    assert!(!a.contains("cdrom"), "{a}");
    let a = qemu_args(&b, &QemuOptions::default(), "tcg", None)
        .unwrap()
        .join(" ");
    assert!(a.contains("media=cdrom"), "{a}");
}

#[test]
fn network_configurators_are_found_by_program_or_container_name() {
    for path in [
        &b"sbin/dhcpcd"[..],
        b"containers/onboot/003-dhcpcd/config.json",
        b"containers/services/udhcpc-eth0",
        b"usr/lib/systemd/systemd-networkd",
        b"usr/sbin/dhclient",
    ] {
        assert!(
            configures_network(path),
            "{}",
            String::from_utf8_lossy(path)
        );
    }
    for path in [
        &b"etc/dhcpcd.conf"[..],
        b"containers/services/getty/rootfs/bin/sh",
        b"dhcpcd/readme",
        b"usr/share/doc/udhcpc-notes",
    ] {
        assert!(
            !configures_network(path),
            "{}",
            String::from_utf8_lossy(path)
        );
    }
}

#[test]
fn hybrid_disks_boot_under_either_firmware() {
    let disk = |format, efi| Boot::Disk {
        path: "m.vhd".into(),
        format,
        efi,
    };
    let bios = QemuOptions {
        bios: true,
        ..QemuOptions::default()
    };
    let default = QemuOptions::default();
    for format in ["raw", "qcow2", "vpc", "vmdk"] {
        assert!(
            wants_uefi(&disk(format, true), &default).unwrap(),
            "{format}"
        );
        assert!(!wants_uefi(&disk(format, true), &bios).unwrap(), "{format}");
    }
    assert!(!wants_uefi(&disk("raw", false), &default).unwrap());
    let uki = Boot::Uki {
        path: "m.efi".into(),
    };
    let err = wants_uefi(&uki, &bios).unwrap_err().to_string();
    assert!(err.contains("only under UEFI"), "{err}");
    let iso = |p: &str| Boot::Iso {
        path: p.into(),
        efi: true,
    };
    assert!(!wants_uefi(&iso("m-efi.iso"), &bios).unwrap());
    assert!(wants_uefi(&iso("m-efi-initrd.iso"), &bios).is_err());
}
