//! The agent's signed JSON 1.1 client for the control plane.

use serde::{de::DeserializeOwned, Serialize};
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
    creds: Credentials,
    region: String,
}

impl ControlClient {
    pub fn new(url: &str, creds: Credentials, region: &str) -> Result<Self, ClientError> {
        let url: http::Uri = url
            .parse()
            .map_err(|e| ClientError::Transport(format!("bad server URL {url}: {e}")))?;
        Ok(Self {
            http: reqwest::Client::new(),
            url,
            creds,
            region: region.to_string(),
        })
    }

    /// Calls `PREFIX.OP` with `req` and decodes the answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: &str,
        req: &Req,
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
        sign(
            &http::Method::POST,
            &self.url,
            &mut headers,
            &body,
            &self.creds,
            &self.region,
            // CloudWatch Logs calls are signed for their own service.
            if target.starts_with("Logs_") {
                "logs"
            } else {
                "ecs"
            },
            time::OffsetDateTime::now_utc(),
        );
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
