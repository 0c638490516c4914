//! TLS for ASAP and ENRP associations over TCP (RFC 5353 §11, RFC 5352 §6, RFC 5355;
//! issue 13; the repository's `SECURITY.md`).
//!
//! TLS wraps the TCP byte stream and the usual RSerPool framing ([`super::tcp`]: messages cut
//! at the common header's Message Length) runs inside it, so everything else about a TCP
//! association (maximum size, incomplete-message timeout, partial-message budget) is
//! unchanged. rustls with the *ring* provider; TLS 1.3 and 1.2.
//!
//! * A [`TlsContext`] holds the cluster CA (every peer certificate must chain to it), this
//!   end's certificate chain and key (optional for a pure client, e.g. a PE without a
//!   certificate) and whether a listener requires a client certificate
//!   ([`ClientAuth`]). [`Transport::with_tls`](super::Transport::with_tls) makes a transport
//!   whose listeners and connections use it.
//! * **Names are checked by the application, not by the handshake.** A client does not know
//!   the name of the registrar it connects to (static peers are addresses, peers learned
//!   from PRESENCE are server IDs), so the server's certificate is only checked to chain to
//!   the CA, as the client's is. The verified end-entity certificate is then available as
//!   [`PeerCertificate`] ([`Association::peer_certificate`](super::Association::peer_certificate)),
//!   and [`PeerCertificate::valid_for`] tells whether it carries a given DNS name or IP
//!   address as subject alternative name (the registrar binds server IDs and per-pool
//!   registration credentials to such names).
//! * **Listeners** ([`super::Transport::listen`] on a TLS transport) run each handshake in a
//!   task of its own with [`TlsContext::handshake_timeout`], so a silent or slow client never
//!   stalls `accept`; associations come out of `accept` only after a successful handshake.
//!   With [`ClientAuth::Required`] anything that is not a TLS ClientHello is closed at once
//!   (plaintext refused); with [`ClientAuth::Optional`] a connection whose first byte is not
//!   a TLS handshake record (0x16, no ASAP/ENRP message type has this value) is taken as a
//!   plaintext association, so rsplib PEs and TLS PEs share one port. Failed handshakes are
//!   logged (`warn`) and counted ([`super::Listener::tls_refused`]).
//! * SCTP (kernel and `sctp-udp`): the same context runs TLS on stream 0 of the association
//!   with the same framing inside ([`super::tls_sctp`], RFC 3436 in reduced form).

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::error::TransportError;
use super::tcp::{self, PartialBudget, Stream, TcpAssoc, TcpListeners};
use super::{TransportConfig, TransportKind};

/// Default time a TLS handshake may take before the connection is closed.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// First byte of a TLS record carrying a handshake message (RFC 8446 §5.1,
/// `ContentType.handshake`).
pub(crate) const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Completed handshakes waiting for `accept`.
const ACCEPT_QUEUE: usize = 64;

/// Most handshakes one listener runs at a time; a connection beyond it is closed at once
/// (and counted as refused), so a flood of connections cannot hold unbounded tasks and
/// buffers for the handshake timeout each.
pub const MAX_CONCURRENT_HANDSHAKES: usize = 256;

/// Error while loading TLS material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A PEM file holds no usable item of the expected kind.
    #[error("{what}: {detail}")]
    Pem {
        /// Which file or item (`CA`, `certificate`, `key`).
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// rustls refused the configuration (e.g. key does not match the certificate).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Whether a TLS listener requires a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Mutual TLS: a client must present a certificate chaining to the CA; plaintext
    /// connections are closed (ENRP peering).
    Required,
    /// A client may present a certificate (verified against the CA if it does) or none, and
    /// plaintext connections are accepted too (the ASAP port with per-pool credentials).
    Optional,
}

/// The verified end-entity certificate of a TLS peer.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    der: CertificateDer<'static>,
}

impl fmt::Debug for PeerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerCertificate({} bytes DER)", self.der.len())
    }
}

impl PeerCertificate {
    /// Wraps a DER certificate (already verified by the handshake, or a test's).
    pub fn from_der(der: Vec<u8>) -> Self {
        PeerCertificate {
            der: CertificateDer::from(der),
        }
    }

