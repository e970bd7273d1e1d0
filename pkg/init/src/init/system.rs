//! The system half of boot and shutdown: the fixed mounts, the console,
//! cgroup controllers, the hostname, loopback, kernel modules and the final
//! unmounts.
//!
//! Takes the [`Init`] and its [`Sys`]; the pure parts (the mount table, the
//! hostname rule, the unmount order) are plain functions tested here. Every
//! failure is a console line; nothing is fatal.

use std::collections::BTreeSet;
use std::io;

use super::Init;
use crate::event::Event;
use crate::modules::{self, Deps, Resolved};
use crate::sys::{MountCall, Sys};

/// One mount made at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemMount {
    pub target: &'static str,
    pub fstype: &'static str,
    pub source: &'static str,
    pub flags: u64,
    pub data: &'static str,
}

const NOSUID_NODEV_NOEXEC: u64 = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// The mounts made at boot, in order.
pub const SYSTEM_MOUNTS: &[SystemMount] = &[
    SystemMount {
        target: "/proc",
        fstype: "proc",
        source: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
    },
    SystemMount {
        target: "/sys",
        fstype: "sysfs",
        source: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
    },
    SystemMount {
        target: "/dev",
        fstype: "devtmpfs",
        source: "dev",
        flags: libc::MS_NOSUID,
        data: "mode=0755",
    },
    SystemMount {
        target: "/dev/pts",
        fstype: "devpts",
        source: "devpts",
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        data: "newinstance,ptmxmode=0666,mode=0620,gid=5",
    },
    SystemMount {
        target: "/dev/shm",
        fstype: "tmpfs",
        source: "shm",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: "mode=1777",
    },
    SystemMount {
        target: "/run",
        fstype: "tmpfs",
        source: "tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: "mode=0755",
    },
    SystemMount {
        target: "/tmp",
        fstype: "tmpfs",
        source: "tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: "mode=1777",
    },
    SystemMount {
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        source: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
    },
];

/// Symlinks `/dev` should have, created when missing.
const DEV_LINKS: &[(&str, &str)] = &[
    ("/dev/ptmx", "pts/ptmx"),
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

/// The mount points listed in `/proc/mounts`.
pub fn mounted(proc_mounts: &str) -> BTreeSet<String> {
    proc_mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(unescape)
        .collect()
}

/// `/proc/mounts` writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                out.push(
                    d.iter()
                        .fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')),
                );
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What to unmount at shutdown, innermost first: everything in
/// `/proc/mounts` but `/`, `/proc`, `/sys` and `/dev`, which stay until the end.
pub fn unmount_order(proc_mounts: &str) -> Vec<String> {
    let keep = ["/", "/proc", "/sys", "/dev"];
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for l in proc_mounts.lines().rev() {
        let Some(target) = l.split_whitespace().nth(1).map(unescape) else {
            continue;
        };
        if !keep.contains(&target.as_str()) && seen.insert(target.clone()) {
            out.push(target);
        }
    }
    out
}

