//! The disk formats of a real build (the committed layout's kernel and
//! systemd-stub), checked by independent tools: objdump, sgdisk, fsck.fat
//! (through mtools' view of the ESP) and qemu-img. The tools only check.

use std::path::Path;

use super::examples::build_minimal;
use crate::support::{kiln, run_tool, stderr, stdout, TestDir};

#[test]
fn disk_outputs_pass_their_independent_checkers() {
    let t = TestDir::new();
    build_minimal(
        &t,
        &[
            "uki",
            "iso-bios",
            "iso-efi",
            "iso-efi-initrd",
            "raw-bios",
            "qcow2-bios",
            "raw-efi",
            "qcow2-efi",
            "vhd",
            "dynamic-vhd",
            "vmdk",
            "gcp",
            "kernel+squashfs",
        ],
    );
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

    // El Torito, as xorriso reads it: iso-efi-initrd has one UEFI entry,
    // iso-bios one BIOS entry (ISOLINUX, boot-info table, isohybrid MBR),
    // iso-efi both, in that order.
    let el_torito = |file: &str| -> Vec<String> {
        // xorriso prints the boot record summary on stderr, the rest on stdout.
        let out = run_tool(
            "xorriso",
            &["-indev", &p(file), "-report_el_torito", "plain"],
        );
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        report
            .lines()
            .filter(|l| l.starts_with("El Torito") || l.starts_with("Boot record"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let efi_only = el_torito("m-efi-initrd.iso");
    assert!(
        efi_only
            .iter()
            .any(|l| l.contains("boot img : 1 UEFI y none")),
        "{efi_only:?}"
    );
    assert!(!efi_only.iter().any(|l| l.contains("BIOS")), "{efi_only:?}");
    let bios = el_torito("m.iso");
    for want in [
        "Boot record : El Torito , MBR isohybrid cyl-align-on",
        "El Torito boot img : 1 BIOS y none 0x0000 0x00 4",
        "El Torito img path : 1 /ISOLINUX.BIN",
        "El Torito img opts : 1 boot-info-table isohybrid-suitable",
    ] {
        assert!(bios.iter().any(|l| l.starts_with(want)), "{want}: {bios:?}");
    }
    let both = el_torito("m-efi.iso");
    for want in [
        "El Torito boot img : 1 BIOS y none",
        "El Torito boot img : 2 UEFI y none",
        "El Torito img path : 2 /EFI.IMG",
        "El Torito img opts : 1 boot-info-table isohybrid-suitable",
    ] {
        assert!(both.iter().any(|l| l.starts_with(want)), "{want}: {both:?}");
    }
    // isoinfo reads the BIOS ISO's volume and ISOLINUX's configuration,
    // which boots the kernel with the spec's command line.
    let info = stdout(&run_tool("isoinfo", &["-d", "-i", &p("m.iso")]));
    assert!(info.contains("Volume id: M\n"), "{info}");
    let cfg = run_tool("isoinfo", &["-i", &p("m.iso"), "-x", "/ISOLINUX.CFG;1"]).stdout;
    let cfg = String::from_utf8_lossy(&cfg);
    let cmdline =
        std::fs::read_to_string(p("m-cmdline")).expect("kernel+squashfs writes m-cmdline");
    assert!(
        cfg.contains("KERNEL /kernel") && cfg.contains(&format!("APPEND {}", cmdline.trim())),
        "{cfg}"
    );
    let sgdisk = stdout(&run_tool("sgdisk", &["-v", &p("m-efi.iso")]));
    assert!(sgdisk.contains("No problems found"), "{sgdisk}");

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
    // The hybrid disk's BIOS half: gptmbr.bin in the protective MBR (it
    // says "Missing OS" when no partition is legacy-BIOS-bootable), the ESP
    // with GPT attribute bit 2, as sgdisk reads it.
    let disk = std::fs::read(p("m-efi.img")).unwrap();
    assert!(
        disk[..440].windows(10).any(|w| w == b"Missing OS"),
        "gptmbr.bin in the protective MBR"
    );
    assert_eq!(disk[450], 0xEE, "the protective partition stays");
    let attrs = stdout(&run_tool("sgdisk", &["-A", "1:show", &p("m-efi.img")]));
    assert!(attrs.contains("1:2:1 (legacy BIOS bootable)"), "{attrs}");
    // fsck.fat on the ESP exactly as the GPT bounds it (first entry): clean,
    // and the count fsck.fat gives for the UKI and SYSLINUX's five files.
    let le64 = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().unwrap());
    let entry = &disk[1024..1024 + 128];
    let (first, last) = (le64(&entry[32..]) as usize, le64(&entry[40..]) as usize);
    let esp_path = t.join("esp.img");
    std::fs::write(&esp_path, &disk[first * 512..(last + 1) * 512]).unwrap();
    let fsck = stdout(&run_tool("fsck.fat", &["-n", esp_path.to_str().unwrap()]));
    assert!(
        fsck.contains("esp.img: 9 files") && !fsck.contains("differ") && !fsck.contains("wrong"),
        "{fsck}"
    );
    check_syslinux_volume(
        esp_path.to_str().unwrap(),
        &disk[first * 512..first * 512 + 512],
        &std::fs::read(p("m-kernel")).unwrap(),
        cmdline.trim(),
    );

    // raw-bios: an MBR with SYSLINUX's code and one active FAT32-LBA
    // partition at 1 MiB over the rest of the disk; the volume is clean
    // and holds SYSLINUX, its configuration, the kernel and the initrd.
    let bios = std::fs::read(p("m-bios.img")).unwrap();
    let mbr_bin = &bios[..440];
    assert!(mbr_bin.iter().any(|&b| b != 0), "MBR code present");
    let part = &bios[446..462];
    assert_eq!((part[0], part[4]), (0x80, 0x0C), "active FAT32 (LBA)");
    let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    assert_eq!(le32(&part[8..]), 2048);
    assert_eq!(
        u64::from(le32(&part[12..])) * 512,
        bios.len() as u64 - (1 << 20)
    );
    assert_eq!(&bios[510..512], &[0x55, 0xAA]);
    let volume = t.join("bios-part.img");
    std::fs::write(&volume, &bios[1 << 20..]).unwrap();
    check_syslinux_volume(
        volume.to_str().unwrap(),
        &bios[1 << 20..(1 << 20) + 512],
        &std::fs::read(p("m-kernel")).unwrap(),
        cmdline.trim(),
    );
    run_tool("qemu-img", &["check", "-f", "qcow2", &p("m.qcow2")]);
    let o = run_tool(
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "qcow2",
            &p("m-bios.img"),
            &p("m.qcow2"),
        ],
    );
    assert!(
        stdout(&o).contains("Images are identical"),
        "{}",
        stdout(&o)
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

#[test]
fn kernel_iso_root_is_rock_ridge_with_the_image_tree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let t = TestDir::new();
    let layout = root.join("oci-layout");
    let yml = root.join("examples/minimal.yml");
    build_minimal(&t, &["kernel+iso", "tar"]);
    let p = |n: &str| t.join("out").join(n).to_str().unwrap().to_owned();
    for f in ["m-kernel", "m-cmdline", "m-root-initrd.img"] {
        assert!(Path::new(&p(f)).is_file(), "{f}");
    }
    let info = stdout(&run_tool("isoinfo", &["-d", "-i", &p("m.iso")]));
    assert!(
        info.contains("Rock Ridge signatures version 1 found"),
        "{info}"
    );
    assert!(
        !info.contains("El Torito"),
        "a root filesystem, not a boot image: {info}"
    );
    // xorriso lists the same paths as the image's tar, without the boot
    // files (the kernel and initrd travel beside the ISO).
    let found = stdout(&run_tool(
        "xorriso",
        &["-indev", &p("m.iso"), "-find", "/", "-exec", "echo"],
    ));
    let mut iso: Vec<&str> = found
        .lines()
        .filter_map(|l| l.strip_prefix("'/").and_then(|l| l.strip_suffix('\'')))
        .filter(|l| !l.is_empty())
        .collect();
    iso.sort_unstable();
    let listing = stdout(&run_tool("tar", &["-tf", &p("m.tar")]));
    let mut tar: Vec<&str> = listing
        .lines()
        .map(|l| l.trim_end_matches('/'))
        .filter(|l| !l.starts_with("boot/"))
        .collect();
    tar.sort_unstable();
    assert_eq!(iso, tar);
    // Both at once would write m.iso twice: refused before anything is written.
    let both = kiln(
        t.path(),
        &[
            "build",
            "--layout",
            layout.to_str().unwrap(),
            "-o",
            "out2",
            "-f",
            "kernel+iso",
            "-f",
            "iso-bios",
            yml.to_str().unwrap(),
        ],
    );
    assert!(!both.status.success());
    assert!(stderr(&both).contains("both write"), "{}", stderr(&both));
    assert!(!t.join("out2/minimal-kernel").exists());
}

/// A FAT volume (image file `volume`, boot sector `boot`) with SYSLINUX
/// installed: clean for fsck.fat, SYSLINUX's files at the root, `KERNEL`
/// the kernel, `SYSLINUX.CFG` appending `cmdline`, SYSLINUX's boot code
/// around the volume's own FAT32 BPB.
fn check_syslinux_volume(volume: &str, boot: &[u8], kernel: &[u8], cmdline: &str) {
    let fsck_out = stdout(&run_tool("fsck.fat", &["-n", volume]));
    assert!(
        !fsck_out.contains("differ") && !fsck_out.contains("wrong"),
        "{fsck_out}"
    );
    let dir = stdout(&run_tool("mdir", &["-b", "-i", volume, "::/"]));
    for f in [
        "INITRD.IMG",
        "KERNEL",
        "LDLINUX.C32",
        "LDLINUX.SYS",
        "SYSLINUX.CFG",
    ] {
        assert!(dir.contains(&format!("::/{f}")), "{volume}: {f}: {dir}");
    }
    let kernel_copy = run_tool("mtype", &["-i", volume, "::KERNEL"]).stdout;
    assert!(kernel_copy == kernel, "{volume}: KERNEL is the kernel");
    let cfg = run_tool("mtype", &["-i", volume, "::SYSLINUX.CFG"]).stdout;
    let cfg = String::from_utf8_lossy(&cfg);
    assert!(
        cfg.contains(&format!("APPEND {cmdline}")),
        "{volume}: {cfg}"
    );
    assert_eq!(&boot[82..90], b"FAT32   ", "{volume}");
    assert!(
        boot[90..510].windows(12).any(|w| w == b"Boot error\r\n"),
        "{volume}: SYSLINUX boot code"
    );
}

/// Copy the committed layout without the images whose names start with
/// `drop` (blobs stay; only index.json forgets them).
fn layout_without(t: &TestDir, drop: &str) -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("oci-layout");
    let dst = t.join("layout");
    std::fs::create_dir_all(dst.join("blobs/sha256")).unwrap();
    for e in std::fs::read_dir(root.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join("blobs/sha256").join(e.file_name())).unwrap();
    }
    std::fs::copy(root.join("oci-layout"), dst.join("oci-layout")).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    let mut index = index;
    let manifests = index["manifests"].as_array_mut().unwrap();
    let before = manifests.len();
    manifests.retain(|m| {
        !m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap_or("")
            .starts_with(drop)
    });
    assert!(manifests.len() < before, "{drop} was in the layout");
    std::fs::write(dst.join("index.json"), index.to_string()).unwrap();
    dst
}

