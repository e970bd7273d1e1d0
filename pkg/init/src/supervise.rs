//! What init does about a signal or a reaped child.
//!
//! Takes the signal, or the pid and status of an exited child together with
//! the running services and whether init is stopping, and gives the decision.
//! Services are never restarted, as in LinuxKit. Also maps the client
//! commands (`poweroff`, `reboot`, `halt`) to the signal they send to PID 1.
//! Never touches the system.

use std::collections::BTreeMap;

use crate::event::Event;
use crate::sys::{Halt, Pid, Signal, Status};

/// Whether init is running services or stopping them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Running,
    Stopping,
}

/// The shutdown a signal asks for: SIGTERM and SIGUSR2 power off, SIGINT
/// (ctrl-alt-del) reboots, SIGUSR1 halts; others ask for nothing.
pub fn shutdown_for(signal: Signal) -> Option<Halt> {
    match signal {
        Signal::Term | Signal::Usr2 => Some(Halt::Poweroff),
        Signal::Int => Some(Halt::Reboot),
        Signal::Usr1 => Some(Halt::Halt),
        Signal::Child | Signal::Hup => None,
    }
}

/// The signal a client command sends to PID 1 (the inverse of
/// [`shutdown_for`]): poweroff → SIGUSR2, reboot → SIGINT, halt → SIGUSR1.
pub fn signal_for(how: Halt) -> i32 {
    match how {
        Halt::Poweroff => libc::SIGUSR2,
        Halt::Reboot => libc::SIGINT,
        Halt::Halt => libc::SIGUSR1,
    }
}

/// A reaped child: forget it if it was a service, and say what happened.
/// Nothing is restarted.
pub fn on_exit(
    phase: Phase,
    services: &mut BTreeMap<Pid, String>,
    pid: Pid,
    status: Status,
) -> Event {
    match (services.remove(&pid), phase) {
        (Some(name), Phase::Running) => Event::ServiceExited(name, status),
        (Some(name), Phase::Stopping) => Event::ServiceStopped(name, status),
        (None, _) => Event::Reaped(pid, status),
    }
}

/// What a command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// Be PID 1.
    Init,
    /// Ask PID 1 to shut down (`force`: do it now, without PID 1).
    Client {
        how: Halt,
        force: bool,
    },
    Usage(String),
}

/// Decide from `argv` (argv[0]'s base name or the first argument) and
/// whether this process is PID 1.
pub fn invocation(argv: &[String], pid1: bool) -> Invocation {
    let word = |s: &str| match s {
        "poweroff" => Some(Halt::Poweroff),
        "reboot" => Some(Halt::Reboot),
        "halt" => Some(Halt::Halt),
        _ => None,
    };
    let base = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a))
        .unwrap_or("");
    let (how, rest) = match word(base) {
        Some(h) => (Some(h), argv.get(1..).unwrap_or(&[])),
        None => match argv.get(1).and_then(|a| word(a)) {
            Some(h) => (Some(h), argv.get(2..).unwrap_or(&[])),
            None => (None, argv.get(1..).unwrap_or(&[])),
        },
    };
    match how {
        None if pid1 => Invocation::Init,
        None => Invocation::Usage(format!(
            "usage: {base} poweroff|reboot|halt [-f]  (as PID 1: init)"
        )),
        Some(how) => {
            let mut force = false;
            for a in rest {
                match a.as_str() {
                    "-f" | "--force" => force = true,
                    other => return Invocation::Usage(format!("{base}: unknown argument {other}")),
                }
            }
            Invocation::Client { how, force }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shutdown_signals_round_trip() {
        for how in [Halt::Poweroff, Halt::Reboot, Halt::Halt] {
            let sig = match signal_for(how) {
                s if s == libc::SIGUSR2 => Signal::Usr2,
                s if s == libc::SIGINT => Signal::Int,
                _ => Signal::Usr1,
            };
            assert_eq!(shutdown_for(sig), Some(how));
        }
        assert_eq!(shutdown_for(Signal::Term), Some(Halt::Poweroff));
        assert_eq!(shutdown_for(Signal::Child), None);
        assert_eq!(shutdown_for(Signal::Hup), None);
    }

    #[test]
    fn known_service_exit_is_logged_and_forgotten() {
        let mut s = BTreeMap::from([(42, "getty".to_string()), (43, "rngd".to_string())]);
        let e = on_exit(Phase::Running, &mut s, 42, Status::Exited(1));
        assert_eq!(e, Event::ServiceExited("getty".into(), Status::Exited(1)));
        assert_eq!(s.len(), 1);
        let e = on_exit(Phase::Stopping, &mut s, 43, Status::Signaled(15));
        assert_eq!(
            e,
            Event::ServiceStopped("rngd".into(), Status::Signaled(15))
        );
        assert!(s.is_empty());
    }

    #[test]
    fn unknown_pid_is_just_reaped() {
        let mut s = BTreeMap::from([(42, "getty".to_string())]);
        let e = on_exit(Phase::Running, &mut s, 7, Status::Exited(0));
        assert_eq!(e, Event::Reaped(7, Status::Exited(0)));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn invocations() {
        use Invocation::*;
        assert_eq!(invocation(&args(&["/init"]), true), Init);
        assert_eq!(invocation(&args(&["/sbin/init"]), true), Init);
        assert_eq!(
            invocation(&args(&["/sbin/poweroff"]), false),
            Client {
                how: Halt::Poweroff,
                force: false
            }
        );
        assert_eq!(
            invocation(&args(&["reboot", "-f"]), false),
            Client {
                how: Halt::Reboot,
                force: true
            }
        );
        assert_eq!(
            invocation(&args(&["kiln-init", "halt"]), false),
            Client {
                how: Halt::Halt,
                force: false
            }
        );
        assert!(matches!(invocation(&args(&["kiln-init"]), false), Usage(_)));
        assert!(matches!(
            invocation(&args(&["poweroff", "-x"]), false),
            Usage(_)
        ));
        assert!(matches!(invocation(&[], false), Usage(_)));
    }
}
