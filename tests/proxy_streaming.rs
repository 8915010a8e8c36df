//! Bodies stream through the proxy: 100 MB up and 100 MB down with flat
//! memory. Alone in its test binary, so the resident memory of the process
//! (client, proxy and backend all run in it) measures only this transfer.

mod common;

use std::time::Duration;

use common::backends::{HttpBackend, PatternBody, PatternCheck, TestBody, empty};
use common::{TestProxy, h1_client, h2_client, proc_status_kib, proxy_yaml, within};
use http_body_util::BodyExt as _;
use hyper::Request;

const SIZE: u64 = 100 * 1024 * 1024;
/// Allowed growth of the process's peak resident memory, far below SIZE.
const MAX_GROWTH_KIB: u64 = 40 * 1024;

/// Reads a response body frame by frame against the pattern, keeping
/// nothing.
async fn check_download(response: hyper::Response<hyper::body::Incoming>) -> PatternCheck {
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut check = PatternCheck::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("download frame");
        if let Some(data) = frame.data_ref() {
            check.feed(data);
        }
    }
    check
}

fn upload_request(uri: &str, size: u64) -> Request<TestBody> {
    Request::post(uri)
        .header("host", "stream.example.com")
        .body(PatternBody::new(size).boxed())
        .expect("request")
}

fn download_request(uri: &str) -> Request<TestBody> {
    Request::get(uri)
        .header("host", "stream.example.com")
        .body(empty())
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_up_and_down_with_flat_memory() {
    within(Duration::from_secs(240), "test", async {
        let backend = HttpBackend::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = format!(
            "  - name: web\n    kind: https\n    bind: 127.0.0.1:1\n    access_log: false\n    routes:\n      \
             - {{ host: \"*\", backend: \"{}\" }}\n",
            backend.url()
        );
        let proxy = TestProxy::start(dir.path(), &proxy_yaml("", &listener)).await;
        let mut h1 = h1_client(proxy.addr(), "stream.example.com").await;
        let mut h2 = h2_client(proxy.addr(), "stream.example.com").await;

        // Warm up every path (pools, TLS and HTTP buffers, the pattern)
        // before the baseline.
        for _ in 0..2 {
            h1.ready().await.expect("ready");
            let response = h1
                .send_request(upload_request("/upload", 4 << 20))
                .await
                .expect("warm-up upload");
            assert_eq!(response.status(), 200);
            let _ = response.into_body().collect().await;
            h1.ready().await.expect("ready");
            let response = h1
                .send_request(download_request("/download?bytes=4194304"))
                .await
                .expect("warm-up download");
            assert_eq!(check_download(response).await.bytes, 4 << 20);
            let response = h2
                .send_request(download_request(
                    "https://stream.example.com/download?bytes=4194304",
                ))
                .await
                .expect("warm-up h2 download");
            assert_eq!(check_download(response).await.bytes, 4 << 20);
        }
        let baseline = proc_status_kib("VmRSS");

        // 100 MB up over HTTP/1.1: the backend checks every byte.
        h1.ready().await.expect("ready");
        let response = within(
            Duration::from_secs(120),
            "100 MB upload",
            h1.send_request(upload_request("/upload", SIZE)),
        )
        .await
        .expect("upload response");
        assert_eq!(response.status(), 200);
        let report: serde_json::Value = serde_json::from_slice(
            &response
                .into_body()
                .collect()
                .await
                .expect("upload report")
                .to_bytes(),
        )
        .expect("JSON report");
        assert_eq!(report["error"], serde_json::Value::Null, "{report}");
        assert_eq!(report["bytes"], SIZE, "bytes the backend received");
        assert_eq!(
            report["first_mismatch"],
            serde_json::Value::Null,
            "the backend received different bytes"
        );
        let after_upload = proc_status_kib("VmHWM");

        // 100 MB down over HTTP/1.1, checked as it arrives.
        h1.ready().await.expect("ready");
        let check = within(Duration::from_secs(120), "100 MB download", async {
            let response = h1
                .send_request(download_request(&format!("/download?bytes={SIZE}")))
                .await
                .expect("download response");
            assert_eq!(
                response.headers().get("content-length").map(|v| v.as_bytes()),
                Some(SIZE.to_string().as_bytes())
            );
            check_download(response).await
        })
        .await;
        assert_eq!(check.bytes, SIZE, "bytes downloaded");
        assert_eq!(check.first_mismatch, None, "downloaded bytes differ");
        let after_download = proc_status_kib("VmHWM");

        // 100 MB down over HTTP/2 (flow control between the proxy and the
        // client, HTTP/1.1 to the backend).
        let check = within(Duration::from_secs(120), "100 MB HTTP/2 download", async {
            let response = h2
                .send_request(download_request(&format!(
                    "https://stream.example.com/download?bytes={SIZE}"
                )))
                .await
                .expect("h2 download response");
            check_download(response).await
        })
        .await;
        assert_eq!(check.bytes, SIZE, "bytes downloaded over HTTP/2");
        assert_eq!(check.first_mismatch, None, "HTTP/2 downloaded bytes differ");
        let peak = proc_status_kib("VmHWM");

        eprintln!(
            "resident memory: baseline {baseline} KiB, peak after upload {after_upload} KiB, \
             after download {after_download} KiB, after HTTP/2 download {peak} KiB"
        );
        assert!(
            peak.saturating_sub(baseline) < MAX_GROWTH_KIB,
            "peak resident memory grew by {} KiB over {baseline} KiB while moving 3 x 100 MB",
            peak.saturating_sub(baseline)
        );
        proxy.stop().await;
    })
    .await;
}
