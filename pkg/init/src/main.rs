//! The `kiln-init` binary: PID 1, or the `poweroff`/`reboot`/`halt` client.
//!
//! As PID 1 it runs [`kiln_init::init::Init`] on the real system and never
//! exits: if shutting down fails (or anything panics) it keeps reaping
//! children forever, since PID 1 exiting panics the kernel. Any other process
//! (named `poweroff`, `reboot`, `halt`, or given one of them as its first
//! argument) signals PID 1: poweroff → SIGUSR2, reboot → SIGINT,
//! halt → SIGUSR1; with `-f` it syncs and calls `reboot(2)` itself.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;

use kiln_init::init::{Config, Init};
use kiln_init::supervise::{self, Invocation};
use kiln_init::sys::linux::Linux;
use kiln_init::sys::{Halt, Sys};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match supervise::invocation(&argv, std::process::id() == 1) {
        Invocation::Init => pid1(),
        Invocation::Client { how, force } => client(how, force),
        Invocation::Usage(msg) => {
            eprintln!("{msg}");
            ExitCode::from(2)
        }
    }
}

fn pid1() -> ! {
    let mut init = Init::new(Linux::new(), Config::default());
    if catch_unwind(AssertUnwindSafe(|| init.run())).is_err() {
        init.sys
            .log("kiln-init: error: init panicked; reaping children forever");
    }
    loop {
        let r = catch_unwind(AssertUnwindSafe(|| {
            init.sys.wait_signal(None);
            init.sys.reap();
        }));
        if r.is_err() {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

fn client(how: Halt, force: bool) -> ExitCode {
    if force {
        let mut sys = Linux::new();
        sys.sync();
        if let Err(e) = sys.reboot(how) {
            eprintln!("{}: {e}", how.word());
            return ExitCode::from(1);
        }
        return ExitCode::SUCCESS;
    }
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(1, supervise::signal_for(how)) } < 0 {
        eprintln!(
            "{}: cannot signal init: {}",
            how.word(),
            std::io::Error::last_os_error()
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
