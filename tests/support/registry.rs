//! A real registry for the pull tests: Debian's `docker-registry`
//! (distribution v2.8) on 127.0.0.1 with a temp config and storage dir,
//! filled by `skopeo copy`, optionally behind htpasswd (bcrypt) or token
//! auth, with a tiny token server that signs JWTs with `openssl`; and
//! [`pull`], which runs `kiln pull` against it. Used by the pull and layout tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::support::{kiln_env, run_tool, stderr, TestDir};
use std::process::Output;

/// The test user and password, and its bcrypt hash (cost 5) for htpasswd.
pub const USER: &str = "kiln";
pub const PASSWORD: &str = "kiln-secret";
const BCRYPT: &str = "$2b$05$0yRkI42gSjJwng0BDHOMZO1jyixWCNLrsttzMkQ.zpTjlUu5TihIi";

/// How the registry authenticates pulls.
pub enum Auth<'a> {
    None,
    Basic,
    Token(&'a TokenServer),
}

/// A running `docker-registry serve`, killed when dropped.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub storage: PathBuf,
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

impl Registry {
    /// Starts a registry on `port` over `dir/storage` (kept across restarts).
    pub fn start(dir: &TestDir, port: u16, auth: Auth) -> Registry {
        Registry::start_with(dir, port, auth, None)
    }

    /// [`start`](Self::start), serving HTTPS with `(cert, key)` if given.
    pub fn start_with(
        dir: &TestDir,
        port: u16,
        auth: Auth,
        tls: Option<(&Path, &Path)>,
    ) -> Registry {
        let storage = dir.mkdir("storage");
        let auth_yaml = match auth {
            Auth::None => String::new(),
            Auth::Basic => {
                let htpasswd = dir.write("htpasswd", format!("{USER}:{BCRYPT}\n"));
                format!(
                    "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
            Auth::Token(t) => format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                t.port,
                TokenServer::SERVICE,
                TokenServer::ISSUER,
                t.cert.display()
            ),
        };
        let tls_yaml = tls.map_or(String::new(), |(cert, key)| {
            format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            )
        });
        let config = dir.write(
            format!("registry-{port}.yml"),
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{tls_yaml}{auth_yaml}",
                storage.display()
            ),
        );
        let log = std::fs::File::create(dir.join(format!("registry-{port}.log"))).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry (apt-get install docker-registry)");
        let r = Registry {
            child,
            port,
            storage,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `skopeo copy oci:LAYOUT:NAME docker://HOST/DEST` (every platform).
    pub fn push(&self, layout: &Path, name: &str, dest: &str) {
        self.push_with(layout, name, dest, &["--all"]);
    }

    /// [`push`](Self::push) with other skopeo flags (e.g. `--format v2s2`).
    pub fn push_with(&self, layout: &Path, name: &str, dest: &str, flags: &[&str]) {
        let src = format!("oci:{}:{name}", layout.display());
        let dst = format!("docker://{}/{dest}", self.host());
        let mut args = vec!["copy", "--quiet", "--dest-tls-verify=false"];
        args.extend_from_slice(flags);
        args.extend([src.as_str(), dst.as_str()]);
        run_tool("skopeo", &args);
    }

    /// Pushes the fixture's system images (`kiln.test/NAME:1` of the
    /// layout at `src`, for each of `names`) as `test/NAME:1`; gives their
    /// references in the registry, `HOST/test/NAME:1`.
    pub fn push_system(&self, src: &Path, names: &[&str]) -> Vec<String> {
        names
            .iter()
            .map(|n| {
                self.push(src, &format!("kiln.test/{n}:1"), &format!("test/{n}:1"));
                format!("{}/test/{n}:1", self.host())
            })
            .collect()
    }

    /// The manifest bytes the registry serves for `repo:tag`.
    fn raw_manifest(&self, repo_tag: &str) -> Vec<u8> {
        run_tool(
            "skopeo",
            &[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{}/{repo_tag}", self.host()),
            ],
        )
        .stdout
    }

    /// The manifest the registry serves for `repo:tag`, parsed.
    pub fn manifest(&self, repo_tag: &str) -> serde_json::Value {
        serde_json::from_slice(&self.raw_manifest(repo_tag)).expect("manifest JSON")
    }

    /// The manifest digest the registry serves for `repo:tag`.
    pub fn digest(&self, repo_tag: &str) -> String {
        format!("sha256:{}", hex_sha256(&self.raw_manifest(repo_tag)))
    }

    /// The file the registry stores blob `digest` in.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn hex_sha256(bytes: &[u8]) -> String {
    kiln::oci::Digest::sha256_of(bytes).hex().to_string()
}

/// A token server for the registry's `auth: token:`: answers
/// `GET /token?service=…&scope=…` carrying the test user's basic
/// credentials with a JWT (RS256, the signing cert in `x5c`) granting the
/// scope asked; anything else gets 401.
pub struct TokenServer {
    pub port: u16,
    pub cert: PathBuf,
    /// Tokens issued.
    pub issued: Arc<AtomicUsize>,
}

impl TokenServer {
    pub const SERVICE: &'static str = "kiln-test-registry";
    pub const ISSUER: &'static str = "kiln-test-issuer";

