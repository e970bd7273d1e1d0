//! The disk formats of a real build (the committed layout's kernel and
//! systemd-stub), checked by independent tools: objdump, sgdisk, fsck.fat
//! (through mtools' view of the ESP) and qemu-img. The tools only check.

use std::path::Path;

use crate::support::{kiln, run_tool, stderr, stdout, TestDir};

#[test]
fn disk_outputs_pass_their_independent_checkers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let t = TestDir::new();
    let layout = root.join("oci-layout");
    let yml = root.join("examples/minimal.yml");
    let mut args = vec![
        "build",
        "--layout",
        layout.to_str().unwrap(),
        "-o",
        "out",
        "--name",
        "m",
    ];
    for f in [
        "uki",
        "iso-efi",
        "raw-efi",
        "qcow2-efi",
        "vhd",
        "dynamic-vhd",
        "vmdk",
        "gcp",
        "kernel+squashfs",
    ] {
        args.extend(["-f", f]);
    }
    args.push(yml.to_str().unwrap());
    let out = kiln(t.path(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let p = |n: &str| t.join("out").join(n).to_str().unwrap().to_owned();

    // The UKI has systemd-stub's sections plus ours, the kernel last.
    let sections = stdout(&run_tool("objdump", &["-h", &p("m.efi")]));
    let order: Vec<&str> = [".osrel", ".cmdline", ".initrd", ".linux"]
        .into_iter()
        .filter(|s| sections.contains(&format!(" {s} ")))
        .collect();
    assert_eq!(
        order,
        [".osrel", ".cmdline", ".initrd", ".linux"],
        "{sections}"
    );
    let linux_at = sections.find(" .linux ").unwrap();
    assert!(
        sections[linux_at..]
            .lines()
            .skip(2)
            .all(|l| !l.contains(" .")),
        "`.linux` is the last section:\n{sections}"
    );

    // The ISO's El Torito catalog has one UEFI entry (platform 0xEF).
    let et = stdout(&run_tool(
        "xorriso",
        &["-indev", &p("m-efi.iso"), "-report_el_torito", "plain"],
    ));
    assert!(et.contains("UEFI"), "{et}");

    // GPT is valid; the ESP holds the UKI at the removable-media path.
    let v = stdout(&run_tool("sgdisk", &["-v", &p("m-efi.img")]));
    assert!(v.contains("No problems found"), "{v}");
    let esp = format!("{}@@1M", p("m-efi.img"));
    let copy = t.join("bootx64.efi");
    run_tool(
        "mcopy",
        &[
            "-n",
            "-i",
            &esp,
            "::EFI/BOOT/BOOTX64.EFI",
            copy.to_str().unwrap(),
        ],
    );
    assert!(
        std::fs::read(&copy).unwrap() == std::fs::read(p("m.efi")).unwrap(),
        "the ESP holds the UKI"
    );

    // Every container is the same disk as the raw image.
    run_tool("qemu-img", &["check", "-f", "qcow2", &p("m-efi.qcow2")]);
    run_tool("qemu-img", &["check", "-f", "vmdk", &p("m.vmdk")]);
    for (file, fmt) in [
        ("m-efi.qcow2", "qcow2"),
        ("m.vhd", "vpc"),
        ("m-dynamic.vhd", "vpc"),
        ("m.vmdk", "vmdk"),
    ] {
        let o = run_tool(
            "qemu-img",
            &["compare", "-f", "raw", "-F", fmt, &p("m-efi.img"), &p(file)],
        );
        assert!(
            stdout(&o).contains("Images are identical"),
            "{file}: {}",
            stdout(&o)
        );
    }

    // The squashfs root lists the initrd's layout (boot files travel beside it).
    let sq = stdout(&run_tool("unsquashfs", &["-lln", &p("m-squashfs.img")]));
    assert!(
        sq.contains("squashfs-root/containers/services/getty/config.json"),
        "{sq}"
    );
    assert!(!sq.contains("squashfs-root/boot/kernel"), "{sq}");

    // GCE: a gzip'd tar holding exactly disk.raw, the raw disk.
    let listing = stdout(&run_tool("tar", &["-tzf", &p("m.img.tar.gz")]));
    assert_eq!(listing, "disk.raw\n");
}
