//! Running kiln as a child whose peak memory and time are measured: the
//! bounds the hostile-input tests assert next to the behaviour.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The address space kiln may use: an allocation past it aborts kiln,
/// which fails a test expecting exit 0 or 1.
pub const MEMORY: u64 = 1 << 30;

/// How to run kiln.
pub struct Bounds<'a> {
    pub dir: &'a Path,
    pub args: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    /// `RLIMIT_FSIZE`: writes past it fail with `EFBIG`, as on a full disk.
    pub file_size_limit: Option<u64>,
    /// Kill kiln and fail the test after this long.
    pub deadline: Duration,
}

/// What a measured kiln did.
pub struct Measured {
    pub output: Output,
    /// kiln's own peak RSS in bytes (its `VmHWM`).
    pub peak_rss: u64,
    pub secs: f64,
}

/// Runs kiln under `b` with at most [`MEMORY`] of address space, reading
/// its stdout and stderr, and measures its peak RSS.
pub fn kiln_measured(b: &Bounds) -> Measured {
    let file_size_limit = b.file_size_limit;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    // SAFETY: setrlimit(2) and signal(2) only, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            let limit = |n| rustix::process::Rlimit {
                current: Some(n),
                maximum: Some(n),
            };
            rustix::process::setrlimit(rustix::process::Resource::As, limit(MEMORY))
                .map_err(std::io::Error::from)?;
            if let Some(n) = file_size_limit {
                rustix::process::setrlimit(rustix::process::Resource::Fsize, limit(n))
                    .map_err(std::io::Error::from)?;
                // EFBIG instead of death by SIGXFSZ; kept across exec.
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            }
            Ok(())
        });
    }
    for (k, v) in b.env {
        cmd.env(k, v);
    }
    // Reaped by waitpid below, which std's `Child` does not know about.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd
        .args(b.args)
        .current_dir(b.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    // The peak RSS of kiln itself: `VmHWM` once the child runs kiln. The
    // kernel's per-child maximum (wait4's ru_maxrss) would not do: before
    // exec it counts the forked test process. A polled high-water mark
    // only grows, so the last reading is the peak up to a few milliseconds
    // before the end.
    let mut peak = 0u64;
    let status = loop {
        let proc = format!("/proc/{pid}/");
        let is_kiln =
            std::fs::read_to_string(format!("{proc}comm")).is_ok_and(|c| c.trim() == "kiln");
        if is_kiln {
            let status = std::fs::read_to_string(format!("{proc}status")).unwrap_or_default();
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kb * 1024);
            }
        }
        let mut status = 0;
        // SAFETY: plain syscall on our own child, valid pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(r >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if r == pid {
            break status;
        }
        if start.elapsed() > b.deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kiln {:?} still running after {:?}", b.args, b.deadline);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Measured {
        output: Output {
            status: std::process::ExitStatus::from_raw(status),
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        },
        peak_rss: peak,
        secs: start.elapsed().as_secs_f64(),
    }
}
