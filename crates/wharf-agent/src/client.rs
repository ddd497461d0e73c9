//! The agent's signed JSON 1.1 client for the control plane: HTTPS with
//! the server's certificate verified (against `--ca-bundle` or the system's
//! roots), and the agent's own credentials, got by presenting a join token
//! once and kept in the agent's data directory.

use serde::{de::DeserializeOwned, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use wharf_core::agent_protocol::{JoinRequest, JoinResponse, JOIN, TARGET_PREFIX};
use wharf_protocol::sigv4::{sign, Credentials};
use wharf_protocol::{AwsError, JSON_1_1};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("control plane unreachable: {0}")]
    Transport(String),
    #[error("control plane refused {op}: {err}")]
    Api { op: String, err: AwsError },
}

/// How long any call may take, the long-polls included (the server ends
/// those within 30 s): a call that hangs is retried by the caller rather
/// than stalling the agent for good.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Clone)]
pub struct ControlClient {
    http: reqwest::Client,
    url: http::Uri,
    creds: Arc<RwLock<Credentials>>,
    region: String,
    join: Option<Arc<Rejoin>>,
    /// The cluster an agent's credentials are bound to.
    cluster: Arc<RwLock<Option<String>>>,
    /// Session credentials to sign with instead (a task's execution
    /// role's), which their holder refreshes in place.
    session: Option<Arc<RwLock<SessionCredentials>>>,
}

/// STS session credentials: a key pair and its session token.
#[derive(Clone)]
pub struct SessionCredentials {
    pub creds: Credentials,
    pub token: String,
}

/// How an agent gets credentials again when the server no longer knows
/// its own (the server's state was reset): its join token, and where the
/// credentials are kept.
struct Rejoin {
    token: String,
    path: PathBuf,
    /// One join at a time.
    lock: tokio::sync::Mutex<()>,
}

/// Credentials as the agent keeps them on disk.
#[derive(Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Saved {
    access_key_id: String,
    secret_access_key: String,
    cluster: String,
}

/// A server URL's HTTP client: with `ca_bundle` (PEM), certificates it
/// signed are trusted besides the system's roots.
fn http_client(ca_bundle: Option<&Path>) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder().use_rustls_tls();
    if let Some(path) = ca_bundle {
        let pem = std::fs::read(path).map_err(|e| {
            ClientError::Transport(format!("cannot read CA bundle {}: {e}", path.display()))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            ClientError::Transport(format!("bad CA bundle {}: {e}", path.display()))
        })?;
        if certs.is_empty() {
            return Err(ClientError::Transport(format!(
                "CA bundle {} holds no certificate",
                path.display()
            )));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| ClientError::Transport(format!("cannot build HTTP client: {e}")))
}

impl ControlClient {
    pub fn new(url: &str, creds: Credentials, region: &str) -> Result<Self, ClientError> {
        Self::with_ca(url, creds, region, None)
    }

    /// As [`ControlClient::new`], trusting the certificates of `ca_bundle` too.
    pub fn with_ca(
        url: &str,
        creds: Credentials,
        region: &str,
        ca_bundle: Option<&Path>,
    ) -> Result<Self, ClientError> {
        // The region goes into every signature's credential scope.
        if !wharf_core::arn::valid_region(region) {
            return Err(ClientError::Transport(format!(
                "--region {region} is not a region name (lowercase letters, digits and '-')"
            )));
        }
        let url: http::Uri = url
            .parse()
            .map_err(|e| ClientError::Transport(format!("bad server URL {url}: {e}")))?;
        Ok(Self {
            http: http_client(ca_bundle)?,
            url,
            creds: Arc::new(RwLock::new(creds)),
            region: region.to_string(),
            join: None,
            cluster: Default::default(),
            session: None,
        })
    }

    /// A client with an agent's own credentials: those kept at
    /// `credentials_path` from an earlier join, else new ones from joining
    /// with `token` (kept there for next time). With a token, credentials
    /// the server no longer accepts are replaced by joining again.
    pub async fn for_agent(
        url: &str,
        token: Option<String>,
        credentials_path: &Path,
        region: &str,
        ca_bundle: Option<&Path>,
    ) -> Result<Self, ClientError> {
        let placeholder = Credentials {
            access_key_id: String::new(),
            secret_access_key: String::new(),
        };
        let mut client = Self::with_ca(url, placeholder, region, ca_bundle)?;
        client.join = token.map(|token| {
            Arc::new(Rejoin {
                token,
                path: credentials_path.to_path_buf(),
                lock: Default::default(),
            })
        });
        let saved = std::fs::read(credentials_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Saved>(&b).ok());
        match saved {
            Some(s) => {
                *client.creds.write().expect("creds lock") = Credentials {
                    access_key_id: s.access_key_id,
                    secret_access_key: s.secret_access_key,
                };
                *client.cluster.write().expect("cluster lock") = Some(s.cluster);
            }
            None if client.join.is_some() => client.rejoin().await?,
            None => {
                return Err(ClientError::Transport(format!(
                    "no agent credentials at {} and no join token: start the agent with --token (from `wharf token create`)",
                    credentials_path.display()
                )))
            }
        }
        Ok(client)
    }

