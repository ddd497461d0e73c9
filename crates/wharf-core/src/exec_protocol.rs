//! ECS Exec in Wharf: how a command reaches a container through the
//! control plane and the agent of the container's host.
//!
//! 1. `ExecuteCommand` writes an [`ExecSessionRecord`] (under a short lease)
//!    and answers a session: its stream URL and a token for the caller.
//! 2. The agent of the task's host long-polls [`POLL_EXEC_SESSIONS`], sees the
//!    session, and opens the same stream with its own token.
//! 3. The control plane pairs the two upgraded connections and copies bytes
//!    between them; it never reads the frames.
//! 4. Over the pair, the caller sends [`Frame::Start`] first (TTY or not, the
//!    terminal's size), then input; the agent runs the command with Docker's
//!    exec and sends output, then [`Frame::Exit`] with its exit code.
//!
//! A frame is a kind byte, a big-endian u32 payload length, the payload.

use serde::{Deserialize, Serialize};

/// The agent operation (under `agent_protocol::TARGET_PREFIX`) that waits
/// for exec sessions of an instance. Body [`PollExecSessionsRequest`],
/// answer [`PollExecSessionsResponse`].
pub const POLL_EXEC_SESSIONS: &str = "PollExecSessions";

/// Where both ends open a session's stream: `STREAM_PATH/{session id}`,
/// with `Authorization: Bearer {token}` and `Upgrade: UPGRADE`.
pub const STREAM_PATH: &str = "/wharf/exec";
pub const UPGRADE: &str = "wharf-exec";

/// How long a session waits for both ends to open its stream.
pub const ATTACH_SECONDS: u64 = 60;

/// The largest payload of one frame; output is sent in pieces below it.
pub const MAX_PAYLOAD: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollExecSessionsRequest {
    pub cluster: String,
    pub container_instance_arn: String,
    /// 0: answer at once; otherwise wait up to `wait_millis` for a session
    /// written after this store revision.
    pub after_revision: i64,
    pub wait_millis: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollExecSessionsResponse {
    pub revision: i64,
    pub sessions: Vec<ExecSession>,
}

/// A session as its host's agent sees it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecSession {
    pub session_id: String,
    pub task_arn: String,
    pub container_name: String,
    /// The command, already split into arguments.
    pub command: Vec<String>,
    /// What the agent presents to open the stream.
    pub agent_token: String,
    /// The CloudWatch Logs group the session's output is logged to (in a
    /// stream named after the session), from the cluster's ECS Exec
    /// configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_group: Option<String>,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession")
            .field("session_id", &self.session_id)
            .field("task_arn", &self.task_arn)
            .field("container_name", &self.container_name)
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

/// A session waiting for its two ends, stored at `keys::exec_session`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecSessionRecord {
    pub session_id: String,
    /// The capacity cluster of the task's host (`MANAGED_CLUSTER` for
    /// FARGATE) and the host's container instance ID.
    pub capacity: String,
    pub instance_id: String,
    pub task_arn: String,
    pub container_name: String,
    pub command: Vec<String>,
    /// Hex SHA-256 of the caller's token (ExecuteCommand's `tokenValue`).
    pub client_token_sha256: String,
    /// The agent's token itself: the agent reads it from its poll.
    pub agent_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_group: Option<String>,
    /// The lease the record lives under (revoked once both ends attach).
    pub lease: i64,
    pub created_at: crate::clock::Millis,
}

/// One message of a session's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Caller → agent, first: run the command with a TTY of this size or
    /// without one.
    Start {
        tty: bool,
        cols: u16,
        rows: u16,
    },
    Stdin(Vec<u8>),
    /// The caller's input ended: the command's stdin is closed.
    StdinEof,
    Resize {
        cols: u16,
        rows: u16,
    },
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// Agent → caller, last: the command's exit code.
    Exit(i32),
    /// The command could not run, or the session broke; the text says why.
    Error(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("frame of {0} bytes exceeds {MAX_PAYLOAD}")]
    TooLarge(usize),
    #[error("frame of kind {kind} has a malformed payload of {len} bytes")]
    Payload { kind: u8, len: usize },
}

const START: u8 = 1;
const STDIN: u8 = 2;
const STDIN_EOF: u8 = 3;
const RESIZE: u8 = 4;
const STDOUT: u8 = 5;
const STDERR: u8 = 6;
const EXIT: u8 = 7;
const ERROR: u8 = 8;

/// Bytes of a frame's header: kind and payload length.
pub const HEADER: usize = 5;

