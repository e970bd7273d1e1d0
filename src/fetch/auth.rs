//! Registry credentials and authentication challenges.
//!
//! Takes the credential files Docker, podman and skopeo write
//! (`$REGISTRY_AUTH_FILE`, `$DOCKER_CONFIG/config.json`,
//! `~/.docker/config.json`, first match wins) and a registry's
//! `WWW-Authenticate` header; gives the username and password for a host
//! and the parsed challenge (Basic, or Bearer with realm, service and
//! scope). Credential helpers (`credsStore`, `credHelpers`) are not run:
//! kiln runs no programs it was not asked to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::FetchError;

/// The largest credential file read.
const MAX_AUTH_FILE: u64 = 1 << 20;

/// A username and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Login({:?}, <password>)", self.username)
    }
}

impl Login {
    /// The `Authorization` header value for HTTP basic auth.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Credentials from the credential files, by normalised host.
#[derive(Debug, Default)]
pub struct Credentials {
    /// (file, host → login), in lookup order.
    files: Vec<(PathBuf, BTreeMap<String, Login>)>,
}

#[derive(serde::Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl Credentials {
    /// Reads the credential files named by the environment (missing files
    /// are skipped; a malformed one is an error naming it).
    pub fn from_env() -> Result<Credentials, FetchError> {
        let mut paths = Vec::new();
        if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|v| !v.is_empty()) {
            paths.push(PathBuf::from(p));
        }
        if let Some(p) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
            paths.push(PathBuf::from(p).join("config.json"));
        }
        if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            paths.push(PathBuf::from(home).join(".docker").join("config.json"));
        }
        let mut creds = Credentials::default();
        for p in paths {
            if p.is_file() {
                let logins = read_auth_file(&p)?;
                creds.files.push((p, logins));
            }
        }
        Ok(creds)
    }

    /// The login for `host` (`HOST[:PORT]` as in the reference).
    pub fn lookup(&self, host: &str) -> Option<&Login> {
        let keys = host_aliases(host);
        self.files
            .iter()
            .find_map(|(_, m)| keys.iter().find_map(|k| m.get(k.as_str())))
    }
}

/// The keys a credential file may use for `host`.
fn host_aliases(host: &str) -> Vec<String> {
    if matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        vec![
            "docker.io".into(),
            "index.docker.io".into(),
            "registry-1.docker.io".into(),
        ]
    } else {
        vec![host.to_string()]
    }
}

/// `https://index.docker.io/v1/` → `index.docker.io`.
fn normalise_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k).to_string()
}

fn read_auth_file(path: &Path) -> Result<BTreeMap<String, Login>, FetchError> {
    use std::io::Read;
    let bad = |message: String| FetchError::Credentials {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_AUTH_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(e.to_string()))?;
    if bytes.len() as u64 > MAX_AUTH_FILE {
        return Err(bad(format!("larger than {MAX_AUTH_FILE} bytes")));
    }
    let parsed: AuthFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (key, entry) in parsed.auths {
        let login = match (&entry.auth, &entry.username, &entry.password) {
            (Some(a), _, _) if !a.is_empty() => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(a.trim())
                    .map_err(|e| bad(format!("auths.{key:?}.auth is not base64: {e}")))?;
                let raw = String::from_utf8(raw)
                    .map_err(|_| bad(format!("auths.{key:?}.auth is not UTF-8")))?;
                let (u, p) = raw
                    .split_once(':')
                    .ok_or_else(|| bad(format!("auths.{key:?}.auth is not user:password")))?;
                Login {
                    username: u.to_string(),
                    password: p.to_string(),
                }
            }
            (_, Some(u), Some(p)) => Login {
                username: u.clone(),
                password: p.clone(),
            },
            _ => continue,
        };
        out.insert(normalise_key(&key), login);
    }
    Ok(out)
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Basic realm="x"` or `Bearer realm="…",service="…",scope="…"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        _ => None,
    }
}

/// `k="v", k2=v2` (quoted strings may hold commas and `\"`).
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ','))
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() || chars.next() != Some('=') {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_string();
        }
        out.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="basic-realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn auth_file_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth.json");
        std::fs::write(
            &p,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"},"127.0.0.1:5000":{"username":"a","password":"b:c"}}}"#,
        )
        .unwrap();
        let creds = Credentials {
            files: vec![(p.clone(), read_auth_file(&p).unwrap())],
        };
        assert_eq!(creds.lookup("docker.io").unwrap().username, "u");
        assert_eq!(creds.lookup("127.0.0.1:5000").unwrap().password, "b:c");
        assert!(creds.lookup("127.0.0.1:5001").is_none());
        std::fs::write(&p, r#"{"auths":{"x":{"auth":"!!"}}}"#).unwrap();
        let e = read_auth_file(&p).unwrap_err().to_string();
        assert!(e.contains("auth.json") && e.contains("not base64"), "{e}");
    }
}
