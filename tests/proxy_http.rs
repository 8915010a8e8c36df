//! `http` listeners: ACME HTTP-01 answers from the challenge store or the
//! shared state, 308 to HTTPS for everything else, 400 without a Host.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestProxy, proxy_yaml, raw_exchange, within};
use sniwalk::challenge::ChallengeStore;
use sniwalk::state_layout::StateLayout;
use tokio::net::TcpStream;

const TOKEN: &str = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
const KEY_AUTHORIZATION: &str =
    "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI";

/// Two `http` listeners: `plain` redirects to 443, `port` to 8443.
fn listeners() -> String {
    "  - name: plain\n    kind: http\n    bind: 127.0.0.1:1\n    access_log: false\n\
     \x20 - name: port\n    kind: http\n    bind: 127.0.0.1:2\n    https_port: 8443\n"
        .to_string()
}

async fn exchange(addr: std::net::SocketAddr, request: &str) -> common::RawResponse {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    raw_exchange(&mut tcp, request).await
}

#[tokio::test]
async fn acme_challenges_are_answered_from_the_store() {
    within(Duration::from_secs(60), "test", async {
        let store = Arc::new(ChallengeStore::default());
        let dir = tempfile::tempdir().expect("tempdir");
        let proxy =
            TestProxy::start_with_challenges(dir.path(), &proxy_yaml("", &listeners()), store.clone())
                .await;
        let addr = proxy.addrs[0];
        let request = |token: &str| {
            format!(
                "GET /.well-known/acme-challenge/{token} HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\n\r\n"
            )
        };

        let before = exchange(addr, &request(TOKEN)).await;
        assert_eq!(before.status, 404, "not published yet: {before:?}");

        store.set_http01(TOKEN, KEY_AUTHORIZATION);
        for addr in &proxy.addrs {
            let answer = exchange(*addr, &request(TOKEN)).await;
            assert_eq!(answer.status, 200, "{answer:?}");
            assert_eq!(answer.body, KEY_AUTHORIZATION);
            assert_eq!(answer.header("content-type"), Some("text/plain"));
            assert_eq!(answer.header("location"), None);
        }

        let unknown = exchange(addr, &request("someOtherToken")).await;
        assert_eq!(unknown.status, 404);
        assert_eq!(unknown.body, "404 no such challenge\n");
        let not_a_token = exchange(addr, &request("..%2F..%2Fetc%2Fpasswd")).await;
        assert_eq!(not_a_token.status, 404);

        // Without a Host (HTTP/1.0) the challenge is still answered: the
        // token alone decides.
        let http10 = exchange(
            addr,
            &format!("GET /.well-known/acme-challenge/{TOKEN} HTTP/1.0\r\n\r\n"),
        )
        .await;
        assert_eq!((http10.status, http10.body.as_str()), (200, KEY_AUTHORIZATION));

        store.remove_http01(TOKEN);
        let after = exchange(addr, &request(TOKEN)).await;
        assert_eq!(after.status, 404, "withdrawn: {after:?}");
        proxy.stop().await;
    })
    .await;
}

/// Another instance sharing `state_dir` published the answer: it is read
/// from `state_dir/acme/http-01/<token>`; oversized files are not served.
#[tokio::test]
async fn acme_challenges_of_other_instances_are_answered_from_the_shared_state() {
    within(Duration::from_secs(60), "test", async {
        let dir = tempfile::tempdir().expect("tempdir");
        let proxy = TestProxy::start(dir.path(), &proxy_yaml("", &listeners())).await;
        let addr = proxy.addrs[0];
        let request = |token: &str| {
            format!(
                "GET /.well-known/acme-challenge/{token} HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\n\r\n"
            )
        };
        assert_eq!(exchange(addr, &request(TOKEN)).await.status, 404);

        let state_dir = StateLayout::new(dir.path().join("state"));
        // Where another instance's dir storage engine puts its answer.
        std::fs::create_dir_all(state_dir.http01_dir()).expect("folder");
        std::fs::write(state_dir.http01_answer(TOKEN), KEY_AUTHORIZATION).expect("share the answer");
        let answer = exchange(addr, &request(TOKEN)).await;
        assert_eq!((answer.status, answer.body.as_str()), (200, KEY_AUTHORIZATION));
        assert_eq!(answer.header("content-type"), Some("text/plain"));

        let big = "bigToken";
        std::fs::write(
            state_dir.http01_answer(big),
            vec![b'a'; 5000],
        )
        .expect("write");
        assert_eq!(exchange(addr, &request(big)).await.status, 404, "size-capped");

        std::fs::remove_file(state_dir.http01_answer(TOKEN)).expect("withdraw");
        assert_eq!(exchange(addr, &request(TOKEN)).await.status, 404, "withdrawn");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn everything_else_is_redirected_to_https() {
    within(Duration::from_secs(60), "test", async {
        let dir = tempfile::tempdir().expect("tempdir");
        let proxy = TestProxy::start(dir.path(), &proxy_yaml("", &listeners())).await;
        let (plain, port) = (proxy.addrs[0], proxy.addrs[1]);
        let request = |target: &str, host: &str| {
            format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
        };

        let cases: &[(std::net::SocketAddr, &str, &str, &str)] = &[
            (plain, "/", "example.com", "https://example.com/"),
            (
                plain,
                "/some/path?q=1&r=%20x",
                "www.example.com:80",
                "https://www.example.com/some/path?q=1&r=%20x",
            ),
            (
                port,
                "/some/path?q=1",
                "www.example.com",
                "https://www.example.com:8443/some/path?q=1",
            ),
            (
                port,
                "/x",
                "www.example.com:8080",
                "https://www.example.com:8443/x",
            ),
            (
                plain,
                "/.well-known/other",
                "example.com",
                "https://example.com/.well-known/other",
            ),
            (plain, "/v6", "[::1]:80", "https://[::1]/v6"),
        ];
        for &(addr, target, host, location) in cases {
            let response = exchange(addr, &request(target, host)).await;
            assert_eq!(response.status, 308, "{target} on {host}: {response:?}");
            assert_eq!(response.header("location"), Some(location), "{target} on {host}");
        }

        // POST is redirected the same way (308 keeps the method).
        let post = exchange(
            plain,
            "POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        )
        .await;
        assert_eq!(post.status, 308);
        assert_eq!(post.header("location"), Some("https://example.com/form"));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn missing_or_invalid_host_is_400() {
    within(Duration::from_secs(60), "test", async {
        let dir = tempfile::tempdir().expect("tempdir");
        let proxy = TestProxy::start(dir.path(), &proxy_yaml("", &listeners())).await;
        let addr = proxy.addrs[0];

        let http11 = exchange(addr, "GET /page HTTP/1.1\r\nConnection: close\r\n\r\n").await;
        assert_eq!(http11.status, 400, "{http11:?}");
        assert_eq!(http11.header("location"), None);
        let http10 = exchange(addr, "GET /page HTTP/1.0\r\n\r\n").await;
        assert_eq!(http10.status, 400, "{http10:?}");
        let empty = exchange(
            addr,
            "GET /page HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(empty.status, 400, "{empty:?}");
        let invalid = exchange(
            addr,
            "GET /page HTTP/1.1\r\nHost: evil.com/x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(invalid.status, 400, "{invalid:?}");
        assert_eq!(invalid.header("location"), None);
        proxy.stop().await;
    })
    .await;
}
