//! Throw-away PKI for the TLS tests (issue 13; `asap::transport::tls`): a cluster CA made
//! with rcgen and end-entity certificates it issues, as PEM, plus the
//! [`TlsContext`]s built from them; waits on TLS associations and listeners.

use std::net::SocketAddr;
use std::time::Duration;

use asap::transport::tls::{ClientAuth, TlsContext};
use asap::transport::{Association, Event, Listener, Msg, Transport};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A CA: its certificate and key.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// An end-entity certificate and its key, PEM.
#[derive(Clone)]
pub struct Identity {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
    /// The certificate (DER).
    pub cert_der: Vec<u8>,
}

impl Ca {
    /// A new self-signed CA named `name` (ECDSA P-256).
    pub fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = p.self_signed(&key).expect("CA certificate");
        Ca { cert, key }
    }

    /// The CA certificate (PEM).
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// Issues a certificate with these subject alternative names (DNS names or IP
    /// addresses), usable as TLS server and client certificate.
    pub fn issue(&self, names: &[&str]) -> Identity {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut p = CertificateParams::new(names.clone()).expect("EE params");
        p.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("EE key");
        let cert = p.signed_by(&key, &self.cert, &self.key).expect("EE cert");
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        }
    }

    /// A context trusting this CA, presenting `id` (if any), with `auth` for listeners.
    pub fn context(&self, id: Option<&Identity>, auth: ClientAuth) -> TlsContext {
        TlsContext::from_pem(
            self.pem().as_bytes(),
            id.map(|i| (i.cert_pem.as_bytes(), i.key_pem.as_bytes())),
            auth,
        )
        .expect("TLS context")
    }
}

/// The next user message on `a` (other events are skipped); fails the test when the
/// association is lost or has no event for 10 s.
pub async fn next_message(a: &mut Association) -> Msg {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), a.recv())
            .await
            .expect("an event within 10 s")
            .expect("association open")
        {
            Event::Message(m) => return m,
            Event::Lost(r) => panic!("lost: {r}"),
            _ => {}
        }
    }
}

/// Waits until `l` has refused `n` TLS handshakes ([`Listener::tls_refused`]); fails the
/// test after 10 s.
pub async fn wait_refused(l: &Listener, n: u64) {
    for _ in 0..400 {
        if l.tls_refused() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("refusals: {} (wanted {n})", l.tls_refused());
}

/// A listener of `t` on 127.0.0.1 (ephemeral port) and its address.
pub async fn listen(t: Transport) -> (Listener, SocketAddr) {
    let l = t
        .listen(&[SocketAddr::from(([127, 0, 0, 1], 0))])
        .await
        .expect("listen");
    let at = l.local_addrs().expect("addrs")[0];
    (l, at)
}
