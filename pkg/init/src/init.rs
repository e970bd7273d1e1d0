//! The life of PID 1: boot, supervise, shut down.
//!
//! Takes a [`Sys`] and gives the whole sequence: system mounts, the switch
//! from a boot initrd to the real root (`init/switch.rs`), hostname,
//! loopback, kernel modules, the onboot containers one after another, the
//! services (each container's `runtime.json` performed around it: mounts
//! before it is created, `interfaces` and `bindNS` between `runc create` and
//! `runc start`), then — on a shutdown signal — the onshutdown containers, stopping
//! the services, killing what is left, unmounting and the final `reboot(2)`.
//! Every failure is logged as a console line and init goes on; nothing here
//! panics or returns an error. The pure decisions live in the other modules;
//! the system-facing steps of boot are in `init/system.rs`.

mod switch;
mod system;

pub use switch::Switch;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::time::Duration;

use crate::event::{Event, Section};
use crate::netlink::LinkRequest;
use crate::runc::{self, Runc};
use crate::runtime::{self, Runtime, Step};
use crate::supervise::{self, Phase};
use crate::sys::{Halt, Output, Pid, Status, Sys};

/// Time limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// How long one onshutdown container may run.
    pub onshutdown_timeout: Duration,
    /// How long services get after `runc kill NAME TERM`.
    pub stop_timeout: Duration,
    /// How long a helper (`runc kill`, `runc delete`) or a KILL may take.
    pub helper_timeout: Duration,
    /// How long every other process gets between SIGTERM and SIGKILL.
    pub kill_all_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            onshutdown_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(10),
            helper_timeout: Duration::from_secs(5),
            kill_all_timeout: Duration::from_secs(2),
        }
    }
}

/// PID 1's state.
pub struct Init<S: Sys> {
    pub sys: S,
    cfg: Config,
    runc: Option<Runc>,
    /// Running services by the pid of their `runc run`.
    services: BTreeMap<Pid, String>,
    phase: Phase,
    /// A shutdown asked for and not yet begun.
    pending: Option<Halt>,
    /// Created containers' pids whose exit must not be taken for an
    /// orphan's while init waits for `runc start` (see `launch`).
    watch: BTreeSet<Pid>,
    /// Exits of watched pids, reaped before anyone waited for them.
    early: BTreeMap<Pid, Status>,
}

/// How a container was started, which says how to clean up after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Started {
    /// `runc run`, which deletes the container when it exits.
    Run,
    /// `runc create` + `runc start`: the stopped container stays until
    /// `runc delete`.
    Created,
}

impl<S: Sys> Init<S> {
    pub fn new(sys: S, cfg: Config) -> Init<S> {
        Init {
            sys,
            cfg,
            runc: None,
            services: BTreeMap::new(),
            phase: Phase::Running,
            pending: None,
            watch: BTreeSet::new(),
            early: BTreeMap::new(),
        }
    }

    fn log(&mut self, e: Event) {
        let line = e.to_string();
        self.sys.log(&line);
    }

    fn error(&mut self, msg: String) {
        self.log(Event::Error(msg));
    }

    /// Boot, supervise until a shutdown is asked for, shut down. Returns only
    /// if the final `reboot(2)` failed (or on a fake): the way it halted, or
    /// `None` once the real root's init was executed.
    pub fn run(&mut self) -> Option<Halt> {
        match self.boot() {
            Switch::Continue => {}
            Switch::Handed => return None,
            Switch::Failed => return Some(Halt::Poweroff),
        }
        let how = self.supervise();
        self.shutdown(how);
        Some(how)
    }

    /// Everything up to and including starting the services, unless this is
    /// the boot initrd's init handing over to the real root (see
    /// `init/switch.rs`).
    pub fn boot(&mut self) -> Switch {
        self.log(Event::Start);
        if let Err(e) = self.sys.ctrl_alt_del_signals() {
            self.error(format!("ctrl-alt-del: {e}"));
        }
        self.mount_system();
        match self.switch_root() {
            Switch::Continue => {}
            other => return other,
        }
        self.hostname();
        self.loopback();
        self.load_modules();
        self.find_runc();
        self.run_section(Section::Onboot, None);
        self.start_services();
        Switch::Continue
    }

