//! A fake [`Sys`] for tests: an in-memory file tree, a scripted clock and
//! signal queue, and pretend `runc` processes. Every call is recorded as one
//! short line in `calls`, so a test can assert the order of what init did.
//!
//! Pretend processes: `runc run ... NAME` exits at once with `exits[NAME]`,
//! or keeps running; `runc create ... --pid-file F NAME` exits 0 (1 if NAME
//! is in `create_fails`) after writing the pid of a new, running container
//! process to F; `runc start NAME` exits 0 and makes that process exit with
//! `exits[NAME]` if there is one; `runc kill NAME TERM` stops NAME with
//! signal 15 unless NAME is `stubborn`; `runc kill --all NAME KILL` and
//! `runc delete --force NAME` always stop it; every other spawn exits 0 at
//! once. `link` requests are recorded and fail with `EEXIST` for names in
//! `fail_links`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::time::Duration;

use crate::netlink::LinkRequest;
use crate::sys::{DirEntry, Halt, MountCall, Output, Pid, Signal, Status, Sys};

/// One scripted happening, delivered by `wait_signal`.
#[derive(Clone, Debug)]
pub enum Happening {
    Signal(Signal),
    /// The running container NAME exits (delivered as SIGCHLD).
    Exit(&'static str, Status),
    /// A process init never started exits (an orphan).
    Orphan(Pid, Status),
}

#[derive(Default)]
pub struct Fake {
    pub calls: Vec<String>,
    pub files: BTreeMap<String, Vec<u8>>,
    pub dirs: BTreeSet<String>,
    pub exits: BTreeMap<String, Status>,
    pub stubborn: BTreeSet<String>,
    /// Mounts that fail with EINVAL: `TARGET` or `TARGET FSTYPE`.
    pub fail_mounts: BTreeSet<String>,
    /// Paths that exist only from this time on (a device node the kernel
    /// creates once its driver probed).
    pub appear: BTreeMap<String, Duration>,
    pub fail_exec: bool,
    pub create_fails: BTreeSet<String>,
    pub fail_links: BTreeSet<String>,
    /// Keep `/proc/mounts` up to date: a mount appends its line, `MS_MOVE`
    /// renames the moved mount and those below it.
    pub track_mounts: bool,
    pub script: VecDeque<Happening>,
    pub spawned: Vec<(Vec<String>, Output)>,
    time: Duration,
    next_pid: Pid,
    running: BTreeMap<Pid, String>,
    exited: Vec<(Pid, Status)>,
    waits: usize,
}

fn parents(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut p = path.trim_end_matches('/').to_string();
    while !p.is_empty() {
        out.push(p.clone());
        match p.rfind('/') {
            Some(i) => p.truncate(i),
            None => break,
        }
    }
    out
}

impl Fake {
    pub fn new() -> Fake {
        Fake {
            next_pid: 100,
            ..Fake::default()
        }
    }

    pub fn file(&mut self, path: &str, data: &str) {
        if let Some((dir, _)) = path.rsplit_once('/') {
            self.dirs.extend(parents(dir));
        }
        self.files
            .insert(path.to_string(), data.as_bytes().to_vec());
    }

    pub fn dir(&mut self, path: &str) {
        self.dirs.extend(parents(path));
    }

    /// A process init did not start (a daemon's orphan) that runs until
    /// signalled.
    pub fn background(&mut self, pid: Pid, name: &str) {
        self.running.insert(pid, name.to_string());
    }

    /// The console lines written so far.
    pub fn lines(&self) -> Vec<&str> {
        self.calls
            .iter()
            .filter_map(|c| c.strip_prefix("log "))
            .collect()
    }

    /// The calls that start with one of `prefixes`, in order.
    pub fn only(&self, prefixes: &[&str]) -> Vec<&str> {
        self.calls
            .iter()
            .map(String::as_str)
            .filter(|c| prefixes.iter().any(|p| c.starts_with(p)))
            .collect()
    }

    fn track(&mut self, c: &MountCall) {
        let table = self.files.entry("/proc/mounts".into()).or_default();
        let text = String::from_utf8_lossy(table).into_owned();
        let mut out = String::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let moved = f.get(1).and_then(|t| {
                let rest = t.strip_prefix(c.source.as_str())?;
                (rest.is_empty() || rest.starts_with('/')).then(|| format!("{}{rest}", c.target))
            });
            match moved {
                Some(t) if c.flags & libc::MS_MOVE != 0 && c.source.starts_with('/') => {
                    out.push_str(&format!(
                        "{} {t} {}\n",
                        f[0],
                        f.get(2..).unwrap_or(&[]).join(" ")
                    ));
                }
                _ => out.push_str(&format!("{line}\n")),
            }
        }
        if c.flags & libc::MS_MOVE == 0 {
            out.push_str(&format!("{} {} {} rw 0 0\n", c.source, c.target, c.fstype));
        }
        *table = out.into_bytes();
    }

