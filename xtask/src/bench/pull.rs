//! The pull case of `cargo xtask bench`: `kiln pull` of the synthetic image
//! set from a loopback registry (Debian's `docker-registry`) beside
//! `skopeo copy` of the same images into an OCI layout, same run, same
//! registry. Both start from an empty layout each run. skopeo copies one
//! image per process, so its side is a shell running one `skopeo copy` per
//! image; peak RSS is the largest of them.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{measure, median, settle};

/// Kills the registry when the bench ends, however it ends.
struct Registry(Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn bench(
    kiln: &Path,
    work: &Path,
    layout: &Path,
    names: &[String],
    runs: usize,
) -> anyhow::Result<()> {
    println!();
    if Command::new("docker-registry")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        println!("pull: skipped (docker-registry is not installed; .ci/install-deps installs it)");
        return Ok(());
    }
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let host = format!("127.0.0.1:{port}");
    let dir = work.join("registry");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let config = dir.join("config.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            dir.join("storage").display()
        ),
    )?;
    let _registry = Registry(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting docker-registry")?,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&host).is_err() {
        if Instant::now() > deadline {
            bail!("docker-registry did not start on {host}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("bench: pushing the image set to {host}…");
    let refs: Vec<String> = names.iter().map(|n| format!("{host}/{n}")).collect();
    for (name, r) in names.iter().zip(&refs) {
        let st = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{name}", layout.display()))
            .arg(format!("docker://{r}"))
            .status()?;
        if !st.success() {
            bail!("skopeo copy to the bench registry failed for {name}");
        }
    }

    let kiln_dir = work.join("pulled-kiln");
    let skopeo_dir = work.join("pulled-skopeo");
    let script: String = refs
        .iter()
        .map(|r| {
            format!(
                "skopeo copy --quiet --src-tls-verify=false docker://{r} oci:{}:{r}",
                skopeo_dir.display()
            )
        })
        .collect::<Vec<_>>()
        .join(" && ");
    let (mut kiln_runs, mut skopeo_runs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let _ = fs::remove_dir_all(&kiln_dir);
        settle();
        kiln_runs.push(measure(
            Command::new(kiln)
                .arg("pull")
                .arg("--layout")
                .arg(&kiln_dir)
                .args(["--insecure-registry", &host])
                .args(&refs)
                .stdout(Stdio::null()),
        )?);
        let _ = fs::remove_dir_all(&skopeo_dir);
        settle();
        skopeo_runs.push(measure(Command::new("sh").arg("-c").arg(&script))?);
    }
    let bytes = dir_bytes(&kiln_dir.join("blobs"))?;
    let (k, s) = (median(kiln_runs), median(skopeo_runs));
    let mb = bytes as f64 / 1e6;
    println!(
        "pull: {} images, {mb:.1} MB of blobs from a loopback registry, {runs} run(s), median",
        refs.len()
    );
    println!(
        "{:<34} {:>8} {:>9} {:>10}",
        "", "wall s", "MB/s", "peak MiB"
    );
    for (label, m) in [
        ("kiln pull (one process)", &k),
        ("skopeo copy (one per image)", &s),
    ] {
        println!(
            "{:<34} {:>8.2} {:>9.1} {:>10.1}",
            label,
            m.secs,
            mb / m.secs,
            m.peak_rss_kib as f64 / 1024.0
        );
    }
    println!(
        "ratio kiln/skopeo wall time: {:.2} (target <= 1.00); peak RSS {:.2}",
        k.secs / s.secs,
        k.peak_rss_kib as f64 / s.peak_rss_kib.max(1) as f64
    );
    Ok(())
}

fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() {
            dir_bytes(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(total)
}
