//! ECS Exec on the host: the agent follows the exec sessions opened for
//! its instance (`PollExecSessions`), opens each session's stream through
//! the control plane, and runs the command in the task's container with
//! Docker's exec, relaying frames (`wharf_core::exec_protocol`). The frame
//! reader and writer here serve `wharf exec` too.

use crate::client::ControlClient;
use crate::runtime::{ExecOutput, Runtime, TASK_ARN_LABEL};
use crate::spec::{CONTAINER_NAME_LABEL, INSTANCE_LABEL};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use wharf_core::agent_protocol::TARGET_PREFIX;
use wharf_core::exec_protocol::{
    ExecSession, Frame, PollExecSessionsRequest, PollExecSessionsResponse, ATTACH_SECONDS, HEADER,
    MAX_PAYLOAD, POLL_EXEC_SESSIONS, STREAM_PATH, UPGRADE,
};

/// The next frame, or `None` at a clean end of stream (between frames).
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Frame>> {
    let mut header = [0u8; HEADER];
    match r.read_exact(&mut header[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut header[1..]).await?;
    let invalid = |e: wharf_core::exec_protocol::FrameError| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    };
    let len = Frame::payload_len(header).map_err(invalid)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Frame::decode(header[0], payload).map(Some).map_err(invalid)
}

pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &Frame) -> std::io::Result<()> {
    w.write_all(&frame.encode()).await?;
    w.flush().await
}

/// Output in frames no larger than the protocol allows.
fn output_frames(out: ExecOutput) -> Vec<Frame> {
    let (bytes, stderr) = match out {
        ExecOutput::Stdout(b) => (b, false),
        ExecOutput::Stderr(b) => (b, true),
    };
    bytes
        .chunks(MAX_PAYLOAD)
        .map(|c| {
            if stderr {
                Frame::Stderr(c.to_vec())
            } else {
                Frame::Stdout(c.to_vec())
            }
        })
        .collect()
}

/// A session's output on its way to CloudWatch Logs: whole lines are put
/// once enough have gathered, and the rest when the session ends.
struct Transcript {
    group: String,
    stream: String,
    pending: Vec<u8>,
}

/// Output gathered before it is put; also the longest line kept whole.
const TRANSCRIPT_FLUSH: usize = 64 << 10;

impl Transcript {
    fn lines(&mut self, all: bool) -> Vec<crate::runtime::LogLine> {
        let end = if all || self.pending.len() >= TRANSCRIPT_FLUSH {
            if all {
                self.pending.len()
            } else {
                self.pending
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(self.pending.len(), |i| i + 1)
            }
        } else {
            return vec![];
        };
        let at_nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let taken: Vec<u8> = self.pending.drain(..end).collect();
        taken
            .split(|b| *b == b'\n')
            .flat_map(|line| line.chunks(TRANSCRIPT_FLUSH))
            .map(|piece| {
                String::from_utf8_lossy(piece)
                    .trim_end_matches('\r')
                    .to_string()
            })
            .filter(|text| !text.is_empty())
            .map(|text| crate::runtime::LogLine {
                at_nanos,
                stderr: false,
                text,
            })
            .collect()
    }

    async fn put(&mut self, client: &ControlClient, all: bool) {
        let lines = self.lines(all);
        if !lines.is_empty() {
            crate::awslogs::put_all(client, &self.group, &self.stream, &lines).await;
        }
    }
}

/// Follows the exec sessions of this agent's instance (`me()`, once
/// registered) until the process ends; each runs in a task of its own.
pub async fn follow(
    client: ControlClient,
    runtime: Arc<dyn Runtime>,
    cluster: String,
    me: impl Fn() -> Option<String> + Send + 'static,
) {
    // Sessions already taken (the poll shows a session until it is paired),
    // forgotten once no poll can show them any more.
    let mut seen: HashMap<String, Instant> = HashMap::new();
    let forget_after = Duration::from_secs(2 * ATTACH_SECONDS);
    let mut after = 0;
    loop {
        let Some(instance) = me() else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let req = PollExecSessionsRequest {
            cluster: cluster.clone(),
            container_instance_arn: instance.clone(),
            after_revision: after,
            wait_millis: 20_000,
        };
        let resp: PollExecSessionsResponse = match client
            .call(&format!("{TARGET_PREFIX}.{POLL_EXEC_SESSIONS}"), &req)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "exec session poll failed; retrying");
                after = 0;
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        after = resp.revision;
        seen.retain(|_, at| at.elapsed() < forget_after);
        for session in resp.sessions {
            if seen
                .insert(session.session_id.clone(), Instant::now())
                .is_some()
            {
                continue;
            }
            let (client, runtime, instance) = (client.clone(), runtime.clone(), instance.clone());
            tokio::spawn(async move {
                let id = session.session_id.clone();
                if let Err(e) = run_session(&client, runtime.as_ref(), &instance, session).await {
                    tracing::warn!(session = %id, error = %e, "exec session failed");
                }
            });
        }
    }
}