    fn stop(&mut self, name: &str, status: Status) {
        let pids: Vec<Pid> = self
            .running
            .iter()
            .filter(|(_, n)| *n == name)
            .map(|(p, _)| *p)
            .collect();
        for pid in pids {
            self.running.remove(&pid);
            self.exited.push((pid, status));
        }
    }
}

impl Sys for Fake {
    fn log(&mut self, line: &str) {
        self.calls.push(format!("log {line}"));
    }

    fn mount(&mut self, c: &MountCall) -> io::Result<()> {
        self.calls.push(format!(
            "mount {} {} {} {:#x} {}",
            c.source, c.target, c.fstype, c.flags, c.data
        ));
        let typed = format!("{} {}", c.target, c.fstype);
        if self.fail_mounts.contains(&c.target) || self.fail_mounts.contains(&typed) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        if self.track_mounts {
            self.track(c);
        }
        Ok(())
    }

    fn umount(&mut self, target: &str) -> io::Result<()> {
        self.calls.push(format!("umount {target}"));
        Ok(())
    }

    fn mkdir_all(&mut self, path: &str, _mode: u32) -> io::Result<()> {
        self.calls.push(format!("mkdir {path}"));
        self.dirs.extend(parents(path));
        Ok(())
    }

    fn ensure_file(&mut self, path: &str) -> io::Result<()> {
        self.calls.push(format!("touch {path}"));
        self.files.entry(path.to_string()).or_default();
        Ok(())
    }

    fn symlink(&mut self, target: &str, link: &str) -> io::Result<()> {
        self.calls.push(format!("symlink {link} -> {target}"));
        Ok(())
    }

    fn exists(&mut self, path: &str) -> bool {
        if let Some(t) = self.appear.get(path) {
            return self.time >= *t;
        }
        self.files.contains_key(path) || self.dirs.contains(path)
    }

    fn is_dir(&mut self, path: &str) -> bool {
        self.dirs.contains(path)
    }

    fn read_file(&mut self, path: &str) -> io::Result<Vec<u8>> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn write_file(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        self.calls
            .push(format!("write {path} {}", String::from_utf8_lossy(data)));
        Ok(())
    }

    fn list_dir(&mut self, path: &str) -> io::Result<Vec<DirEntry>> {
        if !self.dirs.contains(path) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let prefix = format!("{path}/");
        let direct = |p: &String| {
            p.strip_prefix(&prefix)
                .filter(|r| !r.contains('/'))
                .map(str::to_string)
        };
        // Reverse order: init must sort, not trust the listing.
        let mut out: Vec<DirEntry> = self
            .dirs
            .iter()
            .filter_map(direct)
            .map(|name| DirEntry { name, is_dir: true })
            .chain(self.files.keys().filter_map(direct).map(|name| DirEntry {
                name,
                is_dir: false,
            }))
            .collect();
        out.reverse();
        Ok(out)
    }

    fn attach_console(&mut self) -> io::Result<()> {
        self.calls.push("attach_console".into());
        Ok(())
    }

    fn sethostname(&mut self, name: &str) -> io::Result<()> {
        self.calls.push(format!("sethostname {name}"));
        Ok(())
    }

    fn link_up(&mut self, name: &str) -> io::Result<()> {
        self.calls.push(format!("link_up {name}"));
        Ok(())
    }

    fn link(&mut self, req: &LinkRequest) -> io::Result<()> {
        let (line, name) = match req {
            LinkRequest::Add {
                name,
                kind,
                peer,
                netns,
            } => {
                let mut l = format!("link add {name} {kind}");
                if let Some(p) = peer {
                    l.push_str(&format!(" peer {p}"));
                }
                if let Some(n) = netns {
                    l.push_str(&format!(" netns {n}"));
                }
                (l, name)
            }
            LinkRequest::Move { name, pid } => (format!("link move {name} {pid}"), name),
        };
        self.calls.push(line);
        if self.fail_links.contains(name) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        Ok(())
    }

