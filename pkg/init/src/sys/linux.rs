//! The real [`Sys`]: thin wrappers over Linux system calls via `libc`.
//!
//! Takes the calls the orchestration makes and performs them on this kernel.
//! Signals init acts on are blocked at creation and taken with
//! `sigtimedwait(2)`; children get an empty signal mask from `std::process`.
//! A service's output is copied by one thread per service to its log file and
//! the console. Nothing here decides anything or panics on bad input: every
//! failure is an `io::Error` with the errno.

use std::ffi::{CStr, CString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{DirEntry, Halt, MountCall, Output, Pid, Signal, Status, Sys};
use crate::event;
use crate::netlink::{self, Answer, LinkRequest};
use crate::runc::PATH_ENV;

/// `finit_module(2)` flag: the file is compressed, the kernel decompresses.
const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

const SIGNALS: &[(libc::c_int, Signal)] = &[
    (libc::SIGCHLD, Signal::Child),
    (libc::SIGTERM, Signal::Term),
    (libc::SIGINT, Signal::Int),
    (libc::SIGUSR1, Signal::Usr1),
    (libc::SIGUSR2, Signal::Usr2),
    (libc::SIGHUP, Signal::Hup),
];

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("nul byte in {s:?}")))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn open_console() -> Option<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open("/dev/console")
        .ok()
}

/// The system, as PID 1 sees it.
pub struct Linux {
    console: Option<File>,
    start: Instant,
    mask: libc::sigset_t,
}

impl Linux {
    /// Block the signals init handles, so they wait for [`Sys::wait_signal`].
    /// Call before any thread is started.
    pub fn new() -> Linux {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it.
        let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: mask is a valid sigset_t; the signal numbers are valid.
        unsafe {
            libc::sigemptyset(&mut mask);
            for (sig, _) in SIGNALS {
                libc::sigaddset(&mut mask, *sig);
            }
            libc::sigprocmask(libc::SIG_BLOCK, &mask, std::ptr::null_mut());
        }
        Linux {
            console: None,
            start: Instant::now(),
            mask,
        }
    }
}

impl Default for Linux {
    fn default() -> Linux {
        Linux::new()
    }
}

/// Copy a service's output, line by line, to its log file and the console.
fn pump(reader: OwnedFd, name: String, log: String) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(&log)
        .ok();
    let mut console = open_console();
    let mut input = BufReader::new(File::from(reader));
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches(['\n', '\r']);
        if let Some(f) = file.as_mut() {
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
        if let Some(c) = console.as_mut() {
            let _ = c.write_all(format!("{}\n", event::service_output(&name, line)).as_bytes());
        }
    }
}

impl Sys for Linux {
    fn log(&mut self, line: &str) {
        if self.console.is_none() {
            self.console = open_console();
        }
        let bytes = format!("{line}\n");
        let ok = self
            .console
            .as_mut()
            .is_some_and(|c| c.write_all(bytes.as_bytes()).is_ok());
        if !ok {
            let _ = io::stderr().write_all(bytes.as_bytes());
        }
    }

    fn mount(&mut self, c: &MountCall) -> io::Result<()> {
        let source = cstr(&c.source)?;
        let target = cstr(&c.target)?;
        let fstype = cstr(&c.fstype)?;
        let data = cstr(&c.data)?;
        let opt = |s: &CString, v: &str| {
            if v.is_empty() {
                std::ptr::null()
            } else {
                s.as_ptr()
            }
        };
        // SAFETY: every pointer is a valid NUL-terminated string or null.
        check(unsafe {
            libc::mount(
                opt(&source, &c.source),
                target.as_ptr(),
                opt(&fstype, &c.fstype),
                c.flags as libc::c_ulong,
                opt(&data, &c.data) as *const libc::c_void,
            )
        })
    }

    fn umount(&mut self, target: &str) -> io::Result<()> {
        let t = cstr(target)?;
        // SAFETY: t is a valid C string.
        check(unsafe { libc::umount2(t.as_ptr(), 0) })
    }

