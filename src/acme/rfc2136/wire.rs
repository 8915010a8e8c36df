//! One TSIG-signed DNS exchange over TCP: a fresh connection, the
//! two-byte length framing of RFC 1035 §4.2.2 (RFC 7766 §8), the request
//! signed and the answer's signature checked with hickory-proto's TSIG
//! (RFC 8945 §5).
//!
//! The exchange is done here rather than through hickory-net's
//! `DnsMultiplexer::with_signer`: that one turns a server's unsigned TSIG
//! error answer (BADSIG, BADKEY: RFC 8945 §5.2.1-2) into an opaque
//! "truncated HMAC" verification error, where the operator needs to know
//! which of key name, secret or clock is wrong.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{DnsResponse, Message, MessageType, ResponseCode};
use hickory_proto::rr::TSigner;
use hickory_proto::rr::rdata::tsig::TsigError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one operation of the updater (zone discovery included) may
/// take.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an exchange failed, before the caller adds its context.
#[derive(Debug)]
pub(super) enum WireError {
    /// Connecting, sending or reading failed (refused, reset, closed).
    Io(String),
    /// The request could not be signed or encoded.
    Request(String),
    /// The server did not accept the request's TSIG (mnemonic, meaning).
    Tsig(&'static str, String),
    /// The answer's TSIG did not verify with our key.
    Unverified(String),
    /// The answer is undecodable, for another request, or unsigned.
    Malformed(String),
}

/// Sends `request` signed with `signer` to `server` over a new TCP
/// connection and returns the answer once its signature verified (or an
/// unsigned error answer, which can only make the operation fail).
pub(super) async fn exchange(
    server: SocketAddr,
    signer: &TSigner,
    mut request: Message,
) -> Result<Message, WireError> {
    // RFC 8945 §5.1: the MAC covers the message and the TSIG variables.
    let verifier = request
        .finalize(signer, unix_now())
        .map_err(|e| WireError::Request(format!("could not sign the request: {e}")))?;
    let bytes = request
        .to_vec()
        .map_err(|e| WireError::Request(format!("could not encode the request: {e}")))?;
    let answer = send_and_receive(server, &bytes).await?;
    check_answer(request.metadata.id, &answer, verifier)
}

/// Writes one length-prefixed message and reads one back (RFC 1035
/// §4.2.2).
async fn send_and_receive(server: SocketAddr, request: &[u8]) -> Result<Vec<u8>, WireError> {
    let length = u16::try_from(request.len())
        .map_err(|_| WireError::Request("the request is over 65535 bytes".into()))?;
    let mut stream = TcpStream::connect(server).await.map_err(io_error)?;
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(request);
    stream.write_all(&framed).await.map_err(io_error)?;
    let length = stream.read_u16().await.map_err(io_error)?;
    let mut answer = vec![0; usize::from(length)];
    stream.read_exact(&mut answer).await.map_err(io_error)?;
    Ok(answer)
}

/// The I/O failure in words (`connection refused`, ...).
fn io_error(error: std::io::Error) -> WireError {
    match error.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            WireError::Io("the server closed the connection without an answer".into())
        }
        std::io::ErrorKind::ConnectionRefused => WireError::Io("connection refused".into()),
        _ => WireError::Io(error.to_string()),
    }
}

/// Decodes the answer, matches it to the request and checks its TSIG
/// (RFC 8945 §5.3).
fn check_answer(
    id: u16,
    bytes: &[u8],
    verifier: Option<hickory_proto::rr::TSigVerifier>,
) -> Result<Message, WireError> {
    let message = Message::from_vec(bytes)
        .map_err(|e| WireError::Malformed(format!("undecodable answer: {e}")))?;
    if message.metadata.id != id || message.metadata.message_type != MessageType::Response {
        return Err(WireError::Malformed(
            "the answer is not for the request sent".into(),
        ));
    }
    let Some(tsig) = message.signature() else {
        return unsigned(message);
    };
    // RFC 8945 §5.2: a TSIG error means the server could not authenticate
    // the request; such answers are unsigned (BADSIG, BADKEY) or signed
    // over a request the server judged stale (BADTIME).
    if let Some(error) = tsig.data.error {
        return Err(tsig_error(error));
    }
    let mut verifier =
        verifier.ok_or_else(|| WireError::Malformed("the request was not signed".into()))?;
    verifier
        .verify(bytes)
        .map(DnsResponse::into_message)
        .map_err(|e| WireError::Unverified(e.to_string()))
}

/// An answer without TSIG to a signed request (RFC 8945 §5.3.1: not to
/// be trusted). An error code can only make the operation fail, so it is
/// passed on; NOTAUTH unsigned is the server refusing our signature.
fn unsigned(message: Message) -> Result<Message, WireError> {
    match message.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => Err(WireError::Malformed(
            "the answer carries no TSIG signature, so it cannot be trusted".into(),
        )),
        ResponseCode::NotAuth => Err(WireError::Tsig(
            "NOTAUTH",
            "the server answered NOTAUTH without a signature: it could not authenticate \
             the request"
                .into(),
        )),
        _ => Ok(message),
    }
}

/// The mnemonic and meaning of a TSIG error (RFC 8945 §3, §5.2).
fn tsig_error(error: TsigError) -> WireError {
    let (code, hint) = match error {
        TsigError::BadSig => (
            "BADSIG",
            "the signature did not match: the secret or the algorithm differ from the server's",
        ),
        TsigError::BadKey => ("BADKEY", "the server has no key of that name and algorithm"),
        TsigError::BadTime => (
            "BADTIME",
            "the clocks of this machine and the server differ by more than the allowed fudge: \
             check the clocks of both",
        ),
        TsigError::BadTrunc => ("BADTRUNC", "the server rejected the MAC length"),
        TsigError::Unknown(_) => ("TSIG error", "the server rejected the signature"),
    };
    WireError::Tsig(code, hint.to_string())
}

/// Seconds since the Unix epoch, the TSIG time signed (RFC 8945 §4.3.3);
/// 0 for a clock before 1970, which the server then reports as BADTIME.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
