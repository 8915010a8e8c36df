//! Unit tests of the connection timeouts, on tokio's paused
//! clock.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(start_paused = true)]
async fn idle_connection_times_out_after_idle_timeout() {
    let (client, server) = tokio::io::duplex(64);
    let activity = Arc::new(Activity::default());
    let mut io = TimedIo::new(
        server,
        activity,
        Protocol::Http1,
        Duration::from_secs(2),
        Duration::from_secs(60),
    );
    let started = Instant::now();
    let mut buf = [0u8; 8];
    let err = io.read(&mut buf).await.expect_err("times out");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(started.elapsed().as_secs(), 60);
    drop(client);
}

#[tokio::test(start_paused = true)]
async fn http2_control_frames_do_not_keep_an_idle_connection_open() {
    let (mut client, server) = tokio::io::duplex(64);
    let activity = Arc::new(Activity::default());
    let mut io = TimedIo::new(
        server,
        activity,
        Protocol::Http2,
        Duration::from_secs(2),
        Duration::from_secs(60),
    );
    let started = Instant::now();
    let pinger = tokio::spawn(async move {
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            if client.write_all(b"ping").await.is_err() {
                return;
            }
        }
    });
    let mut buf = [0u8; 8];
    let err = loop {
        match io.read(&mut buf).await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(
        started.elapsed().as_secs(),
        60,
        "pings every 20 s do not extend it"
    );
    pinger.abort();
}

