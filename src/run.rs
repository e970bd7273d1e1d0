//! `kiln run qemu`: boot what `kiln build` wrote, like `linuxkit run qemu`.
//!
//! Takes a build name or path; finds the artefacts (`NAME-kernel` +
//! `NAME-initrd.img` + `NAME-cmdline` for direct kernel boot,
//! `NAME-squashfs.img` with `NAME-kernel` + `NAME-root-initrd.img` beside
//! it, or an ISO, raw/qcow2 disk or UKI), picks SeaBIOS or OVMF to match,
//! and runs
//! `qemu-system-x86_64` with the serial console on stdio (and optionally
//! copied to a log file). Never writes firmware variables in place: OVMF's
//! variable store is copied to a temp file per run. The guest's verdict is
//! the exit status: a clean poweroff is 0, a value written to the
//! `isa-debug-exit` port (0xf4) is `(value << 1) | 1`.
//!
//! A terminal on stdin is handed to the guest (qemu makes it raw; Ctrl-A x
//! quits, Ctrl-A h lists the other keys) and its settings are put back after
//! qemu exits, however it exits. Without a terminal qemu reads nothing. On
//! SIGTERM, SIGINT or SIGHUP qemu is killed, the temp directory removed and
//! the exit status is 128 + the signal number.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A bootable artefact set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Boot {
    KernelInitrd {
        kernel: PathBuf,
        initrd: PathBuf,
        cmdline: String,
    },
    /// `kernel+squashfs`: direct kernel boot of the root initrd, which
    /// mounts `squashfs` (the first virtio disk) as `/`.
    KernelSquashfs {
        kernel: PathBuf,
        initrd: PathBuf,
        squashfs: PathBuf,
        cmdline: String,
    },
    /// `kernel+iso`: direct kernel boot of the root initrd, which mounts
    /// `iso` (the first CD drive) as `/`.
    KernelIso {
        kernel: PathBuf,
        initrd: PathBuf,
        iso: PathBuf,
        cmdline: String,
    },
    Iso {
        path: PathBuf,
        efi: bool,
    },
    Disk {
        path: PathBuf,
        format: &'static str,
        efi: bool,
    },
    Uki {
        path: PathBuf,
    },
}