    /// Presents the join token and keeps the credentials it buys.
    async fn rejoin(&self) -> Result<(), ClientError> {
        let Some(join) = &self.join else {
            return Ok(());
        };
        let _one = join.lock.lock().await;
        let target = format!("{TARGET_PREFIX}.{JOIN}");
        let resp: JoinResponse = self
            .send(
                &target,
                &JoinRequest {
                    token: join.token.clone(),
                    region: Some(self.region.clone()),
                },
                false,
            )
            .await?;
        if let Some(region) = resp.region.as_deref().filter(|r| *r != self.region) {
            return Err(ClientError::Transport(format!(
                "the join token is for cluster {} in region {region}, and the agent signs for {}: start the agent with --region {region}",
                resp.cluster, self.region
            )));
        }
        tracing::info!(access_key_id = %resp.access_key_id, cluster = %resp.cluster, "joined the control plane");
        save_credentials(&join.path, &resp)
            .map_err(|e| ClientError::Transport(format!("cannot keep agent credentials: {e}")))?;
        *self.creds.write().expect("creds lock") = Credentials {
            access_key_id: resp.access_key_id,
            secret_access_key: resp.secret_access_key,
        };
        *self.cluster.write().expect("cluster lock") = Some(resp.cluster);
        Ok(())
    }

    /// The same client signing for `region` (a container's log group may be
    /// in another region than the agent's cluster, as `awslogs-region` says).
    /// A region that is no region name (it could not be signed) keeps the
    /// client's own.
    pub fn in_region(&self, region: &str) -> Self {
        if !wharf_core::arn::valid_region(region) {
            return self.clone();
        }
        Self {
            region: region.to_string(),
            ..self.clone()
        }
    }

    /// The same client signing with `session`'s credentials (read at each
    /// call, so a refresh reaches it); it never joins again on a refusal.
    pub fn with_session(&self, session: Arc<RwLock<SessionCredentials>>) -> Self {
        Self {
            session: Some(session),
            join: None,
            ..self.clone()
        }
    }

    /// The region the client signs for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The cluster the agent's credentials may register in (None for a
    /// client signing with API keys).
    pub fn agent_cluster(&self) -> Option<String> {
        self.cluster.read().expect("cluster lock").clone()
    }

    /// Opens `path` of the server as an HTTP/1.1 upgrade to `protocol`,
    /// presenting `token` as a bearer token: a byte stream both ways.
    pub async fn upgrade(
        &self,
        path: &str,
        protocol: &str,
        token: &str,
    ) -> Result<reqwest::Upgraded, ClientError> {
        let scheme = self.url.scheme_str().unwrap_or("http");
        let authority = self
            .url
            .authority()
            .ok_or_else(|| ClientError::Transport("the server URL names no host".into()))?;
        let resp = self
            .http
            .get(format!("{scheme}://{authority}{path}"))
            .header(http::header::CONNECTION, "upgrade")
            .header(http::header::UPGRADE, protocol)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = resp.status();
        if status != http::StatusCode::SWITCHING_PROTOCOLS {
            let text = resp.text().await.unwrap_or_default();
            return Err(ClientError::Transport(format!(
                "the control plane refused the stream ({status}): {}",
                text.trim()
            )));
        }
        resp.upgrade()
            .await
            .map_err(|e| ClientError::Transport(format!("stream upgrade failed: {e}")))
    }

    /// Calls `PREFIX.OP` with `req` and decodes the answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: &str,
        req: &Req,
    ) -> Result<Resp, ClientError> {
        match self.send(target, req, true).await {
            // The server forgot these credentials (its state was reset):
            // join again with the token, once, and retry.
            Err(ClientError::Api { err, .. })
                if err.code == "UnrecognizedClientException" && self.join.is_some() =>
            {
                tracing::warn!("the control plane refused the agent's credentials; joining again");
                self.rejoin().await?;
                self.send(target, req, true).await
            }
            r => r,
        }
    }

    async fn send<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: &str,
        req: &Req,
        signed: bool,
    ) -> Result<Resp, ClientError> {
        let body = serde_json::to_vec(req).expect("requests serialize");
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-amz-target",
            target
                .parse()
                .map_err(|_| ClientError::Transport("bad target".into()))?,
        );
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(JSON_1_1),
        );
        if signed {
            let creds = match &self.session {
                Some(s) => {
                    let s = s.read().unwrap_or_else(|e| e.into_inner()).clone();
                    headers.insert(
                        "x-amz-security-token",
                        s.token
                            .parse()
                            .map_err(|_| ClientError::Transport("bad session token".into()))?,
                    );
                    s.creds
                }
                None => self.creds.read().expect("creds lock").clone(),
            };
            sign(
                &http::Method::POST,
                &self.url,
                &mut headers,
                &body,
                &creds,
                &self.region,
                // CloudWatch Logs calls are signed for their own service.
                if target.starts_with("Logs_") {
                    "logs"
                } else {
                    "ecs"
                },
                time::OffsetDateTime::now_utc(),
            );
        }
        let resp = self
            .http
            .post(self.url.to_string())
            .headers(headers)
            .body(body)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        if status != 200 {
            let err = AwsError::from_body(status, &bytes).unwrap_or_else(|| {
                AwsError::new(status, "Unknown", String::from_utf8_lossy(&bytes))
            });
            return Err(ClientError::Api {
                op: target.to_string(),
                err,
            });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Transport(format!("bad response to {target}: {e}")))
    }
}

/// Writes credentials readable by their owner only, atomically.
fn save_credentials(path: &Path, resp: &JoinResponse) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let saved = Saved {
        access_key_id: resp.access_key_id.clone(),
        secret_access_key: resp.secret_access_key.clone(),
        cluster: resp.cluster.clone(),
    };
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(&serde_json::to_vec(&saved).expect("credentials serialize"))?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
