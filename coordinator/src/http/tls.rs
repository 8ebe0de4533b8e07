//! HTTPS for the HTTP listener: the coordinator's CA-issued certificate
//! (no client certificate: callers bring an API key), with handshakes run
//! off the accept loop so a peer that stalls one cannot hold up others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Handshakes in flight at most; connections beyond it are closed at once.
pub const MAX_PENDING_HANDSHAKES: usize = 64;
/// A handshake not done within this is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server configuration presenting `tls`'s certificate over TLS 1.2/1.3
/// with HTTP/1.1 and h2 offered.
pub fn server_config(
    tls: &netmoe_common::pki::TlsDir,
) -> Result<rustls::ServerConfig, netmoe_common::pki::PkiError> {
    let (chain, key, _roots) = tls.rustls_parts()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| netmoe_common::pki::PkiError::BadCertificate(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A TCP listener whose connections come out TLS-terminated.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    pending: Arc<Semaphore>,
    done_tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    done_rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Wraps `tcp` with `config`.
    pub fn new(tcp: TcpListener, config: rustls::ServerConfig) -> Self {
        let (done_tx, done_rx) = mpsc::channel(MAX_PENDING_HANDSHAKES);
        Self {
            tcp,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            pending: Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES)),
            done_tx,
            done_rx,
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                Some(done) = self.done_rx.recv() => return done,
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, addr)) => {
                        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
                            tracing::warn!(%addr, "{MAX_PENDING_HANDSHAKES} TLS handshakes pending; connection closed");
                            continue;
                        };
                        let (acceptor, tx) = (self.acceptor.clone(), self.done_tx.clone());
                        tokio::spawn(async move {
                            let _permit = permit;
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => {
                                    let _ = tx.send((tls, addr)).await;
                                }
                                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                            }
                        });
                    }
                    // Out of descriptors and the like: back off, as axum does.
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