impl Frame {
    /// The frame as it goes on the stream. Payloads longer than
    /// [`MAX_PAYLOAD`] are the sender's bug: split them first.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload): (u8, std::borrow::Cow<'_, [u8]>) = match self {
            Frame::Start { tty, cols, rows } => {
                let mut p = vec![u8::from(*tty)];
                p.extend(cols.to_be_bytes());
                p.extend(rows.to_be_bytes());
                (START, p.into())
            }
            Frame::Stdin(b) => (STDIN, b.as_slice().into()),
            Frame::StdinEof => (STDIN_EOF, (&[][..]).into()),
            Frame::Resize { cols, rows } => {
                let mut p = cols.to_be_bytes().to_vec();
                p.extend(rows.to_be_bytes());
                (RESIZE, p.into())
            }
            Frame::Stdout(b) => (STDOUT, b.as_slice().into()),
            Frame::Stderr(b) => (STDERR, b.as_slice().into()),
            Frame::Exit(code) => (EXIT, code.to_be_bytes().to_vec().into()),
            Frame::Error(text) => (ERROR, text.as_bytes().into()),
        };
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(HEADER + payload.len());
        out.push(kind);
        out.extend(len.to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// The payload length a header announces, checked against the limit.
    pub fn payload_len(header: [u8; HEADER]) -> Result<usize, FrameError> {
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(len));
        }
        Ok(len)
    }

    /// The frame of kind `kind` with `payload`.
    pub fn decode(kind: u8, payload: Vec<u8>) -> Result<Frame, FrameError> {
        let bad = |p: &[u8]| FrameError::Payload { kind, len: p.len() };
        let u16_at = |p: &[u8], i: usize| u16::from_be_bytes([p[i], p[i + 1]]);
        Ok(match kind {
            START if payload.len() == 5 && payload[0] <= 1 => Frame::Start {
                tty: payload[0] == 1,
                cols: u16_at(&payload, 1),
                rows: u16_at(&payload, 3),
            },
            RESIZE if payload.len() == 4 => Frame::Resize {
                cols: u16_at(&payload, 0),
                rows: u16_at(&payload, 2),
            },
            EXIT if payload.len() == 4 => Frame::Exit(i32::from_be_bytes([
                payload[0], payload[1], payload[2], payload[3],
            ])),
            STDIN_EOF if payload.is_empty() => Frame::StdinEof,
            STDIN => Frame::Stdin(payload),
            STDOUT => Frame::Stdout(payload),
            STDERR => Frame::Stderr(payload),
            ERROR => Frame::Error(String::from_utf8_lossy(&payload).into_owned()),
            START | RESIZE | EXIT | STDIN_EOF => return Err(bad(&payload)),
            other => return Err(FrameError::Kind(other)),
        })
    }
}

/// Splits a command string as a POSIX shell splits words (quotes and
/// backslashes, no expansion): ECS Exec's `command` is one string.
pub fn split_command(command: &str) -> Option<Vec<String>> {
    shlex::split(command).filter(|words| !words.is_empty())
}

/// Quotes arguments into one string that [`split_command`] gives back.
pub fn join_command<S: AsRef<str>>(words: &[S]) -> Option<String> {
    shlex::try_join(words.iter().map(AsRef::as_ref)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(f: &Frame) -> Frame {
        let bytes = f.encode();
        let header: [u8; HEADER] = bytes[..HEADER].try_into().unwrap();
        let len = Frame::payload_len(header).unwrap();
        assert_eq!(len, bytes.len() - HEADER);
        Frame::decode(bytes[0], bytes[HEADER..].to_vec()).unwrap()
    }

    fn frame() -> impl Strategy<Value = Frame> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..64);
        prop_oneof![
            (any::<bool>(), any::<u16>(), any::<u16>())
                .prop_map(|(tty, cols, rows)| Frame::Start { tty, cols, rows }),
            bytes.clone().prop_map(Frame::Stdin),
            Just(Frame::StdinEof),
            (any::<u16>(), any::<u16>()).prop_map(|(cols, rows)| Frame::Resize { cols, rows }),
            bytes.clone().prop_map(Frame::Stdout),
            bytes.prop_map(Frame::Stderr),
            any::<i32>().prop_map(Frame::Exit),
            "[a-z ]{0,20}".prop_map(Frame::Error),
        ]
    }

    proptest! {
        #[test]
        fn every_frame_decodes_to_itself(f in frame()) {
            prop_assert_eq!(roundtrip(&f), f);
        }

        #[test]
        fn any_bytes_decode_or_fail_without_panic(kind in any::<u8>(), p in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = Frame::decode(kind, p);
        }

        #[test]
        fn joined_words_split_back(words in proptest::collection::vec("[ -~]{1,8}", 1..5)) {
            let joined = join_command(&words).unwrap();
            prop_assert_eq!(split_command(&joined).unwrap(), words);
        }
    }

    #[test]
    fn malformed_frames_are_refused() {
        assert_eq!(Frame::decode(0, vec![]), Err(FrameError::Kind(0)));
        assert_eq!(
            Frame::decode(EXIT, vec![1, 2]),
            Err(FrameError::Payload { kind: EXIT, len: 2 })
        );
        assert!(Frame::decode(START, vec![2, 0, 80, 0, 24]).is_err());
        assert_eq!(
            Frame::payload_len([STDOUT, 0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::TooLarge(u32::MAX as usize))
        );
    }

    #[test]
    fn commands_split_as_a_shell_does() {
        assert_eq!(
            split_command("sh -c 'echo \"a b\"; exit 3'").unwrap(),
            ["sh", "-c", "echo \"a b\"; exit 3"]
        );
        assert_eq!(split_command("   "), None);
        assert_eq!(split_command("unclosed 'quote"), None);
    }
}
