//! The HTTP side of the OCI distribution protocol: manifests and blobs.
//!
//! Takes a registry host, a repository and a tag or digest; gives a
//! manifest's bytes (read fully, at most [`MAX_MANIFEST`] bytes, whatever
//! `Content-Length` claims) or a blob's body as a stream for the caller to
//! verify. Answers a 401 once per request with the challenge's scheme:
//! Basic (credentials from [`auth::Credentials`]) or Bearer (a token from
//! the challenge's realm, asked with those credentials if any). TLS uses
//! the system's roots plus `--ca-cert` files; plain HTTP only for hosts
//! given as insecure. Authorization headers are never sent on a redirect.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::auth::{self, Challenge, Credentials};
use super::FetchError;
use crate::oci::json;

/// The largest manifest or index read (real ones are a few KiB).
pub const MAX_MANIFEST: u64 = crate::oci::blob::MAX_JSON_BLOB;
/// The largest token response read.
const MAX_TOKEN: u64 = 1 << 20;
/// How much of an error response is quoted.
const MAX_ERROR_BODY: u64 = 2048;

/// The media types asked for when fetching a manifest.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// Where a repository lives: `host` as written (`127.0.0.1:5000`,
/// `docker.io`) and its path (`library/alpine`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repo {
    pub host: String,
    pub path: String,
}

impl Repo {
    /// From a canonical repository (`docker.io/library/alpine`).
    pub fn from_repository(repository: &str) -> Repo {
        let (host, path) = repository
            .split_once('/')
            .unwrap_or(("docker.io", repository));
        Repo {
            host: host.to_string(),
            path: path.to_string(),
        }
    }

    /// The host the API is served from (Docker Hub's differs from its name).
    fn api_host(&self) -> &str {
        if self.host == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.host
        }
    }
}

/// Connection settings of a pull.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// `HOST[:PORT]`s spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// Extra PEM CA certificates, trusted besides the system's.
    pub ca_certs: Vec<PathBuf>,
}

/// A registry client: one agent (connection pool), credentials, and the
/// `Authorization` values that worked, by host and repository.
pub struct Client {
    agent: ureq::Agent,
    opts: ClientOptions,
    creds: Credentials,
    auth: RefCell<BTreeMap<(String, String), String>>,
}

impl Client {
    pub fn new(opts: &ClientOptions) -> Result<Client, FetchError> {
        let roots = root_certs(&opts.ca_certs)?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .build();
        Ok(Client {
            agent: config.into(),
            opts: opts.clone(),
            creds: Credentials::from_env()?,
            auth: RefCell::new(BTreeMap::new()),
        })
    }

    fn base_url(&self, repo: &Repo) -> String {
        let host = repo.api_host();
        let insecure =
            self.opts.insecure.iter().any(|i| {
                i == host || (!i.contains(':') && host.split(':').next() == Some(i.as_str()))
            });
        let scheme = if insecure { "http" } else { "https" };
        format!("{scheme}://{host}/v2/{}", repo.path)
    }

    /// Fetches a manifest or index by tag or digest; gives its bytes and
    /// the media type the server declared.
    pub fn manifest(&self, repo: &Repo, target: &str) -> Result<(Vec<u8>, String), FetchError> {
        let url = format!("{}/manifests/{target}", self.base_url(repo));
        let resp = self.get(repo, &url, Some(ACCEPT))?;
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let bytes = read_bounded(resp.into_body(), MAX_MANIFEST, &url)?;
        Ok((bytes, content_type))
    }

    /// Opens a blob's body as a stream (unverified: the caller checks it).
    pub fn blob(&self, repo: &Repo, digest: &str) -> Result<(String, impl Read), FetchError> {
        let url = format!("{}/blobs/{digest}", self.base_url(repo));
        let resp = self.get(repo, &url, None)?;
        Ok((url, resp.into_body().into_reader()))
    }