    fn find_runc(&mut self) {
        let Some(path) = runc::find(|p| self.sys.exists(p)) else {
            self.error(format!("runc not found in {}", runc::PATH_ENV));
            return;
        };
        let mounts = self.sys.read_file("/proc/mounts").unwrap_or_default();
        let no_pivot = runc::root_is_initramfs(&String::from_utf8_lossy(&mounts));
        if no_pivot {
            self.log(Event::Note(
                "root is the initramfs: runc runs with --no-pivot".into(),
            ));
        }
        self.runc = Some(Runc { path, no_pivot });
    }

    /// The containers of a section, sorted; a missing section is empty.
    fn list(&mut self, section: Section) -> Vec<String> {
        let dir = runc::section_dir(section);
        match self.sys.list_dir(&dir) {
            Ok(entries) => runc::containers(&entries),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                self.error(format!("cannot list {dir}: {e}"));
                Vec::new()
            }
        }
    }

    /// Run every container of `section` to completion, in order.
    fn run_section(&mut self, section: Section, timeout: Option<Duration>) {
        for name in self.list(section) {
            if section == Section::Onboot && self.pending.is_some() {
                self.log(Event::Note(format!("onboot {name} skipped: shutting down")));
                continue;
            }
            self.run_to_completion(section, &name, timeout);
        }
    }

    fn run_to_completion(&mut self, section: Section, name: &str, timeout: Option<Duration>) {
        let Some(runc) = self.runc.clone() else {
            self.error(format!("{} {name} not run: no runc", section.word()));
            return;
        };
        let bundle = runc::bundle(section, name);
        let Some((steps, rt)) = self.prepare(section, name, &bundle) else {
            return;
        };
        self.log(Event::Run(section, name.to_string()));
        match self.launch(section, name, &bundle, &rt, &runc, Output::Console) {
            None => {}
            Some((pid, started)) => {
                let deadline = timeout.map(|t| self.sys.now() + t);
                match self.wait_for(pid, deadline) {
                    Some(status) => {
                        self.log(Event::Exit(section, name.to_string(), status));
                        if started == Started::Created {
                            self.helper(runc.delete(name));
                        }
                    }
                    None => {
                        self.log(Event::Timeout(section, name.to_string()));
                        self.helper(runc.kill(name, "KILL", true));
                        let deadline = self.sys.now() + self.cfg.helper_timeout;
                        if self.wait_for(pid, Some(deadline)).is_none() {
                            self.error(format!("{} {name}: runc did not exit", section.word()));
                        }
                        self.helper(runc.delete(name));
                    }
                }
            }
        }
        for target in runtime::cleanup(&steps, &bundle) {
            if let Err(e) = self.sys.umount(&target) {
                self.log(Event::Note(format!("umount {target}: {e}")));
            }
        }
    }

    /// Start a prepared container and give the pid to wait for: `runc run`'s
    /// own, or, when `rt` acts on the container's process, the container's
    /// (`runc create`, the interfaces and namespace binds, `runc start`; the
    /// container is our child once `runc create` exits, as init is PID 1).
    /// `None` (logged, nothing left behind) if it could not start.
    fn launch(
        &mut self,
        section: Section,
        name: &str,
        bundle: &str,
        rt: &Runtime,
        runc: &Runc,
        output: Output,
    ) -> Option<(Pid, Started)> {
        let word = section.word();
        if !rt.acts_on_process() {
            return match self.sys.spawn(&runc.run(bundle, name), output) {
                Ok(pid) => Some((pid, Started::Run)),
                Err(e) => {
                    self.error(format!("{word} {name}: cannot start runc: {e}"));
                    None
                }
            };
        }
        if let Err(e) = self.sys.mkdir_all(runc::PID_DIR, 0o755) {
            self.error(format!("{word} {name}: mkdir {}: {e}", runc::PID_DIR));
            return None;
        }
        let pid_file = runc::pid_file(name);
        let create = match self
            .sys
            .spawn(&runc.create(bundle, name, &pid_file), output)
        {
            Ok(pid) => pid,
            Err(e) => {
                self.error(format!("{word} {name}: cannot start runc: {e}"));
                return None;
            }
        };
        match self.wait_for(create, None) {
            Some(Status::Exited(0)) => {}
            st => {
                let st = st.map_or("unknown".to_string(), |s| s.to_string());
                self.error(format!("{word} {name}: runc create exit {st}"));
                return None;
            }
        }
        let pid = match self.sys.read_file(&pid_file) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).trim().parse::<Pid>().ok(),
            Err(_) => None,
        };
        let Some(pid) = pid.filter(|p| *p > 0) else {
            self.error(format!("{word} {name}: no pid in {pid_file}"));
            self.helper(runc.delete(name));
            return None;
        };
        self.watch.insert(pid);
        let started = match self.act_on_process(rt, pid) {
            Err(msg) => Err(msg),
            Ok(()) => {
                let argv = runc.start(name);
                match self.sys.spawn(&argv, Output::Console) {
                    Err(e) => Err(format!("runc start: {e}")),
                    Ok(start) => {
                        let deadline = self.sys.now() + self.cfg.helper_timeout;
                        match self.wait_for(start, Some(deadline)) {
                            Some(Status::Exited(0)) => Ok(()),
                            Some(st) => Err(format!("runc start exit {st}")),
                            None => Err("runc start timeout".to_string()),
                        }
                    }
                }
            }
        };
        if let Err(msg) = started {
            self.error(format!("{word} {name}: {msg}"));
            self.helper(runc.delete(name));
            self.watch.remove(&pid);
            self.early.remove(&pid);
            return None;
        }
        Some((pid, Started::Created))
    }

    /// `interfaces`, then `bindNS`, for the created container process `pid`.
    fn act_on_process(&mut self, rt: &Runtime, pid: Pid) -> Result<(), String> {
        for req in runtime::link_requests(&rt.interfaces, pid)? {
            let done = match &req {
                LinkRequest::Add { name, kind, .. } => {
                    format!("created interface {name} type {kind}")
                }
                LinkRequest::Move { name, pid } => format!("moved interface {name} to pid {pid}"),
            };
            match self.sys.link(&req) {
                Ok(()) => self.log(Event::Note(done)),
                Err(e) => {
                    return Err(match &req {
                        LinkRequest::Add { name, kind, .. } => {
                            format!("link add {name} of type {kind}: {e}")
                        }
                        LinkRequest::Move { name, .. } => {
                            format!("cannot move interface {name} into namespace: {e}")
                        }
                    })
                }
            }
        }
        for step in runtime::bind_ns_steps(&rt.bind_ns, pid) {
            self.perform(&step)?;
        }
        Ok(())
    }

    /// Read the bundle's `runtime.json` and perform what comes before the
    /// container is created. `None` (logged) if the container cannot run.
    fn prepare(
        &mut self,
        section: Section,
        name: &str,
        bundle: &str,
    ) -> Option<(Vec<Step>, Runtime)> {
        let word = section.word();
        let path = format!("{bundle}/runtime.json");
        let rt = match self.sys.read_file(&path) {
            Ok(bytes) => match runtime::parse(&bytes) {
                Ok(rt) => rt,
                Err(e) => {
                    self.error(format!("{word} {name}: {path}: {e}"));
                    return None;
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let writable = self.sys.is_dir(&format!("{bundle}/lower"));
                Runtime {
                    mounts: runtime::default_mounts(bundle, writable),
                    ..Runtime::default()
                }
            }
            Err(e) => {
                self.error(format!("{word} {name}: cannot read {path}: {e}"));
                return None;
            }
        };
        for cg in &rt.cgroups {
            let dir = format!("/sys/fs/cgroup/{}", cg.trim_start_matches('/'));
            if let Err(e) = self.sys.mkdir_all(&dir, 0o755) {
                self.error(format!("{word} {name}: cgroup {dir}: {e}"));
            }
        }
        let steps = runtime::plan(&rt);
        for step in &steps {
            if let Err(msg) = self.perform(step) {
                self.error(format!("{word} {name}: {msg}"));
                return None;
            }
        }
        Some((steps, rt))
    }

    fn perform(&mut self, step: &Step) -> Result<(), String> {
        match step {
            Step::Mkdir(dir) => self
                .sys
                .mkdir_all(dir, 0o755)
                .map_err(|e| format!("mkdir {dir}: {e}")),
            Step::Target { path, like } => {
                let file = like
                    .as_deref()
                    .is_some_and(|src| self.sys.exists(src) && !self.sys.is_dir(src));
                let r = if file {
                    self.sys.ensure_file(path)
                } else {
                    self.sys.mkdir_all(path, 0o755)
                };
                r.map_err(|e| format!("mount point {path}: {e}"))
            }
            Step::Mount(m) => self
                .sys
                .mount(m)
                .map_err(|e| format!("mount {}: {e}", m.target)),
            Step::File(path) => self
                .sys
                .ensure_file(path)
                .map_err(|e| format!("mount point {path}: {e}")),
        }
    }

    fn start_services(&mut self) {
        if self.pending.is_some() {
            return;
        }
        let names = self.list(Section::Services);
        if names.is_empty() {
            return;
        }
        if let Err(e) = self.sys.mkdir_all("/var/log", 0o755) {
            self.error(format!("mkdir /var/log: {e}"));
        }
        let Some(runc) = self.runc.clone() else {
            self.error("services not started: no runc".into());
            return;
        };
        for name in names {
            let bundle = runc::bundle(Section::Services, &name);
            let Some((_, rt)) = self.prepare(Section::Services, &name, &bundle) else {
                continue;
            };
            let output = Output::Logged {
                name: name.clone(),
                log: format!("/var/log/{name}.log"),
            };
            let Some((pid, _)) = self.launch(Section::Services, &name, &bundle, &rt, &runc, output)
            else {
                continue;
            };
            self.log(Event::ServiceStarted(name.clone(), pid));
            self.watch.remove(&pid);
            match self.early.remove(&pid) {
                Some(status) => self.log(Event::ServiceExited(name, status)),
                None => {
                    self.services.insert(pid, name);
                }
            }
        }
    }

    /// Reap every exited child, logging each.
    fn reap_all(&mut self) {
        for (pid, status) in self.sys.reap() {
            let e = supervise::on_exit(self.phase, &mut self.services, pid, status);
            self.log(e);
        }
    }

    fn on_signal(&mut self, sig: crate::sys::Signal) {
        if let Some(how) = supervise::shutdown_for(sig) {
            if self.phase == Phase::Running && self.pending.is_none() {
                self.pending = Some(how);
            }
        }
    }

    /// Wait for `pid` while reaping (and logging) every other child and
    /// noting shutdown signals. `None` once `deadline` has passed.
    /// A watched pid's exit is kept for whoever waits for it later.
    fn wait_for(&mut self, pid: Pid, deadline: Option<Duration>) -> Option<Status> {
        if let Some(status) = self.early.remove(&pid) {
            self.watch.remove(&pid);
            return Some(status);
        }
        loop {
            let mut found = None;
            for (p, status) in self.sys.reap() {
                if p == pid {
                    found = Some(status);
                    self.watch.remove(&pid);
                } else if self.watch.contains(&p) {
                    self.early.insert(p, status);
                } else {
                    let e = supervise::on_exit(self.phase, &mut self.services, p, status);
                    self.log(e);
                }
            }
            if found.is_some() {
                return found;
            }
            let timeout = match deadline {
                None => None,
                Some(d) => {
                    let now = self.sys.now();
                    if now >= d {
                        return None;
                    }
                    Some(d - now)
                }
            };
            if let Some(sig) = self.sys.wait_signal(timeout) {
                self.on_signal(sig);
            }
        }
    }

    /// Run a short helper (`runc kill`, `runc delete`) and wait for it.
    fn helper(&mut self, argv: Vec<String>) {
        let what = argv.get(1..).unwrap_or(&[]).join(" ");
        match self.sys.spawn(&argv, Output::Console) {
            Err(e) => self.error(format!("runc {what}: {e}")),
            Ok(pid) => {
                let deadline = self.sys.now() + self.cfg.helper_timeout;
                match self.wait_for(pid, Some(deadline)) {
                    Some(Status::Exited(0)) => {}
                    Some(st) => self.log(Event::Note(format!("runc {what} exit {st}"))),
                    None => self.error(format!("runc {what} timeout")),
                }
            }
        }
    }

    /// Reap and wait for signals until a shutdown is asked for.
    pub fn supervise(&mut self) -> Halt {
        loop {
            self.reap_all();
            if let Some(how) = self.pending.take() {
                return how;
            }
            if let Some(sig) = self.sys.wait_signal(None) {
                self.on_signal(sig);
            }
        }
    }

    /// Wait until no service runs or `deadline` has passed.
    fn wait_services(&mut self, deadline: Duration) {
        loop {
            self.reap_all();
            let now = self.sys.now();
            if self.services.is_empty() || now >= deadline {
                return;
            }
            if let Some(sig) = self.sys.wait_signal(Some(deadline - now)) {
                self.on_signal(sig);
            }
        }
    }

    /// The shutdown sequence; ends with `reboot(2)`.
    pub fn shutdown(&mut self, how: Halt) {
        self.phase = Phase::Stopping;
        self.log(Event::Shutdown(how));
        self.run_section(Section::Onshutdown, Some(self.cfg.onshutdown_timeout));
        self.stop_services();
        self.kill_everything();
        self.sys.sync();
        self.unmount_all();
        self.sys.sync();
        self.log(Event::Final(how));
        if let Err(e) = self.sys.reboot(how) {
            self.error(format!("{}: {e}", how.word()));
        }
    }

    fn stop_services(&mut self) {
        let Some(runc) = self.runc.clone() else {
            return;
        };
        let names: Vec<String> = self.services.values().cloned().collect();
        for name in &names {
            self.helper(runc.kill(name, "TERM", false));
        }
        let deadline = self.sys.now() + self.cfg.stop_timeout;
        self.wait_services(deadline);
        let left: Vec<String> = self.services.values().cloned().collect();
        for name in &left {
            self.log(Event::Note(format!("service {name} did not stop: KILL")));
            self.helper(runc.kill(name, "KILL", true));
        }
        if !left.is_empty() {
            let deadline = self.sys.now() + self.cfg.helper_timeout;
            self.wait_services(deadline);
        }
        let left: Vec<String> = self.services.values().cloned().collect();
        for name in &left {
            self.helper(runc.delete(name));
        }
    }

    /// SIGTERM to every process left, a short wait, then SIGKILL and another
    /// short wait, reaping (and logging) as they die.
    fn kill_everything(&mut self) {
        let steps = [
            (libc::SIGTERM, "TERM", self.cfg.kill_all_timeout),
            (libc::SIGKILL, "KILL", self.cfg.helper_timeout),
        ];
        for (signal, word, wait) in steps {
            if self.sys.kill_all(signal).is_err() {
                return;
            }
            self.log(Event::Note(format!(
                "{word} sent to every remaining process"
            )));
            let deadline = self.sys.now() + wait;
            loop {
                self.reap_all();
                if !self.sys.has_children() {
                    return;
                }
                let now = self.sys.now();
                if now >= deadline {
                    break;
                }
                self.sys.wait_signal(Some(deadline - now));
            }
        }
    }
}

#[cfg(test)]
#[path = "init/tests.rs"]
mod tests;

#[cfg(test)]
#[path = "init/launch_tests.rs"]
mod launch_tests;
