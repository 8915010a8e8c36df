//! Telling the service manager what the proxy is doing: systemd's
//! `Type=notify` protocol (sd_notify(3), README "Install (Debian
//! package)").
//!
//! 1. `READY=1` once every listener accepts and the first snapshot is in
//!    force: `systemctl start` returns then, and units ordered after
//!    sniwalk start on a proxy that serves.
//! 2. `RELOADING=1` when a SIGHUP arrives, `READY=1` once the reload it
//!    asked for is applied *or refused* (a broken configuration keeps the
//!    running one, so the proxy is still ready; `STATUS=` says which).
//! 3. `STOPPING=1` when the drain begins.
//!
//! The service manager names its socket in `NOTIFY_SOCKET`: a path, or a
//! name in Linux's abstract namespace written with a leading `@`. Without
//! the variable (a shell, the in-process tests) nothing is sent. A failed
//! send is logged and otherwise ignored: the proxy serves whether systemd
//! hears it or not (systemd then fails the start at `TimeoutStartSec=`,
//! and this log line says why).

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use crate::config::ListenerConfig;

/// The environment variable the service manager puts its socket's address
/// in (sd_notify(3)).
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// One assignment of a notification datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notification<'a> {
    /// `READY=1`: serving (start-up finished, or a reload is over).
    Ready,
    /// `RELOADING=1`: a reload began; `READY=1` follows when it is over.
    Reloading,
    /// `STOPPING=1`: shutting down (the drain began).
    Stopping,
    /// `STATUS=…`: one line for `systemctl status`.
    Status(&'a str),
}

/// Where notifications go: the parsed `NOTIFY_SOCKET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyAddress {
    /// A socket file.
    Path(PathBuf),
    /// A name in Linux's abstract socket namespace (written `@name`).
    Abstract(Vec<u8>),
}

/// Why a notification could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` holds something that is no socket address.
    #[error(
        "{NOTIFY_SOCKET}={value:?} is neither an absolute path nor an @abstract name; \
         it is set by the service manager (systemd Type=notify): unset it to run by hand"
    )]
    Address {
        /// The variable's value.
        value: String,
    },
    /// The socket could not be made, reached or written.
    #[error("{NOTIFY_SOCKET}={socket}: {source}")]
    Send {
        /// The address, as written in the variable.
        socket: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Start-up is over: every listener accepts (`READY=1`). `status` names
/// them ([`serving_status`]).
pub fn ready(status: &str) {
    notify(&[Notification::Ready, Notification::Status(status)]);
}

/// A SIGHUP reload begins (`RELOADING=1`); [`reloaded`] ends it.
pub fn reloading() {
    notify(&[
        Notification::Reloading,
        Notification::Status("reloading the configuration and certificates (SIGHUP)"),
    ]);
}

/// A SIGHUP reload is over (`READY=1` either way): `Err` carries why the
/// new configuration was refused, the running one serving on.
pub fn reloaded(outcome: Result<(), &str>) {
    let status = reload_status(outcome);
    notify(&[Notification::Ready, Notification::Status(&status)]);
}

/// The drain begins (`STOPPING=1`): the listeners close, connections in
/// flight get `shutdown_secs` to finish.
pub fn stopping(shutdown_secs: u64) {
    let status = format!(
        "draining: listeners closed, connections in flight may finish for {shutdown_secs} s"
    );
    notify(&[Notification::Stopping, Notification::Status(&status)]);
}

/// The `STATUS=` line once serving: each listener's name, kind and bound
/// address (`sockets`, in the order of `listeners`; the address actually
/// bound, so a port 0 shows the port chosen).
pub fn serving_status(listeners: &[ListenerConfig], sockets: &[Option<SocketAddr>]) -> String {
    let each: Vec<String> = listeners
        .iter()
        .zip(sockets)
        .map(|(listener, socket)| {
            let bound = socket.unwrap_or(listener.bind);
            format!("{} ({}) on {bound}", listener.name, listener.kind.as_str())
        })
        .collect();
    format!("serving: {}", each.join(", "))
}

/// The `STATUS=` line after a SIGHUP reload.
pub fn reload_status(outcome: Result<(), &str>) -> String {
    match outcome {
        Ok(()) => "serving: configuration and certificates reloaded (SIGHUP)".to_string(),
        Err(why) => format!("serving the previous configuration: the reload failed: {why}"),
    }
}

/// The datagram for `notifications`: one `KEY=VALUE` per line, as
/// sd_notify(3) reads it. A status is one line (a newline would start a
/// new assignment), so line breaks in it become `"; "`.
pub fn datagram(notifications: &[Notification<'_>]) -> String {
    let mut out = String::new();
    for notification in notifications {
        match notification {
            Notification::Ready => out.push_str("READY=1"),
            Notification::Reloading => out.push_str("RELOADING=1"),
            Notification::Stopping => out.push_str("STOPPING=1"),
            Notification::Status(text) => {
                out.push_str("STATUS=");
                let one_line: Vec<&str> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect();
                out.push_str(&one_line.join("; "));
            }
        }
        out.push('\n');
    }
    out
}

/// Parses `NOTIFY_SOCKET`: an absolute path, or `@name` for the abstract
/// namespace (sd_notify(3)).
pub fn notify_address(value: &OsStr) -> Result<NotifyAddress, NotifyError> {
    use std::os::unix::ffi::OsStrExt as _;
    let bytes = value.as_bytes();
    match bytes.first() {
        Some(b'/') => Ok(NotifyAddress::Path(PathBuf::from(value))),
        Some(b'@') if bytes.len() > 1 => Ok(NotifyAddress::Abstract(bytes[1..].to_vec())),
        _ => Err(NotifyError::Address {
            value: value.to_string_lossy().into_owned(),
        }),
    }
}

/// Sends one datagram to `address` (the I/O edge of this module).
pub fn send(address: &NotifyAddress, datagram: &str) -> Result<(), NotifyError> {
    let fail = |source| NotifyError::Send {
        socket: describe(address),
        source,
    };
    let socket = UnixDatagram::unbound().map_err(fail)?;
    match address {
        NotifyAddress::Path(path) => socket.send_to(datagram.as_bytes(), path),
        NotifyAddress::Abstract(name) => send_abstract(&socket, name, datagram.as_bytes()),
    }
    .map_err(fail)?;
    Ok(())
}

/// `address` as `NOTIFY_SOCKET` writes it.
fn describe(address: &NotifyAddress) -> String {
    match address {
        NotifyAddress::Path(path) => path.display().to_string(),
        NotifyAddress::Abstract(name) => format!("@{}", String::from_utf8_lossy(name)),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(socket: &UnixDatagram, name: &[u8], bytes: &[u8]) -> std::io::Result<usize> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt as _;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt as _;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(bytes, &address)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &[u8]) -> std::io::Result<usize> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract socket names exist on Linux only",
    ))
}

