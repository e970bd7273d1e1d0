//! The boot initrd's job: which root filesystem the kernel command line asks
//! for, and how to put it under `/`.
//!
//! Takes the text of `/proc/cmdline` (and of `/proc/mounts`) and gives a
//! [`Root`]: the device (`root=/dev/vda`), the filesystem types to try
//! (`rootfstype=squashfs`), the mount options (`rootflags=`) and how long to
//! wait for the device (`rootwait=SECONDS`); then the kernel modules that
//! root needs, the three mounts that stack a writable overlay (upper on a
//! tmpfs) on the read-only root at [`NEWROOT`], and the system mounts to move
//! into it before `switch_root`. Only `/dev/NAME` devices are accepted: the
//! boot initrd has no udev, so `LABEL=` and `UUID=` cannot be resolved (and a
//! squashfs has neither). Never touches the system; `init/switch.rs` performs
//! what these functions decide.
//!
//! The contract with the build side:
//!
//! - kernel command line: `root=/dev/vda rootfstype=squashfs` (a virtio
//!   disk) or `root=/dev/sr0 rootfstype=iso9660` (a CD-ROM); optional
//!   `rootfstype=a,b` (tried in order), `rootflags=OPTS` (as `mount -o`;
//!   the root is always mounted read-only) and `rootwait=SECONDS` (1–600,
//!   default 10; a bare `rootwait` keeps the default: init never waits
//!   forever). Quotes and a final `--` work as in the kernel.
//! - boot initrd: this binary at `/init` and
//!   `/lib/modules/<release>/modules.dep` (optionally `modules.builtin`)
//!   with the `.ko` files of [`device_modules`] for the device, the
//!   filesystem's module ([`fs_module`]) and `overlay`, each with its
//!   dependency closure; a module that is missing is logged, not fatal. An
//!   `/etc/modules` in the initrd adds drivers (one name a line).
//! - root filesystem: has `/init` (kiln-init again).

use std::time::Duration;

use crate::modules::Wanted;
use crate::mountopt;
use crate::sys::MountCall;

/// Where the read-only root filesystem is mounted.
pub const LOWER: &str = "/.kiln/lower";
/// The tmpfs holding the overlay's upper and work directories.
pub const RW: &str = "/.kiln/rw";
/// The overlay that becomes `/`.
pub const NEWROOT: &str = "/newroot";
/// What is executed in the new root, as PID 1.
pub const INIT: &str = "/init";
/// How long to wait for the root device without `rootwait=`.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// The longest `rootwait=` honoured.
const MAX_WAIT_SECS: u64 = 600;

/// The root filesystem the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Root {
    /// An absolute path under `/dev`.
    pub device: String,
    /// Filesystem types to try, in order (`rootfstype=a,b`).
    pub fstypes: Vec<String>,
    /// `MS_*` flags from `rootflags=` (`MS_RDONLY` is always added).
    pub flags: u64,
    /// Filesystem-specific options from `rootflags=`.
    pub data: String,
    /// How long to wait for `device` to appear.
    pub wait: Duration,
}

impl Root {
    /// `/dev/vda (squashfs)`: how console lines name this root.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.device, self.fstypes.join(","))
    }
}

/// Split a kernel command line into `key[=value]` words the way the kernel
/// does: whitespace separates words except inside double quotes, a quote
/// opening the word or its value is removed with the matching final quote,
/// and a lone `--` ends the kernel's part (the rest belongs to init).
pub fn words(cmdline: &str) -> Vec<(String, Option<String>)> {
    let mut raw = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut started = false;
    for c in cmdline.chars() {
        if c.is_whitespace() && !in_quote {
            if started {
                raw.push(std::mem::take(&mut cur));
                started = false;
            }
            continue;
        }
        if c == '"' {
            in_quote = !in_quote;
        }
        cur.push(c);
        started = true;
    }
    if started {
        raw.push(cur);
    }
    let mut out = Vec::new();
    for w in raw {
        if w == "--" {
            break;
        }
        let quoted = w.starts_with('"');
        let w = if quoted { &w[1..] } else { w.as_str() };
        match w.split_once('=') {
            Some((k, v)) => {
                let v = match v.strip_prefix('"') {
                    Some(inner) => inner.strip_suffix('"').unwrap_or(inner),
                    None if quoted => v.strip_suffix('"').unwrap_or(v),
                    None => v,
                };
                out.push((k.to_string(), Some(v.to_string())));
            }
            None => {
                let k = if quoted {
                    w.strip_suffix('"').unwrap_or(w)
                } else {
                    w
                };
                out.push((k.to_string(), None));
            }
        }
    }
    out
}

/// The last value of `key=` (the kernel lets a later one win).
fn last<'a>(words: &'a [(String, Option<String>)], key: &str) -> Option<&'a str> {
    words
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_deref())
}