/// The hostname: the first non-empty line of `/etc/hostname`, else `kiln`.
pub fn hostname(etc_hostname: Option<&[u8]>) -> String {
    etc_hostname
        .map(String::from_utf8_lossy)
        .and_then(|t| {
            t.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "kiln".to_string())
}

impl<S: Sys> Init<S> {
    pub(super) fn read_text(&mut self, path: &str) -> Option<String> {
        self.sys
            .read_file(path)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    pub(super) fn mount_system(&mut self) {
        // After a switch from the boot initrd they are all mounted already.
        let mut already = mounted(&self.read_text("/proc/mounts").unwrap_or_default());
        for m in SYSTEM_MOUNTS {
            if already.contains(m.target) {
                self.log(Event::Note(format!("{} already mounted", m.target)));
            } else {
                if let Err(e) = self.sys.mkdir_all(m.target, 0o755) {
                    self.error(format!("mkdir {}: {e}", m.target));
                }
                let call = MountCall {
                    source: m.source.into(),
                    target: m.target.into(),
                    fstype: m.fstype.into(),
                    flags: m.flags,
                    data: m.data.into(),
                };
                match self.sys.mount(&call) {
                    Ok(()) => self.log(Event::Mounted(m.target.into())),
                    Err(e) => self.log(Event::MountFailed(m.target.into(), e.to_string())),
                }
            }
            match m.target {
                "/proc" => already = mounted(&self.read_text("/proc/mounts").unwrap_or_default()),
                "/dev" => self.dev_setup(),
                "/sys/fs/cgroup" => self.cgroup_controllers(),
                _ => {}
            }
        }
    }

    fn dev_setup(&mut self) {
        if let Err(e) = self.sys.attach_console() {
            self.error(format!("/dev/console: {e}"));
        }
        for (link, target) in DEV_LINKS {
            if !self.sys.exists(link) {
                if let Err(e) = self.sys.symlink(target, link) {
                    self.error(format!("symlink {link}: {e}"));
                }
            }
        }
    }

    /// Enable every available controller for child cgroups, one at a time
    /// (one refused controller must not stop the others).
    fn cgroup_controllers(&mut self) {
        let Some(list) = self.read_text("/sys/fs/cgroup/cgroup.controllers") else {
            return;
        };
        let mut enabled = Vec::new();
        for c in list.split_whitespace() {
            let w = format!("+{c}");
            match self
                .sys
                .write_file("/sys/fs/cgroup/cgroup.subtree_control", w.as_bytes())
            {
                Ok(()) => enabled.push(c.to_string()),
                Err(e) => self.log(Event::Note(format!("cgroup controller {c}: {e}"))),
            }
        }
        if !enabled.is_empty() {
            self.log(Event::Note(format!(
                "cgroup controllers {}",
                enabled.join(" ")
            )));
        }
    }

    pub(super) fn hostname(&mut self) {
        let file = self.sys.read_file("/etc/hostname").ok();
        let name = hostname(file.as_deref());
        match self.sys.sethostname(&name) {
            Ok(()) => self.log(Event::Hostname(name)),
            Err(e) => self.error(format!("hostname {name}: {e}")),
        }
    }

    pub(super) fn loopback(&mut self) {
        match self.sys.link_up("lo") {
            Ok(()) => self.log(Event::LinkUp("lo".into())),
            Err(e) => self.error(format!("link lo: {e}")),
        }
    }

    /// `/etc/modules`, plus `overlay` unless the kernel already has it.
    pub(super) fn load_modules(&mut self) {
        let mut wanted = modules::parse_wanted(&self.read_text("/etc/modules").unwrap_or_default());
        let filesystems = self.read_text("/proc/filesystems").unwrap_or_default();
        let has_overlay = filesystems
            .lines()
            .any(|l| l.split_whitespace().last() == Some("overlay"));
        if !has_overlay
            && !wanted
                .iter()
                .any(|w| modules::name_of(&w.name) == "overlay")
        {
            wanted.push(modules::Wanted {
                name: "overlay".into(),
                params: String::new(),
            });
        }
        self.load(&wanted);
    }

    /// Load `wanted` and what they depend on from
    /// `/lib/modules/<release>`, logging each; no failure is fatal.
    pub(super) fn load(&mut self, wanted: &[modules::Wanted]) {
        if wanted.is_empty() {
            return;
        }
        let release = match self.sys.kernel_release() {
            Ok(r) => r,
            Err(e) => {
                self.error(format!("uname: {e}"));
                return;
            }
        };
        let base = format!("/lib/modules/{release}");
        let dep = self
            .read_text(&format!("{base}/modules.dep"))
            .unwrap_or_default();
        let builtin = self
            .read_text(&format!("{base}/modules.builtin"))
            .unwrap_or_default();
        for r in Deps::parse(&dep, &builtin).resolve(wanted) {
            match r {
                Resolved::Builtin(name) => self.log(Event::Note(format!("module {name} builtin"))),
                Resolved::NotFound(name) => self.log(Event::ModuleFailed(
                    name,
                    format!("not in {base}/modules.dep"),
                )),
                Resolved::Load(l) => {
                    let path = format!("{base}/{}", l.path);
                    match self.sys.finit_module(&path, &l.params, l.compressed) {
                        Ok(()) => self.log(Event::ModuleLoaded(l.name)),
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                            self.log(Event::Note(format!("module {} already loaded", l.name)))
                        }
                        Err(e) if l.compressed => self.log(Event::ModuleFailed(
                            l.name,
                            format!("{e} (compressed module: kernel cannot decompress it?)"),
                        )),
                        Err(e) => self.log(Event::ModuleFailed(l.name, e.to_string())),
                    }
                }
            }
        }
    }

    pub(super) fn unmount_all(&mut self) {
        let mounts = self.read_text("/proc/mounts").unwrap_or_default();
        for target in unmount_order(&mounts) {
            if let Err(e) = self.sys.umount(&target) {
                if e.kind() != io::ErrorKind::NotFound {
                    self.log(Event::Note(format!("umount {target}: {e}")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_mounts_come_in_dependency_order() {
        let order: Vec<&str> = SYSTEM_MOUNTS.iter().map(|m| m.target).collect();
        assert_eq!(
            order,
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
        let pts = &SYSTEM_MOUNTS[3];
        assert!(pts.data.contains("newinstance") && pts.data.contains("ptmxmode=0666"));
    }

    #[test]
    fn hostname_rule() {
        assert_eq!(hostname(None), "kiln");
        assert_eq!(hostname(Some(b"\n  \n")), "kiln");
        assert_eq!(hostname(Some(b"\n box-1 \nother\n")), "box-1");
    }

    #[test]
    fn mounted_points_are_unescaped() {
        let m = mounted("proc /proc proc rw 0 0\nx /a\\040b tmpfs rw 0 0\n");
        assert!(m.contains("/proc"));
        assert!(m.contains("/a b"));
    }

    #[test]
    fn unmount_innermost_first_keeping_the_basics() {
        let pm = "rootfs / rootfs rw 0 0\nproc /proc proc rw 0 0\nsysfs /sys sysfs rw 0 0\n\
                  dev /dev devtmpfs rw 0 0\ndevpts /dev/pts devpts rw 0 0\ntmpfs /run tmpfs rw 0 0\n\
                  cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n/dev/vda /var/lib ext4 rw 0 0\n";
        assert_eq!(
            unmount_order(pm),
            ["/var/lib", "/sys/fs/cgroup", "/run", "/dev/pts"]
        );
    }
}
