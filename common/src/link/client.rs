//! The dialling side of the QUIC link: one connection per node, and the
//! calls it carries (generate, echo, download, upload), each on its own
//! bidirectional stream. Dropping a call before its end stops the stream,
//! which cancels the node's work, as dropping a gRPC stream does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use netmoe_proto::v1::{
    self, DownloadRequest, EchoReply, EchoRequest, GenerateEvent, LinkRequest, ProbeChunk,
    ProbeEvent, TransferSummary, UploadRequest, link_request::Kind, probe_event,
};
use prost::Message;

use super::frame::{self, DEFAULT_MAX_FRAME_BYTES, Frame, FrameError};
use super::tls::{TlsError, Trust};

/// Why a link call failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The local UDP socket could not be bound.
    #[error("cannot bind a QUIC endpoint: {0}")]
    Bind(std::io::Error),
    /// TLS could not be configured for this node.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The connection could not be started.
    #[error("QUIC connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed or closed.
    #[error("QUIC connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing the stream failed.
    #[error("QUIC stream write: {0}")]
    Io(#[from] std::io::Error),
    /// A frame could not be read.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The node ended the stream with a status, as gRPC would.
    #[error("{}: {message}", tonic_code_name(*code))]
    Status {
        /// gRPC status code.
        code: i32,
        /// The node's message.
        message: String,
    },
    /// The node broke the stream's contract.
    #[error("link protocol: {0}")]
    Protocol(String),
}

impl LinkError {
    /// True when the node looks unreachable (connection lost, refused, or
    /// shutting down), so a dispatcher should drop it.
    pub fn unreachable(&self) -> bool {
        match self {
            LinkError::Connect(_) | LinkError::Connection(_) => true,
            LinkError::Status { code, .. } => *code == 14, // UNAVAILABLE
            LinkError::Io(_) | LinkError::Frame(FrameError::Truncated) => true,
            _ => false,
        }
    }
}

/// Names of the gRPC status codes a node sends.
fn tonic_code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        _ => "UNKNOWN",
    }
}

/// The local QUIC endpoint that dials nodes.
#[derive(Debug, Clone)]
pub struct LinkClient {
    endpoint: quinn::Endpoint,
}

impl LinkClient {
    /// Binds an ephemeral UDP port on all interfaces.
    pub fn new() -> Result<Self, LinkError> {
        let bind: SocketAddr = "0.0.0.0:0".parse().expect("literal address");
        let endpoint = quinn::Endpoint::client(bind).map_err(LinkError::Bind)?;
        Ok(Self { endpoint })
    }

    /// Connects to a node's endpoint at `addr`, trusting it as `trust`
    /// says; `server_name` is checked only against a CA-issued certificate.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        server_name: &str,
        trust: &Trust,
    ) -> Result<LinkConnection, LinkError> {
        let config = trust.client_config()?;
        let conn = self
            .endpoint
            .connect_with(config, addr, server_name)?
            .await?;
        Ok(LinkConnection {
            conn,
            opened: Arc::new(AtomicU64::new(0)),
            in_flight: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Closes every connection of this endpoint.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"coordinator closing");
    }
}

/// Connection-wide counters of the transport, as quinn keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WireCounters {
    /// UDP payload bytes sent.
    pub tx_bytes: u64,
    /// UDP payload bytes received.
    pub rx_bytes: u64,
    /// QUIC packets sent.
    pub sent_packets: u64,
    /// QUIC packets declared lost.
    pub lost_packets: u64,
    /// Smoothed path RTT.
    pub rtt: Duration,
    /// Congestion window, bytes.
    pub cwnd: u64,
}

impl WireCounters {
    /// Counts accumulated from `earlier` to `self` (rtt and cwnd: now).
    pub fn since(&self, earlier: &WireCounters) -> WireCounters {
        WireCounters {
            tx_bytes: self.tx_bytes.saturating_sub(earlier.tx_bytes),
            rx_bytes: self.rx_bytes.saturating_sub(earlier.rx_bytes),
            sent_packets: self.sent_packets.saturating_sub(earlier.sent_packets),
            lost_packets: self.lost_packets.saturating_sub(earlier.lost_packets),
            rtt: self.rtt,
            cwnd: self.cwnd,
        }
    }
}

