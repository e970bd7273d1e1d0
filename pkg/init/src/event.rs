//! The console lines init writes, in one place.
//!
//! Takes what happened and gives the text of one line, always
//! `kiln-init: <event>` with words separated by single spaces, so that a boot
//! test can match it with a regular expression. A status is `N` for an exit
//! code and `signal N` for a killing signal. This module never writes
//! anything itself; see [`crate::sys::Sys::log`].

use std::fmt;

use crate::sys::{Halt, Status};

/// Every console line starts with this.
pub const PREFIX: &str = "kiln-init: ";

/// The three kinds of container directories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Onboot,
    Onshutdown,
    Services,
}

impl Section {
    /// The directory under `/containers`.
    pub fn dir(self) -> &'static str {
        match self {
            Section::Onboot => "onboot",
            Section::Onshutdown => "onshutdown",
            Section::Services => "services",
        }
    }

    /// The word used in console lines.
    pub fn word(self) -> &'static str {
        match self {
            Section::Onboot => "onboot",
            Section::Onshutdown => "onshutdown",
            Section::Services => "service",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Exited(code) => write!(f, "{code}"),
            Status::Signaled(sig) => write!(f, "signal {sig}"),
        }
    }
}

impl Halt {
    /// `poweroff`, `reboot` or `halt`.
    pub fn word(self) -> &'static str {
        match self {
            Halt::Poweroff => "poweroff",
            Halt::Reboot => "reboot",
            Halt::Halt => "halt",
        }
    }
}

/// One console line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Start,
    Mounted(String),
    MountFailed(String, String),
    Hostname(String),
    LinkUp(String),
    ModuleLoaded(String),
    ModuleFailed(String, String),
    /// A container is about to run (`onboot NAME start`).
    Run(Section, String),
    /// A run-to-completion container finished (`onboot NAME exit STATUS`).
    Exit(Section, String, Status),
    /// A run-to-completion container did not finish in time.
    Timeout(Section, String),
    ServiceStarted(String, i32),
    ServiceExited(String, Status),
    /// A service exited while init was stopping it.
    ServiceStopped(String, Status),
    /// A child init does not know about was reaped.
    Reaped(i32, Status),
    /// A shutdown was asked for (`shutdown poweroff`).
    Shutdown(Halt),
    /// The final call (`poweroff`, `reboot`, `halt`).
    Final(Halt),
    /// Something worth knowing that is not an error (`note: ...`).
    Note(String),
    /// Something failed; init goes on (`error: ...`).
    Error(String),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PREFIX)?;
        match self {
            Event::Start => f.write_str("start"),
            Event::Mounted(p) => write!(f, "mounted {p}"),
            Event::MountFailed(p, e) => write!(f, "mount {p} failed: {e}"),
            Event::Hostname(h) => write!(f, "hostname {h}"),
            Event::LinkUp(i) => write!(f, "link {i} up"),
            Event::ModuleLoaded(m) => write!(f, "module {m} loaded"),
            Event::ModuleFailed(m, e) => write!(f, "module {m} failed: {e}"),
            Event::Run(s, n) => write!(f, "{} {n} start", s.word()),
            Event::Exit(s, n, st) => write!(f, "{} {n} exit {st}", s.word()),
            Event::Timeout(s, n) => write!(f, "{} {n} timeout", s.word()),
            Event::ServiceStarted(n, pid) => write!(f, "service {n} started pid {pid}"),
            Event::ServiceExited(n, st) => write!(f, "service {n} exited {st}"),
            Event::ServiceStopped(n, st) => write!(f, "service {n} stopped {st}"),
            Event::Reaped(pid, st) => write!(f, "reaped pid {pid} exit {st}"),
            Event::Shutdown(h) => write!(f, "shutdown {}", h.word()),
            Event::Final(h) => f.write_str(h.word()),
            Event::Note(m) => write!(f, "note: {m}"),
            Event::Error(m) => write!(f, "error: {m}"),
        }
    }
}

/// One line of a service's output as it appears on the console.
pub fn service_output(name: &str, line: &str) -> String {
    format!("{name}: {line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(e: Event, want: &str) {
        assert_eq!(e.to_string(), want);
    }

    #[test]
    fn lines_match_the_documented_format() {
        check(Event::Start, "kiln-init: start");
        check(Event::Mounted("/proc".into()), "kiln-init: mounted /proc");
        check(
            Event::Run(Section::Onboot, "000-sysctl".into()),
            "kiln-init: onboot 000-sysctl start",
        );
        check(
            Event::Exit(Section::Onboot, "000-sysctl".into(), Status::Exited(0)),
            "kiln-init: onboot 000-sysctl exit 0",
        );
        check(
            Event::Exit(Section::Onshutdown, "000-bye".into(), Status::Signaled(9)),
            "kiln-init: onshutdown 000-bye exit signal 9",
        );
        check(
            Event::ServiceStarted("getty".into(), 42),
            "kiln-init: service getty started pid 42",
        );
        check(
            Event::ServiceExited("getty".into(), Status::Exited(1)),
            "kiln-init: service getty exited 1",
        );
        check(Event::Shutdown(Halt::Reboot), "kiln-init: shutdown reboot");
        check(Event::Final(Halt::Poweroff), "kiln-init: poweroff");
        check(
            Event::Timeout(Section::Onshutdown, "001-x".into()),
            "kiln-init: onshutdown 001-x timeout",
        );
    }

    #[test]
    fn service_output_is_prefixed_with_its_name() {
        assert_eq!(service_output("getty", "login:"), "getty: login:");
    }
}