    /// The end-entity certificate the peer presented in the handshake of `conn` (over TCP
    /// or SCTP), if any.
    pub(crate) fn of(conn: &rustls::CommonState) -> Option<Self> {
        let der = conn.peer_certificates()?.first()?;
        Some(PeerCertificate {
            der: der.clone().into_owned(),
        })
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Whether the certificate carries `name` as subject alternative name: a DNS name
    /// (`dNSName`, wildcards in the certificate as RFC 6125 allows) or an IP address
    /// (`iPAddress`). The subject's common name is not looked at (RFC 6125 §6.4.4).
    pub fn valid_for(&self, name: &str) -> bool {
        let Ok(server_name) = ServerName::try_from(name) else {
            return false;
        };
        match webpki::EndEntityCert::try_from(&self.der) {
            Ok(ee) => ee.verify_is_valid_for_subject_name(&server_name).is_ok(),
            Err(_) => false,
        }
    }
}

/// Whether `name` can be matched against a certificate ([`PeerCertificate::valid_for`]): a
/// syntactically valid DNS name or an IP address.
pub fn is_valid_name(name: &str) -> bool {
    ServerName::try_from(name).is_ok()
}

/// TLS material and policy of one end ([`super::tls`]).
#[derive(Clone)]
pub struct TlsContext {
    server: Option<Arc<ServerConfig>>,
    client: Arc<ClientConfig>,
    client_auth: ClientAuth,
    /// Time a handshake (and, on an optional-TLS listener, the first byte) may take.
    pub handshake_timeout: Duration,
    refused: Option<Arc<AtomicU64>>,
}

impl fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsContext")
            .field("has_certificate", &self.server.is_some())
            .field("client_auth", &self.client_auth)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

/// The crypto provider: *ring* (builds with the C compiler alone). rustls 0.23.48 marks
/// it deprecated because ring has no post-quantum key exchange (X25519MLKEM768); switching
/// to aws-lc-rs is this one function (README "Dependencies and why").
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_err(what: &str, detail: impl fmt::Display) -> TlsError {
    TlsError::Pem {
        what: what.into(),
        detail: detail.to_string(),
    }
}

fn certs(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let v = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(what, e))?;
    if v.is_empty() {
        return Err(pem_err(what, "no CERTIFICATE in the PEM data"));
    }
    Ok(v)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

impl TlsContext {
    /// Builds a context from PEM data: `ca` (one or more CA certificates: the cluster CA),
    /// optionally this end's `identity` (certificate chain, leaf first, and its private
    /// key: PKCS#8, PKCS#1 or SEC1), and the client-certificate policy of listeners.
    ///
    /// A listener needs an identity; a context without one can only connect (and then
    /// presents no client certificate).
    pub fn from_pem(
        ca: &[u8],
        identity: Option<(&[u8], &[u8])>,
        client_auth: ClientAuth,
    ) -> Result<Self, TlsError> {
        let provider = provider();
        let mut roots = RootCertStore::empty();
        for c in certs("CA", ca)? {
            roots
                .add(c)
                .map_err(|e| pem_err("CA", format!("not a usable CA certificate: {e}")))?;
        }
        let roots = Arc::new(roots);
        let identity = match identity {
            Some((chain, key)) => {
                let chain = certs("certificate", chain)?;
                let key = rustls_pemfile::private_key(&mut &key[..])
                    .map_err(|e| pem_err("key", e))?
                    .ok_or_else(|| pem_err("key", "no PRIVATE KEY in the PEM data"))?;
                Some((chain, key))
            }
            None => None,
        };
        let verifier = {
            let b = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
            match client_auth {
                ClientAuth::Required => b.build(),
                ClientAuth::Optional => b.allow_unauthenticated().build(),
            }
            .map_err(|e| TlsError::Config(e.to_string()))?
        };
        let cfg = |e: rustls::Error| TlsError::Config(e.to_string());
        let server = match &identity {
            Some((chain, key)) => Some(Arc::new(
                ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(rustls::ALL_VERSIONS)
                    .map_err(cfg)?
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(chain.clone(), key.clone_key())
                    .map_err(cfg)?,
            )),
            None => None,
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(cfg)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CaOnlyVerifier { roots, provider }));
        let client = match identity {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(cfg)?,
            None => builder.with_no_client_auth(),
        };
        Ok(TlsContext {
            server,
            client: Arc::new(client),
            client_auth,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            refused: None,
        })
    }

