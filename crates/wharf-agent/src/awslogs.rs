//! The `awslogs` log driver: each container's stdout and stderr, read from
//! Docker, shipped with PutLogEvents to the CloudWatch-Logs-compatible API
//! into the stream `PREFIX/CONTAINER/TASK_ID`, as ECS names it.
//!
//! Lines are read from Docker's own log (json-file), so the container never
//! waits on us. A checkpoint per container (the timestamp of the last line
//! shipped and how many lines carried it) is written after every accepted
//! batch: a restarted agent resumes exactly there, with nothing lost or sent
//! twice. In `non-blocking` mode at most `max-buffer-size` bytes wait in
//! memory while the logs service is unreachable; more is dropped and
//! counted. In the default blocking mode nothing is dropped: reading pauses
//! until the service takes the backlog.

use crate::client::{ClientError, ControlClient};
use crate::runtime::{LogLine, Runtime};
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wharf_model::{ecs, logs};

/// CloudWatch Logs' per-batch limits.
const MAX_BATCH_EVENTS: usize = 10_000;
const MAX_BATCH_BYTES: usize = 1_048_576;
const EVENT_OVERHEAD: usize = 26;
/// A line longer than CloudWatch Logs takes (256 KiB with overhead) is cut.
const MAX_EVENT_BYTES: usize = 262_144 - EVENT_OVERHEAD;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub group: String,
    /// `PREFIX/CONTAINER/TASK_ID`; without a prefix, the container's ID.
    pub stream_prefix: Option<String>,
    pub create_group: bool,
    pub blocking: bool,
    pub max_buffer_bytes: usize,
    /// `awslogs-region`: where the group lives (None: the task's region).
    pub region: Option<String>,
}

impl Config {
    /// `client`, signing for the group's region: `awslogs-region`, else
    /// the region of the task (its ARN names it).
    pub fn client_for(&self, client: &ControlClient, task_arn: &str) -> ControlClient {
        let region = match &self.region {
            Some(r) => r.as_str(),
            None => wharf_core::arn::region_of(task_arn),
        };
        client.in_region(region)
    }

    pub fn stream(&self, container: &str, task_id: &str, container_id: &str) -> String {
        match &self.stream_prefix {
            Some(p) => format!("{p}/{container}/{task_id}"),
            None => container_id.to_string(),
        }
    }
}

/// `1m`, `512k`, `4mb`, `1048576` → bytes.
fn parse_size(s: &str) -> Option<usize> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (n, unit) = match t.char_indices().last()? {
        (i, 'k') => (&t[..i], 1 << 10),
        (i, 'm') => (&t[..i], 1 << 20),
        (i, 'g') => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    n.trim().parse::<usize>().ok().map(|n| n * unit)
}

/// The container's awslogs configuration, if it uses the driver.
pub fn config(def: &ecs::ContainerDefinition) -> Result<Option<Config>, String> {
    let Some(lc) = &def.log_configuration else {
        return Ok(None);
    };
    if lc.log_driver != ecs::LogDriver::Awslogs {
        return Ok(None);
    }
    let opts = lc.options.clone().unwrap_or_default();
    let group = opts
        .get("awslogs-group")
        .filter(|g| !g.is_empty())
        .cloned()
        .ok_or("the awslogs log driver needs the option awslogs-group")?;
    let blocking = match opts.get("mode").map(String::as_str) {
        None | Some("blocking") => true,
        Some("non-blocking") => false,
        Some(other) => return Err(format!("unknown awslogs mode '{other}'")),
    };
    let max_buffer_bytes = match opts.get("max-buffer-size") {
        None => 1 << 20,
        Some(s) => parse_size(s).ok_or_else(|| format!("invalid max-buffer-size '{s}'"))?,
    };
    Ok(Some(Config {
        group,
        stream_prefix: opts
            .get("awslogs-stream-prefix")
            .filter(|p| !p.is_empty())
            .cloned(),
        create_group: opts.get("awslogs-create-group").map(String::as_str) == Some("true"),
        blocking,
        max_buffer_bytes,
        region: match opts.get("awslogs-region").filter(|r| !r.is_empty()) {
            Some(r) if !wharf_core::arn::valid_region(r) => {
                return Err(format!("invalid awslogs-region '{r}'"))
            }
            r => r.cloned(),
        },
    }))
}