/// Wire bytes of one stream, from the connection's counters while it was
/// open.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StreamWire {
    /// UDP bytes sent while the stream was open.
    pub up: u64,
    /// UDP bytes received while the stream was open.
    pub down: u64,
    /// True when other streams were open meanwhile (their bytes are in).
    pub shared: bool,
}

/// One QUIC connection to one node.
#[derive(Debug, Clone)]
pub struct LinkConnection {
    conn: quinn::Connection,
    /// Streams opened so far (to tell whether a stream had company).
    opened: Arc<AtomicU64>,
    /// Streams open now.
    in_flight: Arc<AtomicUsize>,
}

/// Tracks one open stream for [`StreamWire`] attribution.
#[derive(Debug)]
struct StreamTrack {
    start: WireCounters,
    seq: u64,
    company: bool,
    conn: LinkConnection,
}

impl StreamTrack {
    fn wire(&self) -> StreamWire {
        let d = self.conn.counters().since(&self.start);
        StreamWire {
            up: d.tx_bytes,
            down: d.rx_bytes,
            shared: self.company || self.conn.opened.load(Ordering::SeqCst) != self.seq,
        }
    }
}

impl Drop for StreamTrack {
    fn drop(&mut self) {
        self.conn.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Result of a download probe.
#[derive(Debug, Clone)]
pub struct Download {
    /// The node's summary.
    pub summary: TransferSummary,
    /// Payload bytes received.
    pub payload_bytes: u64,
    /// Framed bytes received, the summary included.
    pub framed_bytes: u64,
    /// From sending the request to receiving the summary.
    pub elapsed: Duration,
}

/// Result of an upload probe.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The node's summary of what it received.
    pub summary: TransferSummary,
    /// Framed bytes written (request excluded).
    pub framed_bytes: u64,
    /// From the first write to receiving the summary.
    pub elapsed: Duration,
}

impl LinkConnection {
    /// The node's address.
    pub fn remote(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// True once the connection has closed (it must be dialled again).
    pub fn is_closed(&self) -> bool {
        self.conn.close_reason().is_some()
    }

    /// The transport's counters now.
    pub fn counters(&self) -> WireCounters {
        let s = self.conn.stats();
        WireCounters {
            tx_bytes: s.udp_tx.bytes,
            rx_bytes: s.udp_rx.bytes,
            sent_packets: s.path.sent_packets,
            lost_packets: s.path.lost_packets,
            rtt: s.path.rtt,
            cwnd: s.path.cwnd,
        }
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.conn.close(0u32.into(), b"closed");
    }

    fn track(&self) -> StreamTrack {
        let company = self.in_flight.fetch_add(1, Ordering::SeqCst) > 0;
        let seq = self.opened.fetch_add(1, Ordering::SeqCst) + 1;
        StreamTrack {
            start: self.counters(),
            seq,
            company,
            conn: self.clone(),
        }
    }

    /// Opens a stream and writes its request; returns the framed bytes.
    async fn open(
        &self,
        kind: Kind,
        finish: bool,
    ) -> Result<(quinn::SendStream, quinn::RecvStream, u64), LinkError> {
        let (mut send, recv) = self.conn.open_bi().await?;
        let req = LinkRequest { kind: Some(kind) };
        let n = frame::write_message(&mut send, &req).await?;
        if finish {
            // Finishing an already-reset stream only means the node is gone;
            // the read that follows reports it.
            let _ = send.finish();
        }
        Ok((send, recv, n))
    }

    /// Round trip of an echo of `payload` bytes.
    pub async fn echo(&self, payload: usize) -> Result<Duration, LinkError> {
        let _track = self.track();
        let started = Instant::now();
        let body = vec![0x5a; payload];
        let (_send, mut recv, _) = self
            .open(
                Kind::Echo(EchoRequest {
                    payload: body.clone(),
                }),
                true,
            )
            .await?;
        match next::<EchoReply>(&mut recv).await? {
            Some((r, _)) if r.payload == body => Ok(started.elapsed()),
            Some(_) => Err(LinkError::Protocol("echo came back altered".into())),
            None => Err(LinkError::Protocol(
                "echo stream ended without a reply".into(),
            )),
        }
    }

    /// Asks the node to send `bytes` of payload in `chunk`-byte messages.
    pub async fn download(&self, bytes: u64, chunk: u32) -> Result<Download, LinkError> {
        let _track = self.track();
        let started = Instant::now();
        let (_send, mut recv, _) = self
            .open(
                Kind::Download(DownloadRequest {
                    bytes,
                    chunk_bytes: chunk,
                }),
                true,
            )
            .await?;
        let (mut payload, mut framed) = (0u64, 0u64);
        loop {
            let Some((ev, n)) = next::<ProbeEvent>(&mut recv).await? else {
                return Err(LinkError::Protocol(
                    "download ended without a summary".into(),
                ));
            };
            framed += n;
            match ev.event {
                Some(probe_event::Event::Chunk(c)) => payload += c.data.len() as u64,
                Some(probe_event::Event::Summary(summary)) => {
                    return Ok(Download {
                        summary,
                        payload_bytes: payload,
                        framed_bytes: framed,
                        elapsed: started.elapsed(),
                    });
                }
                None => {}
            }
        }
    }

    /// Sends `bytes` of payload to the node in `chunk`-byte messages.
    pub async fn upload(&self, bytes: u64, chunk: usize) -> Result<Upload, LinkError> {
        let _track = self.track();
        let started = Instant::now();
        let (mut send, mut recv, _) = self
            .open(Kind::Upload(UploadRequest { bytes }), false)
            .await?;
        let chunk = chunk.max(1);
        let mut left = bytes;
        let mut framed = 0;
        while left > 0 {
            let n = left.min(chunk as u64) as usize;
            framed += frame::write_message(
                &mut send,
                &ProbeChunk {
                    data: vec![0xa5; n],
                },
            )
            .await?;
            left -= n as u64;
        }
        let _ = send.finish();
        match next::<TransferSummary>(&mut recv).await? {
            Some((summary, _)) => Ok(Upload {
                summary,
                framed_bytes: framed,
                elapsed: started.elapsed(),
            }),
            None => Err(LinkError::Protocol("upload ended without a summary".into())),
        }
    }

    /// Starts a generation; read it with [`GenerateCall::next`].
    pub async fn generate(&self, req: v1::GenerateRequest) -> Result<GenerateCall, LinkError> {
        let track = self.track();
        let (send, recv, up) = self.open(Kind::Generate(req), true).await?;
        Ok(GenerateCall {
            _send: send,
            recv,
            bytes_up: up,
            bytes_down: 0,
            track,
        })
    }
}

/// A generation streaming over QUIC.
#[derive(Debug)]
pub struct GenerateCall {
    _send: quinn::SendStream,
    recv: quinn::RecvStream,
    /// Framed request bytes sent.
    pub bytes_up: u64,
    /// Framed bytes received so far.
    pub bytes_down: u64,
    track: StreamTrack,
}

impl GenerateCall {
    /// The next event; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Result<GenerateEvent, LinkError>> {
        match next::<GenerateEvent>(&mut self.recv).await {
            Ok(Some((ev, n))) => {
                self.bytes_down += n;
                Some(Ok(ev))
            }
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// Wire bytes of the connection while this call was open.
    pub fn wire(&self) -> StreamWire {
        self.track.wire()
    }
}

/// Reads one message; a status trailer becomes [`LinkError::Status`].
async fn next<M: Message + Default>(
    recv: &mut quinn::RecvStream,
) -> Result<Option<(M, u64)>, LinkError> {
    match frame::read_frame::<_, M>(recv, DEFAULT_MAX_FRAME_BYTES).await? {
        None => Ok(None),
        Some(Frame::Message(m, n)) => Ok(Some((m, n))),
        Some(Frame::Status(s)) => Err(LinkError::Status {
            code: s.code,
            message: s.message,
        }),
    }
}
