//! The layout and YAML cases the CLI tests build: a small but complete
//! LinuxKit-shaped system (kernel with modules, init, onboot, onshutdown,
//! services with labels and image configs), written in code.

use std::path::Path;

use crate::support::{write_layout, LayerBuilder, TestDir, TestImage};

pub const KERNEL_BYTES: &[u8] = b"MZ placeholder bzImage for tests\n";

/// The kernel image's `kernel.tar`: modules as LinuxKit kernels ship them.
fn modules_tar() -> Vec<u8> {
    LayerBuilder::new()
        .dir("lib", 0o755)
        .dir("lib/modules", 0o755)
        .dir("lib/modules/6.1.0-kiln", 0o755)
        .file(
            "lib/modules/6.1.0-kiln/modules.dep",
            "kernel/virtio.ko:\n",
            0o644,
        )
        .file(
            "lib/modules/6.1.0-kiln/kernel/virtio.ko",
            [0x7f, b'E', b'L', b'F', 1, 2, 3],
            0o644,
        )
        .build()
}

/// Every image the cases use, tagged `kiln.test/NAME:1`.
pub fn system_layout(dir: &Path) {
    let kernel = TestImage::new("kiln.test/kernel:1").layer(
        LayerBuilder::new()
            .file("kernel", KERNEL_BYTES, 0o644)
            .file("kernel.tar", modules_tar(), 0o644)
            .build(),
    );
    let init = TestImage::new("kiln.test/init:1")
        .layer(
            LayerBuilder::new()
                .dir("bin", 0o755)
                .file("bin/busybox", "#!busybox\n", 0o755)
                .hardlink("bin/sh", "bin/busybox")
                .hardlink("bin/ls", "bin/busybox")
                .dir("sbin", 0o755)
                .symlink("sbin/init", "/bin/busybox")
                .dir("etc", 0o755)
                .file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)
                .file("etc/hosts", "10.0.0.1 build-host\n", 0o644)
                .file("etc/shadow", "root:*:1::::::\n", 0o640)
                .owner(0, 42)
                .dir("dev", 0o755)
                .char_dev("dev/console", 5, 1, 0o600)
                .char_dev("dev/null", 1, 3, 0o666)
                .dir("usr", 0o755)
                .dir("usr/bin", 0o755)
                .file("usr/bin/su", "#!su\n", 0o4755)
                .dir("tmp", 0o1777)
                .dir("old", 0o755)
                .file("old/a", "a", 0o644)
                .file("old/b", "b", 0o644)
                .build(),
        )
        .layer(
            LayerBuilder::new()
                .whiteout("old/a")
                .dir("etc", 0o755)
                .file("etc/issue", "kiln test system\n", 0o644)
                .xattr("user.origin", "layer2")
                .build(),
        );
    let runc = TestImage::new("kiln.test/runc:1").layer(
        LayerBuilder::new()
            .dir("usr", 0o755)
            .dir("usr/bin", 0o755)
            .file("usr/bin/runc", "#!runc\n", 0o755)
            .build(),
    );
    let sysctl = TestImage::new("kiln.test/sysctl:1")
        .layer(
            LayerBuilder::new()
                .dir("usr", 0o755)
                .dir("usr/bin", 0o755)
                .file("usr/bin/sysctl-apply", "#!sysctl\n", 0o755)
                .build(),
        )
        .entrypoint(&["/usr/bin/sysctl-apply"])
        .label(
            "org.mobyproject.config",
            r#"{"net":"host","pid":"host","readonly":true,"capabilities":["CAP_SYS_ADMIN"],"binds":["/etc/sysctl.d:/etc/sysctl.d"]}"#,
        );
    let busybox = TestImage::new("kiln.test/busybox:1")
        .layer(
            LayerBuilder::new()
                .dir("bin", 0o755)
                .file("bin/busybox", "#!busybox\n", 0o755)
                .build(),
        )
        .cmd(&["/bin/sh"]);
    let web = TestImage::new("kiln.test/web:1")
        .layer(
            LayerBuilder::new()
                .dir("bin", 0o755)
                .file("bin/web", "#!web\n", 0o755)
                .dir("srv", 0o755)
                .file("srv/index.html", "<h1>kiln</h1>\n", 0o644)
                .dir("etc", 0o755)
                .file("etc/resolv.conf", "nameserver 10.0.0.53\n", 0o644)
                .build(),
        )
        .entrypoint(&["/bin/web"])
        .cmd(&["--port", "80"])
        .env(&["PATH=/bin", "WEB_ROOT=/srv"])
        .working_dir("/srv")
        .label(
            "org.mobyproject.config",
            r#"{"binds":["/etc/resolv.conf:/etc/resolv.conf"]}"#,
        );
    write_layout(dir, &[kernel, init, runc, sysctl, busybox, web]);
}

/// A LinuxKit document using the common keys.
pub const CASE_BASIC: &str = r#"kernel:
  image: kiln.test/kernel:1
  cmdline: "console=ttyS0 quiet"
init:
  - kiln.test/init:1
  - kiln.test/runc:1
onboot:
  - name: sysctl
    image: kiln.test/sysctl:1
  - name: mkdirs
    image: kiln.test/busybox:1
    command: ["/bin/busybox", "mkdir", "-p", "/var/lib/web"]
    binds: ["/var:/var"]
onshutdown:
  - name: bye
    image: kiln.test/busybox:1
    command: ["/bin/busybox", "echo", "bye"]
services:
  - name: web
    image: kiln.test/web:1
    capabilities: [CAP_NET_BIND_SERVICE]
    readonly: false
    binds.add: ["/var/lib/web:/data"]
    rlimits: ["nofile,1024,4096"]
    sysctl:
      net.ipv4.ip_unprivileged_port_start: "80"
files:
  - path: etc/motd
    contents: "hello from kiln\n"
    mode: "0644"
  - path: etc/linuxkit-config
    metadata: yaml
  - path: var/empty
    directory: true
"#;

/// A second file merged after [`CASE_BASIC`]: later kernel fields win,
/// lists concatenate.
pub const CASE_OVERLAY: &str = r#"kernel:
  cmdline: "console=ttyS0 console=tty0"
  tar: none
services:
  - name: shell
    image: kiln.test/busybox:1
    capabilities: [all]
    pid: host
files:
  - path: etc/kiln/extra.json
    metadata: json
"#;

pub fn write_case(t: &TestDir, name: &str, text: &str) {
    t.write(name, text);
}
