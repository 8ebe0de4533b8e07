//! The node's QUIC endpoint (quinn) beside its gRPC server: the data plane
//! (`--transport quic` on the coordinator) and the link probes. Each
//! bidirectional stream opens with a `LinkRequest` and is answered with
//! the same messages the gRPC calls stream, framed as gRPC frames them;
//! failures end the stream with a status trailer carrying the gRPC code.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use netmoe_common::link::frame::{self, DEFAULT_MAX_FRAME_BYTES, Frame};
use netmoe_common::link::{ServerIdentity, TlsError};
use netmoe_proto::v1::{self, EchoReply, LinkRequest, ProbeChunk, link_request::Kind};
use prost::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Code, Status};

use crate::config::NodeConfig;
use crate::service::{MAX_REQUEST_MESSAGE_BYTES, NodeState, generate_events};

/// Largest echo payload.
pub const MAX_ECHO_BYTES: usize = 64 * 1024;
/// QUIC connections a node holds at once; more are refused at the door.
pub const MAX_QUIC_CONNECTIONS: usize = 64;
/// How long a new connection may take to finish its handshake, and a new
/// stream to send its request, before it is dropped.
pub const QUIC_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Probe transfers (downloads and uploads, both transports) a node serves
/// at once; more get RESOURCE_EXHAUSTED, so probes cannot crowd out the
/// data plane.
pub const MAX_CONCURRENT_PROBES: usize = 4;

/// The node's side of its link: the advertised QUIC endpoint, once bound,
/// and the admission of probe transfers.
#[derive(Debug)]
pub struct LinkState {
    /// What `Info` and registration advertise.
    pub info: std::sync::OnceLock<v1::LinkInfo>,
    /// Kernel shaping of the node's interface, when configured.
    pub shaper: std::sync::OnceLock<crate::shaper::Shaper>,
    probe_slots: Arc<tokio::sync::Semaphore>,
}

impl Default for LinkState {
    fn default() -> Self {
        Self {
            info: std::sync::OnceLock::new(),
            shaper: std::sync::OnceLock::new(),
            probe_slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_PROBES)),
        }
    }
}

impl LinkState {
    /// A slot for one probe transfer, held until it ends.
    pub fn admit_probe(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.probe_slots.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{MAX_CONCURRENT_PROBES} probe transfers in progress; retry later"
            ))
        })
    }
}

/// Why the QUIC endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum LinkServeError {
    /// The certificate could not be loaded or made.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The UDP socket could not be bound.
    #[error("cannot bind QUIC on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The endpoint's identity: PEM files if configured, else a self-signed
/// certificate for the listen address and `localhost` (dev mode).
pub fn identity(
    config: &NodeConfig,
    listen: SocketAddr,
    cluster: Option<&netmoe_common::pki::TlsDir>,
) -> Result<ServerIdentity, TlsError> {
    if let Some(tls) = cluster {
        return ServerIdentity::cluster(tls);
    }
    match &config.tls {
        Some((cert, key)) => ServerIdentity::from_pem(cert, key),
        None => ServerIdentity::self_signed(vec![listen.ip().to_string(), "localhost".into()]),
    }
}

/// Binds the QUIC endpoint; returns it and the `LinkInfo` to advertise.
pub fn bind(
    addr: SocketAddr,
    identity: &ServerIdentity,
) -> Result<(quinn::Endpoint, v1::LinkInfo), LinkServeError> {
    let endpoint = quinn::Endpoint::server(identity.server_config()?, addr)
        .map_err(|source| LinkServeError::Bind { addr, source })?;
    let port = endpoint
        .local_addr()
        .map_err(|source| LinkServeError::Bind { addr, source })?
        .port();
    let info = v1::LinkInfo {
        quic_port: u32::from(port),
        cert_sha256: identity.fingerprint(),
        self_signed: identity.self_signed,
        emulated_bandwidth_hz: 0.0,
    };
    Ok((endpoint, info))
}

/// Accepts connections and streams until `shutdown`; streams in flight
/// then run to their end (the engine's drain ends generations), tracked by
/// `tasks`.
/// With `secure`, only the coordinator's certificate may use the link.
pub async fn serve(
    endpoint: quinn::Endpoint,
    state: Arc<NodeState>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    secure: bool,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_QUIC_CONNECTIONS));
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = shutdown.cancelled() => break,
        };
        let Some(incoming) = incoming else { break };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(peer = %incoming.remote_address(), "{MAX_QUIC_CONNECTIONS} QUIC connections open; refusing another");
            incoming.refuse();
            continue;
        };
        let (state, shutdown, streams) = (state.clone(), shutdown.clone(), tasks.clone());
        tasks.spawn(async move {
            let _slot = slot;
            let conn = match tokio::time::timeout(QUIC_REQUEST_TIMEOUT, incoming).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "QUIC handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("QUIC handshake timed out");
                    return;
                }
            };
            // In a secured cluster, only the coordinator may use the link.
            if secure && let Err(why) = coordinator_peer(&conn) {
                tracing::warn!(peer = %conn.remote_address(), %why, "QUIC peer refused");
                conn.close(
                    1u32.into(),
                    b"permission denied: coordinator certificate required",
                );
                return;
            }
            tracing::debug!(peer = %conn.remote_address(), "QUIC connection");
            loop {
                let bi = tokio::select! {
                    b = conn.accept_bi() => b,
                    _ = shutdown.cancelled() => break,
                };
                match bi {
                    Ok((send, recv)) => {
                        streams.spawn(handle_stream(send, recv, state.clone()));
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "QUIC connection ended");
                        break;
                    }
                }
            }
        });
    }
    tracing::debug!("QUIC endpoint stopped accepting");
}