/// Sends `notifications` when a service manager listens; logs a failure.
fn notify(notifications: &[Notification<'_>]) {
    let Some(value) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    let message = datagram(notifications);
    match notify_address(&value).and_then(|address| send(&address, &message)) {
        Ok(()) => tracing::debug!(
            socket = %value.to_string_lossy(),
            message = %message.trim_end().replace('\n', " "),
            "service manager notified"
        ),
        Err(e) => tracing::warn!(
            socket = %value.to_string_lossy(),
            "cannot notify the service manager: {e}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_have_one_assignment_per_line() {
        let cases: &[(&[Notification<'_>], &str)] = &[
            (&[Notification::Ready], "READY=1\n"),
            (
                &[Notification::Reloading, Notification::Status("x")],
                "RELOADING=1\nSTATUS=x\n",
            ),
            (
                &[Notification::Stopping, Notification::Status("a\n  b\n\nc")],
                "STOPPING=1\nSTATUS=a; b; c\n",
            ),
        ];
        for (notifications, want) in cases {
            assert_eq!(datagram(notifications), *want);
        }
    }

    #[test]
    fn addresses_are_paths_or_abstract_names() {
        assert_eq!(
            notify_address(OsStr::new("/run/systemd/notify")).unwrap(),
            NotifyAddress::Path(PathBuf::from("/run/systemd/notify"))
        );
        assert_eq!(
            notify_address(OsStr::new("@sniwalk/notify")).unwrap(),
            NotifyAddress::Abstract(b"sniwalk/notify".to_vec())
        );
        for bad in ["", "@", "relative/socket", "vsock:2:1234"] {
            let err = notify_address(OsStr::new(bad)).unwrap_err();
            assert!(err.to_string().contains("NOTIFY_SOCKET"), "{bad}: {err}");
        }
    }

    #[test]
    fn reload_status_names_the_refusal() {
        assert!(reload_status(Ok(())).contains("reloaded"));
        let refused = reload_status(Err("proxy.yaml: line 3: unknown field `listners`"));
        assert!(refused.contains("unknown field `listners`"), "{refused}");
        assert!(refused.contains("previous configuration"), "{refused}");
    }

    #[test]
    fn a_datagram_reaches_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(&NotifyAddress::Path(path), "READY=1\n").unwrap();
        let mut buffer = [0u8; 64];
        let n = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1\n");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_datagram_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("sniwalk-test-{}", crate::ids::random_hex16());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&address).unwrap();
        let parsed = notify_address(OsStr::new(&format!("@{name}"))).unwrap();
        send(&parsed, "STOPPING=1\n").unwrap();
        let mut buffer = [0u8; 64];
        let n = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"STOPPING=1\n");
    }

    #[test]
    fn a_missing_socket_is_an_error_naming_it() {
        let err = send(
            &NotifyAddress::Path(PathBuf::from("/nonexistent/sniwalk/notify")),
            "READY=1\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/sniwalk/notify"),
            "{err}"
        );
    }
}
