//! The Pebble test environment itself: Debian's pebble and
//! pebble-challtestsrv start on free ports, answer over HTTPS trusting the
//! generated CA, and are gone after `stop`.

mod common;

use std::time::{Duration, Instant};

use common::pebble::PebbleEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_env_starts_serves_and_stops() {
    common::within(Duration::from_secs(60), "the pebble env test", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();
        let mut env = PebbleEnv::start(tmp.path()).await;
        eprintln!("pebble env ready in {:?}", started.elapsed());

        assert!(env.ca_pem_path().is_file(), "CA PEM written");
        assert!(env.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));

        let (status, body) = env.get(&env.directory_url()).await;
        assert_eq!(status, 200, "directory: {body}");
        let directory: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("directory is not JSON ({e}): {body}"));
        for key in ["newOrder", "newAccount", "newNonce"] {
            let url = directory[key]
                .as_str()
                .unwrap_or_else(|| panic!("directory has no {key}: {body}\n{}", env.logs()));
            assert!(url.starts_with("https://127.0.0.1:"), "{key}: {url}");
        }

        let root = env.root_pem().await;
        assert!(
            root.trim_start().starts_with("-----BEGIN CERTIFICATE-----")
                && root.trim_end().ends_with("-----END CERTIFICATE-----"),
            "roots/0 is a PEM certificate: {root}"
        );
        assert_ne!(
            root.trim(),
            env.ca_pem().trim(),
            "issuing root is Pebble's own"
        );

        let ports = [env.listen_port, env.management_port, env.challtestsrv_port];
        env.stop();
        for port in ports {
            let connected = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
            assert!(connected.is_err(), "port {port} still open after stop");
        }
        assert!(env.try_get(&env.directory_url()).await.is_err());
    })
    .await;
}
