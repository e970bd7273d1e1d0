//! The boot initrd's half of boot: from the initramfs to the real root.
//!
//! Takes the [`Init`] right after its system mounts. When `/` is the
//! initramfs and the kernel command line has `root=`, it loads the modules
//! that root needs, waits (bounded) for the device node, mounts the device
//! read-only, stacks a writable overlay (upper on a tmpfs) on it at
//! [`rootfs::NEWROOT`], moves `/proc`, `/sys`, `/dev`, `/run` and `/tmp`
//! into it, makes it `/` the way `switch_root` does (chdir, `MS_MOVE` onto
//! `/`, chroot) and execs its `/init`, which boots normally: there `/` is
//! the overlay, so it never switches again. Any failure is one console line
//! naming the device and filesystem type, then a power-off: the initramfs
//! has nothing else to run. The initramfs files are not deleted.

use std::time::Duration;

use super::Init;
use crate::event::Event;
use crate::modules;
use crate::rootfs::{self, Root, INIT, LOWER, NEWROOT, RW};
use crate::runc;
use crate::sys::{Halt, Sys};

use super::system::{mounted, SYSTEM_MOUNTS};

/// How often the device node is looked for.
const POLL: Duration = Duration::from_millis(100);

/// What became of the boot initrd's part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    /// No switch asked for, or already on the real root: boot goes on here.
    Continue,
    /// The real root's init was executed (returns only on a fake).
    Handed,
    /// The switch failed and the machine was powered off.
    Failed,
}

impl<S: Sys> Init<S> {
    /// Switch to the root `/proc/cmdline` names, if it names one and `/` is
    /// still the initramfs.
    pub(super) fn switch_root(&mut self) -> Switch {
        let cmdline = self.read_text("/proc/cmdline").unwrap_or_default();
        let asked = rootfs::parse(&cmdline);
        if let Ok(None) = asked {
            return Switch::Continue;
        }
        let mounts = self.read_text("/proc/mounts").unwrap_or_default();
        if !runc::root_is_initramfs(&mounts) {
            self.log(Event::Note(
                "/ is not the initramfs: root= needs no switch".into(),
            ));
            return Switch::Continue;
        }
        match asked {
            Ok(Some(root)) => match self.mount_root(&root) {
                Ok(()) => self.enter(&root),
                Err(msg) => self.fail(&format!("root {}: {msg}", root.describe())),
            },
            Ok(None) => Switch::Continue,
            Err(msg) => self.fail(&msg),
        }
    }

    /// Modules, the device, the read-only mount and the overlay on
    /// [`NEWROOT`] with the real root's init in it.
    fn mount_root(&mut self, root: &Root) -> Result<(), String> {
        let extra = modules::parse_wanted(&self.read_text("/etc/modules").unwrap_or_default());
        self.load(&rootfs::modules(root, extra));
        self.wait_device(root)?;
        self.mkdir(LOWER)?;
        let mut errors = Vec::new();
        for fstype in &root.fstypes {
            match self.sys.mount(&rootfs::lower_mount(root, fstype)) {
                Ok(()) => {
                    errors.clear();
                    break;
                }
                Err(e) => errors.push(format!("{fstype}: {e}")),
            }
        }
        if !errors.is_empty() {
            return Err(format!("cannot mount read-only: {}", errors.join("; ")));
        }
        let [rw, overlay] = rootfs::overlay_mounts();
        self.mkdir(RW)?;
        self.sys
            .mount(&rw)
            .map_err(|e| format!("tmpfs on {RW}: {e}"))?;
        self.mkdir(&format!("{RW}/upper"))?;
        self.mkdir(&format!("{RW}/work"))?;
        self.mkdir(NEWROOT)?;
        self.sys
            .mount(&overlay)
            .map_err(|e| format!("overlay on {NEWROOT}: {e}"))?;
        if !self.sys.exists(&format!("{NEWROOT}{INIT}")) {
            return Err(format!("no {INIT} in the root filesystem"));
        }
        self.log(Event::Note(format!(
            "root {} mounted read-only under a tmpfs overlay",
            root.describe()
        )));
        Ok(())
    }

    /// Poll for the device node until `root.wait` has passed.
    fn wait_device(&mut self, root: &Root) -> Result<(), String> {
        let deadline = self.sys.now() + root.wait;
        loop {
            if self.sys.exists(&root.device) {
                return Ok(());
            }
            let now = self.sys.now();
            if now >= deadline {
                return Err(format!(
                    "{} did not appear within {} s",
                    root.device,
                    root.wait.as_secs()
                ));
            }
            self.sys.wait_signal(Some(POLL.min(deadline - now)));
        }
    }

    fn mkdir(&mut self, dir: &str) -> Result<(), String> {
        self.sys
            .mkdir_all(dir, 0o755)
            .map_err(|e| format!("mkdir {dir}: {e}"))
    }

    /// Move the system mounts in, make [`NEWROOT`] `/` and exec its init.
    fn enter(&mut self, root: &Root) -> Switch {
        let targets: Vec<&str> = SYSTEM_MOUNTS.iter().map(|m| m.target).collect();
        let mounts = mounted(&self.read_text("/proc/mounts").unwrap_or_default());
        for from in rootfs::moves(&targets, &mounts) {
            let call = rootfs::move_mount(&from);
            let r = self
                .mkdir(&call.target)
                .and_then(|()| self.sys.mount(&call).map_err(|e| e.to_string()));
            if let Err(e) = r {
                return self.fail(&format!(
                    "root {}: move {from} to {}: {e}",
                    root.describe(),
                    call.target
                ));
            }
        }
        if let Err(e) = self.make_root() {
            return self.fail(&format!("root {}: {e}", root.describe()));
        }
        self.log(Event::Note(format!(
            "switched root to {}: exec {INIT}",
            root.describe()
        )));
        match self.sys.exec(&[INIT.to_string()]) {
            Ok(()) => Switch::Handed,
            Err(e) => self.fail(&format!("root {}: exec {INIT}: {e}", root.describe())),
        }
    }

    /// `switch_root`'s steps: chdir into [`NEWROOT`], move it onto `/`,
    /// chroot into it.
    fn make_root(&mut self) -> Result<(), String> {
        self.sys
            .chdir(NEWROOT)
            .map_err(|e| format!("chdir {NEWROOT}: {e}"))?;
        self.sys
            .mount(&rootfs::move_mount_to_root())
            .map_err(|e| format!("move {NEWROOT} to /: {e}"))?;
        self.sys.chroot(".").map_err(|e| format!("chroot: {e}"))?;
        self.sys.chdir("/").map_err(|e| format!("chdir /: {e}"))
    }

    /// One error line, then power off.
    fn fail(&mut self, msg: &str) -> Switch {
        self.error(format!("{msg}; powering off"));
        self.sys.sync();
        self.log(Event::Final(Halt::Poweroff));
        if let Err(e) = self.sys.reboot(Halt::Poweroff) {
            self.error(format!("poweroff: {e}"));
        }
        Switch::Failed
    }
}

#[cfg(test)]
#[path = "switch/tests.rs"]
mod tests;