    /// A GET that answers one 401 challenge and fails on any other non-2xx.
    fn get(
        &self,
        repo: &Repo,
        url: &str,
        accept: Option<&str>,
    ) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
        let key = (repo.host.clone(), repo.path.clone());
        let mut authorization = self.auth.borrow().get(&key).cloned();
        for attempt in 0..2 {
            let mut req = self.agent.get(url);
            if let Some(a) = accept {
                req = req.header("Accept", a);
            }
            if let Some(a) = &authorization {
                req = req.header("Authorization", a);
            }
            let resp = req.call().map_err(|e| FetchError::Http {
                url: url.to_string(),
                message: e.to_string(),
            })?;
            let status = resp.status().as_u16();
            if status == 401 && attempt == 0 {
                let challenge = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let a = self.answer(repo, &challenge)?;
                self.auth.borrow_mut().insert(key.clone(), a.clone());
                authorization = Some(a);
                continue;
            }
            if !(200..300).contains(&status) {
                let body = read_bounded(resp.into_body(), MAX_ERROR_BODY, url)
                    .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                    .unwrap_or_default();
                return Err(if status == 401 {
                    FetchError::Auth {
                        host: repo.host.clone(),
                        message: format!("the registry refused the credentials for {url}: {body}"),
                    }
                } else {
                    FetchError::Status {
                        url: url.to_string(),
                        status,
                        body,
                    }
                });
            }
            return Ok(resp);
        }
        unreachable!("the loop returns on its second pass")
    }

    /// The `Authorization` value answering `challenge`.
    fn answer(&self, repo: &Repo, challenge: &str) -> Result<String, FetchError> {
        let login = self.creds.lookup(&repo.host);
        let auth_err = |message: String| FetchError::Auth {
            host: repo.host.clone(),
            message,
        };
        match auth::parse_challenge(challenge) {
            Some(Challenge::Basic) => login.map(auth::Login::basic_header).ok_or_else(|| {
                auth_err(
                    "the registry asks for a username and password and none is in \
                     $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json or ~/.docker/config.json"
                        .to_string(),
                )
            }),
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", repo.path));
                let mut url = realm.clone();
                let mut sep = if realm.contains('?') { '&' } else { '?' };
                for (k, v) in [("service", service.as_deref()), ("scope", Some(&scope))] {
                    if let Some(v) = v {
                        url.push(sep);
                        url.push_str(k);
                        url.push('=');
                        url.push_str(&query_escape(v));
                        sep = '&';
                    }
                }
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(auth_err(format!(
                        "token realm {realm:?} is not an http(s) URL"
                    )));
                }
                let mut req = self.agent.get(&url);
                if let Some(l) = login {
                    req = req.header("Authorization", l.basic_header());
                }
                let resp = req.call().map_err(|e| FetchError::Http {
                    url: url.clone(),
                    message: e.to_string(),
                })?;
                let status = resp.status().as_u16();
                let body = read_bounded(resp.into_body(), MAX_TOKEN, &url)?;
                if status != 200 {
                    return Err(auth_err(format!(
                        "the token server {realm} answered {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(512)]).trim()
                    )));
                }
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let t: Token = serde_json::from_slice(&body).map_err(|e| {
                    auth_err(format!("the token server {realm} sent malformed JSON: {e}"))
                })?;
                let token = t
                    .token
                    .or(t.access_token)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| auth_err(format!("the token server {realm} sent no token")))?;
                Ok(format!("Bearer {token}"))
            }
            None => Err(auth_err(format!(
                "the registry wants authentication kiln does not speak: {challenge:?}"
            ))),
        }
    }
}

/// Reads at most `limit` bytes of a body; more is an error.
fn read_bounded(body: ureq::Body, limit: u64, url: &str) -> Result<Vec<u8>, FetchError> {
    let mut bytes = Vec::new();
    body.into_reader()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| FetchError::Http {
            url: url.to_string(),
            message: e.to_string(),
        })?;
    if bytes.len() as u64 > limit {
        return Err(FetchError::TooLarge {
            url: url.to_string(),
            limit,
        });
    }
    Ok(bytes)
}

/// Percent-encodes everything but unreserved characters.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The system's CA bundle (`$SSL_CERT_FILE` or the usual Linux paths) plus
/// `extra`; Mozilla's roots (compiled in) when the system has none.
fn root_certs(extra: &[PathBuf]) -> Result<RootCerts, FetchError> {
    let system = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/ca-bundle.pem",
                "/etc/ssl/cert.pem",
            ]
            .map(PathBuf::from),
        )
        .find(|p| p.is_file());
    let mut certs = Vec::new();
    if let Some(p) = &system {
        certs.extend(read_pem_certs(p)?);
    }
    for p in extra {
        let c = read_pem_certs(p)?;
        if c.is_empty() {
            return Err(FetchError::CaCert {
                path: p.clone(),
                message: "holds no PEM certificate".to_string(),
            });
        }
        certs.extend(c);
    }
    if system.is_none() && extra.is_empty() {
        return Ok(RootCerts::WebPki);
    }
    Ok(RootCerts::Specific(Arc::new(certs)))
}

fn read_pem_certs(path: &Path) -> Result<Vec<Certificate<'static>>, FetchError> {
    let bad = |message: String| FetchError::CaCert {
        path: path.to_path_buf(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::Certificate(c) = item.map_err(|e| bad(e.to_string()))? {
            out.push(c);
        }
    }
    Ok(out)
}

/// The media type of a manifest: its own `mediaType` field, else the
/// server's `Content-Type`, else what its shape says.
pub fn manifest_media_type(bytes: &[u8], content_type: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
    }
    let own = serde_json::from_slice::<Head>(bytes)
        .ok()
        .and_then(|h| h.media_type)
        .filter(|m| !m.is_empty());
    if let Some(m) = own {
        return Some(m);
    }
    if json::kind_of(content_type).is_some() {
        return Some(content_type.to_string());
    }
    match json::sniff_kind(bytes)? {
        json::Kind::Index => Some(json::MT_OCI_INDEX.to_string()),
        json::Kind::Manifest => Some(json::MT_OCI_MANIFEST.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_scopes() {
        assert_eq!(
            query_escape("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }

    #[test]
    fn docker_hub_api_host() {
        let r = Repo::from_repository("docker.io/library/alpine");
        assert_eq!(
            (r.api_host(), r.path.as_str()),
            ("registry-1.docker.io", "library/alpine")
        );
    }
}