#[test]
fn missing_bootloaders_and_small_sizes_are_user_errors_leaving_nothing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let yml = root.join("examples/minimal.yml");
    let yml = yml.to_str().unwrap();
    let t = TestDir::new();
    let committed = root.join("oci-layout");
    let committed = committed.to_str().unwrap();
    // A disk smaller than the kernel and initrd: both sizes are named.
    for format in ["raw-bios", "raw-efi"] {
        let out = kiln(
            t.path(),
            &[
                "build", "--layout", committed, "-o", "small", "-f", format, "--size", "4194304",
                yml,
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{format}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("a disk of at least") && err.contains("4194304 bytes"),
            "{format}: {err}"
        );
    }
    // A layout without the loader images: the error names the image and
    // the command that builds it.
    let no_syslinux = layout_without(&t, "kiln.dev/syslinux:");
    for format in ["iso-bios", "raw-bios", "iso-efi", "raw-efi", "vhd"] {
        let out = kiln(
            t.path(),
            &[
                "build",
                "--layout",
                no_syslinux.to_str().unwrap(),
                "-o",
                "noloader",
                "-f",
                format,
                yml,
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{format}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("kiln.dev/syslinux:0.1")
                && err.contains("kiln pkg build")
                && err.contains("pkg/syslinux"),
            "{format}: {err}"
        );
    }
    for dir in ["small", "noloader"] {
        let left: Vec<_> = std::fs::read_dir(t.join(dir))
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{dir}: {left:?}");
    }
}
