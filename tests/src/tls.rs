//! Throw-away PKI for the TLS tests (issue 13; `asap::transport::tls`): a cluster CA made
//! with rcgen and end-entity certificates it issues, as PEM, plus the
//! [`TlsContext`]s built from them.

use asap::transport::tls::{ClientAuth, TlsContext};
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
