//! The listener: accepts connections (over TLS when configured) and serves
//! the router on each, with the bounds that keep one slow or flooding
//! client from exhausting the server: a cap on open connections, a deadline
//! for the TLS handshake and for a request's headers (a slowloris client is
//! cut off, and holds only its own connection meanwhile), a cap on header
//! size, a deadline for the whole request, and caps on requests in flight
//! (agents' long-polls counted apart, so they cannot starve API callers).

use crate::http::error_response;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use wharf_protocol::AwsError;

/// How much the server lets callers hold.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections; past it, new ones are closed at once.
    pub max_connections: usize,
    /// API requests being served at once; past it, requests wait (their
    /// bodies unread) until one finishes or their deadline passes.
    pub max_requests: usize,
    /// Agents' long-polls at once, apart from `max_requests`.
    pub max_polls: usize,
    /// From accepting a connection to a finished TLS handshake.
    pub handshake_timeout: Duration,
    /// From a connection's first byte (or the end of its last request) to
    /// the end of the next request's headers.
    pub header_read_timeout: Duration,
    /// The largest request head (request line and headers).
    pub max_header_bytes: usize,
    /// From a request's headers to its response (long-polls end within 30 s).
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 8192,
            max_requests: 512,
            max_polls: 8192,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 << 10,
            request_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Clone)]
struct Gates {
    requests: Arc<Semaphore>,
    polls: Arc<Semaphore>,
    timeout: Duration,
}

/// Agent operations that wait for a change (up to 30 s) rather than work.
fn is_long_poll(req: &Request) -> bool {
    req.headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.split_once('.'))
        .is_some_and(|(prefix, op)| {
            use wharf_core::agent_protocol::{POLL, POLL_INSTANCES, TARGET_PREFIX};
            use wharf_core::exec_protocol::POLL_EXEC_SESSIONS;
            prefix == TARGET_PREFIX
                && (op == POLL || op == POLL_INSTANCES || op == POLL_EXEC_SESSIONS)
        })
}

async fn gate(State(g): State<Gates>, req: Request, next: Next) -> Response {
    let sem = if is_long_poll(&req) {
        &g.polls
    } else {
        &g.requests
    };
    let served = async {
        let _permit = sem.acquire().await.expect("the gate is never closed");
        next.run(req).await
    };
    match tokio::time::timeout(g.timeout, served).await {
        Ok(resp) => resp,
        Err(_) => error_response(&AwsError::new(
            408,
            "RequestTimeoutException",
            "The request was not completed in time.",
        )),
    }
}

/// Adds the request bounds of `limits` to `app`.
pub fn bounded(app: Router, limits: &Limits) -> Router {
    let gates = Gates {
        requests: Arc::new(Semaphore::new(limits.max_requests.max(1))),
        polls: Arc::new(Semaphore::new(limits.max_polls.max(1))),
        timeout: limits.request_timeout,
    };
    app.layer(axum::middleware::from_fn_with_state(gates, gate))
}

/// Serves `app` on `listener` until `shutdown` resolves: plain HTTP, or
/// HTTPS with `tls`. HTTP/1.1 and HTTP/2 (by ALPN over TLS).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = bounded(app, &limits);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(128);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes.try_into().unwrap_or(u32::MAX))
        .max_concurrent_streams(128)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or similar: wait, don't spin or die.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing a new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Each request knows where it came from (`aws:SourceIp`).
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(crate::PeerAddr(peer));
                req
            },
        ));
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let handshake_timeout = limits.handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let served = match acceptor {
                None => {
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await
                }
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(tls), service)
                        .await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