impl Boot {
    fn needs_uefi(&self) -> bool {
        matches!(
            self,
            Boot::Iso { efi: true, .. } | Boot::Disk { efi: true, .. } | Boot::Uki { .. }
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("nothing to boot at {0}: expected NAME-kernel + NAME-initrd.img, NAME-squashfs.img, NAME.iso, NAME-efi.iso, NAME-efi-initrd.iso, NAME-efi.img, NAME-bios.img, NAME.qcow2, NAME-efi.qcow2 or NAME.efi")]
    NotFound(PathBuf),
    #[error("{image}: booting it needs {missing} beside it (`kiln build -f kernel+squashfs` or `-f kernel+iso` writes both)")]
    RootIncomplete { image: PathBuf, missing: PathBuf },
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: io::Error },
    #[error("{0} not found: install the Debian package `{1}`")]
    Missing(String, &'static str),
    #[error("bad option {0}")]
    BadOption(String),
}

/// Options of one run.
#[derive(Clone, Debug)]
pub struct QemuOptions {
    pub mem: String,
    pub cpus: u32,
    /// `kvm`, `tcg`, or `None` to probe.
    pub accel: Option<String>,
    pub uefi: bool,
    /// Boot a hybrid (BIOS and UEFI) ISO with BIOS firmware.
    pub bios: bool,
    /// Attach a bootable ISO as a disk rather than a CD.
    pub iso_as_disk: bool,
    /// `FILE[,size=S][,format=F]`
    pub disks: Vec<String>,
    /// `HOST:GUEST` TCP port forwards (user networking).
    pub publish: Vec<String>,
    /// Print the qemu command line before running it.
    pub verbose: bool,
    /// A metadata file, attached as a raw virtio disk (`/dev/vdX`).
    pub data: Option<PathBuf>,
    pub timeout: Option<Duration>,
    pub console_log: Option<PathBuf>,
    /// Extra kernel command line for direct kernel boot.
    pub cmdline_append: Option<String>,
    /// The FAT directory a UKI boots from (set by [`run`]).
    pub esp_dir: Option<PathBuf>,
}

impl Default for QemuOptions {
    fn default() -> QemuOptions {
        QemuOptions {
            mem: "1024M".into(),
            cpus: 1,
            accel: None,
            uefi: false,
            bios: false,
            iso_as_disk: false,
            disks: Vec::new(),
            verbose: false,
            publish: Vec::new(),
            data: None,
            timeout: None,
            console_log: None,
            cmdline_append: None,
            esp_dir: None,
        }
    }
}

const QEMU: &str = "qemu-system-x86_64";
const OVMF_CODE: &[&str] = &[
    "/usr/share/OVMF/OVMF_CODE_4M.fd",
    "/usr/share/OVMF/OVMF_CODE.fd",
];

/// Makes the [`Boot`] for a file (reading the files that travel with it).
type MakeBoot = fn(PathBuf) -> Result<Boot, RunError>;

/// The files `kiln build` writes that can boot, by suffix, in the order a
/// build name is tried. kiln's VHD, VMDK and AWS raw disks are the raw-efi
/// disk in another container: hybrid GPT disks that boot under UEFI by
/// default and under BIOS with `--bios`. A squashfs is
/// tried last: a build with kernel+initrd as well boots that directly.
const BOOTABLE: &[(&str, MakeBoot)] = &[
    (".iso", iso_boot),
    ("-efi.iso", |p| Ok(Boot::Iso { path: p, efi: true })),
    ("-efi-initrd.iso", |p| Ok(Boot::Iso { path: p, efi: true })),
    ("-efi.img", |p| {
        Ok(Boot::Disk {
            path: p,
            format: "raw",
            efi: true,
        })
    }),
    ("-bios.img", |p| {
        Ok(Boot::Disk {
            path: p,
            format: "raw",
            efi: false,
        })
    }),
    (".qcow2", |p| {
        Ok(Boot::Disk {
            path: p,
            format: "qcow2",
            efi: false,
        })
    }),
    ("-efi.qcow2", |p| {
        Ok(Boot::Disk {
            path: p,
            format: "qcow2",
            efi: true,
        })
    }),
    (".efi", |p| Ok(Boot::Uki { path: p })),
    (".vhd", |p| {
        Ok(Boot::Disk {
            path: p,
            format: "vpc",
            efi: true,
        })
    }),
    (".vmdk", |p| {
        Ok(Boot::Disk {
            path: p,
            format: "vmdk",
            efi: true,
        })
    }),
    (".raw", |p| {
        Ok(Boot::Disk {
            path: p,
            format: "raw",
            efi: true,
        })
    }),
    ("-squashfs.img", squashfs_boot),
];

/// Find what to boot for `target`: a build name (`out/linuxkit`) or a file.
pub fn find_boot(target: &Path) -> Result<Boot, RunError> {
    if target.is_file() {
        let name = target.to_string_lossy();
        if let Some(base) = name.strip_suffix("-kernel") {
            return find_boot(Path::new(base));
        }
        // The longest matching suffix decides (`-efi.iso` before `.iso`).
        let best = BOOTABLE
            .iter()
            .filter(|(suffix, _)| name.ends_with(suffix))
            .max_by_key(|(suffix, _)| suffix.len());
        return match best {
            Some((_, make)) => make(target.to_owned()),
            None => Ok(Boot::Disk {
                path: target.to_owned(),
                format: "raw",
                efi: false,
            }),
        };
    }
    let with = |suffix: &str| sibling(target, suffix);
    let (kernel, initrd) = (with("-kernel"), with("-initrd.img"));
    if kernel.is_file() && initrd.is_file() {
        return Ok(Boot::KernelInitrd {
            kernel,
            initrd,
            cmdline: read_cmdline(target)?,
        });
    }
    for (suffix, make) in BOOTABLE {
        let p = with(suffix);
        if p.is_file() {
            return make(p);
        }
    }
    Err(RunError::NotFound(target.to_owned()))
}

/// `BASE` + `suffix` as a path.
fn sibling(base: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", base.display()))
}

/// The trimmed text of `BASE-cmdline`, empty if there is none.
fn read_cmdline(base: &Path) -> Result<String, RunError> {
    let path = sibling(base, "-cmdline");
    if !path.exists() {
        return Ok(String::new());
    }
    let text = std::fs::read_to_string(&path).map_err(|err| RunError::Io { path, err })?;
    Ok(text.trim().to_owned())
}

/// The kernel, root initrd and command line beside a root image
/// `BASE{suffix}` (kernel+squashfs, kernel+iso).
fn root_parts(image: &Path, suffix: &str) -> Result<(PathBuf, PathBuf, String), RunError> {
    let name = image.to_string_lossy();
    let base = PathBuf::from(name.strip_suffix(suffix).unwrap_or(&name));
    let (kernel, initrd) = (
        sibling(&base, "-kernel"),
        sibling(&base, "-root-initrd.img"),
    );
    for missing in [&kernel, &initrd] {
        if !missing.is_file() {
            return Err(RunError::RootIncomplete {
                image: image.to_owned(),
                missing: missing.clone(),
            });
        }
    }
    Ok((kernel, initrd, read_cmdline(&base)?))
}

/// `BASE-squashfs.img` → boot `BASE-kernel` with `BASE-root-initrd.img`
/// and `BASE-cmdline`, the squashfs as the root disk.
fn squashfs_boot(squashfs: PathBuf) -> Result<Boot, RunError> {
    let (kernel, initrd, cmdline) = root_parts(&squashfs, "-squashfs.img")?;
    Ok(Boot::KernelSquashfs {
        kernel,
        initrd,
        cmdline,
        squashfs,
    })
}

/// `BASE.iso`: a bootable ISO (an El Torito boot record in sector 17) boots
/// from the CD; any other ISO is `kernel+iso`'s root filesystem, booted
/// like a squashfs from `BASE-kernel` and `BASE-root-initrd.img`.
fn iso_boot(iso: PathBuf) -> Result<Boot, RunError> {
    use std::io::{Read, Seek, SeekFrom};
    let io_err = |err| RunError::Io {
        path: iso.clone(),
        err,
    };
    let mut sector = [0u8; 39];
    let mut f = std::fs::File::open(&iso).map_err(io_err)?;
    f.seek(SeekFrom::Start(17 * 2048)).map_err(io_err)?;
    let bootable =
        f.read_exact(&mut sector).is_ok() && &sector[..30] == b"\0CD001\x01EL TORITO SPECIFICATION";
    if bootable {
        return Ok(Boot::Iso {
            path: iso,
            efi: false,
        });
    }
    let (kernel, initrd, cmdline) = root_parts(&iso, ".iso")?;
    Ok(Boot::KernelIso {
        kernel,
        initrd,
        cmdline,
        iso,
    })
}

/// What the root initrd reads to find `kernel+iso`'s root: the first CD.
pub const ISO_ROOT: &str = "root=/dev/sr0 rootfstype=iso9660";

/// What the root initrd reads to find the squashfs: the first virtio disk
/// (kiln-init's boot-initrd contract, `pkg/init/src/rootfs.rs`).
pub const SQUASHFS_ROOT: &str = "root=/dev/vda rootfstype=squashfs";

/// `-kernel`, `-initrd` and `-append` with the command line, the root
/// arguments (if any) and the user's extra arguments, in that order.
fn direct_boot(
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    root: &str,
    opts: &QemuOptions,
) -> Vec<String> {
    let extra = opts.cmdline_append.as_deref().unwrap_or("");
    let line = [cmdline, root, extra]
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    vec![
        "-kernel".to_owned(),
        kernel.to_string_lossy().into_owned(),
        "-initrd".to_owned(),
        initrd.to_string_lossy().into_owned(),
        "-append".to_owned(),
        line,
    ]
}

/// Whether `boot` runs under OVMF (else SeaBIOS): `--bios` for an image
/// that boots only under UEFI is an error; kiln's hybrid ISO and its GPT
/// disks (raw-efi and the formats over it) boot under either.
fn wants_uefi(boot: &Boot, opts: &QemuOptions) -> Result<bool, RunError> {
    if !opts.bios {
        return Ok(opts.uefi || boot.needs_uefi());
    }
    let hybrid = match boot {
        Boot::Iso { path, .. } => path.to_string_lossy().ends_with("-efi.iso"),
        Boot::Disk { efi, .. } => *efi,
        _ => false,
    };
    if boot.needs_uefi() && !hybrid {
        return Err(RunError::BadOption(
            "--bios: this image boots only under UEFI (NAME-efi.iso and the GPT disk images \
             boot both)"
                .into(),
        ));
    }
    Ok(false)
}

/// The qemu argument list for `boot` (pure; firmware paths given).
pub fn qemu_args(
    boot: &Boot,
    opts: &QemuOptions,
    accel: &str,
    ovmf: Option<(&Path, &Path)>,
) -> Result<Vec<String>, RunError> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    push(&[
        "-machine",
        "q35",
        "-accel",
        accel,
        "-m",
        &opts.mem,
        "-smp",
        &opts.cpus.to_string(),
    ]);
    push(&[
        "-nographic",
        "-nodefaults",
        "-no-reboot",
        "-serial",
        "stdio",
    ]);
    push(&["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    push(&["-device", "virtio-rng-pci"]);
    let mut netdev = String::from("user,id=net0");
    for p in &opts.publish {
        let (host, guest) = p
            .split_once(':')
            .ok_or_else(|| RunError::BadOption(format!("--publish {p} (want HOST:GUEST)")))?;
        let (guest, proto) = guest.split_once('/').unwrap_or((guest, "tcp"));
        for port in [host, guest] {
            port.parse::<u16>()
                .map_err(|_| RunError::BadOption(format!("--publish {p}: {port} is not a port")))?;
        }
        netdev.push_str(&format!(",hostfwd={proto}::{host}-:{guest}"));
    }
    push(&["-netdev", &netdev, "-device", "virtio-net-pci,netdev=net0"]);
    if let Some((code, vars)) = ovmf {
        let code = format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            code.display()
        );
        let vars = format!("if=pflash,format=raw,unit=1,file={}", vars.display());
        push(&["-drive", &code, "-drive", &vars]);
    }
    match boot {
        Boot::KernelInitrd {
            kernel,
            initrd,
            cmdline,
        } => {
            let args = direct_boot(kernel, initrd, cmdline, "", opts);
            push(&args.iter().map(String::as_str).collect::<Vec<_>>());
        }
        Boot::KernelSquashfs {
            kernel,
            initrd,
            squashfs,
            cmdline,
        } => {
            let drive = format!(
                "file={},if=virtio,format=raw,readonly=on",
                squashfs.display()
            );
            let args = direct_boot(kernel, initrd, cmdline, SQUASHFS_ROOT, opts);
            push(&args.iter().map(String::as_str).collect::<Vec<_>>());
            push(&["-drive", &drive]);
        }
        Boot::KernelIso {
            kernel,
            initrd,
            iso,
            cmdline,
        } => {
            let drive = format!("file={},media=cdrom,readonly=on", iso.display());
            let args = direct_boot(kernel, initrd, cmdline, ISO_ROOT, opts);
            push(&args.iter().map(String::as_str).collect::<Vec<_>>());
            push(&["-drive", &drive]);
        }
        Boot::Iso { path, .. } if opts.iso_as_disk => {
            // A hybrid ISO written to a USB stick: a plain disk.
            push(&[
                "-drive",
                &format!("file={},format=raw,if=virtio,readonly=on", path.display()),
            ]);
        }
        Boot::Iso { path, .. } => {
            push(&[
                "-drive",
                &format!("file={},media=cdrom,readonly=on", path.display()),
                "-boot",
                "d",
            ]);
        }
        Boot::Disk { path, format, .. } => {
            push(&[
                "-drive",
                &format!(
                    "file={},format={format},if=virtio,snapshot=on",
                    path.display()
                ),
            ]);
        }
        Boot::Uki { .. } => {
            // OVMF boots \EFI\BOOT\BOOTX64.EFI from a FAT directory qemu
            // exposes (a per-run copy in a temp dir, see `run`).
            let dir = opts.esp_dir.clone().unwrap_or_else(|| PathBuf::from("esp"));
            push(&[
                "-drive",
                &format!("file=fat:rw:{},format=raw,if=virtio", dir.display()),
            ]);
        }
    }
    for d in &opts.disks {
        let mut parts = d.split(',');
        let file = parts.next().unwrap_or_default();
        let mut format = "raw".to_string();
        for p in parts {
            match p.split_once('=') {
                Some(("format", f)) => format = f.to_string(),
                Some(("size", _)) => {}
                _ => return Err(RunError::BadOption(format!("--disk {d}"))),
            }
        }
        push(&["-drive", &format!("file={file},format={format},if=virtio")]);
    }
    if let Some(data) = &opts.data {
        push(&[
            "-drive",
            &format!("file={},format=raw,if=virtio,readonly=on", data.display()),
        ]);
    }
    Ok(a)
}

/// A 64 KiB firmware that switches the CPU to 32-bit protected mode and
/// writes 1 to the debug-exit port: qemu exits at once with status 3 if the
/// accelerator runs guest code. A real-mode-only probe is not enough: on
/// some hosts KVM runs real mode and hangs at the switch, as a kernel does.
fn probe_firmware() -> Vec<u8> {
    const BASE: u32 = 0xffff_0000; // where the top 64 KiB of the 4 GiB space maps
    const CODE: usize = 0xf000;
    const GDT: usize = 0xe000;
    const GDTR: usize = 0xe100;
    let mut rom = vec![0xf4u8; 64 * 1024]; // hlt everywhere
                                           // Null, flat 4 GiB code (0x08) and data (0x10) descriptors.
    let gdt: [u8; 24] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0x9a, 0xcf, 0, 0xff, 0xff, 0, 0, 0, 0x92,
        0xcf, 0,
    ];
    rom[GDT..GDT + 24].copy_from_slice(&gdt);
    rom[GDTR..GDTR + 2].copy_from_slice(&23u16.to_le_bytes());
    rom[GDTR + 2..GDTR + 6].copy_from_slice(&(BASE + GDT as u32).to_le_bytes());
    let mut c = vec![0xfa]; // cli
    c.extend([0x66, 0x2e, 0x0f, 0x01, 0x16]); // lgdt cs:[GDTR] (32-bit base)
    c.extend((GDTR as u16).to_le_bytes());
    c.extend([0x0f, 0x20, 0xc0, 0x66, 0x83, 0xc8, 0x01, 0x0f, 0x22, 0xc0]); // cr0 |= PE
    let target = BASE + (CODE + c.len() + 8) as u32;
    c.extend([0x66, 0xea]); // jmp far 0x08:target
    c.extend(target.to_le_bytes());
    c.extend(0x08u16.to_le_bytes());
    c.extend([0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8]); // mov ax,0x10; mov ds,ax
    c.extend([0xb0, 0x01, 0xe6, 0xf4, 0xf4]); // mov al,1; out 0xf4,al; hlt
    rom[CODE..CODE + c.len()].copy_from_slice(&c);
    // Reset vector: jmp near CODE (relative to the next instruction).
    let rel = (CODE as u16).wrapping_sub(0xfff3);
    rom[0xfff0] = 0xe9;
    rom[0xfff1..0xfff3].copy_from_slice(&rel.to_le_bytes());
    rom
}

