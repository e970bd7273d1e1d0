//! Integration tests: the `iso-efi` image, read back by `xorriso` (its El
//! Torito report and boot image extraction), `isoinfo` (genisoimage),
//! `mtype` (mtools), `fsck.fat` (dosfstools) and `sgdisk` (gdisk, for the
//! hybrid GPT). A missing tool fails the test.

use kiln::output::iso::write_iso_efi;
use kiln::tree::ContentStore;

use crate::support::{run_tool, stdout, TestDir};

/// 2024-02-29 13:45:31 UTC.
const EPOCH: i64 = 1_709_214_331;

/// A stand-in for a UKI: deterministic bytes with a PE-looking start.
fn fake_efi(len: usize) -> Vec<u8> {
    let mut b: Vec<u8> = (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    b[..2].copy_from_slice(b"MZ");
    b
}

fn iso(efi: &[u8], epoch: i64, label: &str) -> Vec<u8> {
    let store = ContentStore::new().unwrap();
    let uki = store.add(efi).unwrap();
    let mut out = Vec::new();
    let n = write_iso_efi(&uki, &store, epoch, label, &mut out).unwrap();
    assert_eq!(n, out.len() as u64);
    assert_eq!(n % 2048, 0);
    out
}

#[test]
fn el_torito_catalog_has_one_uefi_entry_for_the_esp_file() {
    let dir = TestDir::new();
    let img = dir.write("a.iso", iso(&fake_efi(100_000), EPOCH, "kiln-test"));
    let img = img.to_str().unwrap();
    let out = run_tool("xorriso", &["-indev", img, "-report_el_torito", "plain"]);
    let report = stdout(&out);
    let images: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("El Torito boot img"))
        .collect();
    assert_eq!(images.len(), 1, "{report}");
    let cols: Vec<&str> = images[0].split_whitespace().collect();
    // `El Torito boot img : N Pltf B Emul Ld_seg Hdpt Ldsiz LBA`
    assert_eq!(
        &cols[5..11],
        ["1", "UEFI", "y", "none", "0x0000", "0x00"],
        "{report}"
    );
    assert_eq!(cols.last(), Some(&"24"), "{report}");
    assert!(
        report.contains("El Torito img path :   1  /EFI.IMG"),
        "{report}"
    );
}

#[test]
fn isoinfo_reads_the_primary_volume_descriptor_and_files() {
    let dir = TestDir::new();
    let efi = fake_efi(70_000);
    let img = dir.write("a.iso", iso(&efi, EPOCH, "my-image.v2"));
    let img = img.to_str().unwrap();
    let info = stdout(&run_tool("isoinfo", &["-d", "-i", img]));
    assert!(info.contains("Volume id: MY_IMAGE_V2\n"), "{info}");
    assert!(info.contains("Logical block size is: 2048"), "{info}");
    assert!(info.contains("boot catalog is in sector 22"), "{info}");
    assert!(info.contains("Arch 239"), "{info}");
    let size: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("Volume size is: "))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no volume size:\n{info}"));
    // The volume ends with the ESP; the backup GPT of the hybrid disk and
    // its 1 MiB rounding follow it.
    let file_len = std::fs::metadata(img).unwrap().len();
    assert!(
        size * 2048 <= file_len - 33 * 512,
        "{size} sectors, {file_len} bytes"
    );
    assert_eq!(file_len % (1 << 20), 0);

    let list = stdout(&run_tool("isoinfo", &["-l", "-i", img]));
    assert!(list.contains("Feb 29 2024"), "{list}");
    assert!(list.contains("[     24 00]  EFI.IMG;1"), "{list}");
    let readme = run_tool("isoinfo", &["-i", img, "-x", "/README.TXT;1"]).stdout;
    assert!(
        String::from_utf8_lossy(&readme).contains("BOOTX64.EFI"),
        "{readme:?}"
    );

    // The ESP as a file is a clean FAT32 volume holding the binary.
    let esp = run_tool("isoinfo", &["-i", img, "-x", "/EFI.IMG;1"]).stdout;
    let esp_path = dir.write("esp.img", &esp);
    let esp_path = esp_path.to_str().unwrap();
    let fsck = stdout(&run_tool("fsck.fat", &["-n", "-v", esp_path]));
    assert!(
        !fsck.contains("differ") && !fsck.contains("wrong"),
        "{fsck}"
    );
    let got = run_tool("mtype", &["-i", esp_path, "::EFI/BOOT/BOOTX64.EFI"]).stdout;
    assert!(got == efi, "EFI.IMG holds other bytes");
}

#[test]
fn extracted_boot_image_holds_the_efi_binary() {
    let dir = TestDir::new();
    let efi = fake_efi(123_457);
    let img = dir.write("a.iso", iso(&efi, EPOCH, "boot"));
    let out = dir.mkdir("boot");
    run_tool(
        "xorriso",
        &[
            "-osirrox",
            "on",
            "-indev",
            img.to_str().unwrap(),
            "-extract_boot_images",
            out.to_str().unwrap(),
        ],
    );
    let boot = out.join("eltorito_img1_uefi.img");
    let got = run_tool(
        "mtype",
        &["-i", boot.to_str().unwrap(), "::EFI/BOOT/BOOTX64.EFI"],
    )
    .stdout;
    assert_eq!(got.len(), efi.len());
    assert!(got == efi, "the boot image holds other bytes");
}

#[test]
fn hybrid_gpt_has_an_esp_partition_over_the_boot_image() {
    let dir = TestDir::new();
    let efi = fake_efi(40_000);
    let img = dir.write("a.iso", iso(&efi, EPOCH, "usb"));
    let img = img.to_str().unwrap();
    let verify = stdout(&run_tool("sgdisk", &["-v", img]));
    assert!(verify.contains("No problems found"), "{verify}");
    let table = stdout(&run_tool("sgdisk", &["-p", img]));
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap_or_else(|| panic!("no partition 1:\n{table}"))
        .split_whitespace()
        .collect();
    // Number, start sector, end, size, unit, code: the ESP starts where
    // the boot catalog's entry points (ISO sector 24 = disk sector 96).
    assert_eq!(row[1], "96", "{table}");
    assert_eq!(row[5], "EF00", "{table}");
    let got = run_tool(
        "mtype",
        &[
            "-i",
            &format!("{img}@@{}", 96 * 512),
            "::EFI/BOOT/BOOTX64.EFI",
        ],
    )
    .stdout;
    assert!(got == efi, "the ESP partition holds other bytes");
}

#[test]
fn same_inputs_give_the_same_bytes() {
    let efi = fake_efi(50_000);
    let a = iso(&efi, EPOCH, "kiln");
    assert!(a == iso(&efi, EPOCH, "kiln"), "two builds differ");
    assert!(a != iso(&efi, EPOCH + 1, "kiln"), "the epoch is ignored");
    let mut other = efi.clone();
    other[1000] ^= 1;
    assert!(a != iso(&other, EPOCH, "kiln"), "the binary is ignored");
}
