//! The ECS Exec relay: both ends of a session (the caller of
//! ExecuteCommand, and the agent of the task's host) open
//! `GET /wharf/exec/{session}` as an HTTP upgrade with their own token; the
//! first waits for the second, then the relay copies bytes both ways until
//! either end closes. It never reads the frames (see
//! `wharf_core::exec_protocol`).
//!
//! The pairing is in this process: with several servers, both ends must
//! reach the same one (the stream URL names it).

use crate::records;
use crate::tokens::sha256_hex;
use crate::Control;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use wharf_core::exec_protocol::{ExecSessionRecord, Frame, ATTACH_SECONDS, UPGRADE};
use wharf_core::records::keys;
use wharf_protocol::sigv4::constant_time_eq;

type Io = TokioIo<hyper::upgrade::Upgraded>;

/// Sessions being paired at once, at most.
const MAX_PAIRING: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Caller,
    Agent,
}

impl End {
    fn index(self) -> usize {
        match self {
            End::Caller => 0,
            End::Agent => 1,
        }
    }
}

#[derive(Default)]
struct Slot {
    /// Which ends have opened the stream: each may, once.
    opened: [bool; 2],
    /// The end that arrived first, waiting for the other's connection.
    waiting: Option<(End, oneshot::Sender<Io>)>,
}

/// Sessions with one end attached, by session ID.
#[derive(Default)]
pub struct Relay(Mutex<HashMap<String, Slot>>);

impl Relay {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.0.lock().expect("exec relay lock")
    }
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, format!("{why}\n")).into_response()
}

fn gone() -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        "no such exec session: it ended, or was not opened within its time",
    )
}

/// `GET /wharf/exec/{session}`: checks the end's token, answers 101 and
/// pairs the upgraded connection with the other end's.
pub async fn open(
    State(c): State<Control>,
    Path(session): Path<String>,
    mut req: Request,
) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let upgrade_asked = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(UPGRADE));
    if !upgrade_asked {
        return refuse(
            StatusCode::UPGRADE_REQUIRED,
            "an exec stream is opened with `Upgrade: wharf-exec`",
        );
    }
    let record =
        match records::get::<ExecSessionRecord>(c.store.as_ref(), &keys::exec_session(&session))
            .await
        {
            Ok(Some(v)) => v.value,
            Ok(None) => return gone(),
            Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, &e.message),
        };
    let deadline_ms = record
        .created_at
        .saturating_add(ATTACH_SECONDS as i64 * 1000);
    if c.clock.now() >= deadline_ms {
        return gone();
    }
    let end = if constant_time_eq(
        sha256_hex(&token).as_bytes(),
        record.client_token_sha256.as_bytes(),
    ) {
        End::Caller
    } else if constant_time_eq(token.as_bytes(), record.agent_token.as_bytes()) {
        End::Agent
    } else {
        return refuse(StatusCode::FORBIDDEN, "the token is not this session's");
    };
    {
        let mut slots = c.exec.lock();
        if !slots.contains_key(&session) && slots.len() >= MAX_PAIRING {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many exec sessions at once",
            );
        }
        let slot = slots.entry(session.clone()).or_default();
        if slot.opened[end.index()] {
            return refuse(
                StatusCode::CONFLICT,
                "this end of the session is already open",
            );
        }
        slot.opened[end.index()] = true;
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                pair(
                    &c,
                    &session,
                    &record,
                    end,
                    TokioIo::new(upgraded),
                    deadline_ms,
                )
                .await
            }
            Err(e) => {
                tracing::debug!(%session, error = %e, "exec stream upgrade failed");
                c.exec.lock().remove(&session);
            }
        }
    });
    let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static(UPGRADE));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    resp
}

/// Hands `io` to the end already waiting, or waits for the other end until
/// the session's deadline; then copies between the two.
async fn pair(
    c: &Control,
    session: &str,
    record: &ExecSessionRecord,
    end: End,
    mut io: Io,
    deadline_ms: i64,
) {
    let rx = {
        let mut slots = c.exec.lock();
        let Some(slot) = slots.get_mut(session) else {
            return;
        };
        match slot.waiting.take() {
            Some((other, tx)) if other != end => {
                // The waiting end copies; a send fails only if it just gave up.
                drop(slots);
                let _ = tx.send(io);
                return;
            }
            // Each end opens once, so what waits here is nothing.
            _ => {
                let (tx, rx) = oneshot::channel();
                slot.waiting = Some((end, tx));
                rx
            }
        }
    };
    let mut rx = rx;
    let left = deadline_ms.saturating_sub(c.clock.now()).max(0) as u64;
    let peer = tokio::select! {
        peer = &mut rx => peer.ok(),
        _ = tokio::time::sleep(Duration::from_millis(left)) => {
            // Give up, unless the other end took the sender just now: then
            // its connection is on the way.
            let gave_up = {
                let mut slots = c.exec.lock();
                let ours = slots
                    .get(session)
                    .and_then(|s| s.waiting.as_ref())
                    .is_some_and(|(e, _)| *e == end);
                if ours {
                    slots.remove(session);
                }
                ours
            };
            if gave_up { None } else { rx.await.ok() }
        }
    };
    let Some(mut peer) = peer else {
        tracing::info!(%session, "exec session ended: the other end did not open the stream in time");
        // Gone before the caller hears of it: a retry finds no session.
        let _ = c.store.revoke_lease(record.lease).await;
        if end == End::Caller {
            let why = Frame::Error(format!(
                "The agent of the task's host did not open the session within {ATTACH_SECONDS} s."
            ));
            let _ = io.write_all(&why.encode()).await;
            let _ = io.shutdown().await;
        }
        return;
    };
    // Paired: the record has done its work (a later open finds nothing).
    c.exec.lock().remove(session);
    let _ = c.store.revoke_lease(record.lease).await;
    tracing::info!(%session, task = %record.task_arn, "exec session paired");
    match tokio::io::copy_bidirectional(&mut io, &mut peer).await {
        Ok((a, b)) => tracing::info!(%session, bytes_in = a, bytes_out = b, "exec session closed"),
        Err(e) => tracing::info!(%session, error = %e, "exec session closed"),
    }
}