/// Whether KVM actually runs guest code here (on some machines `/dev/kvm`
/// exists but guests hang): boot [`probe_firmware`] with a short timeout.
pub fn kvm_works() -> bool {
    if File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let Ok(dir) = tempfile::tempdir() else {
        return false;
    };
    let rom = dir.path().join("probe.rom");
    if std::fs::write(&rom, probe_firmware()).is_err() {
        return false;
    }
    let child = Command::new(QEMU)
        .args([
            "-accel",
            "kvm",
            "-machine",
            "q35",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-bios"])
        .arg(&rom)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.code() == Some(3),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// Boot `target` and return qemu's exit status (the guest's verdict), or
/// `None` if the timeout killed it.
/// A warning when `--publish` forwards ports to an image that seems to have
/// no network configuration: no `ip=` on its command line and, in its
/// initrd, no DHCP client (a container or program named after dhcpcd,
/// udhcpc or dhclient, or systemd-networkd). `None` when nothing is
/// published, when the image has one, or when the image is not a
/// `kernel+initrd` (the root of the other formats is not read here). Only
/// a hint: an image may configure its network another way.
pub fn publish_warning(target: &Path, opts: &QemuOptions) -> Option<String> {
    let first = opts.publish.first()?;
    let Ok(Boot::KernelInitrd {
        initrd, cmdline, ..
    }) = find_boot(target)
    else {
        return None;
    };
    if cmdline.split_whitespace().any(|w| w.starts_with("ip=")) {
        return None;
    }
    let rows = crate::inspect::inspect(&initrd).ok()?;
    if rows.iter().any(|r| configures_network(&r.path)) {
        return None;
    }
    Some(format!(
        "--publish {first}: {} has no DHCP client (no dhcpcd, udhcpc, dhclient or \
         systemd-networkd) and its command line no ip=, so the guest may have no address \
         and the forwarded port reach nothing; add the kiln.dev/dhcpcd onboot container \
         (docs/your-own-service.md) unless the image configures its network another way",
        initrd.display()
    ))
}

/// Whether an initrd path names a network configurator (see [`publish_warning`]).
fn configures_network(path: &[u8]) -> bool {
    const NAMES: [&[u8]; 4] = [b"dhcpcd", b"udhcpc", b"dhclient", b"systemd-networkd"];
    let last = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    let container = path
        .strip_prefix(b"containers/onboot/")
        .or_else(|| path.strip_prefix(b"containers/services/"))
        .map(|rest| rest.split(|&b| b == b'/').next().unwrap_or(rest));
    NAMES
        .iter()
        .any(|n| last == *n || container.is_some_and(|c| c.windows(n.len()).any(|w| w == *n)))
}

pub fn run(target: &Path, opts: &QemuOptions) -> Result<Option<i32>, RunError> {
    let boot = find_boot(target)?;
    which(QEMU).ok_or(RunError::Missing(QEMU.into(), "qemu-system-x86"))?;
    let (accel, why) = match &opts.accel {
        Some(a) => (a.clone(), "as --accel asked"),
        None if kvm_works() => ("kvm".into(), "the KVM probe booted"),
        None if Path::new("/dev/kvm").exists() => {
            ("tcg".into(), "/dev/kvm is there but the probe guest hung")
        }
        None => ("tcg".into(), "there is no /dev/kvm"),
    };
    eprintln!("kiln: qemu accelerator {accel}: {why}");
    let tmp = tempfile::tempdir().map_err(|err| RunError::Io {
        path: std::env::temp_dir(),
        err,
    })?;
    let mut ovmf = None;
    let uefi = wants_uefi(&boot, opts)?;
    if uefi {
        let code = OVMF_CODE
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .ok_or(RunError::Missing("OVMF firmware".into(), "ovmf"))?;
        let vars_src = Path::new(&code.to_string_lossy().replace("CODE", "VARS")).to_owned();
        let vars = tmp.path().join("OVMF_VARS.fd");
        std::fs::copy(&vars_src, &vars).map_err(|err| RunError::Io {
            path: vars_src.clone(),
            err,
        })?;
        ovmf = Some((code.to_owned(), vars));
    }
    let mut opts = opts.clone();
    if let Boot::Uki { path } = &boot {
        opts.esp_dir = Some(tmp.path().join("esp"));
        let esp = tmp.path().join("esp/EFI/BOOT");
        std::fs::create_dir_all(&esp).map_err(|err| RunError::Io {
            path: esp.clone(),
            err,
        })?;
        std::fs::copy(path, esp.join("BOOTX64.EFI")).map_err(|err| RunError::Io {
            path: path.clone(),
            err,
        })?;
    }
    let args = qemu_args(
        &boot,
        &opts,
        &accel,
        ovmf.as_ref().map(|(c, v)| (c.as_path(), v.as_path())),
    )?;
    create_disks(&opts.disks)?;
    if opts.verbose {
        eprintln!("kiln: {QEMU} {}", args.join(" "));
    }
    let signal = stop_signals()?;
    // Dropped last on every path out of here (after the temp dir is gone).
    let terminal = TerminalGuard::save();
    let stdin = if terminal.is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    };
    let mut child = Command::new(QEMU)
        .args(&args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|err| RunError::Io {
            path: QEMU.into(),
            err,
        })?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut log = match &opts.console_log {
        Some(p) => Some(File::create(p).map_err(|err| RunError::Io {
            path: p.clone(),
            err,
        })?),
        None => None,
    };
    let pump = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut out = io::stdout();
        let mut at_line_start = true;
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            let _ = out.write_all(&buf[..n]);
            let _ = out.flush();
            at_line_start = buf[n - 1] == b'\n';
            if let Some(l) = log.as_mut() {
                let _ = l.write_all(&buf[..n]);
            }
        }
        // What kiln prints next (a prompt, `--json`) starts on its own line.
        if !at_line_start {
            let _ = out.write_all(b"\n");
            let _ = out.flush();
        }
    });
    let deadline = opts.timeout.map(|t| Instant::now() + t);
    let status = loop {
        let caught = signal.load(Ordering::Relaxed);
        if caught != 0 {
            let _ = child.kill();
            let _ = child.wait();
            break Some(128 + caught as i32);
        }
        match child.try_wait().map_err(|err| RunError::Io {
            path: QEMU.into(),
            err,
        })? {
            Some(s) => break Some(s.code().unwrap_or(128)),
            None if deadline.is_some_and(|d| Instant::now() >= d) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let _ = pump.join();
    drop(tmp);
    drop(terminal);
    Ok(status)
}

/// Creates each `--disk FILE,size=N` whose file does not exist yet, as
/// LinuxKit does: a sparse raw file, or an empty qcow2 image (written by
/// kiln's own qcow2 writer) for `format=qcow2`. An existing file is used
/// as it is.
fn create_disks(disks: &[String]) -> Result<(), RunError> {
    for d in disks {
        let mut parts = d.split(',');
        let file = Path::new(parts.next().unwrap_or_default());
        let (mut format, mut size) = ("raw", None);
        for p in parts {
            match p.split_once('=') {
                Some(("format", f)) => format = f,
                Some(("size", s)) => {
                    size = Some(parse_size(s).filter(|&n| n > 0).ok_or_else(|| {
                        RunError::BadOption(format!("--disk {d}: size {s:?} (want e.g. 512M, 4G)"))
                    })?)
                }
                _ => {}
            }
        }
        let Some(size) = size else { continue };
        if file.exists() {
            continue;
        }
        let io = |err| RunError::Io {
            path: file.to_path_buf(),
            err,
        };
        let mut f = File::create_new(file).map_err(io)?;
        match format {
            "raw" => f.set_len(size).map_err(io)?,
            "qcow2" => {
                crate::output::qcow2::write_qcow2(&mut Zeros { len: size, pos: 0 }, size, &mut f)
                    .map_err(io)?;
            }
            other => {
                drop(f);
                let _ = std::fs::remove_file(file);
                return Err(RunError::BadOption(format!(
                    "--disk {d}: size= creates raw or qcow2 disks, not {other}"
                )));
            }
        }
    }
    Ok(())
}

/// `N`, `NK`, `NM`, `NG` (binary units) → bytes; `None` if it is not one.
/// Shared by `--disk …,size=` and `kiln build --size`.
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// A disk of zeros, read without memory.
struct Zeros {
    len: u64,
    pos: u64,
}

impl Read for Zeros {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.len - self.pos).min(buf.len() as u64) as usize;
        buf[..n].fill(0);
        self.pos += n as u64;
        Ok(n)
    }
}

