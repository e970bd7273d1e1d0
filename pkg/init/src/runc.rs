//! Where the containers are and how runc is called for them.
//!
//! Takes directory listings, `/proc/mounts` and a runc path, and gives the
//! sorted container names of a section and the exact argv of every runc call
//! init makes: `runc run` for a container that needs nothing between its
//! creation and its start, `runc create` + `runc start` for one that does
//! (`interfaces`, `bindNS`), as LinuxKit always does. Never touches the system and never runs anything.

use crate::event::Section;
use crate::sys::DirEntry;

/// Where the containers of every section live.
pub const CONTAINERS: &str = "/containers";

/// The directories searched for `runc`, in order.
pub const PATH: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// The value of `PATH` for the processes init starts.
pub const PATH_ENV: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// A section's directory.
pub fn section_dir(section: Section) -> String {
    format!("{CONTAINERS}/{}", section.dir())
}

/// A bundle directory.
pub fn bundle(section: Section, name: &str) -> String {
    format!("{}/{name}", section_dir(section))
}

/// The containers of a section: directories only, not hidden, sorted by
/// bytes (the `NNN-` prefix of onboot and onshutdown gives their order).
pub fn containers(entries: &[DirEntry]) -> Vec<String> {
    let mut names: Vec<String> = entries
        .iter()
        .filter(|e| e.is_dir && !e.name.starts_with('.'))
        .map(|e| e.name.clone())
        .collect();
    names.sort();
    names
}

/// Whether `/` is the initial ramfs/tmpfs (`rootfs` in `/proc/mounts`), where
/// `pivot_root(2)` cannot work and runc must use `--no-pivot`.
pub fn root_is_initramfs(proc_mounts: &str) -> bool {
    proc_mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 3 && f[1] == "/" && f[2] == "rootfs"
    })
}

/// How to call runc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Runc {
    pub path: String,
    pub no_pivot: bool,
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

impl Runc {
    /// `runc run`: create, start and wait for the container in the foreground;
    /// runc deletes it when it exits.
    pub fn run(&self, bundle: &str, name: &str) -> Vec<String> {
        let mut a = argv(&[&self.path, "run", "--bundle", bundle, "--no-new-keyring"]);
        if self.no_pivot {
            a.push("--no-pivot".into());
        }
        a.push(name.into());
        a
    }

    /// `runc create`: set the container up, its process stopped before the
    /// program, and write that process's pid to `pid_file`; then exit. The
    /// container's output goes wherever runc's does.
    pub fn create(&self, bundle: &str, name: &str, pid_file: &str) -> Vec<String> {
        let mut a = argv(&[
            &self.path,
            "create",
            "--bundle",
            bundle,
            "--pid-file",
            pid_file,
            "--no-new-keyring",
        ]);
        if self.no_pivot {
            a.push("--no-pivot".into());
        }
        a.push(name.into());
        a
    }

    /// `runc start`: let a created container run its program.
    pub fn start(&self, name: &str) -> Vec<String> {
        argv(&[&self.path, "start", name])
    }

    /// `runc kill`; with `all`, every process of the container.
    pub fn kill(&self, name: &str, signal: &str, all: bool) -> Vec<String> {
        let mut a = argv(&[&self.path, "kill"]);
        if all {
            a.push("--all".into());
        }
        a.push(name.into());
        a.push(signal.into());
        a
    }

    /// `runc delete --force`.
    pub fn delete(&self, name: &str) -> Vec<String> {
        argv(&[&self.path, "delete", "--force", name])
    }
}

/// Where `runc create` writes a container's pid.
pub fn pid_file(name: &str) -> String {
    format!("{PID_DIR}/{name}.pid")
}

/// The directory of the pid files.
pub const PID_DIR: &str = "/run/kiln-init";

/// The first `runc` found, given which candidates exist.
pub fn find(mut exists: impl FnMut(&str) -> bool) -> Option<String> {
    PATH.iter().map(|d| format!("{d}/runc")).find(|p| exists(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, is_dir: bool) -> DirEntry {
        DirEntry {
            name: name.into(),
            is_dir,
        }
    }

    #[test]
    fn containers_are_sorted_directories() {
        let got = containers(&[
            e("010-late", true),
            e("001-b", true),
            e("README", false),
            e(".hidden", true),
            e("000-a", true),
        ]);
        assert_eq!(got, ["000-a", "001-b", "010-late"]);
    }

    #[test]
    fn run_argv() {
        let r = Runc {
            path: "/usr/bin/runc".into(),
            no_pivot: false,
        };
        assert_eq!(
            r.run("/containers/onboot/000-a", "000-a"),
            [
                "/usr/bin/runc",
                "run",
                "--bundle",
                "/containers/onboot/000-a",
                "--no-new-keyring",
                "000-a"
            ]
        );
        let r = Runc {
            no_pivot: true,
            ..r
        };
        assert_eq!(
            r.run("/containers/services/getty", "getty"),
            [
                "/usr/bin/runc",
                "run",
                "--bundle",
                "/containers/services/getty",
                "--no-new-keyring",
                "--no-pivot",
                "getty"
            ]
        );
    }

    #[test]
    fn create_and_start_argv() {
        let r = Runc {
            path: "/usr/bin/runc".into(),
            no_pivot: true,
        };
        assert_eq!(
            r.create("/containers/onboot/000-a", "000-a", &pid_file("000-a")),
            [
                "/usr/bin/runc",
                "create",
                "--bundle",
                "/containers/onboot/000-a",
                "--pid-file",
                "/run/kiln-init/000-a.pid",
                "--no-new-keyring",
                "--no-pivot",
                "000-a"
            ]
        );
        assert_eq!(r.start("000-a"), ["/usr/bin/runc", "start", "000-a"]);
    }

    #[test]
    fn kill_and_delete_argv() {
        let r = Runc {
            path: "/usr/sbin/runc".into(),
            no_pivot: false,
        };
        assert_eq!(
            r.kill("getty", "TERM", false),
            ["/usr/sbin/runc", "kill", "getty", "TERM"]
        );
        assert_eq!(
            r.kill("getty", "KILL", true),
            ["/usr/sbin/runc", "kill", "--all", "getty", "KILL"]
        );
        assert_eq!(
            r.delete("getty"),
            ["/usr/sbin/runc", "delete", "--force", "getty"]
        );
    }

    #[test]
    fn runc_is_searched_in_path_order() {
        assert_eq!(
            find(|p| p == "/usr/bin/runc" || p == "/bin/runc").as_deref(),
            Some("/usr/bin/runc")
        );
        assert_eq!(
            find(|p| p == "/usr/sbin/runc").as_deref(),
            Some("/usr/sbin/runc")
        );
        assert_eq!(find(|_| false), None);
    }

    #[test]
    fn initramfs_root_is_detected() {
        assert!(root_is_initramfs(
            "rootfs / rootfs rw 0 0\nproc /proc proc rw 0 0\n"
        ));
        assert!(root_is_initramfs("none / rootfs rw 0 0\n"));
        assert!(!root_is_initramfs(
            "/dev/vda1 / ext4 rw 0 0\nrootfs /x rootfs rw 0 0\n"
        ));
        assert!(!root_is_initramfs(""));
    }

    #[test]
    fn bundle_paths() {
        assert_eq!(bundle(Section::Onboot, "000-a"), "/containers/onboot/000-a");
        assert_eq!(
            bundle(Section::Services, "getty"),
            "/containers/services/getty"
        );
        assert_eq!(section_dir(Section::Onshutdown), "/containers/onshutdown");
    }
}
