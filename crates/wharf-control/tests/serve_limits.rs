//! The listener's bounds, on a real socket: a client that dribbles its
//! headers is cut off at the header deadline and meanwhile holds only its
//! own connection; a request past its deadline gets an AWS error; API
//! requests in flight are capped apart from agents' long-polls.

use axum::routing::post;
use axum::Router;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wharf_control::serve::{serve, Limits};

async fn start(app: Router, limits: Limits) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, app, None, limits, std::future::pending()));
    addr
}

/// A slow handler: sleeps as long as the request's body says (ms).
fn app() -> Router {
    Router::new().route(
        "/",
        post(|body: String| async move {
            let ms: u64 = body.trim().parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            "done"
        }),
    )
}

/// Sends a whole request; the status code and body of the answer.
async fn request(addr: std::net::SocketAddr, target: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: {target}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_and_blocks_no_one_meanwhile() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(1500),
        ..Limits::default()
    };
    let addr = start(app(), limits).await;
    let mut slow = vec![];
    for _ in 0..50 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    let t = Instant::now();
    for _ in 0..5 {
        assert_eq!(request(addr, "T.Op", "0").await.0, 200);
    }
    assert!(
        t.elapsed() < Duration::from_millis(1200),
        "{:?}",
        t.elapsed()
    );
    // Dribbling a byte at a time does not extend the deadline.
    let t = Instant::now();
    let mut buf = [0u8; 256];
    let s = &mut slow[0];
    loop {
        if s.write_all(b"X").await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => break, // an error response, then the close
            Err(_) => {}
        }
        assert!(t.elapsed() < Duration::from_secs(6), "never cut off");
    }
    assert!(
        t.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_an_aws_error() {
    let limits = Limits {
        request_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let addr = start(app(), limits).await;
    let (status, body) = request(addr, "T.Op", "2000").await;
    assert_eq!(status, 408);
    assert!(body.contains("RequestTimeoutException"), "{body}");
    assert_eq!(request(addr, "T.Op", "0").await.0, 200);
}

#[tokio::test]
async fn requests_in_flight_are_capped_apart_from_long_polls() {
    let limits = Limits {
        max_requests: 1,
        ..Limits::default()
    };
    let addr = start(app(), limits).await;
    // One slow API request holds the only API slot...
    let busy = tokio::spawn(request(addr, "T.Op", "1200"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...an agent's long-poll is not held up by it...
    let t = Instant::now();
    assert_eq!(request(addr, "WharfAgent_v1.Poll", "0").await.0, 200);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    // ...and the next API request waits for the slot, then is served.
    let t = Instant::now();
    assert_eq!(request(addr, "T.Op", "0").await.0, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(busy.await.unwrap().0, 200);
}

#[tokio::test]
async fn an_oversized_head_is_refused() {
    let addr = start(app(), Limits::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\nContent-Length: 1\r\n\r\n0",
        "a".repeat(100 << 10)
    );
    let _ = s.write_all(head.as_bytes()).await;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    assert!(
        out.starts_with("HTTP/1.1 431"),
        "{}",
        &out[..out.len().min(60)]
    );
}