    pub fn start(dir: &TestDir) -> TokenServer {
        let key = dir.join("token-key.pem");
        let cert = dir.join("token-cert.pem");
        run_tool(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=kiln-test-token",
                "-keyout",
                &key.to_string_lossy(),
                "-out",
                &cert.to_string_lossy(),
            ],
        );
        let der = run_tool(
            "openssl",
            &["x509", "-in", &cert.to_string_lossy(), "-outform", "DER"],
        )
        .stdout;
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        let port = listener.local_addr().expect("addr").port();
        let issued = Arc::new(AtomicUsize::new(0));
        let count = issued.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = serve_token(conn, &key, &x5c, &count);
            }
        });
        TokenServer { port, cert, issued }
    }
}

fn serve_token(
    mut conn: TcpStream,
    key: &Path,
    x5c: &str,
    issued: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorized = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let want =
                base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
            if k.eq_ignore_ascii_case("authorization") && v.trim() == format!("Basic {want}") {
                authorized = true;
            }
        }
    }
    let target = request_line.split(' ').nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let scope = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "scope")
        .map(|(_, v)| percent_decode(v))
        .unwrap_or_default();
    if !authorized || !target.starts_with("/token") {
        return conn.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    // scope = repository:NAME:ACTIONS
    let access = match scope.splitn(3, ':').collect::<Vec<_>>().as_slice() {
        [kind, name, actions] => serde_json::json!([{
            "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()
        }]),
        _ => serde_json::json!([]),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": TokenServer::ISSUER, "sub": USER, "aud": TokenServer::SERVICE,
        "exp": now + 600, "nbf": now - 60, "iat": now, "jti": format!("kiln-{now}"),
        "access": access,
    });
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    openssl
        .stdin
        .take()
        .expect("stdin")
        .write_all(signing_input.as_bytes())?;
    let out = openssl.wait_with_output()?;
    assert!(out.status.success(), "openssl dgst: {}", stderr(&out));
    let token = format!("{signing_input}.{}", b64(&out.stdout));
    issued.fetch_add(1, Ordering::SeqCst);
    let body = serde_json::json!({"token": token, "expires_in": 600}).to_string();
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut rest = Vec::new();
    let _ = conn.set_read_timeout(Some(Duration::from_millis(10)));
    let _ = conn.read_to_end(&mut rest);
    Ok(())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A loopback HTTP proxy in front of a registry that, the first time a
/// request's path ends with `stall_on`, sends the response's head and half
/// its body and then stalls (telling the test through `stalled`), so the
/// test can kill the client mid-blob. Every other request passes through.
pub struct StallingProxy {
    pub port: u16,
    pub stalled: std::sync::mpsc::Receiver<()>,
}

impl StallingProxy {
    pub fn start(upstream: u16, stall_on: String) -> StallingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut armed = true;
            for conn in listener.incoming().flatten() {
                let stall = proxy_one(conn, upstream, &stall_on, armed, &tx);
                armed &= !stall;
            }
        });
        StallingProxy { port, stalled: rx }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Proxies one request (with `Connection: close` both ways); gives whether it stalled.
fn proxy_one(
    mut conn: TcpStream,
    upstream: u16,
    stall_on: &str,
    armed: bool,
    stalled: &std::sync::mpsc::Sender<()>,
) -> bool {
    let Ok(read_half) = conn.try_clone() else {
        return false;
    };
    let mut reader = BufReader::new(read_half);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
        let lower = line.to_ascii_lowercase();
        if line.trim().is_empty() {
            break;
        }
        if !lower.starts_with("connection:") {
            head.push_str(&line);
        }
    }
    let path = head.split(' ').nth(1).unwrap_or("").to_string();
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return false;
    };
    let _ = write!(up, "{head}Connection: close\r\n\r\n");
    let mut resp = Vec::new();
    let _ = up.read_to_end(&mut resp);
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(resp.len(), |i| i + 4);
    let (h, body) = resp.split_at(split);
    let h = String::from_utf8_lossy(h).replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    let _ = conn.write_all(h.as_bytes());
    if armed && path.ends_with(stall_on) {
        let _ = conn.write_all(&body[..body.len() / 2]);
        let _ = conn.flush();
        let _ = stalled.send(());
        // Hold the connection until the client is gone.
        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
        let mut sink = [0u8; 1];
        let _ = reader.read(&mut sink);
        return true;
    }
    let _ = conn.write_all(body);
    false
}

/// `kiln pull --layout LAYOUT --insecure-registry HOST REFS…` in `t`.
pub fn pull(
    t: &TestDir,
    reg: &Registry,
    layout: &str,
    refs: &[impl AsRef<str>],
    env: &[(&str, &str)],
) -> Output {
    let host = reg.host();
    let mut args = vec!["pull", "--layout", layout, "--insecure-registry", &host];
    args.extend(refs.iter().map(AsRef::as_ref));
    kiln_env(t.path(), &args, env)
}
