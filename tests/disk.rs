//! Integration tests: the FAT32 writer, the GPT writer and the `raw-efi`
//! image, read back by the standard tools: `fsck.fat` (dosfstools),
//! `mdir`/`mtype` (mtools) and `sgdisk` (gdisk). A missing tool fails the
//! test.

use std::io;

use kiln::output::disk::{guid_from, guid_string, write_raw_efi, EFI_BOOT_PATH};
use kiln::output::fat::{write_fat, FatOptions};
use kiln::tree::ContentStore;

use crate::support::{run_tool, stdout, TestDir};

/// 2024-02-29 13:45:31 UTC.
const EPOCH: i64 = 1_709_214_331;

/// Deterministic, incompressible-looking bytes.
fn bytes(len: usize, salt: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(salt).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn opts(size_bytes: Option<u64>) -> FatOptions {
    FatOptions {
        size_bytes,
        volume_id: 0x1234_ABCD,
        label: *b"ESP        ",
        epoch: EPOCH,
        hidden_sectors: 0,
        boot_code: None,
    }
}

/// `fsck.fat -n` finds nothing to fix (it exits non-zero if it does).
fn fsck_clean(img: &str) {
    let out = run_tool("fsck.fat", &["-n", "-v", img]);
    let text = stdout(&out);
    for bad in ["differ", "wrong", "invalid", "Bad", "lost", "Free cluster"] {
        assert!(!text.contains(bad), "fsck.fat complains ({bad}):\n{text}");
    }
}

fn mtype(img: &str, path: &str) -> Vec<u8> {
    run_tool("mtype", &["-i", img, &format!("::{path}")]).stdout
}

#[test]
fn fat_volume_passes_fsck_and_mtools_reads_every_file() {
    let dir = TestDir::new();
    let store = ContentStore::new().unwrap();
    let boot = bytes(300_000, 1);
    let long = b"title kiln\nlinux /vmlinuz\n".to_vec();
    let files_bytes = [
        (EFI_BOOT_PATH, boot.clone()),
        ("loader/entries/a rather long entry name.conf", long.clone()),
        ("loader/loader.conf", b"timeout 0\n".to_vec()),
        ("empty", Vec::new()),
        ("EFI/Linux/kiln.efi", bytes(5000, 2)),
    ];
    let contents: Vec<_> = files_bytes
        .iter()
        .map(|(p, b)| (*p, store.add(b).unwrap()))
        .collect();
    let files: Vec<_> = contents.iter().map(|(p, c)| (*p, c)).collect();

    let mut img = Vec::new();
    let n = write_fat(&files, &store, &opts(None), &mut img).unwrap();
    assert_eq!(n, img.len() as u64);
    assert_eq!(n, 33 << 20, "the smallest FAT32 volume");
    let path = dir.write("esp.img", &img);
    let path = path.to_str().unwrap();

    fsck_clean(path);
    for (name, expected) in &files_bytes {
        assert_eq!(&mtype(path, name), expected, "{name}");
    }
    let listing = stdout(&run_tool("mdir", &["-i", path, "::loader/entries"]));
    assert!(
        listing.contains("a rather long entry name.conf"),
        "{listing}"
    );
    let root = stdout(&run_tool("mdir", &["-i", path, "::"]));
    assert!(root.contains("Volume in drive : is ESP"), "{root}");
    assert!(root.contains("Volume Serial Number is 1234-ABCD"), "{root}");
    assert!(root.contains("2024-02-29  13:45"), "{root}");
}

#[test]
fn fat_volume_of_a_given_size_uses_larger_clusters() {
    let dir = TestDir::new();
    let store = ContentStore::new().unwrap();
    let boot = bytes(1 << 20, 3);
    let c = store.add(&boot).unwrap();
    let mut img = Vec::new();
    write_fat(
        &[("BOOT.EFI", &c)],
        &store,
        &opts(Some(300 << 20)),
        &mut img,
    )
    .unwrap();
    assert_eq!(img.len(), 300 << 20);
    assert_eq!(img[13], 8, "4 KiB clusters above 260 MiB");
    let path = dir.write("big.img", &img);
    fsck_clean(path.to_str().unwrap());
    assert_eq!(mtype(path.to_str().unwrap(), "BOOT.EFI"), boot);
}

#[test]
fn fat_volume_too_small_names_both_sizes() {
    let store = ContentStore::new().unwrap();
    let c = store.add(&bytes(40 << 20, 4)).unwrap();
    let err = write_fat(
        &[("big", &c)],
        &store,
        &opts(Some(34 << 20)),
        &mut io::sink(),
    )
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let msg = err.to_string();
    assert!(msg.contains(&(34u64 << 20).to_string()), "{msg}");
    assert!(
        msg.contains("needs at least") || msg.contains("need at least"),
        "{msg}"
    );
}

fn raw_efi(store: &ContentStore, efi: &[u8], epoch: i64, size: Option<u64>) -> Vec<u8> {
    let c = store.add(efi).unwrap();
    let mut disk = Vec::new();
    let n = write_raw_efi(&c, None, store, epoch, size, &mut disk).unwrap();
    assert_eq!(n, disk.len() as u64);
    disk
}

#[test]
fn raw_efi_disk_passes_sgdisk_and_holds_the_boot_file() {
    let dir = TestDir::new();
    let store = ContentStore::new().unwrap();
    let efi = bytes(200_000, 5);
    let disk = raw_efi(&store, &efi, EPOCH, None);
    assert_eq!(disk.len(), 35 << 20, "1 MiB GPT, 33 MiB ESP, 1 MiB backup");
    let path = dir.write("disk.img", &disk);
    let path = path.to_str().unwrap();

    let verify = stdout(&run_tool("sgdisk", &["-v", path]));
    assert!(verify.contains("No problems found"), "{verify}");
    let table = stdout(&run_tool("sgdisk", &["-p", path]));
    assert!(table.contains("EF00"), "{table}");
    let info = stdout(&run_tool("sgdisk", &["-i", "1", path]));
    assert!(
        info.contains("C12A7328-F81F-11D2-BA4B-00A0C93EC93B (EFI system partition)"),
        "{info}"
    );
    assert!(info.contains("First sector: 2048 "), "{info}");
    assert!(info.contains("Partition name: 'ESP'"), "{info}");
    let mut seed = efi_sha256(&efi);
    seed.extend_from_slice(&EPOCH.to_le_bytes());
    let part = guid_string(&guid_from(
        &[b"kiln raw-efi esp".as_slice(), &seed].concat(),
    ));
    assert!(info.contains(&part), "{info}\nwant {part}");

    let esp = dir.write("esp.img", &disk[1 << 20..34 << 20]);
    fsck_clean(esp.to_str().unwrap());
    assert_eq!(mtype(&format!("{path}@@1M"), "EFI/BOOT/BOOTX64.EFI"), efi);
}

fn efi_sha256(bytes: &[u8]) -> Vec<u8> {
    let store = ContentStore::new().unwrap();
    store.add(bytes).unwrap().sha256().to_vec()
}

#[test]
fn raw_efi_is_a_function_of_its_inputs() {
    let store = ContentStore::new().unwrap();
    let efi = bytes(50_000, 6);
    let a = raw_efi(&store, &efi, EPOCH, None);
    let b = raw_efi(&store, &efi, EPOCH, None);
    assert!(a == b, "same inputs gave different bytes");
    let later = raw_efi(&store, &efi, EPOCH + 1, None);
    assert!(a != later, "the epoch must reach the GUIDs");
    let other = raw_efi(&store, &bytes(50_000, 7), EPOCH, None);
    assert_ne!(
        a[512..1024],
        other[512..1024],
        "the content must reach the GUIDs"
    );
}

#[test]
fn raw_efi_fills_a_given_size() {
    let dir = TestDir::new();
    let store = ContentStore::new().unwrap();
    let efi = bytes(10_000, 8);
    let disk = raw_efi(&store, &efi, EPOCH, Some(64 << 20));
    assert_eq!(disk.len(), 64 << 20);
    let path = dir.write("disk.img", &disk);
    let path = path.to_str().unwrap();
    let verify = stdout(&run_tool("sgdisk", &["-v", path]));
    assert!(verify.contains("No problems found"), "{verify}");
    let esp = dir.write("esp.img", &disk[1 << 20..63 << 20]);
    fsck_clean(esp.to_str().unwrap());
    assert_eq!(mtype(&format!("{path}@@1M"), EFI_BOOT_PATH), efi);
}

#[test]
fn raw_efi_size_too_small_names_needed_and_given() {
    let store = ContentStore::new().unwrap();
    let c = store.add(&bytes(1000, 9)).unwrap();
    let err = write_raw_efi(&c, None, &store, EPOCH, Some(16 << 20), &mut io::sink()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let msg = err.to_string();
    assert!(msg.contains(&(35u64 << 20).to_string()), "{msg}");
    assert!(msg.contains(&(16u64 << 20).to_string()), "{msg}");
}
