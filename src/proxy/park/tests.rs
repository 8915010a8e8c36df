//! Unit tests of parking: requests on a parked connection are served as
//! on any keep-alive connection, and hyper lets go of the connection when
//! it has waited [`PARK_AFTER`] for the next request (seen as the one-byte
//! reads of the parked connection). On tokio's paused clock.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::proxy::io::{Protocol, TimedIo};

use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response};
use tokio::io::{AsyncReadExt, DuplexStream};

/// The server's end of the connection, counting the reads made while
/// parked (those with room for one byte only).
struct CountingIo {
    inner: DuplexStream,
    parked_reads: Arc<AtomicUsize>,
}

impl AsyncRead for CountingIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let parked = buf.remaining() == 1;
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if parked && result.is_ready() {
            self.parked_reads.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

impl AsyncWrite for CountingIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct Served {
    client: DuplexStream,
    parked_reads: Arc<AtomicUsize>,
    lifecycle: Lifecycle,
    server: tokio::task::JoinHandle<Result<(), ConnectionError>>,
}

/// A connection served by [`serve_http1`] whose service answers
/// `<method> <path> <body length>` after reading the whole body, marking
/// its requests in the connection's [`Activity`] as the `https` listener
/// does.
fn serve() -> Served {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let parked_reads = Arc::new(AtomicUsize::new(0));
    let activity = Arc::new(Activity::default());
    let io = CountingIo {
        inner: server,
        parked_reads: parked_reads.clone(),
    };
    let io = TimedIo::new(
        io,
        activity.clone(),
        Protocol::Http1,
        Duration::from_secs(10),
        Duration::from_secs(60),
    )
    .with_parking(PARK_AFTER);
    let lifecycle = Lifecycle::default();
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let activity = service_activity.clone();
        async move {
            let in_flight = activity.begin();
            activity.note_request_body(!request.body().is_end_stream());
            let (head, body) = request.into_parts();
            let body = body.collect().await?.to_bytes();
            let text = format!("{} {} {}", head.method, head.uri.path(), body.len());
            drop(in_flight);
            Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(text))))
        }
    });
    let server_lifecycle = lifecycle.clone();
    let server = tokio::spawn(async move {
        let builder = hyper::server::conn::http1::Builder::new();
        serve_http1(io, service, &builder, &activity, &server_lifecycle).await
    });
    Served {
        client,
        parked_reads,
        lifecycle,
        server,
    }
}

impl Served {
    /// Sends bytes as the client.
    async fn send(&mut self, bytes: &[u8]) {
        self.client.write_all(bytes).await.expect("write");
    }

    /// How the server's side ended, within 5 s (`what` says why it should
    /// have by then).
    async fn ended(&mut self, what: &str) -> Result<(), ConnectionError> {
        tokio::time::timeout(Duration::from_secs(5), &mut self.server)
            .await
            .expect(what)
            .expect("task")
    }
}

/// Reads one response (head and a `Content-Length` body) from `client`.
async fn read_response(client: &mut DuplexStream) -> String {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = client.read(&mut byte).await.expect("read");
        assert_eq!(n, 1, "connection closed mid-response: {seen:?}");
        seen.push(byte[0]);
        if seen.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&seen).to_string();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    let mut body = vec![0u8; length];
    client.read_exact(&mut body).await.expect("body");
    format!("{head}{}", String::from_utf8_lossy(&body))
}

#[tokio::test(start_paused = true)]
async fn keep_alive_requests_are_served_with_the_connection_parked_between_them() {
    let mut served = serve();
    for path in ["/a", "/b", "/c"] {
        tokio::time::sleep(PARK_AFTER * 4).await;
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
        served.send(request.as_bytes()).await;
        let response = read_response(&mut served.client).await;
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.ends_with(&format!("GET {path} 0")), "{response}");
        assert!(!response.contains("connection: close"), "{response}");
    }
    assert_eq!(
        served.parked_reads.load(Ordering::Relaxed),
        3,
        "parked before each of the three requests"
    );
    drop(served.client);
    let ended = served.server.await.expect("task");
    assert!(
        ended.is_ok(),
        "a client closing an idle connection is no error: {ended:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn back_to_back_requests_are_served_without_parking() {
    let mut served = serve();
    for path in ["/a", "/b", "/c"] {
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
        served.send(request.as_bytes()).await;
        let response = read_response(&mut served.client).await;
        assert!(response.ends_with(&format!("GET {path} 0")), "{response}");
        tokio::time::sleep(PARK_AFTER / 5).await;
    }
    assert_eq!(
        served.parked_reads.load(Ordering::Relaxed),
        1,
        "only the new connection's first byte was read parked"
    );
    tokio::time::sleep(PARK_AFTER * 2).await;
    served.send(b"GET /d HTTP/1.1\r\nhost: x\r\n\r\n").await;
    read_response(&mut served.client).await;
    assert_eq!(
        served.parked_reads.load(Ordering::Relaxed),
        2,
        "parked once it waited PARK_AFTER"
    );
}

