//! Link probe transfers the node serves: `Download` streams payload to the
//! caller, paced by the emulated channel like every data-plane byte, and
//! ends with the node's own count and timing. The same stream answers the
//! gRPC call and the QUIC one, so the two transports move identical bytes.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use netmoe_common::link::probe::MAX_PROBE_BYTES;
use netmoe_proto::v1::{self, ProbeEvent, probe_event::Event};
use prost::Message;
use tonic::Status;

use crate::service::{NodeState, count_with_last};

/// Payload per message when the request sets none.
pub const DEFAULT_CHUNK_BYTES: u32 = 16 * 1024;
/// Largest payload per message.
pub const MAX_CHUNK_BYTES: u32 = 1024 * 1024;
/// Bytes of framing per message.
const FRAME: u64 = netmoe_common::link::frame::HEADER_BYTES;

/// The response stream of `Download`.
pub type ProbeStream = Pin<Box<dyn Stream<Item = Result<ProbeEvent, Status>> + Send>>;

/// Checks a probe size against the limit.
pub fn check_probe_bytes(bytes: u64) -> Result<u64, Status> {
    if bytes == 0 || bytes > MAX_PROBE_BYTES {
        return Err(Status::invalid_argument(format!(
            "probe bytes {bytes} out of range 1..={MAX_PROBE_BYTES}"
        )));
    }
    Ok(bytes)
}

/// Validates a download and returns its stream. The transfer draws the
/// channel once, like any transfer.
pub fn download_events(
    state: &Arc<NodeState>,
    req: &v1::DownloadRequest,
) -> Result<ProbeStream, Status> {
    let bytes = check_probe_bytes(req.bytes)?;
    let chunk = match req.chunk_bytes {
        0 => DEFAULT_CHUNK_BYTES,
        c if c > MAX_CHUNK_BYTES => {
            return Err(Status::invalid_argument(format!(
                "chunk_bytes {c} over the {MAX_CHUNK_BYTES}-byte limit"
            )));
        }
        c => c,
    };
    let permit = state.link.admit_probe()?;
    let d = Downloading {
        _permit: permit,
        snr: state.draw_snr(),
        state: state.clone(),
        left: bytes,
        sent: 0,
        framed: 0,
        chunk: vec![0x42; chunk as usize],
        paced: Duration::ZERO,
        started: None,
        done: false,
    };
    Ok(Box::pin(futures::stream::unfold(d, Downloading::step)))
}

struct Downloading {
    /// The probe slot, released when the stream ends or is dropped.
    _permit: tokio::sync::OwnedSemaphorePermit,
    state: Arc<NodeState>,
    snr: v1::SnrReport,
    left: u64,
    sent: u64,
    framed: u64,
    chunk: Vec<u8>,
    paced: Duration,
    started: Option<Instant>,
    done: bool,
}

impl Downloading {
    async fn step(mut self) -> Option<(Result<ProbeEvent, Status>, Self)> {
        if self.done {
            return None;
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        if self.left > 0 {
            let n = self.left.min(self.chunk.len() as u64) as usize;
            let ev = ProbeEvent {
                event: Some(Event::Chunk(v1::ProbeChunk {
                    data: self.chunk[..n].to_vec(),
                })),
            };
            let len = ev.encoded_len() as u64 + FRAME;
            self.paced += self.state.pace(len).await;
            self.left -= n as u64;
            self.sent += n as u64;
            self.framed += len;
            return Some((Ok(ev), self));
        }
        self.done = true;
        let mut summary = v1::TransferSummary {
            payload_bytes: self.sent,
            framed_bytes: 0,
            seconds: started.elapsed().as_secs_f64(),
            paced_seconds: self.paced.as_secs_f64(),
            snr: Some(self.snr.clone()),
        };
        let total = count_with_last(self.framed, |t| {
            summary.framed_bytes = t;
            ProbeEvent {
                event: Some(Event::Summary(summary.clone())),
            }
            .encoded_len() as u64
        });
        summary.framed_bytes = total;
        self.state.pace(total - self.framed).await;
        Some((
            Ok(ProbeEvent {
                event: Some(Event::Summary(summary)),
            }),
            self,
        ))
    }
}
