//! The narrow boundary between init's decisions and the kernel.
//!
//! Everything init does to the system goes through the [`Sys`] trait: mounts,
//! directories, processes, signals, modules, the hostname, network links,
//! the switch to the real root and the final reboot. The orchestration in
//! [`crate::init`] is written against this trait only, so it is tested with
//! a fake that records calls; the real implementation lives in [`linux`].
//! This module never decides anything.

pub mod linux;

use std::io;
use std::time::Duration;

use crate::netlink::LinkRequest;

/// A process id, as the kernel gives it.
pub type Pid = i32;

/// One `mount(2)` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountCall {
    pub source: String,
    pub target: String,
    pub fstype: String,
    pub flags: u64,
    pub data: String,
}

/// One directory entry, as far as init cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
}

/// How a child process exited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

/// Where a child's standard output and error go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Init's own console (stdin is `/dev/null`).
    Console,
    /// A pipe that init copies, line by line, to `log` and, prefixed with
    /// `name: `, to the console.
    Logged { name: String, log: String },
}

/// The signals init acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Child,
    Term,
    Int,
    Usr1,
    Usr2,
    Hup,
}

/// The final `reboot(2)` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Halt {
    Poweroff,
    Reboot,
    Halt,
}

/// The system calls init needs. Paths are absolute strings; every error is
/// an `io::Error` carrying the errno.
pub trait Sys {
    /// Write one complete console line (`line` has no trailing newline).
    fn log(&mut self, line: &str);
    fn mount(&mut self, call: &MountCall) -> io::Result<()>;
    fn umount(&mut self, target: &str) -> io::Result<()>;
    /// `mkdir -p` with this mode for the directories it creates.
    fn mkdir_all(&mut self, path: &str, mode: u32) -> io::Result<()>;
    /// Create an empty file (and its parents) if nothing is at `path`.
    fn ensure_file(&mut self, path: &str) -> io::Result<()>;
    fn symlink(&mut self, target: &str, link: &str) -> io::Result<()>;
    /// Whether anything (not following a final symlink) is at `path`.
    fn exists(&mut self, path: &str) -> bool;
    fn is_dir(&mut self, path: &str) -> bool;
    fn read_file(&mut self, path: &str) -> io::Result<Vec<u8>>;
    fn write_file(&mut self, path: &str, data: &[u8]) -> io::Result<()>;
    /// The entries of a directory, in whatever order the kernel gives.
    fn list_dir(&mut self, path: &str) -> io::Result<Vec<DirEntry>>;
    /// Point fds 0, 1 and 2 at `/dev/console` (after `/dev` is mounted).
    fn attach_console(&mut self) -> io::Result<()>;
    fn sethostname(&mut self, name: &str) -> io::Result<()>;
    /// Set `IFF_UP` on a network interface.
    fn link_up(&mut self, name: &str) -> io::Result<()>;
    /// Create a link or move one into a process's network namespace
    /// (one rtnetlink request, waiting for the kernel's answer).
    fn link(&mut self, req: &LinkRequest) -> io::Result<()>;
    /// `uname -r`.
    fn kernel_release(&mut self) -> io::Result<String>;
    /// `finit_module(2)`; `compressed` asks the kernel to decompress.
    fn finit_module(&mut self, path: &str, params: &str, compressed: bool) -> io::Result<()>;
    /// Start `argv` (argv[0] is a path); never waits.
    fn spawn(&mut self, argv: &[String], output: Output) -> io::Result<Pid>;
    /// Every child that has exited by now (`waitpid(-1, WNOHANG)` until none).
    fn reap(&mut self) -> Vec<(Pid, Status)>;
    /// The next signal, or `None` once `timeout` (if any) has passed.
    fn wait_signal(&mut self, timeout: Option<Duration>) -> Option<Signal>;
    /// `kill(-1, sig)`: every process but init.
    fn kill_all(&mut self, signal: i32) -> io::Result<()>;
    /// Whether init has any child left, exited or not (every process left
    /// is a descendant of init, so none means none at all).
    fn has_children(&mut self) -> bool;
    /// Time since init started, from a monotonic clock.
    fn now(&mut self) -> Duration;
    fn sync(&mut self);
    /// Ask the kernel to send SIGINT on ctrl-alt-del instead of rebooting.
    fn ctrl_alt_del_signals(&mut self) -> io::Result<()>;
    /// Only returns on failure (a fake returns `Ok`).
    fn reboot(&mut self, how: Halt) -> io::Result<()>;
    fn chdir(&mut self, path: &str) -> io::Result<()>;
    fn chroot(&mut self, path: &str) -> io::Result<()>;
    /// Replace this process with `argv` (argv[0] is a path), keeping its
    /// pid and environment, with an empty signal mask. Only returns on
    /// failure (a fake returns `Ok`).
    fn exec(&mut self, argv: &[String]) -> io::Result<()>;
}