#[tokio::test(start_paused = true)]
async fn a_parked_connection_is_closed_at_its_idle_timeout() {
    let mut served = serve();
    served.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    read_response(&mut served.client).await;
    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    served.client.read_to_end(&mut rest).await.expect("eof");
    assert!(rest.is_empty(), "{rest:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(59) && waited <= Duration::from_secs(61),
        "closed at the 60 s idle timeout, parking or not: {waited:?}"
    );
    let ended = served.server.await.expect("task");
    assert!(
        ended.is_err(),
        "an idle timeout ends the connection with TimedOut"
    );
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let mut served = serve();
    let two = "GET /one HTTP/1.1\r\nhost: x\r\n\r\nPOST /two HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc";
    served.send(two.as_bytes()).await;
    let first = read_response(&mut served.client).await;
    let second = read_response(&mut served.client).await;
    assert!(first.ends_with("GET /one 0"), "{first}");
    assert!(second.ends_with("POST /two 3"), "{second}");
}

#[tokio::test(start_paused = true)]
async fn a_head_and_a_body_split_across_writes_are_put_back_together() {
    let mut served = serve();
    let parts: [&[u8]; 5] = [
        b"PO",
        b"ST /split HTTP/1.1\r\nho",
        b"st: x\r\ncontent-length: 6\r\n\r\n",
        b"abc",
        b"def",
    ];
    // Pauses longer than PARK_AFTER between the pieces: whatever hyper
    // read of a head must survive being parked (it is not parked while a
    // head is incomplete, but the pieces still cross new connections).
    for part in parts {
        served.send(part).await;
        tokio::time::sleep(PARK_AFTER * 2).await;
    }
    let response = read_response(&mut served.client).await;
    assert!(response.ends_with("POST /split 6"), "{response}");
    // And the connection goes on.
    served.send(b"GET /next HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let next = read_response(&mut served.client).await;
    assert!(next.ends_with("GET /next 0"), "{next}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_a_parked_connection_at_once() {
    let mut served = serve();
    served.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    read_response(&mut served.client).await;
    tokio::time::sleep(PARK_AFTER * 2).await;
    assert_eq!(served.parked_reads.load(Ordering::Relaxed), 1);
    served.lifecycle.shutdown.cancel();
    let ended = served.ended("closed at once").await;
    assert!(ended.is_ok(), "{ended:?}");
    let mut rest = Vec::new();
    served.client.read_to_end(&mut rest).await.expect("eof");
    assert!(rest.is_empty(), "nothing more is sent: {rest:?}");
}

#[tokio::test]
async fn shutdown_lets_a_request_under_way_finish_with_connection_close() {
    let mut served = serve();
    // The head is complete, the body is not: the request is under way.
    served
        .send(b"POST /slow HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nab")
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    served.lifecycle.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    served.send(b"cd").await;
    let response = read_response(&mut served.client).await;
    assert!(response.contains("connection: close"), "{response}");
    assert!(response.ends_with("POST /slow 4"), "{response}");
    let ended = served.ended("ends after the request").await;
    assert!(ended.is_ok(), "{ended:?}");
}

#[tokio::test]
async fn a_malformed_request_gets_hyper_s_400_after_parking() {
    let mut served = serve();
    served.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    read_response(&mut served.client).await;
    served.send(b"NOT A REQUEST\r\n\r\n").await;
    let mut rest = Vec::new();
    served.client.read_to_end(&mut rest).await.expect("eof");
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.1 400"), "{rest}");
    let ended = served.server.await.expect("task");
    assert!(ended.is_err(), "hyper's parse error is the connection's");
}