#[tokio::test(start_paused = true)]
async fn first_byte_starts_the_header_clock() {
    let (mut client, server) = tokio::io::duplex(64);
    let activity = Arc::new(Activity::default());
    let mut io = TimedIo::new(
        server,
        activity,
        Protocol::Http1,
        Duration::from_secs(2),
        Duration::from_secs(60),
    );
    client.write_all(b"G").await.expect("write");
    let mut buf = [0u8; 8];
    assert_eq!(io.read(&mut buf).await.expect("first byte"), 1);
    let started = Instant::now();
    let err = io.read(&mut buf).await.expect_err("header timeout");
    assert_eq!(err.to_string(), "request header timeout");
    assert_eq!(started.elapsed().as_secs(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_request_answered_between_two_reads_ends_the_header_clock() {
    let (mut client, server) = tokio::io::duplex(64);
    let activity = Arc::new(Activity::default());
    let mut io = TimedIo::new(
        server,
        activity.clone(),
        Protocol::Http1,
        Duration::from_secs(2),
        Duration::from_secs(60),
    );
    client
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    assert!(io.read(&mut buf).await.expect("request head") > 0);
    // The request begins and is answered before the next read.
    drop(activity.begin());
    let started = Instant::now();
    let err = io.read(&mut buf).await.expect_err("idle timeout");
    assert_eq!(err.to_string(), "idle timeout");
    assert_eq!(started.elapsed().as_secs(), 60);
}

#[tokio::test(start_paused = true)]
async fn requests_in_flight_are_never_cut() {
    let (mut client, server) = tokio::io::duplex(64);
    let activity = Arc::new(Activity::default());
    let mut io = TimedIo::new(
        server,
        activity.clone(),
        Protocol::Http1,
        Duration::from_secs(2),
        Duration::from_secs(5),
    );
    let guard = activity.begin();
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 8];
        io.read(&mut buf).await.map(|n| (n, io))
    });
    tokio::time::sleep(Duration::from_secs(600)).await;
    client.write_all(b"x").await.expect("write");
    let (n, mut io) = reader.await.expect("join").expect("read after 10 minutes");
    assert_eq!(n, 1);
    drop(guard);
    // Back to idle: the idle clock applies again.
    let mut buf = [0u8; 8];
    let started = Instant::now();
    assert!(io.read(&mut buf).await.is_err());
    assert_eq!(started.elapsed().as_secs(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_write_blocked_for_the_send_timeout_fails() {
    let (_client, server) = tokio::io::duplex(16);
    let activity = Arc::new(Activity::default());
    let mut io = TimedIo::new(
        server,
        activity.clone(),
        Protocol::Http1,
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .with_send_timeout(Duration::from_secs(5));
    let _request = activity.begin();
    io.write_all(&[0u8; 16]).await.expect("fills the pipe");
    let started = Instant::now();
    let err = io.write_all(b"more").await.expect_err("send timeout");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(err.to_string().starts_with("send timeout"), "{err}");
    assert_eq!(started.elapsed().as_secs(), 5);
    assert!(activity.send_timed_out());
}

#[tokio::test(start_paused = true)]
async fn a_body_the_client_does_not_take_cuts_the_connection() {
    let (_client, server) = tokio::io::duplex(64);
    let activity = Arc::new(Activity::default());
    let mut io = TimedIo::new(
        server,
        activity.clone(),
        Protocol::Http2,
        Duration::from_secs(2),
        Duration::from_secs(600),
    )
    .with_send_timeout(Duration::from_secs(5));
    let _request = activity.begin();
    // One body waits for its backend (polled, nothing yet): never cut.
    let waiting_for_backend = activity.track_body();
    waiting_for_backend.polled();
    // Another delivered a frame and is not asked again (shut window).
    let stalled = activity.track_body();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stalled.polled();
    stalled.delivered();
    let started = Instant::now();
    let mut buf = [0u8; 8];
    let err = io.read(&mut buf).await.expect_err("send timeout");
    assert!(err.to_string().starts_with("send timeout"), "{err}");
    assert_eq!(
        started.elapsed().as_secs(),
        5,
        "counted from the last frame"
    );
    assert!(activity.send_timed_out());
}

#[tokio::test(start_paused = true)]
async fn bodies_waiting_for_their_backend_are_never_cut() {
    let (_client, server) = tokio::io::duplex(64);
    let activity = Arc::new(Activity::default());
    let mut io = TimedIo::new(
        server,
        activity.clone(),
        Protocol::Http2,
        Duration::from_secs(2),
        Duration::from_secs(600),
    )
    .with_send_timeout(Duration::from_secs(5));
    let request = activity.begin();
    let clock = activity.track_body();
    clock.polled();
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 8];
        io.read(&mut buf).await
    });
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(
        !reader.is_finished(),
        "an event stream may wait for minutes"
    );
    assert!(!activity.send_timed_out());
    reader.abort();
    drop((clock, request));
}

/// Counts the clones of a waker that are still alive.
struct CountedWaker;

impl std::task::Wake for CountedWaker {
    fn wake(self: Arc<Self>) {}
}

/// Once a connection becomes a tunnel, its timers let go of the waker of
/// the task that polled them before: that waker would otherwise hold the
/// finished connection task's memory while the tunnel lives.
#[tokio::test]
async fn a_tunnel_lets_go_of_the_connection_tasks_waker() {
    let (client, server) = tokio::io::duplex(64);
    let activity = Arc::new(Activity::default());
    let mut io = TimedIo::new(
        server,
        activity.clone(),
        Protocol::Http1,
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .with_send_timeout(Duration::from_secs(60));
    let connection_task = Arc::new(CountedWaker);
    let waker = std::task::Waker::from(connection_task.clone());
    let mut buf = [0u8; 8];
    let mut read_buf = ReadBuf::new(&mut buf);
    let polled = Pin::new(&mut io).poll_read(&mut Context::from_waker(&waker), &mut read_buf);
    assert!(polled.is_pending());
    drop(waker);
    assert!(
        Arc::strong_count(&connection_task) > 1,
        "the idle timer holds the connection task's waker"
    );

    activity.pin_busy();
    let tunnel_waker = std::task::Waker::noop();
    let polled = Pin::new(&mut io).poll_read(&mut Context::from_waker(tunnel_waker), &mut read_buf);
    assert!(polled.is_pending());
    assert_eq!(
        Arc::strong_count(&connection_task),
        1,
        "nothing holds the connection task's waker once it is a tunnel"
    );
    drop(client);
}
