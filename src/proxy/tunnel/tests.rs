use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;

/// A tunnel between two pipes with a 30 s idle timeout and no shutdown.
fn spawn_tunnel(a: DuplexStream, b: DuplexStream) -> JoinHandle<(Transferred, TunnelEnd)> {
    tokio::spawn(copy_with_idle_timeout(
        a,
        b,
        Duration::from_secs(30),
        std::future::pending(),
    ))
}

#[tokio::test(start_paused = true)]
async fn tunnel_idle_timeout_and_half_close() {
    let (mut a_outer, a_inner) = tokio::io::duplex(1024);
    let (b_inner, mut b_outer) = tokio::io::duplex(1024);
    let tunnel = spawn_tunnel(a_inner, b_inner);
    a_outer.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    b_outer.read_exact(&mut buf).await.expect("through");
    assert_eq!(&buf, b"ping");
    // Half-close from the client: the backend sees EOF, and can still answer.
    a_outer.shutdown().await.expect("shutdown");
    assert_eq!(b_outer.read(&mut buf).await.expect("eof"), 0);
    b_outer.write_all(b"pong").await.expect("answer");
    a_outer.read_exact(&mut buf).await.expect("answer arrives");
    assert_eq!(&buf, b"pong");
    drop(b_outer);
    let (transferred, end) = tunnel.await.expect("join");
    assert!(
        matches!(
            end,
            TunnelEnd::Closed {
                first: Side::Client,
                ..
            }
        ),
        "the client closed first: {end:?}"
    );
    assert_eq!(end.describe(), "client_closed");
    assert_eq!(transferred, Transferred { up: 4, down: 4 });

    let (_a_outer, a_inner) = tokio::io::duplex(1024);
    let (b_inner, _b_outer) = tokio::io::duplex(1024);
    let started = Instant::now();
    let (_, end) = copy_with_idle_timeout(
        a_inner,
        b_inner,
        Duration::from_secs(30),
        std::future::pending(),
    )
    .await;
    assert!(matches!(end, TunnelEnd::IdleTimeout), "{end:?}");
    assert_eq!(end.describe(), "idle_timeout");
    assert_eq!(started.elapsed().as_secs(), 30);

    // Bytes that moved before the idle timeout are counted.
    let (mut a_outer, a_inner) = tokio::io::duplex(1024);
    let (b_inner, mut b_outer) = tokio::io::duplex(1024);
    let tunnel = spawn_tunnel(a_inner, b_inner);
    a_outer.write_all(b"REGISTER").await.expect("write");
    let mut buf = [0u8; 8];
    b_outer.read_exact(&mut buf).await.expect("through");
    b_outer.write_all(b"200").await.expect("answer");
    let mut answer = [0u8; 3];
    a_outer
        .read_exact(&mut answer)
        .await
        .expect("answer arrives");
    let (transferred, end) = tunnel.await.expect("join");
    assert!(matches!(end, TunnelEnd::IdleTimeout), "{end:?}");
    assert_eq!(transferred, Transferred { up: 8, down: 3 });
}

/// A megabyte each way through 64-byte pipes: every write is partial, so
/// the unwritten remainder is kept and passed on in order.
#[tokio::test]
async fn backpressure_keeps_every_byte_in_order() {
    let (mut a_outer, a_inner) = tokio::io::duplex(64);
    let (b_inner, mut b_outer) = tokio::io::duplex(64);
    let tunnel = spawn_tunnel(a_inner, b_inner);
    let up: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let down: Vec<u8> = (0..1_000_000u32).map(|i| (i % 241) as u8).collect();
    let (mut a_read, mut a_write) = tokio::io::split(a_outer);
    let (mut b_read, mut b_write) = tokio::io::split(b_outer);
    let sent_up = up.clone();
    let sent_down = down.clone();
    let (got_up, got_down, (), ()) = tokio::join!(
        async {
            let mut got = Vec::new();
            b_read.read_to_end(&mut got).await.expect("read up");
            got
        },
        async {
            let mut got = Vec::new();
            a_read.read_to_end(&mut got).await.expect("read down");
            got
        },
        async {
            a_write.write_all(&sent_up).await.expect("write up");
            a_write.shutdown().await.expect("shutdown up");
        },
        async {
            b_write.write_all(&sent_down).await.expect("write down");
            b_write.shutdown().await.expect("shutdown down");
        },
    );
    assert!(got_up == up, "the bytes up arrive whole and in order");
    assert!(got_down == down, "the bytes down arrive whole and in order");
    a_outer = a_read.unsplit(a_write);
    b_outer = b_read.unsplit(b_write);
    let (transferred, end) = tunnel.await.expect("join");
    assert!(matches!(end, TunnelEnd::Closed { .. }), "{end:?}");
    assert_eq!(
        transferred,
        Transferred {
            up: 1_000_000,
            down: 1_000_000
        }
    );
    drop((a_outer, b_outer));
}

