//! Progress on long work: drawn when stderr is a terminal, silent otherwise.

use std::io::Read;
use std::process::{Command, Stdio};

use super::examples::root;
use crate::support::{stderr, TestDir};

/// `kiln ARGS` in `t` with stderr on a pseudo-terminal; gives (exit code,
/// what the terminal received).
fn kiln_on_terminal(t: &TestDir, args: &[&str]) -> (Option<i32>, String) {
    let (mut master, slave) = crate::support::pty();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(t.path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(slave)
        .spawn()
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once kiln, the last holder of the slave, has exited.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&text).into_owned()
    });
    let status = child.wait().unwrap();
    (status.code(), reader.join().unwrap())
}

#[test]
fn a_build_shows_progress_on_a_terminal_and_nothing_in_a_log() {
    let t = TestDir::new();
    let layout = root().join("oci-layout");
    let yml = root().join("examples/minimal.yml");
    let args = [
        "build",
        "--layout",
        layout.to_str().unwrap(),
        "-o",
        "out",
        yml.to_str().unwrap(),
    ];
    let (code, terminal) = kiln_on_terminal(&t, &args);
    assert_eq!(code, Some(0), "{terminal}");
    assert!(
        terminal.contains("kiln: unpacking 4 images"),
        "{terminal:?}"
    );
    // The bar is cleared before the results: the last line is kiln's own.
    assert!(
        terminal.contains("kiln: image kiln.dev/runc:0.1 = "),
        "{terminal:?}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(t.path())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        !log.contains("unpacking") && !log.contains('\x1b'),
        "{log:?}"
    );
}