    fn mkdir_all(&mut self, path: &str, mode: u32) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
    }

    fn ensure_file(&mut self, path: &str) -> io::Result<()> {
        if fs::symlink_metadata(path).is_ok() {
            return Ok(());
        }
        if let Some((dir, _)) = path.rsplit_once('/').filter(|(d, _)| !d.is_empty()) {
            self.mkdir_all(dir, 0o755)?;
        }
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map(drop)
    }

    fn symlink(&mut self, target: &str, link: &str) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn exists(&mut self, path: &str) -> bool {
        fs::symlink_metadata(path).is_ok()
    }

    fn is_dir(&mut self, path: &str) -> bool {
        fs::metadata(path).is_ok_and(|m| m.is_dir())
    }

    fn read_file(&mut self, path: &str) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn write_file(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        OpenOptions::new().write(true).open(path)?.write_all(data)
    }

    fn list_dir(&mut self, path: &str) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for e in fs::read_dir(path)? {
            let e = e?;
            out.push(DirEntry {
                name: e.file_name().to_string_lossy().into_owned(),
                is_dir: e.file_type().is_ok_and(|t| t.is_dir()),
            });
        }
        Ok(out)
    }

    fn attach_console(&mut self) -> io::Result<()> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open("/dev/console")?;
        for fd in 0..3 {
            // SAFETY: f is an open descriptor; dup2 onto 0..2 is what we want.
            check(unsafe { libc::dup2(f.as_raw_fd(), fd) })?;
        }
        self.console = open_console();
        Ok(())
    }

    fn sethostname(&mut self, name: &str) -> io::Result<()> {
        // SAFETY: the pointer and length describe `name`.
        check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
    }

    fn link_up(&mut self, name: &str) -> io::Result<()> {
        if name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface name too long: {name}"),
            ));
        }
        // SAFETY: creating a socket has no memory-safety preconditions.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        check(fd)?;
        // SAFETY: fd is a fresh descriptor that we own.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ifreq is plain data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        // SAFETY: req is a valid ifreq for these ioctls; the union field read
        // is the one SIOCGIFFLAGS fills.
        unsafe {
            check(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))?;
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            check(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req))
        }
    }

    fn link(&mut self, req: &LinkRequest) -> io::Result<()> {
        // SAFETY: creating a socket has no memory-safety preconditions.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        check(fd)?;
        // SAFETY: fd is a fresh descriptor that we own.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        // One request per socket: the sequence number only has to match.
        let seq = 1;
        let msg = netlink::request(req, seq);
        // Unbound and unconnected: the kernel (port 0) is the destination.
        // SAFETY: msg is a valid buffer of msg.len() bytes.
        let sent = unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 8192];
        loop {
            // SAFETY: buf is a valid writable buffer of buf.len() bytes.
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            match netlink::answer(&buf[..n as usize], seq) {
                Answer::Done => return Ok(()),
                Answer::Failed(errno) => return Err(io::Error::from_raw_os_error(errno)),
                Answer::Pending if n == 0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "netlink socket closed without an answer",
                    ))
                }
                Answer::Pending => {}
            }
        }
    }

    fn kernel_release(&mut self) -> io::Result<String> {
        // SAFETY: utsname is plain data; uname fills it.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: u is a valid utsname.
        check(unsafe { libc::uname(&mut u) })?;
        // SAFETY: the kernel NUL-terminates release.
        let r = unsafe { CStr::from_ptr(u.release.as_ptr()) };
        Ok(r.to_string_lossy().into_owned())
    }

    fn finit_module(&mut self, path: &str, params: &str, compressed: bool) -> io::Result<()> {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)?;
        let p = cstr(params)?;
        let flags = if compressed {
            MODULE_INIT_COMPRESSED_FILE
        } else {
            0
        };
        // SAFETY: f is open; p is a valid C string.
        let r = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), p.as_ptr(), flags) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn spawn(&mut self, argv: &[String], output: Output) -> io::Result<Pid> {
        let Some(program) = argv.first() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty command line",
            ));
        };
        let mut cmd = Command::new(program);
        cmd.args(&argv[1..])
            .env_clear()
            .env("PATH", PATH_ENV)
            .stdin(Stdio::null());
        let mut reader = None;
        if let Output::Logged { name, log } = output {
            let mut fds = [0; 2];
            // SAFETY: fds has room for the two descriptors.
            check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
            // SAFETY: pipe2 just created both descriptors; we own them.
            let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            let w2 = w.try_clone()?;
            cmd.stdout(Stdio::from(w)).stderr(Stdio::from(w2));
            reader = Some((r, name, log));
        }
        let child = cmd.spawn()?;
        // The parent's copies of the pipe's write end must close, or the
        // pump never sees end of file.
        drop(cmd);
        let pid = child.id() as Pid;
        if let Some((r, name, log)) = reader {
            let spawned = std::thread::Builder::new()
                .name(format!("log-{name}"))
                .spawn(move || pump(r, name, log));
            if let Err(e) = spawned {
                self.log(&format!("{}error: log thread: {e}", event::PREFIX));
            }
        }
        Ok(pid)
    }

    fn reap(&mut self) -> Vec<(Pid, Status)> {
        let mut out = Vec::new();
        loop {
            let mut st: libc::c_int = 0;
            // SAFETY: st is a valid out pointer.
            let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
            if pid <= 0 {
                return out;
            }
            if libc::WIFEXITED(st) {
                out.push((pid, Status::Exited(libc::WEXITSTATUS(st))));
            } else if libc::WIFSIGNALED(st) {
                out.push((pid, Status::Signaled(libc::WTERMSIG(st))));
            }
        }
    }

    fn wait_signal(&mut self, timeout: Option<Duration>) -> Option<Signal> {
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let tsp = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: siginfo_t is plain data for the kernel to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: mask, info and tsp are valid (tsp may be null).
        let sig = unsafe { libc::sigtimedwait(&self.mask, &mut info, tsp) };
        SIGNALS.iter().find(|(n, _)| *n == sig).map(|(_, s)| *s)
    }

    fn kill_all(&mut self, signal: i32) -> io::Result<()> {
        // SAFETY: kill has no memory-safety preconditions.
        check(unsafe { libc::kill(-1, signal) })
    }

    fn has_children(&mut self) -> bool {
        // SAFETY: siginfo_t is plain data for the kernel to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: info is valid; WNOWAIT leaves any exited child to reap().
        let r = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        !(r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
    }

    fn now(&mut self) -> Duration {
        self.start.elapsed()
    }

    fn sync(&mut self) {
        // SAFETY: sync has no preconditions.
        unsafe { libc::sync() }
    }

    fn ctrl_alt_del_signals(&mut self) -> io::Result<()> {
        // SAFETY: RB_DISABLE_CAD only changes the ctrl-alt-del behaviour.
        check(unsafe { libc::reboot(libc::RB_DISABLE_CAD) })
    }

    fn reboot(&mut self, how: Halt) -> io::Result<()> {
        let cmd = match how {
            Halt::Poweroff => libc::RB_POWER_OFF,
            Halt::Reboot => libc::RB_AUTOBOOT,
            Halt::Halt => libc::RB_HALT_SYSTEM,
        };
        // SAFETY: reboot returns only on failure.
        check(unsafe { libc::reboot(cmd) })
    }

    fn chdir(&mut self, path: &str) -> io::Result<()> {
        std::env::set_current_dir(path)
    }

    fn chroot(&mut self, path: &str) -> io::Result<()> {
        std::os::unix::fs::chroot(path)
    }

    fn exec(&mut self, argv: &[String]) -> io::Result<()> {
        let Some(program) = argv.first() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty command line",
            ));
        };
        // std resets the signal mask and dispositions before execve; the
        // console handle is close-on-exec.
        Err(Command::new(program).args(&argv[1..]).exec())
    }
}