/// The verified certificate of a QUIC peer must be the coordinator's.
fn coordinator_peer(conn: &quinn::Connection) -> Result<(), String> {
    let certs = conn
        .peer_identity()
        .and_then(|id| {
            id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or("no client certificate")?;
    let leaf = certs.first().ok_or("empty certificate chain")?;
    let peer = netmoe_common::pki::peer_of(leaf).map_err(|e| e.to_string())?;
    if peer.role != netmoe_common::pki::Role::Coordinator {
        return Err(format!(
            "a {} certificate, not the coordinator's",
            peer.role
        ));
    }
    Ok(())
}

/// One stream: read the request (within [`QUIC_REQUEST_TIMEOUT`]), answer
/// it, finish.
async fn handle_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    state: Arc<NodeState>,
) {
    let first = tokio::time::timeout(
        QUIC_REQUEST_TIMEOUT,
        frame::read_frame::<_, LinkRequest>(&mut recv, MAX_REQUEST_MESSAGE_BYTES),
    )
    .await;
    let Ok(first) = first else {
        let _ = fail(
            &mut send,
            &Status::deadline_exceeded("no request within the stream's time limit"),
        )
        .await;
        return;
    };
    let req = match first {
        Ok(Some(Frame::Message(r, _))) => r,
        Ok(Some(Frame::Status(_))) | Ok(None) => {
            let _ = fail(
                &mut send,
                &Status::invalid_argument("a link stream must open with a LinkRequest"),
            )
            .await;
            return;
        }
        Err(frame::FrameError::TooLarge { len, max }) => {
            let _ = fail(
                &mut send,
                &Status::resource_exhausted(format!(
                    "request of {len} bytes exceeds the {max}-byte limit"
                )),
            )
            .await;
            return;
        }
        Err(e) => {
            let _ = fail(&mut send, &Status::invalid_argument(e.to_string())).await;
            return;
        }
    };
    let result = match req.kind {
        Some(Kind::Generate(g)) => match generate_events(&state, &g) {
            Ok(events) => pump(&mut send, events).await,
            Err(s) => fail(&mut send, &s).await,
        },
        Some(Kind::Download(d)) => match crate::probe::download_events(&state, &d) {
            Ok(events) => pump(&mut send, events).await,
            Err(s) => fail(&mut send, &s).await,
        },
        Some(Kind::Echo(e)) if e.payload.len() > MAX_ECHO_BYTES => {
            fail(
                &mut send,
                &Status::invalid_argument(format!("echo payload over {MAX_ECHO_BYTES} bytes")),
            )
            .await
        }
        Some(Kind::Echo(e)) => frame::write_message(&mut send, &EchoReply { payload: e.payload })
            .await
            .map(drop),
        Some(Kind::Upload(u)) => {
            match crate::probe::check_probe_bytes(u.bytes)
                .and_then(|b| Ok((b, state.link.admit_probe()?)))
            {
                Ok((bytes, _permit)) => receive_upload(&mut send, &mut recv, bytes).await,
                Err(s) => fail(&mut send, &s).await,
            }
        }
        None => fail(&mut send, &Status::invalid_argument("empty LinkRequest")).await,
    };
    match result {
        Ok(()) => {
            let _ = send.finish();
            // Wait for the peer to read everything before the stream drops.
            let _ = send.stopped().await;
        }
        Err(e) => tracing::debug!(error = %e, "link stream ended early"),
    }
}

/// Writes a stream of messages; a status ends it as a trailer. Returns when
/// the stream ends, or early when the peer stops reading (dropping the
/// events, which cancels the work behind them).
async fn pump<M: Message>(
    send: &mut quinn::SendStream,
    mut events: std::pin::Pin<Box<dyn futures::Stream<Item = Result<M, Status>> + Send>>,
) -> std::io::Result<()> {
    loop {
        let item = tokio::select! {
            item = events.next() => item,
            _ = send.stopped() => {
                return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "peer stopped reading"));
            }
        };
        match item {
            None => return Ok(()),
            Some(Ok(m)) => {
                frame::write_message(send, &m).await?;
            }
            Some(Err(s)) => return fail(send, &s).await,
        }
    }
}

async fn fail(send: &mut quinn::SendStream, s: &Status) -> std::io::Result<()> {
    frame::write_status(send, s.code() as i32, s.message())
        .await
        .map(drop)
}

/// Counts the client's payload until it finishes, then answers with what
/// arrived and how long it took from the first byte to the last.
async fn receive_upload(
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    declared: u64,
) -> std::io::Result<()> {
    let (mut payload, mut framed) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    loop {
        match frame::read_frame::<_, ProbeChunk>(recv, DEFAULT_MAX_FRAME_BYTES).await {
            Ok(Some(Frame::Message(c, n))) => {
                first.get_or_insert_with(Instant::now);
                last = Instant::now();
                payload += c.data.len() as u64;
                framed += n;
                if payload > declared {
                    let s = Status::new(
                        Code::InvalidArgument,
                        format!("upload sent more than the declared {declared} bytes"),
                    );
                    return fail(send, &s).await;
                }
            }
            Ok(None) => break,
            Ok(Some(Frame::Status(_))) => break,
            Err(e) => return fail(send, &Status::invalid_argument(e.to_string())).await,
        }
    }
    let summary = v1::TransferSummary {
        payload_bytes: payload,
        framed_bytes: framed,
        seconds: first.map_or(0.0, |f| last.duration_since(f).as_secs_f64()),
        paced_seconds: 0.0,
        snr: None,
    };
    frame::write_message(send, &summary).await.map(drop)
}
