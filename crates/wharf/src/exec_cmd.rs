//! `wharf exec`: runs a command in a task's container through the control
//! plane and the agent of the task's host (ECS Exec), as `docker exec`
//! does locally: output and exit code passed back, `-i` for input, `-t`
//! for a TTY (the local terminal in raw mode, its size followed).

use anyhow::{bail, Context};
use std::os::fd::AsFd;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use wharf_agent::client::ControlClient;
use wharf_agent::exec::{read_frame, write_frame};
use wharf_core::exec_protocol::{join_command, Frame, UPGRADE};
use wharf_model::ecs;

/// What `wharf exec` exits with when the command could not run at all
/// (as `docker exec` does when it cannot invoke the command).
const CANNOT_RUN: i32 = 126;

pub struct Exec<'a> {
    pub cluster: &'a str,
    pub task: &'a str,
    pub container: Option<&'a str>,
    pub interactive: bool,
    pub tty: bool,
    pub command: &'a [String],
}

/// The local terminal in raw mode while it lives; restored by [`RawMode::restore`].
struct RawMode(Option<rustix::termios::Termios>);

impl RawMode {
    fn enter(on: bool) -> RawMode {
        let stdin = std::io::stdin();
        if !on || !rustix::termios::isatty(stdin.as_fd()) {
            return RawMode(None);
        }
        let Ok(orig) = rustix::termios::tcgetattr(stdin.as_fd()) else {
            return RawMode(None);
        };
        let mut raw = orig.clone();
        raw.make_raw();
        let set =
            rustix::termios::tcsetattr(stdin.as_fd(), rustix::termios::OptionalActions::Now, &raw);
        RawMode(set.ok().map(|_| orig))
    }

    fn restore(&self) {
        if let Some(orig) = &self.0 {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin().as_fd(),
                rustix::termios::OptionalActions::Now,
                orig,
            );
        }
    }
}

/// The local terminal's size (columns, rows), or 80×24 when there is none.
fn terminal_size() -> (u16, u16) {
    let fd = std::io::stdout();
    match rustix::termios::tcgetwinsize(fd.as_fd()) {
        Ok(w) if w.ws_col > 0 && w.ws_row > 0 => (w.ws_col, w.ws_row),
        _ => (80, 24),
    }
}

/// Runs the command; the exit code is the command's.
pub async fn run(client: &ControlClient, e: Exec<'_>) -> anyhow::Result<i32> {
    let command = join_command(e.command).context("the command holds a NUL byte")?;
    let resp: ecs::ExecuteCommandResponse = client
        .call(
            &format!("{}.ExecuteCommand", wharf_model::ecs::TARGET_PREFIX),
            &ecs::ExecuteCommandRequest {
                cluster: Some(e.cluster.to_string()),
                container: e.container.map(str::to_string),
                command,
                interactive: true,
                task: e.task.to_string(),
            },
        )
        .await?;
    let session = resp.session.context("ExecuteCommand answered no session")?;
    let (Some(url), Some(token)) = (session.stream_url, session.token_value) else {
        bail!("ExecuteCommand answered a session without a stream URL or token");
    };
    // The stream is opened where the API was reached (the URL's host is
    // the one the server saw, which a proxy may have rewritten).
    let path = url
        .parse::<axum::http::Uri>()
        .ok()
        .and_then(|u| u.path_and_query().map(|p| p.as_str().to_string()))
        .with_context(|| format!("bad stream URL {url}"))?;
    let stream = client.upgrade(&path, UPGRADE, &token).await?;
    let (mut rd, mut wr) = tokio::io::split(stream);

    let (cols, rows) = terminal_size();
    let (tx, mut rx) = mpsc::channel::<Frame>(64);
    tx.send(Frame::Start {
        tty: e.tty,
        cols,
        rows,
    })
    .await?;
    let writer = tokio::spawn(async move {
        while let Some(f) = rx.recv().await {
            if write_frame(&mut wr, &f).await.is_err() {
                break;
            }
        }
    });
    if e.interactive {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 16 << 10];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(Frame::Stdin(buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = tx.send(Frame::StdinEof).await;
        });
    } else {
        tx.send(Frame::StdinEof).await?;
    }
    if e.tty {
        let tx = tx.clone();
        if let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        {
            tokio::spawn(async move {
                while winch.recv().await.is_some() {
                    let (cols, rows) = terminal_size();
                    if tx.send(Frame::Resize { cols, rows }).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
    drop(tx);

    let raw = RawMode::enter(e.tty);
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let outcome = loop {
        match read_frame(&mut rd).await {
            Ok(Some(Frame::Stdout(b))) => {
                stdout.write_all(&b).await?;
                stdout.flush().await?;
            }
            Ok(Some(Frame::Stderr(b))) => {
                stderr.write_all(&b).await?;
                stderr.flush().await?;
            }
            Ok(Some(Frame::Exit(code))) => break Ok(code),
            Ok(Some(Frame::Error(why))) => break Err(why),
            Ok(Some(_)) => {}
            Ok(None) => break Err("the session ended before the command did".into()),
            Err(err) => break Err(format!("the session broke: {err}")),
        }
    };
    raw.restore();
    writer.abort();
    match outcome {
        Ok(code) => Ok(code),
        Err(why) => {
            eprintln!("wharf exec: {why}");
            Ok(CANNOT_RUN)
        }
    }
}