/// The Docker ID of the session's container, if it is this instance's.
async fn container_of(
    runtime: &dyn Runtime,
    instance: &str,
    session: &ExecSession,
) -> Result<String, String> {
    let all = runtime
        .list_managed()
        .await
        .map_err(|e| format!("cannot list containers: {e}"))?;
    let label = |c: &crate::runtime::ContainerStatus, k: &str| c.labels.get(k).cloned();
    all.iter()
        .find(|c| {
            label(c, TASK_ARN_LABEL).as_deref() == Some(session.task_arn.as_str())
                && label(c, CONTAINER_NAME_LABEL).as_deref()
                    == Some(session.container_name.as_str())
                && label(c, INSTANCE_LABEL).as_deref() == Some(instance)
        })
        .map(|c| c.id.clone())
        .ok_or_else(|| {
            format!(
                "container {} of task {} is not on this host",
                session.container_name, session.task_arn
            )
        })
}

async fn run_session(
    client: &ControlClient,
    runtime: &dyn Runtime,
    instance: &str,
    session: ExecSession,
) -> Result<(), String> {
    let container = container_of(runtime, instance, &session).await;
    let stream = client
        .upgrade(
            &format!("{STREAM_PATH}/{}", session.session_id),
            UPGRADE,
            &session.agent_token,
        )
        .await
        .map_err(|e| e.to_string())?;
    let (mut rd, mut wr) = tokio::io::split(stream);
    // The caller speaks first: whether it wants a TTY.
    let tty = match read_frame(&mut rd).await {
        Ok(Some(Frame::Start { tty, cols, rows })) => tty.then_some((cols, rows)),
        Ok(None) => return Ok(()),
        Ok(Some(other)) => return Err(format!("the session began with {other:?}, not Start")),
        Err(e) => return Err(e.to_string()),
    };
    // The stream for the session's output exists before the command runs:
    // a session that cannot be logged as configured does not run. The
    // group is the cluster's, in the task's region.
    let logs = client.in_region(wharf_core::arn::region_of(&session.task_arn));
    let client = &logs;
    let mut transcript = match &session.log_group {
        None => None,
        Some(group) => {
            if let Err(e) = crate::awslogs::create_stream(client, group, &session.session_id).await
            {
                let why = format!("cannot log the session to CloudWatch Logs group {group}: {e}");
                let _ = write_frame(&mut wr, &Frame::Error(why.clone())).await;
                let _ = wr.shutdown().await;
                return Err(why);
            }
            Some(Transcript {
                group: group.clone(),
                stream: session.session_id.clone(),
                pending: vec![],
            })
        }
    };
    let started = match container {
        Ok(id) => runtime
            .exec(&id, &session.command, tty)
            .await
            .map_err(|e| format!("cannot run the command: {e}")),
        Err(e) => Err(e),
    };
    let exec = match started {
        Ok(exec) => exec,
        Err(why) => {
            let _ = write_frame(&mut wr, &Frame::Error(why.clone())).await;
            let _ = wr.shutdown().await;
            return Err(why);
        }
    };
    tracing::info!(session = %session.session_id, task = %session.task_arn, container = %session.container_name, "exec started");
    let exec_id = exec.id.clone();
    let mut input = exec.input;
    let mut output = exec.output;
    // Input: the caller's frames into the command (and resizes), until
    // the caller closes its input or the stream.
    let pump_in = async {
        loop {
            match read_frame(&mut rd).await {
                Ok(Some(Frame::Stdin(b))) => {
                    if input.write_all(&b).await.is_err() || input.flush().await.is_err() {
                        break;
                    }
                }
                Ok(Some(Frame::Resize { cols, rows })) => {
                    let _ = runtime.resize_exec(&exec_id, cols, rows).await;
                }
                Ok(Some(Frame::StdinEof)) => {
                    let _ = input.shutdown().await;
                    // Resizes may still come; nothing else matters.
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    };
    let pump_out = async {
        while let Some(chunk) = output.next().await {
            match chunk {
                Ok(out) => {
                    if let Some(t) = transcript.as_mut() {
                        let (ExecOutput::Stdout(b) | ExecOutput::Stderr(b)) = &out;
                        t.pending.extend_from_slice(b);
                        t.put(client, false).await;
                    }
                    for f in output_frames(out) {
                        write_frame(&mut wr, &f).await.map_err(|e| e.to_string())?;
                    }
                }
                Err(e) => return Err(format!("reading the command's output: {e}")),
            }
        }
        Ok::<_, String>(())
    };
    // The command's output ending is the end; the caller leaving is too.
    let outcome = tokio::select! {
        out = pump_out => out,
        _ = pump_in => Err("the caller closed the session".to_string()),
    };
    if let Some(t) = transcript.as_mut() {
        t.put(client, true).await;
    }
    if let Err(why) = outcome {
        let _ = write_frame(&mut wr, &Frame::Error(why.clone())).await;
        let _ = wr.shutdown().await;
        return Err(why);
    }
    let code = exit_code(runtime, &exec.id).await;
    let frame = match code {
        Ok(code) => Frame::Exit(i32::try_from(code).unwrap_or(i32::MAX)),
        Err(why) => Frame::Error(why),
    };
    write_frame(&mut wr, &frame)
        .await
        .map_err(|e| e.to_string())?;
    let _ = wr.shutdown().await;
    tracing::info!(session = %session.session_id, ?frame, "exec ended");
    Ok(())
}

/// The exec's exit code: Docker may report it a moment after the output ends.
async fn exit_code(runtime: &dyn Runtime, exec_id: &str) -> Result<i64, String> {
    for _ in 0..50 {
        match runtime.exec_exit_code(exec_id).await {
            Ok(Some(code)) => return Ok(code),
            Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => return Err(format!("cannot read the exit code: {e}")),
        }
    }
    Err("the command's output ended but it still runs".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_cross_a_stream_and_end_cleanly() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let sent = vec![
            Frame::Start {
                tty: true,
                cols: 80,
                rows: 24,
            },
            Frame::Stdin(b"echo hi\n".to_vec()),
            Frame::Exit(3),
        ];
        let writer = {
            let sent = sent.clone();
            tokio::spawn(async move {
                for f in &sent {
                    write_frame(&mut a, f).await.unwrap();
                }
            })
        };
        let mut got = vec![];
        while let Some(f) = read_frame(&mut b).await.unwrap() {
            got.push(f);
        }
        writer.await.unwrap();
        assert_eq!(got, sent);
    }

    #[tokio::test]
    async fn a_stream_cut_inside_a_frame_is_an_error() {
        let bytes = Frame::Stdout(b"hello".to_vec()).encode();
        let mut cut = &bytes[..bytes.len() - 2];
        assert!(read_frame(&mut cut).await.is_err());
    }

    #[test]
    fn a_transcript_puts_whole_lines_and_the_rest_at_the_end() {
        let mut t = Transcript {
            group: "g".into(),
            stream: "s".into(),
            pending: b"one\r\ntwo\npart".to_vec(),
        };
        assert!(t.lines(false).is_empty(), "too little to put yet");
        t.pending.extend(vec![b'x'; TRANSCRIPT_FLUSH]);
        t.pending.extend(b"\ntail");
        let texts = |lines: Vec<crate::runtime::LogLine>| {
            lines.into_iter().map(|l| l.text).collect::<Vec<_>>()
        };
        let first = texts(t.lines(false));
        assert_eq!(&first[..2], ["one", "two"]);
        // The long line is cut in pieces no longer than the limit.
        assert!(first[2..].iter().all(|p| p.len() <= TRANSCRIPT_FLUSH));
        assert_eq!(
            first[2..].concat(),
            format!("part{}", "x".repeat(TRANSCRIPT_FLUSH))
        );
        assert_eq!(t.pending, b"tail");
        assert_eq!(texts(t.lines(true)), ["tail"]);
        assert!(t.pending.is_empty());
    }

    #[test]
    fn large_output_is_split_below_the_frame_limit() {
        let frames = output_frames(ExecOutput::Stderr(vec![7; MAX_PAYLOAD * 2 + 1]));
        assert_eq!(frames.len(), 3);
        assert!(frames
            .iter()
            .all(|f| matches!(f, Frame::Stderr(b) if b.len() <= MAX_PAYLOAD)));
    }
}
