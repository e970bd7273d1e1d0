//! Running kiln as a child whose peak memory and time are measured: the
//! bound a hostile-input test asserts next to the behaviour.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// What a measured child did.
pub struct Measured {
    pub output: Output,
    /// The child's peak resident set size (`ru_maxrss`), in KiB.
    pub peak_rss_kib: u64,
    pub secs: f64,
}

/// Runs `cmd` to completion, reading its stdout and stderr, killing it
/// (and failing the test) once `deadline` has passed.
// The child is reaped by wait4, which std's `Child` does not know about.
#[allow(clippy::zombie_processes)]
pub fn run_measured(cmd: &mut Command, deadline: Duration) -> Measured {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the child");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data that wait4 fills for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child only; the pointers are valid.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if rc == pid {
            break;
        }
        assert_eq!(rc, 0, "wait4: {}", std::io::Error::last_os_error());
        if start.elapsed() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} still running after {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Measured {
        output: Output {
            status: ExitStatus::from_raw(status),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        },
        peak_rss_kib: usage.ru_maxrss as u64,
        secs: start.elapsed().as_secs_f64(),
    }
}