    fn kernel_release(&mut self) -> io::Result<String> {
        Ok("6.6.0-kiln".into())
    }

    fn finit_module(&mut self, path: &str, params: &str, compressed: bool) -> io::Result<()> {
        self.calls
            .push(format!("finit_module {path} [{params}] {compressed}"));
        Ok(())
    }

    fn spawn(&mut self, argv: &[String], output: Output) -> io::Result<Pid> {
        self.calls.push(format!("spawn {}", argv.join(" ")));
        self.spawned.push((argv.to_vec(), output));
        let pid = self.next_pid;
        self.next_pid += 1;
        let name = argv.last().cloned().unwrap_or_default();
        match argv.get(1).map(String::as_str) {
            Some("run") => match self.exits.get(&name) {
                Some(st) => self.exited.push((pid, *st)),
                None => {
                    self.running.insert(pid, name);
                }
            },
            Some("create") => {
                let file = argv
                    .iter()
                    .position(|a| a == "--pid-file")
                    .and_then(|i| argv.get(i + 1))
                    .cloned()
                    .unwrap_or_default();
                if self.create_fails.contains(&name) {
                    self.exited.push((pid, Status::Exited(1)));
                } else {
                    let container = self.next_pid;
                    self.next_pid += 1;
                    self.files.insert(file, container.to_string().into_bytes());
                    self.running.insert(container, name);
                    self.exited.push((pid, Status::Exited(0)));
                }
            }
            Some("start") => {
                if let Some(st) = self.exits.get(&name).copied() {
                    self.stop(&name, st);
                }
                self.exited.push((pid, Status::Exited(0)));
            }
            Some("delete") => {
                self.stop(&name, Status::Signaled(9));
                self.exited.push((pid, Status::Exited(0)));
            }
            Some("kill") => {
                let target = argv
                    .get(argv.len().saturating_sub(2))
                    .cloned()
                    .unwrap_or_default();
                if name == "KILL" {
                    self.stop(&target, Status::Signaled(9));
                } else if name == "TERM" && !self.stubborn.contains(&target) {
                    self.stop(&target, Status::Signaled(15));
                }
                self.exited.push((pid, Status::Exited(0)));
            }
            _ => self.exited.push((pid, Status::Exited(0))),
        }
        Ok(pid)
    }

    fn reap(&mut self) -> Vec<(Pid, Status)> {
        std::mem::take(&mut self.exited)
    }

    fn wait_signal(&mut self, timeout: Option<Duration>) -> Option<Signal> {
        self.waits += 1;
        assert!(
            self.waits < 10_000,
            "init waits forever; calls: {:#?}",
            self.calls
        );
        match self.script.pop_front() {
            Some(Happening::Signal(s)) => Some(s),
            Some(Happening::Exit(name, st)) => {
                self.stop(name, st);
                Some(Signal::Child)
            }
            Some(Happening::Orphan(pid, st)) => {
                self.exited.push((pid, st));
                Some(Signal::Child)
            }
            None => {
                self.time += timeout.unwrap_or(Duration::from_secs(3600));
                None
            }
        }
    }

    fn kill_all(&mut self, signal: i32) -> io::Result<()> {
        self.calls.push(format!("kill_all {signal}"));
        if self.running.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        let names: Vec<String> = self.running.values().cloned().collect();
        for n in names {
            // A stubborn process ignores SIGTERM, even from kill(-1).
            if signal != libc::SIGTERM || !self.stubborn.contains(&n) {
                self.stop(&n, Status::Signaled(signal));
            }
        }
        Ok(())
    }

    fn has_children(&mut self) -> bool {
        !self.running.is_empty() || !self.exited.is_empty()
    }

    fn now(&mut self) -> Duration {
        self.time
    }

    fn sync(&mut self) {
        self.calls.push("sync".into());
    }

    fn ctrl_alt_del_signals(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn reboot(&mut self, how: Halt) -> io::Result<()> {
        self.calls.push(format!("reboot {}", how.word()));
        Ok(())
    }

    fn chdir(&mut self, path: &str) -> io::Result<()> {
        self.calls.push(format!("chdir {path}"));
        Ok(())
    }

    fn chroot(&mut self, path: &str) -> io::Result<()> {
        self.calls.push(format!("chroot {path}"));
        Ok(())
    }

    fn exec(&mut self, argv: &[String]) -> io::Result<()> {
        self.calls.push(format!("exec {}", argv.join(" ")));
        if self.fail_exec {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        Ok(())
    }
}