    /// Like [`from_pem`](Self::from_pem), reading the PEM files `ca`, and `cert` + `key` if
    /// given.
    pub fn from_files(
        ca: &Path,
        identity: Option<(&Path, &Path)>,
        client_auth: ClientAuth,
    ) -> Result<Self, TlsError> {
        let ca = read(ca)?;
        let identity = match identity {
            Some((c, k)) => Some((read(c)?, read(k)?)),
            None => None,
        };
        Self::from_pem(
            &ca,
            identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
            client_auth,
        )
    }

    /// Sets the handshake timeout.
    pub fn with_handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    /// Listeners made with this context count refused connections (failed or timed-out
    /// handshakes, plaintext where TLS is required) in `counter` (e.g. a metric) as well as
    /// in [`super::Listener::tls_refused`].
    pub fn with_refusal_counter(mut self, counter: Arc<AtomicU64>) -> Self {
        self.refused = Some(counter);
        self
    }

    /// The rustls client configuration (TLS over SCTP, [`super::tls_sctp`]).
    pub(crate) fn client_config(&self) -> Arc<ClientConfig> {
        self.client.clone()
    }

    /// The rustls server configuration, if this end has a certificate.
    pub(crate) fn server_config(&self) -> Option<Arc<ServerConfig>> {
        self.server.clone()
    }

    /// The counter set by [`with_refusal_counter`](Self::with_refusal_counter).
    pub(crate) fn refusal_counter(&self) -> Option<Arc<AtomicU64>> {
        self.refused.clone()
    }

    /// Whether listeners require a client certificate.
    pub fn client_auth(&self) -> ClientAuth {
        self.client_auth
    }

    /// Whether this context has a certificate of its own (can listen, presents a client
    /// certificate when connecting).
    pub fn has_certificate(&self) -> bool {
        self.server.is_some()
    }
}

/// Verifies a server certificate against the CA only; names are checked by the
/// application on [`PeerCertificate`] (see the module documentation).
#[derive(Debug)]
struct CaOnlyVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for CaOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A second descriptor of the socket, kept by the association halves for shutdown and
/// `SO_LINGER` (the TLS stream owns the first).
fn dup(stream: &TcpStream) -> Result<Arc<socket2::Socket>, TransportError> {
    socket2::SockRef::from(stream)
        .try_clone()
        .map(Arc::new)
        .map_err(|e| TransportError::io("dup", e))
}

/// Connects over TCP and runs the client handshake (within the handshake timeout).
pub(crate) async fn connect(
    ctx: &TlsContext,
    peers: &[SocketAddr],
    local: &[SocketAddr],
    config: Arc<TransportConfig>,
    reuse_port: bool,
) -> Result<TcpAssoc, TransportError> {
    let stream = tcp::connect_stream(peers, local, &config, reuse_port).await?;
    let peer = stream
        .peer_addr()
        .map_err(|e| TransportError::io("getpeername", e))?;
    let sock = dup(&stream)?;
    let connector = tokio_rustls::TlsConnector::from(ctx.client.clone());
    let name = ServerName::IpAddress(peer.ip().into());
    let tls =
        match tokio::time::timeout(ctx.handshake_timeout, connector.connect(name, stream)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(TransportError::Tls {
                    peer,
                    detail: e.to_string(),
                })
            }
            Err(_) => {
                return Err(TransportError::Tls {
                    peer,
                    detail: format!("handshake timed out after {:?}", ctx.handshake_timeout),
                })
            }
        };
    let cert = PeerCertificate::of(tls.get_ref().1);
    let budget = PartialBudget::new(config.tcp_max_partial_bytes);
    TcpAssoc::new(
        Stream::Tls(Box::new(tokio_rustls::TlsStream::Client(tls)), sock, cert),
        config,
        budget,
    )
}