/// The root the command line asks for: `Ok(None)` without `root=`, an error
/// (naming the bad key) for a root this init cannot mount.
pub fn parse(cmdline: &str) -> Result<Option<Root>, String> {
    let w = words(cmdline);
    let Some(device) = last(&w, "root") else {
        return Ok(None);
    };
    let bad_path = device
        .strip_prefix("/dev/")
        .is_none_or(|rest| rest.is_empty() || rest.split('/').any(|c| c.is_empty() || c == ".."));
    if bad_path {
        return Err(format!(
            "root={device}: only /dev/NAME devices are supported (the boot initrd has no udev for LABEL= or UUID=)"
        ));
    }
    let fstypes: Vec<String> = last(&w, "rootfstype")
        .unwrap_or("")
        .split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    if fstypes.is_empty() {
        return Err(format!(
            "root={device} needs rootfstype= (squashfs, iso9660, ...)"
        ));
    }
    let opts: Vec<&str> = last(&w, "rootflags").unwrap_or("").split(',').collect();
    let opts = mountopt::parse(&opts);
    let wait = match last(&w, "rootwait") {
        None => DEFAULT_WAIT,
        Some(v) => match v.parse::<u64>() {
            Ok(s) if (1..=MAX_WAIT_SECS).contains(&s) => Duration::from_secs(s),
            _ => {
                return Err(format!(
                    "rootwait={v}: not a number of seconds from 1 to {MAX_WAIT_SECS}"
                ))
            }
        },
    };
    Ok(Some(Root {
        device: device.to_string(),
        fstypes,
        flags: opts.flags | libc::MS_RDONLY,
        data: opts.data,
        wait,
    }))
}

/// The module that provides a filesystem type.
pub fn fs_module(fstype: &str) -> &str {
    match fstype {
        "iso9660" => "isofs",
        "ext2" | "ext3" => "ext4",
        other => other,
    }
}

/// The drivers that may provide a device, by its name under `/dev`: every
/// controller QEMU and common clouds attach such a disk to. Loading one whose
/// hardware is absent is harmless; an unknown name needs none (a built-in
/// driver, or one listed in the initrd's `/etc/modules`).
pub fn device_modules(device: &str) -> &'static [&'static str] {
    let name = device.rsplit('/').next().unwrap_or(device);
    let starts = |p: &str| name.starts_with(p);
    if starts("vd") {
        &["virtio_pci", "virtio_mmio", "virtio_blk"]
    } else if starts("sr") {
        &["ata_piix", "ahci", "virtio_pci", "virtio_scsi", "sr_mod"]
    } else if starts("sd") {
        &["ata_piix", "ahci", "virtio_pci", "virtio_scsi", "sd_mod"]
    } else if starts("nvme") {
        &["nvme"]
    } else {
        &[]
    }
}

/// Every module to load for `root`, in order: the device's drivers, the
/// filesystems, `overlay`, then `extra` (the initrd's `/etc/modules`).
pub fn modules(root: &Root, extra: Vec<Wanted>) -> Vec<Wanted> {
    let want = |name: &str| Wanted {
        name: name.to_string(),
        params: String::new(),
    };
    let mut out: Vec<Wanted> = device_modules(&root.device)
        .iter()
        .map(|m| want(m))
        .collect();
    out.extend(root.fstypes.iter().map(|t| want(fs_module(t))));
    out.push(want("overlay"));
    out.extend(extra);
    out
}

/// The mount of the read-only root with one filesystem type.
pub fn lower_mount(root: &Root, fstype: &str) -> MountCall {
    MountCall {
        source: root.device.clone(),
        target: LOWER.into(),
        fstype: fstype.into(),
        flags: root.flags,
        data: root.data.clone(),
    }
}

/// The tmpfs for the overlay's upper and work directories, then the overlay.
pub fn overlay_mounts() -> [MountCall; 2] {
    [
        MountCall {
            source: "tmpfs".into(),
            target: RW.into(),
            fstype: "tmpfs".into(),
            flags: 0,
            data: "mode=0755".into(),
        },
        MountCall {
            source: "overlay".into(),
            target: NEWROOT.into(),
            fstype: "overlay".into(),
            flags: 0,
            data: format!("lowerdir={LOWER},upperdir={RW}/upper,workdir={RW}/work"),
        },
    ]
}

/// The mounts to move into the new root: the mounted ones among `system`
/// (init's own boot mounts, in order) that are not below another of them
/// (those move with their parent).
pub fn moves(system: &[&str], mounted: &std::collections::BTreeSet<String>) -> Vec<String> {
    system
        .iter()
        .filter(|t| {
            !system
                .iter()
                .any(|p| p != *t && t.starts_with(&format!("{p}/")))
        })
        .filter(|t| mounted.contains(**t))
        .map(|t| t.to_string())
        .collect()
}

/// `MS_MOVE` of `from` to the same place under [`NEWROOT`].
pub fn move_mount(from: &str) -> MountCall {
    MountCall {
        source: from.into(),
        target: format!("{NEWROOT}{from}"),
        fstype: String::new(),
        flags: libc::MS_MOVE,
        data: String::new(),
    }
}

/// `MS_MOVE` of the current directory ([`NEWROOT`], after `chdir`) onto `/`.
pub fn move_mount_to_root() -> MountCall {
    MountCall {
        source: ".".into(),
        target: "/".into(),
        fstype: String::new(),
        flags: libc::MS_MOVE,
        data: String::new(),
    }
}

#[cfg(test)]
#[path = "rootfs/tests.rs"]
mod tests;
