//! Command-line options the examples share (RFC 5351 §3: a PE or PU names its pool and the
//! registrars to use). Included by each example with `mod common;`; not an example itself.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};

use asap::pe::{PoolElement, PoolElementBuilder};
use asap::transport::tls::{ClientAuth, TlsContext};
use asap::transport::{parse_addr_list, TransportKind};

/// The pool and how to reach its registrars.
#[derive(clap::Args, Debug)]
pub struct PoolArgs {
    /// Pool handle.
    #[arg(long, default_value = "EchoPool")]
    pub pool: String,
    /// Registrar `ADDR[,ADDR...]:PORT` (repeatable); none = announces only.
    #[arg(long)]
    pub registrar: Vec<String>,
    /// Transport for the registrar association (and a PE's user transport): auto, sctp,
    /// tcp.
    #[arg(long, default_value = "auto")]
    pub transport: TransportKind,
}

/// A pool element's pool, registrars and user transport.
#[derive(clap::Args, Debug)]
pub struct PeArgs {
    #[command(flatten)]
    pub pool: PoolArgs,
    /// Local address of the user transport (port 0 = any).
    #[arg(long, default_value = "0.0.0.0:0")]
    pub listen: SocketAddr,
    /// Address registered when listening on a wildcard address [default: the local
    /// address towards the first registrar].
    #[arg(long)]
    pub advertise: Option<IpAddr>,
}

impl PeArgs {
    /// A PE builder with the pool, transport, registrars, listen and advertise addresses of
    /// the command line.
    pub fn builder(&self) -> Result<PoolElementBuilder, Box<dyn std::error::Error>> {
        let mut b = PoolElement::builder(self.pool.pool.as_str())
            .transport(self.pool.transport)
            .listen(self.listen);
        for r in &self.pool.registrar {
            b = b.registrar_addrs(parse_addr_list(r)?);
        }
        if let Some(ip) = self.advertise {
            b = b.advertise(ip);
        }
        Ok(b)
    }
}

/// TLS towards the registrar (SECURITY.md "TLS over SCTP").
#[derive(clap::Args, Debug)]
pub struct TlsArgs {
    /// TLS towards the registrar (SECURITY.md "TLS over SCTP"): PEM file of the CA the
    /// registrar's certificate must chain to. Without it: plaintext.
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// PEM certificate presented to the registrar (with --tls-ca and --tls-key), e.g. for
    /// a pool whose registrations need a client certificate.
    #[arg(long, requires = "tls_ca", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
}

impl TlsArgs {
    /// The TLS context of `--tls-ca/--tls-cert/--tls-key`, if `--tls-ca` is given.
    pub fn context(&self) -> Result<Option<TlsContext>, Box<dyn std::error::Error>> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let id = self.tls_cert.as_deref().zip(self.tls_key.as_deref());
        Ok(Some(TlsContext::from_files(ca, id, ClientAuth::Required)?))
    }
}

/// Logs to stderr at `RUST_LOG` (default `info`), in colour only on a terminal.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