/// A writer that takes `accept` bytes per call, then pushes back.
struct Stingy {
    taken: Vec<u8>,
    accept: usize,
}

impl AsyncWrite for Stingy {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.accept == 0 {
            return Poll::Pending;
        }
        let n = buf.len().min(self.accept);
        self.accept -= n;
        self.taken.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Only the bytes the writer did not take are kept, and only until they
/// are written: a direction with nothing in flight holds no buffer.
#[tokio::test]
async fn a_direction_holds_a_buffer_only_while_its_writer_pushes_back() {
    let (mut outer, mut inner) = tokio::io::duplex(1024);
    let mut writer = Stingy {
        taken: Vec::new(),
        accept: 3,
    };
    let mut direction = Direction::default();
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    outer.write_all(b"INVITE sip:bob").await.expect("write");
    assert!(
        direction
            .poll_copy(&mut cx, &mut inner, &mut writer)
            .is_pending()
    );
    assert_eq!(writer.taken, b"INV");
    let held = direction.unwritten.as_ref().map(|u| u.bytes.len());
    assert_eq!(held, Some(11), "the 11 bytes not taken are kept");

    writer.accept = usize::MAX;
    assert!(
        direction
            .poll_copy(&mut cx, &mut inner, &mut writer)
            .is_pending()
    );
    assert_eq!(writer.taken, b"INVITE sip:bob");
    assert!(direction.unwritten.is_none(), "nothing held once written");

    drop(outer);
    assert!(matches!(
        direction.poll_copy(&mut cx, &mut inner, &mut writer),
        Poll::Ready(Ok(()))
    ));
}

/// The backend closing first is told apart from the client closing first,
/// and the shutdown timeout from an error (the access log's `end`).
#[tokio::test(start_paused = true)]
async fn the_end_names_who_closed_first_and_the_shutdown() {
    let (mut a_outer, a_inner) = tokio::io::duplex(1024);
    let (b_inner, mut b_outer) = tokio::io::duplex(1024);
    let tunnel = spawn_tunnel(a_inner, b_inner);
    b_outer.write_all(b"bye").await.expect("write");
    b_outer.shutdown().await.expect("backend closes");
    let mut got = Vec::new();
    a_outer
        .read_to_end(&mut got)
        .await
        .expect("the client sees the end");
    assert_eq!(got, b"bye");
    a_outer.shutdown().await.expect("client closes too");
    let (transferred, end) = tunnel.await.expect("join");
    assert_eq!(end.describe(), "backend_closed", "{end:?}");
    assert_eq!(transferred, Transferred { up: 0, down: 3 });

    let (_a_outer, a_inner) = tokio::io::duplex(1024);
    let (b_inner, _b_outer) = tokio::io::duplex(1024);
    let (_, end) = copy_with_idle_timeout(
        a_inner,
        b_inner,
        Duration::from_secs(30),
        tokio::time::sleep(Duration::from_secs(1)),
    )
    .await;
    assert!(matches!(end, TunnelEnd::Shutdown), "{end:?}");
    assert_eq!(end.describe(), "shutdown");
}
