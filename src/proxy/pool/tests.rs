use std::sync::atomic::AtomicUsize;

use http_body_util::{BodyExt as _, Empty};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::*;

/// A backend on 127.0.0.1 that speaks just enough HTTP/1.1 by hand to
/// misbehave on purpose, counting its TCP connections and keeping every
/// request head it read. What it answers depends on the path:
///
/// - `/ok`: 200 with `Content-Length`, and the connection stays open;
/// - `/chunked`: 200 with a chunked body, connection stays open;
/// - `/empty`: 204, connection stays open;
/// - `/ok-then-close`: 200, then it closes the connection (no header says so);
/// - `/close`: 200 with `Connection: close`, then it closes;
/// - `/stream`: the first chunk of a chunked body, and then nothing;
/// - `/ws`: 101, then it echoes what it reads.
struct Backend {
    authority: Authority,
    connections: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Backend {
    async fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let authority: Authority = listener
            .local_addr()
            .expect("address")
            .to_string()
            .parse()
            .expect("authority");
        let connections = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (connections.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(tcp, seen.clone()));
            }
        });
        Backend {
            authority,
            connections,
            heads,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve(mut tcp: TcpStream, heads: Arc<Mutex<Vec<String>>>) {
    let mut buffer = Vec::new();
    loop {
        let head = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                buffer.drain(..end + 4);
                break head;
            }
            let mut chunk = [0u8; 4096];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let path = head.split(' ').nth(1).unwrap_or_default().to_string();
        lock(&heads).push(head);
        let answer: &[u8] = match path.as_str() {
            "/ok" | "/ok-then-close" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            "/chunked" => {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            }
            "/empty" => b"HTTP/1.1 204 No Content\r\n\r\n",
            "/close" => b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            "/stream" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            "/ws" => b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        };
        if tcp.write_all(answer).await.is_err() {
            return;
        }
        match path.as_str() {
            "/ok-then-close" | "/close" => return,
            "/stream" => {
                // Holds the response open until the client goes away.
                let mut sink = [0u8; 64];
                while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
            "/ws" => {
                let (mut read, mut write) = tcp.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                return;
            }
            _ => {}
        }
    }
}

fn pool() -> Pool<Empty<Bytes>> {
    Pool::new(Duration::from_secs(5))
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header(header::HOST, "site.example")
        .body(Empty::new())
        .expect("request")
}

/// Sends `GET path` and reads the whole body.
async fn fetch(pool: &Pool<Empty<Bytes>>, backend: &Backend, path: &str) -> (StatusCode, Bytes) {
    let response = pool
        .send(get(path), &backend.authority, None)
        .await
        .expect("response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body)
}

#[tokio::test]
async fn sequential_requests_share_one_backend_connection() {
    let backend = Backend::start().await;
    let pool = pool();
    for path in ["/ok", "/chunked", "/empty", "/ok", "/chunked"] {
        let (status, _) = fetch(&pool, &backend, path).await;
        assert!(status.is_success(), "{path}: {status}");
        assert_eq!(pool.idle_count(&backend.authority), 1, "{path}");
    }
    assert_eq!(backend.connections(), 1);
    // Origin-form, the Host as given.
    let heads = lock(&backend.heads).clone();
    assert!(
        heads[0].starts_with("GET /ok HTTP/1.1\r\n"),
        "{:?}",
        heads[0]
    );
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("\r\nhost: site.example"),
        "{:?}",
        heads[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_reuse_connections() {
    let backend = Backend::start().await;
    let pool = Arc::new(pool());
    let (tasks, each) = (4, 50);
    let mut running = Vec::new();
    for _ in 0..tasks {
        let (pool, authority) = (pool.clone(), backend.authority.clone());
        running.push(tokio::spawn(async move {
            for i in 0..each {
                let path = if i % 2 == 0 { "/ok" } else { "/chunked" };
                let response = pool
                    .send(get(path), &authority, None)
                    .await
                    .expect("response");
                assert!(response.status().is_success());
                response.into_body().collect().await.expect("body");
            }
        }));
    }
    for task in running {
        task.await.expect("task");
    }
    // Usually exactly one connection per concurrent client (`tasks`). On
    // a loaded machine a connection whose end hyper's connection task had
    // not reached yet goes back a moment later, and its client's next
    // request makes a new one meanwhile: the bound says connections are
    // reused, not how the two threads were scheduled.
    let made = backend.connections();
    assert!(
        made <= tasks * each / 10,
        "{made} connections for {} requests from {tasks} concurrent clients",
        tasks * each
    );
}

#[tokio::test]
async fn a_connection_the_backend_closed_while_idle_is_not_used() {
    let backend = Backend::start().await;
    let pool = pool();
    let (status, body) = fetch(&pool, &backend, "/ok-then-close").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    // hyper's connection task sees the backend's FIN while idle.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = fetch(&pool, &backend, "/ok").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    assert_eq!(backend.connections(), 2);
    assert_eq!(pool.idle_count(&backend.authority), 1);
}

#[tokio::test]
async fn a_body_dropped_early_does_not_return_its_connection() {
    let backend = Backend::start().await;
    let pool = pool();
    let response = pool
        .send(get("/stream"), &backend.authority, None)
        .await
        .expect("response");
    let mut body = response.into_body();
    let first = body.frame().await.expect("a frame").expect("data");
    assert_eq!(first.into_data().expect("data"), "hello");
    drop(body);
    assert_eq!(pool.idle_count(&backend.authority), 0);
    let (status, _) = fetch(&pool, &backend, "/ok").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(backend.connections(), 2);
}

#[tokio::test]
async fn connection_close_is_not_pooled() {
    let backend = Backend::start().await;
    let pool = pool();
    let (status, _) = fetch(&pool, &backend, "/close").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pool.idle_count(&backend.authority), 0);
    let (status, _) = fetch(&pool, &backend, "/ok").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(backend.connections(), 2);
}

#[tokio::test]
async fn a_101_is_never_pooled_and_its_upgrade_works() {
    let backend = Backend::start().await;
    let pool = pool();
    let request = Request::get("/ws")
        .header(header::HOST, "site.example")
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .body(Empty::new())
        .expect("request");
    let mut response = pool
        .send(request, &backend.authority, None)
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let upgraded = hyper::upgrade::on(&mut response).await.expect("upgraded");
    drop(response);
    let mut tunnel = TokioIo::new(upgraded);
    tunnel.write_all(b"ping").await.expect("write");
    let mut echoed = [0u8; 4];
    tunnel.read_exact(&mut echoed).await.expect("read");
    assert_eq!(&echoed, b"ping");
    assert_eq!(pool.idle_count(&backend.authority), 0);
    let (status, _) = fetch(&pool, &backend, "/ok").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(backend.connections(), 2);
}

#[tokio::test]
async fn a_refused_connect_is_a_connect_error() {
    // A port nothing listens on (bound, then closed).
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let closed: Authority = listener
        .local_addr()
        .expect("address")
        .to_string()
        .parse()
        .expect("authority");
    drop(listener);
    let failure = pool()
        .send(get("/"), &closed, None)
        .await
        .expect_err("refused");
    // Nothing was sent: the request comes back, for another backend.
    assert!(
        failure.unsent.is_some(),
        "a refused connection sent nothing"
    );
    let error = failure.error;
    assert!(error.is_connect(), "{error:?}");
    assert!(
        matches!(&error, SendError::Connect(e) if e.kind() == io::ErrorKind::ConnectionRefused),
        "{error:?}"
    );
}

#[test]
fn keep_alive_follows_the_version_and_connection_header() {
    let with = |value: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, value.parse().expect("header value"));
        headers
    };
    assert!(keeps_alive(Version::HTTP_11, &HeaderMap::new()));
    assert!(!keeps_alive(Version::HTTP_11, &with("Close")));
    assert!(!keeps_alive(Version::HTTP_11, &with("x-foo, close")));
    assert!(!keeps_alive(Version::HTTP_10, &HeaderMap::new()));
    assert!(keeps_alive(Version::HTTP_10, &with("Keep-Alive")));
    // The fast path: a lone `keep-alive` on HTTP/1.1, in any case.
    assert!(keeps_alive(Version::HTTP_11, &with("Keep-Alive")));
    let mut two = with("keep-alive");
    two.append(header::CONNECTION, "close".parse().expect("header value"));
    assert!(
        !keeps_alive(Version::HTTP_11, &two),
        "a second value says close"
    );
}