fn already_exists(e: &ClientError) -> bool {
    matches!(e, ClientError::Api { err, .. } if err.code == "ResourceAlreadyExistsException")
}

/// Creates the stream (and the group, when `awslogs-create-group` says so)
/// before the container starts; the error is the task's start failure, in
/// the words the ECS agent uses.
pub async fn prepare(client: &ControlClient, cfg: &Config, stream: &str) -> Result<(), String> {
    let fail = |e: ClientError| {
        let detail = match &e {
            ClientError::Api { err, .. } => format!("{}: {}", err.code, err.message),
            other => other.to_string(),
        };
        format!("ResourceInitializationError: failed to validate logger args: create stream has been retried 1 times: failed to create Cloudwatch log stream: {detail}")
    };
    if cfg.create_group {
        let r: Result<serde_json::Value, _> = client
            .call(
                "Logs_20140328.CreateLogGroup",
                &logs::CreateLogGroupRequest {
                    log_group_name: cfg.group.clone(),
                    ..Default::default()
                },
            )
            .await;
        match r {
            Ok(_) => {}
            Err(e) if already_exists(&e) => {}
            Err(e) => return Err(fail(e)),
        }
    }
    let r: Result<serde_json::Value, _> = client
        .call(
            "Logs_20140328.CreateLogStream",
            &logs::CreateLogStreamRequest {
                log_group_name: cfg.group.clone(),
                log_stream_name: stream.to_string(),
            },
        )
        .await;
    match r {
        Ok(_) => Ok(()),
        Err(e) if already_exists(&e) => Ok(()),
        Err(e) => Err(fail(e)),
    }
}

/// Where shipping of one container stands: the last line shipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub at_nanos: i64,
    /// How many lines with exactly `at_nanos` were shipped.
    pub same: u64,
}

impl Checkpoint {
    pub fn load(path: &Path) -> Checkpoint {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| {
                let (a, b) = s.trim().split_once(' ')?;
                Some(Checkpoint {
                    at_nanos: a.parse().ok()?,
                    same: b.parse().ok()?,
                })
            })
            .unwrap_or_default()
    }

    /// Written to a temporary file and renamed: a crash leaves the old or the new.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{} {}\n", self.at_nanos, self.same))?;
        std::fs::rename(tmp, path)
    }

    /// Moves past `line`.
    fn advance(&mut self, line: &LogLine) {
        if line.at_nanos == self.at_nanos {
            self.same += 1;
        } else {
            *self = Checkpoint {
                at_nanos: line.at_nanos,
                same: 1,
            };
        }
    }
}

/// Skips what a checkpoint says was shipped already.
struct Resume {
    at: Checkpoint,
    seen_same: u64,
}

impl Resume {
    fn fresh(&mut self, line: &LogLine) -> bool {
        if line.at_nanos < self.at.at_nanos {
            return false;
        }
        if line.at_nanos == self.at.at_nanos && self.seen_same < self.at.same {
            self.seen_same += 1;
            return false;
        }
        true
    }
}

/// Counts of one shipper's work, for logs and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub shipped: AtomicUsize,
    pub dropped: AtomicUsize,
}

pub fn checkpoint_path(state_dir: &Path, container_id: &str) -> PathBuf {
    state_dir.join("logs").join(format!("{container_id}.pos"))
}