/// A listener whose associations come out of [`accept`](Self::accept) only after their TLS
/// handshake: over TCP ([`TlsListener::start`]; with [`ClientAuth::Optional`], as plaintext
/// when the client does not start one) or over SCTP ([`super::tls_sctp::TlsSctpListener`]).
/// Handshakes run in tasks of their own, started by the task this listener owns.
pub(crate) struct TlsListener<T = TcpAssoc> {
    rx: Mutex<mpsc::Receiver<T>>,
    addrs: Vec<SocketAddr>,
    kind: TransportKind,
    /// Partial-message budget of the accepted associations (TCP only).
    budget: Option<Arc<PartialBudget>>,
    refused: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl<T> Drop for TlsListener<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<T> TlsListener<T> {
    /// A listener on `addrs` of `kind` whose `task` sends finished handshakes to `rx` and
    /// counts refusals in `refused`.
    pub(crate) fn new(
        rx: mpsc::Receiver<T>,
        addrs: Vec<SocketAddr>,
        kind: TransportKind,
        budget: Option<Arc<PartialBudget>>,
        refused: Arc<AtomicU64>,
        task: JoinHandle<()>,
    ) -> Self {
        TlsListener {
            rx: Mutex::new(rx),
            addrs,
            kind,
            budget,
            refused,
            task,
        }
    }

    pub(crate) async fn accept(&self) -> Result<T, TransportError> {
        self.rx
            .lock()
            .await
            .recv()
            .await
            .ok_or(TransportError::Closed)
    }

    pub(crate) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    pub(crate) fn kind(&self) -> TransportKind {
        self.kind
    }

    pub(crate) fn partial_bytes(&self) -> usize {
        self.budget.as_ref().map_or(0, |b| b.used())
    }

    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Where a [`TlsListener`] gets its connections and how it runs the server side of the
/// handshake on one: TLS over TCP ([`TlsListener::start`]) or over SCTP
/// ([`super::tls_sctp::TlsSctpListener`]).
pub(crate) trait Handshaker: Send + Sync + 'static {
    /// An accepted connection whose handshake has not run yet.
    type Incoming: Send + 'static;
    /// What a finished handshake makes of it.
    type Assoc: Send + 'static;

    /// The next accepted connection; [`TransportError::Closed`] ends the listener.
    fn accept(&self) -> impl Future<Output = Result<Self::Incoming, TransportError>> + Send;
    /// The connection's peer address, for log lines.
    fn peer(incoming: &Self::Incoming) -> Option<SocketAddr>;
    /// Ends a connection that finds no free handshake slot.
    fn reject(incoming: Self::Incoming);
    /// The server side of the handshake (bounded by the context's handshake timeout by the
    /// caller): `Err` says why the connection was refused; `Ok(None)`: it went away after the
    /// handshake.
    fn handshake<'a>(
        &'a self,
        ctx: &'a TlsContext,
        incoming: Self::Incoming,
    ) -> impl Future<Output = Result<Option<Self::Assoc>, String>> + Send + 'a;
}