impl io::Seek for Zeros {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let pos = match to {
            io::SeekFrom::Start(p) => Some(p),
            io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos
            .filter(|&p| p <= self.len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek outside the disk"))?;
        Ok(self.pos)
    }
}

/// The signals that stop a run: the number of the last one caught, or 0.
fn stop_signals() -> Result<Arc<AtomicUsize>, RunError> {
    let caught = Arc::new(AtomicUsize::new(0));
    for sig in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register_usize(sig, Arc::clone(&caught), sig as usize).map_err(
            |err| RunError::Io {
                path: "signal handler".into(),
                err,
            },
        )?;
    }
    Ok(caught)
}

/// The settings of the terminal on stdin, put back when dropped: qemu makes
/// the terminal raw and restores it when it exits, but not when it is killed.
struct TerminalGuard(rustix::termios::Termios);

impl TerminalGuard {
    /// `None` when stdin is not a terminal.
    fn save() -> Option<TerminalGuard> {
        let stdin = io::stdin();
        if !rustix::termios::isatty(&stdin) {
            return None;
        }
        rustix::termios::tcgetattr(&stdin).ok().map(TerminalGuard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ =
            rustix::termios::tcsetattr(io::stdin(), rustix::termios::OptionalActions::Now, &self.0);
    }
}

#[cfg(test)]
mod tests;
