//! `kiln run qemu` as a user drives it: a terminal on stdin reaches the
//! guest's shell, and a signal to kiln stops qemu and removes its temp
//! directory. Both boot `examples/minimal.yml` (a root shell on ttyS0) under
//! TCG.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::examples::build_minimal;
use crate::support::{stderr, TestDir};

fn kiln_command(t: &TestDir) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.current_dir(t.path());
    c
}

/// Waits until `done` holds for the text read so far, or panics with it.
fn wait_for(text: &Mutex<String>, what: &str, limit: Duration, done: impl Fn(&str) -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done(&text.lock().unwrap()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "no {what} after {limit:?}; console:\n{}",
        text.lock().unwrap()
    );
}

#[test]
fn a_terminal_on_stdin_reaches_the_guest_shell() {
    let t = TestDir::new();
    build_minimal(&t, &["kernel+initrd"]);
    // A pseudo-terminal: kiln gets the slave as stdin, stdout and stderr.
    let (mut master, slave) = crate::support::pty();
    let mut child = kiln_command(&t)
        .args(["run", "qemu", "--accel", "tcg", "--timeout", "240", "out/m"])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    let mut writer = master.try_clone().unwrap();
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // EIO once kiln (the last holder of the slave) has exited.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    wait_for(&text, "getty", Duration::from_secs(180), |s| {
        s.contains("service getty started")
    });
    assert!(
        text.lock()
            .unwrap()
            .contains("kiln: qemu accelerator tcg: as --accel asked"),
        "{}",
        text.lock().unwrap()
    );
    // The shell may not be reading yet: type until the guest answers. The
    // echo of what was typed holds `$((6*7))`, only the shell's answer 42.
    let start = Instant::now();
    while !text.lock().unwrap().contains("TYPED-42") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no answer; console:\n{}",
            text.lock().unwrap()
        );
        writer.write_all(b"echo TYPED-$((6*7))\r").unwrap();
        std::thread::sleep(Duration::from_secs(2));
    }
    writer.write_all(b"poweroff\r").unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("no poweroff; console:\n{}", text.lock().unwrap());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status.code(), Some(0), "console:\n{}", text.lock().unwrap());
}

/// qemu's pid, once kiln has started it.
fn qemu_child(kiln: u32) -> Option<u32> {
    // Any of kiln's threads may be the parent.
    let tasks = std::fs::read_dir(format!("/proc/{kiln}/task")).ok()?;
    tasks.flatten().find_map(|task| {
        let children = std::fs::read_to_string(task.path().join("children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    })
}

#[test]
fn sigterm_stops_qemu_and_removes_the_temp_dir() {
    let t = TestDir::new();
    build_minimal(&t, &["kernel+initrd"]);
    let tmp = t.mkdir("tmp");
    let mut child = kiln_command(&t)
        .args([
            "run",
            "qemu",
            "--accel",
            "tcg",
            "--timeout",
            "240",
            "--verbose",
            "--json",
        ])
        .args([
            "--disk",
            "d.img,size=64M",
            "--disk",
            "q.qcow2,format=qcow2,size=1G",
        ])
        .arg("out/m")
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let qemu = loop {
        if let Some(pid) = qemu_child(child.id()) {
            break pid;
        }
        // Generous: on a loaded 2-core machine kiln takes a while to
        // create both disks before it starts qemu.
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("qemu did not start in 120 s: {}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(dir_entries(&tmp) > 0, "kiln's temp dir is under TMPDIR");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "kiln ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(128 + 15));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let verdict: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(
        verdict,
        serde_json::json!({"exit": 143, "timed_out": false, "warnings": []}),
        "{out}"
    );
    assert!(
        err.contains("kiln: qemu-system-x86_64 ") && err.contains("file=q.qcow2,format=qcow2"),
        "{err}"
    );
    // size= created both disks: a sparse raw file and an empty qcow2.
    assert_eq!(std::fs::metadata(t.join("d.img")).unwrap().len(), 64 << 20);
    let info = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(t.join("q.qcow2"))
        .output()
        .unwrap();
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(
        (info["format"].as_str(), info["virtual-size"].as_u64()),
        (Some("qcow2"), Some(1 << 30))
    );
    let check = Command::new("qemu-img")
        .arg("check")
        .arg(t.join("q.qcow2"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert!(
        !Path::new(&format!("/proc/{qemu}")).exists(),
        "qemu {qemu} still runs"
    );
    assert_eq!(dir_entries(&tmp), 0, "temp dir left behind");
}

fn dir_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn publish_to_an_image_without_network_warns() {
    let t = TestDir::new();
    build_minimal(&t, &["kernel+initrd"]);
    super::examples::build_example(&t, "binds", "net", &[]);
    // A one-second run: the warning comes before the boot, and the
    // timeout ends the guest (exit 124).
    let run = |target: &str| {
        kiln_command(&t)
            .args(["run", "qemu", "--accel", "tcg", "--timeout", "1", "--json"])
            .args(["--publish", "8080:80", target])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let json = |out: &std::process::Output| -> serde_json::Value {
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.lines().last().unwrap()).unwrap()
    };

    let out = run("out/m");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(124), "{err}");
    assert!(
        err.contains("kiln: warning: --publish 8080:80: out/m-initrd.img has no DHCP client"),
        "{err}"
    );
    let warnings = json(&out)["warnings"].clone();
    assert_eq!(warnings.as_array().map(Vec::len), Some(1), "{warnings}");

    // examples/binds.yml has the dhcpcd onboot container: no warning.
    let out = run("out/net");
    assert!(
        !stderr(&out).contains("warning: --publish"),
        "{}",
        stderr(&out)
    );
    assert_eq!(json(&out)["warnings"], serde_json::json!([]));
}