impl<T: Send + 'static> TlsListener<T> {
    /// Starts the task that accepts from `source` and runs each handshake in a task of its
    /// own (at most [`MAX_CONCURRENT_HANDSHAKES`] at a time, each within the context's
    /// handshake timeout), counting refusals in the context's counter. Log lines name the
    /// transport `kind`.
    pub(crate) fn spawn<H: Handshaker<Assoc = T>>(
        source: H,
        ctx: TlsContext,
        addrs: Vec<SocketAddr>,
        kind: TransportKind,
        budget: Option<Arc<PartialBudget>>,
    ) -> Self {
        let refused = ctx
            .refusal_counter()
            .unwrap_or_else(|| Arc::new(AtomicU64::new(0)));
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let source = Arc::new(source);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
        let task = tokio::spawn({
            let refused = refused.clone();
            async move {
                loop {
                    let incoming = match source.accept().await {
                        Ok(i) => i,
                        Err(TransportError::Closed) => return,
                        Err(e) => {
                            warn!(error = %e, %kind, "TLS listener: accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let peer = H::peer(&incoming);
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        refused.fetch_add(1, Ordering::Relaxed);
                        warn!(
                            ?peer,
                            %kind,
                            max = MAX_CONCURRENT_HANDSHAKES,
                            "TLS: too many handshakes in progress, connection closed"
                        );
                        H::reject(incoming);
                        continue;
                    };
                    let (tx, ctx, refused, source) =
                        (tx.clone(), ctx.clone(), refused.clone(), source.clone());
                    tokio::spawn(async move {
                        let _slot = slot;
                        let res = tokio::time::timeout(
                            ctx.handshake_timeout,
                            source.handshake(&ctx, incoming),
                        )
                        .await
                        .unwrap_or_else(|_| {
                            Err(format!(
                                "handshake timed out after {:?}",
                                ctx.handshake_timeout
                            ))
                        });
                        match res {
                            Ok(Some(a)) => {
                                let _ = tx.send(a).await;
                            }
                            Ok(None) => {}
                            Err(detail) => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                warn!(?peer, %kind, %detail, "TLS: connection refused");
                            }
                        }
                    });
                }
            }
        });
        TlsListener::new(rx, addrs, kind, budget, refused, task)
    }
}

/// TLS over TCP: the bound listeners and the acceptor made of the context's certificate.
struct TcpHandshaker {
    tcp: TcpListeners,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl Handshaker for TcpHandshaker {
    type Incoming = TcpStream;
    type Assoc = TcpAssoc;

    fn accept(&self) -> impl Future<Output = Result<TcpStream, TransportError>> + Send {
        self.tcp.accept_stream()
    }

    fn peer(stream: &TcpStream) -> Option<SocketAddr> {
        stream.peer_addr().ok()
    }

    fn reject(stream: TcpStream) {
        drop(stream);
    }

    async fn handshake(
        &self,
        ctx: &TlsContext,
        stream: TcpStream,
    ) -> Result<Option<TcpAssoc>, String> {
        let stream = handshake(stream, &self.acceptor, ctx.client_auth).await?;
        match TcpAssoc::new(stream, self.tcp.config().clone(), self.tcp.budget().clone()) {
            Ok(a) => Ok(Some(a)),
            Err(e) => {
                debug!(error = %e, "TLS: accepted connection gone");
                Ok(None)
            }
        }
    }
}

impl TlsListener<TcpAssoc> {
    /// Starts accepting on `tcp` (already bound).
    pub(crate) fn start(tcp: TcpListeners, ctx: TlsContext) -> Result<Self, TransportError> {
        let Some(server) = ctx.server.clone() else {
            return Err(TransportError::Tls {
                peer: SocketAddr::from(([0, 0, 0, 0], 0)),
                detail: "a TLS listener needs a certificate and key".into(),
            });
        };
        let addrs = tcp
            .local_addrs()
            .map_err(|e| TransportError::io("getsockname", e))?;
        let budget = tcp.budget().clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        Ok(TlsListener::spawn(
            TcpHandshaker { tcp, acceptor },
            ctx,
            addrs,
            TransportKind::Tcp,
            Some(budget),
        ))
    }
}

/// Server side of one connection: sniff the first byte, then TLS (or plaintext if allowed).
async fn handshake(
    stream: TcpStream,
    acceptor: &tokio_rustls::TlsAcceptor,
    client_auth: ClientAuth,
) -> Result<Stream, String> {
    let mut first = [0u8; 1];
    let n = stream
        .peek(&mut first)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("closed before the handshake".into());
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        return match client_auth {
            ClientAuth::Optional => Ok(Stream::Plain(stream)),
            ClientAuth::Required => Err(format!(
                "plaintext (first byte {:#04x}) where TLS is required",
                first[0]
            )),
        };
    }
    let sock = dup(&stream).map_err(|e| e.to_string())?;
    let tls = acceptor
        .accept(stream)
        .await
        .map_err(|e| format!("handshake failed: {e}"))?;
    let cert = PeerCertificate::of(tls.get_ref().1);
    Ok(Stream::Tls(
        Box::new(tokio_rustls::TlsStream::Server(tls)),
        sock,
        cert,
    ))
}