/// Ships one container's output until it has stopped and everything is sent.
pub async fn ship(
    client: ControlClient,
    runtime: Arc<dyn Runtime>,
    container_id: String,
    cfg: Config,
    stream: String,
    checkpoint: PathBuf,
    stats: Arc<Stats>,
) {
    if let Some(dir) = checkpoint.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let start = Checkpoint::load(&checkpoint);
    let mut resume = Resume {
        at: start,
        seen_same: 0,
    };
    // Blocking: a bounded channel, and the reader waits when it is full.
    // Non-blocking: a byte budget, and what exceeds it is dropped.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<LogLine>(
        if cfg.blocking {
            // Room for a few batches, so reading Docker overlaps sending.
            4 * MAX_BATCH_EVENTS
        } else {
            usize::MAX >> 4
        }
        .min(1 << 20),
    );
    let buffered = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (buffered, stats, cfg) = (buffered.clone(), stats.clone(), cfg.clone());
        // A second early: see below.
        let mut lines = runtime.logs(&container_id, (start.at_nanos - 1_000_000_000).max(0));
        async move {
            // Docker stamps stdout and stderr in separate goroutines, so file
            // order and timestamp order can differ by a hair. Lines are kept
            // in file order with non-decreasing timestamps (CloudWatch Logs
            // wants a batch in order, and the checkpoint needs a monotonic
            // position); reading from a second before the checkpoint means a
            // straggler would have to be a second out of order to be missed.
            let mut high = 0i64;
            while let Some(item) = lines.next().await {
                let Ok(mut line) = item else { break };
                line.at_nanos = line.at_nanos.max(high);
                high = line.at_nanos;
                if !resume.fresh(&line) {
                    continue;
                }
                if line.text.len() > MAX_EVENT_BYTES {
                    let mut cut = MAX_EVENT_BYTES;
                    while !line.text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    line.text.truncate(cut);
                }
                let size = line.text.len() + EVENT_OVERHEAD;
                if cfg.blocking {
                    buffered.fetch_add(size, Ordering::Relaxed);
                    if tx.send(line).await.is_err() {
                        break;
                    }
                } else if buffered.load(Ordering::Relaxed) + size > cfg.max_buffer_bytes {
                    let n = stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_power_of_two() {
                        tracing::warn!(
                            dropped = n,
                            "awslogs buffer full (non-blocking mode): dropping lines"
                        );
                    }
                } else {
                    buffered.fetch_add(size, Ordering::Relaxed);
                    if tx.try_send(line).is_err() {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    };
    let sender = async {
        let mut at = start;
        let mut sent = |batch: Vec<LogLine>, bytes: usize| {
            for l in &batch {
                at.advance(l);
            }
            if let Err(e) = at.save(&checkpoint) {
                tracing::warn!(error = %e, "cannot write the awslogs checkpoint");
            }
            stats.shipped.fetch_add(batch.len(), Ordering::Relaxed);
            buffered.fetch_sub(bytes, Ordering::Relaxed);
        };
        while let Some(first) = rx.recv().await {
            let mut bytes = first.text.len() + EVENT_OVERHEAD;
            let mut batch = vec![first];
            // Gather what arrives within a moment, up to the batch limits.
            let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
            while batch.len() < MAX_BATCH_EVENTS {
                let Ok(Some(l)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
                    break;
                };
                let size = l.text.len() + EVENT_OVERHEAD;
                if bytes + size > MAX_BATCH_BYTES {
                    // Full: send it, and this line starts the next batch.
                    put(&client, &cfg.group, &stream, &batch).await;
                    sent(std::mem::replace(&mut batch, vec![l]), bytes);
                    bytes = size;
                } else {
                    bytes += size;
                    batch.push(l);
                }
            }
            put(&client, &cfg.group, &stream, &batch).await;
            sent(batch, bytes);
        }
    };
    tokio::join!(reader, sender);
}

/// Creates log stream `stream` of `group` (one that exists is fine).
pub(crate) async fn create_stream(
    client: &ControlClient,
    group: &str,
    stream: &str,
) -> Result<(), ClientError> {
    let r: Result<serde_json::Value, _> = client
        .call(
            "Logs_20140328.CreateLogStream",
            &logs::CreateLogStreamRequest {
                log_group_name: group.to_string(),
                log_stream_name: stream.to_string(),
            },
        )
        .await;
    match r {
        Err(e) if !already_exists(&e) => Err(e),
        _ => Ok(()),
    }
}

/// Puts `lines` (in time order, none longer than an event may be) in
/// batches within CloudWatch Logs' limits.
pub(crate) async fn put_all(client: &ControlClient, group: &str, stream: &str, lines: &[LogLine]) {
    let (mut start, mut bytes) = (0, 0);
    for (i, l) in lines.iter().enumerate() {
        let size = l.text.len() + EVENT_OVERHEAD;
        if i > start && (i - start >= MAX_BATCH_EVENTS || bytes + size > MAX_BATCH_BYTES) {
            put(client, group, stream, &lines[start..i]).await;
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < lines.len() {
        put(client, group, stream, &lines[start..]).await;
    }
}

/// PutLogEvents until it is accepted: the service being away only delays.
/// A batch the service refuses outright (a client error) is dropped with a
/// warning rather than retried for ever.
async fn put(client: &ControlClient, group: &str, stream: &str, batch: &[LogLine]) {
    let req = logs::PutLogEventsRequest {
        log_group_name: group.to_string(),
        log_stream_name: stream.to_string(),
        log_events: batch
            .iter()
            .map(|l| logs::InputLogEvent {
                timestamp: l.at_nanos.div_euclid(1_000_000),
                message: l.text.clone(),
            })
            .collect(),
        ..Default::default()
    };
    let mut wait = Duration::from_millis(200);
    loop {
        let r: Result<logs::PutLogEventsResponse, _> =
            client.call("Logs_20140328.PutLogEvents", &req).await;
        match r {
            Ok(resp) => {
                if let Some(rej) = resp.rejected_log_events_info {
                    tracing::warn!(?rej, %group, %stream, "CloudWatch Logs rejected some events");
                }
                return;
            }
            Err(ClientError::Api { err, .. })
                if err.status < 500 && !err.code.contains("Throttl") =>
            {
                tracing::error!(code = %err.code, message = %err.message, %group, %stream, lines = batch.len(),
                    "CloudWatch Logs refused a batch; dropping it");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, %group, %stream, "PutLogEvents failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn def(opts: &[(&str, &str)]) -> ecs::ContainerDefinition {
        ecs::ContainerDefinition {
            name: Some("app".into()),
            log_configuration: Some(ecs::LogConfiguration {
                log_driver: ecs::LogDriver::Awslogs,
                options: Some(
                    opts.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<BTreeMap<_, _>>(),
                ),
                secret_options: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn reads_the_driver_options() {
        let c = config(&def(&[
            ("awslogs-group", "/ecs/web"),
            ("awslogs-stream-prefix", "web"),
            ("awslogs-create-group", "true"),
            ("mode", "non-blocking"),
            ("max-buffer-size", "4m"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.stream("app", "abc", "cid"), "web/app/abc");
        assert!(c.create_group && !c.blocking);
        assert_eq!(c.max_buffer_bytes, 4 << 20);
        let plain = config(&def(&[("awslogs-group", "g")])).unwrap().unwrap();
        assert!(plain.blocking && !plain.create_group);
        assert_eq!(plain.stream("app", "abc", "cid"), "cid");
        assert!(config(&def(&[])).is_err());
        assert!(config(&def(&[("awslogs-group", "g"), ("mode", "fast")])).is_err());
        assert!(config(&ecs::ContainerDefinition::default())
            .unwrap()
            .is_none());
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("1mb"), Some(1 << 20));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn resumes_after_exactly_what_was_shipped() {
        let line = |at, t: &str| LogLine {
            at_nanos: at,
            stderr: false,
            text: t.into(),
        };
        let lines = [
            line(1, "a"),
            line(2, "b"),
            line(2, "c"),
            line(2, "d"),
            line(3, "e"),
        ];
        // Shipped a, b, c: the checkpoint is (2, 2).
        let mut at = Checkpoint::default();
        for l in &lines[..3] {
            at.advance(l);
        }
        assert_eq!(
            at,
            Checkpoint {
                at_nanos: 2,
                same: 2
            }
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pos");
        at.save(&path).unwrap();
        let mut resume = Resume {
            at: Checkpoint::load(&path),
            seen_same: 0,
        };
        let rest: Vec<&str> = lines
            .iter()
            .filter(|l| resume.fresh(l))
            .map(|l| l.text.as_str())
            .collect();
        assert_eq!(rest, ["d", "e"]);
        assert_eq!(
            Checkpoint::load(&dir.path().join("none")),
            Checkpoint::default()
        );
    }
}
