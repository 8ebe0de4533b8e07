//! Messages on a QUIC stream, framed exactly as gRPC frames them: a flag
//! byte, a 4-byte big-endian length, the protobuf bytes. A flag with the
//! high bit set marks a [`LinkStatus`] trailer (as gRPC-Web marks its
//! trailers), so a failed stream says why with a gRPC status code.

use netmoe_proto::v1::LinkStatus;
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of framing before every message (the same 5 bytes as gRPC).
pub const HEADER_BYTES: u64 = 5;
/// Flag of a data frame.
const DATA: u8 = 0x00;
/// Flag of a status trailer frame.
const TRAILER: u8 = 0x80;
/// Largest frame a reader accepts unless told otherwise: a 1 MiB probe
/// chunk plus room.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024 + 1024;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed underneath.
    #[error("stream I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The announced length exceeds the reader's limit.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The flag byte is neither data nor trailer.
    #[error("unknown frame flag {0:#04x}")]
    BadFlag(u8),
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// The bytes are not the expected message.
    #[error("undecodable message: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// One frame read from a stream.
#[derive(Debug)]
pub enum Frame<M> {
    /// A message, and its framed size (header included).
    Message(M, u64),
    /// The stream failed; the sender's status.
    Status(LinkStatus),
}

/// Framed size of a message.
pub fn framed_len(msg: &impl Message) -> u64 {
    msg.encoded_len() as u64 + HEADER_BYTES
}

/// Writes one message as a data frame; returns the framed bytes written.
pub async fn write_message<W, M>(w: &mut W, msg: &M) -> std::io::Result<u64>
where
    W: AsyncWrite + Unpin,
    M: Message,
{
    write_frame(w, DATA, msg).await
}

/// Writes a status trailer; returns the framed bytes written.
pub async fn write_status<W>(w: &mut W, code: i32, message: &str) -> std::io::Result<u64>
where
    W: AsyncWrite + Unpin,
{
    let status = LinkStatus {
        code,
        message: message.to_owned(),
    };
    write_frame(w, TRAILER, &status).await
}

async fn write_frame<W, M>(w: &mut W, flag: u8, msg: &M) -> std::io::Result<u64>
where
    W: AsyncWrite + Unpin,
    M: Message,
{
    let len = msg.encoded_len();
    let len32 = u32::try_from(len)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "message over 4 GiB"))?;
    let mut buf = Vec::with_capacity(len + HEADER_BYTES as usize);
    buf.push(flag);
    buf.extend_from_slice(&len32.to_be_bytes());
    msg.encode(&mut buf)
        .expect("a Vec grows to fit any message");
    w.write_all(&buf).await?;
    Ok(buf.len() as u64)
}

/// Reads the next frame; `None` when the stream ended cleanly between
/// frames.
pub async fn read_frame<R, M>(r: &mut R, max: usize) -> Result<Option<Frame<M>>, FrameError>
where
    R: AsyncRead + Unpin,
    M: Message + Default,
{
    let mut header = [0u8; HEADER_BYTES as usize];
    let first = r.read(&mut header[..1]).await?;
    if first == 0 {
        return Ok(None);
    }
    read_exact(r, &mut header[1..]).await?;
    let flag = header[0];
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut body = vec![0u8; len];
    read_exact(r, &mut body).await?;
    let framed = len as u64 + HEADER_BYTES;
    match flag {
        DATA => Ok(Some(Frame::Message(M::decode(body.as_slice())?, framed))),
        TRAILER => Ok(Some(Frame::Status(LinkStatus::decode(body.as_slice())?))),
        other => Err(FrameError::BadFlag(other)),
    }
}

async fn read_exact<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<(), FrameError> {
    match r.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Truncated),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netmoe_proto::v1::{EchoReply, ProbeChunk};

    #[tokio::test]
    async fn messages_and_trailers_round_trip_with_grpc_sizes() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let chunk = ProbeChunk {
            data: vec![7; 1000],
        };
        let n = write_message(&mut a, &chunk).await.unwrap();
        assert_eq!(n, framed_len(&chunk));
        assert_eq!(n, chunk.encoded_len() as u64 + 5);
        write_status(&mut a, 8, "at capacity").await.unwrap();
        drop(a);
        match read_frame::<_, ProbeChunk>(&mut b, 4096).await.unwrap() {
            Some(Frame::Message(m, size)) => {
                assert_eq!(m, chunk);
                assert_eq!(size, n);
            }
            other => panic!("expected a message, got {other:?}"),
        }
        match read_frame::<_, ProbeChunk>(&mut b, 4096).await.unwrap() {
            Some(Frame::Status(s)) => assert_eq!((s.code, s.message.as_str()), (8, "at capacity")),
            other => panic!("expected a trailer, got {other:?}"),
        }
        assert!(
            read_frame::<_, ProbeChunk>(&mut b, 4096)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn oversized_truncated_and_garbled_frames_are_errors() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_message(
            &mut a,
            &EchoReply {
                payload: vec![1; 100],
            },
        )
        .await
        .unwrap();
        let e = read_frame::<_, EchoReply>(&mut b, 10).await.unwrap_err();
        assert!(matches!(e, FrameError::TooLarge { max: 10, .. }), "{e}");

        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 0, 0, 0, 9, 1, 2]).await.unwrap();
        drop(a);
        let e = read_frame::<_, EchoReply>(&mut b, 100).await.unwrap_err();
        assert!(matches!(e, FrameError::Truncated), "{e}");

        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[3, 0, 0, 0, 0]).await.unwrap();
        let e = read_frame::<_, EchoReply>(&mut b, 100).await.unwrap_err();
        assert!(matches!(e, FrameError::BadFlag(3)), "{e}");
    }
}
