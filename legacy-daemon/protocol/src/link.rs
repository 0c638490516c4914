//! One established daemon ↔ proxy connection after the handshake ([`Link`]), and the two
//! sides of the handshake (`PROTOCOL.md` §1.1): [`connect_daemon`] for the daemon,
//! [`accept_daemon`] for the proxy.
//!
//! ```text
//! daemon                                            proxy
//!   | -- auth_init {daemon_id, auth, nonce_d} ------> |   in clear
//!   | <- auth_accept {auth, nonce_p, proof} --------- |   in clear (or auth_refused)
//!   | == hello (seq 0), tagged ====================> |   proves the daemon's key
//!   | == snapshot, deltas, heartbeats, acks =======> |
//!   | <= config_push, tagged ======================= |
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth::{
    from_hex_exact, new_nonce, to_hex, AuthAnswer, AuthHello, AuthInit, AuthMode, Direction, Key,
    Opener, Sealer, SessionKey, TAG_LEN,
};
use crate::{DaemonFrame, DaemonMessage, FrameDecoder, Hello, ProtocolError, PROTOCOL_VERSION};

/// A connection after the handshake: frames are sealed on send and checked on receive.
#[derive(Debug)]
pub struct Link {
    stream: TcpStream,
    decoder: FrameDecoder,
    sealer: Sealer,
    opener: Opener,
    buf: Vec<u8>,
}

impl Link {
    fn new(stream: TcpStream, decoder: FrameDecoder, sealer: Sealer, opener: Opener) -> Link {
        Link {
            stream,
            decoder,
            sealer,
            opener,
            buf: vec![0u8; 8192],
        }
    }

    /// The next frame payload in clear (handshake) or not yet checked. Cancel-safe.
    async fn recv_payload(&mut self) -> Result<Option<Vec<u8>>, ProtocolError> {
        recv_payload(&mut self.stream, &mut self.decoder, &mut self.buf).await
    }

    /// The next message, its tag checked; `Ok(None)` on a clean end of stream. Cancel-safe
    /// (received bytes stay buffered in the link), so it can sit in a `tokio::select!`.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ProtocolError> {
        let Some(payload) = self.recv_payload().await? else {
            return Ok(None);
        };
        let body = self.opener.open(&payload)?;
        Ok(Some(serde_json::from_slice(body)?))
    }

    /// Sends one message (sealed). Not cancel-safe: drop the link if it is interrupted.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), ProtocolError> {
        let body = serde_json::to_vec(msg)?;
        let frame = self.sealer.seal(&body)?;
        self.stream.write_all(&frame).await?;
        Ok(())
    }

    /// The underlying socket (for socket options).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

async fn recv_payload(
    stream: &mut TcpStream,
    decoder: &mut FrameDecoder,
    buf: &mut [u8],
) -> Result<Option<Vec<u8>>, ProtocolError> {
    loop {
        if let Some(p) = decoder.next_raw()? {
            return Ok(Some(p));
        }
        let n = stream.read(buf).await?;
        if n == 0 {
            if decoder.buffered() > 0 {
                return Err(ProtocolError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            return Ok(None);
        }
        decoder.push(&buf[..n]);
    }
}

async fn send_clear<T: Serialize>(stream: &mut TcpStream, msg: &T) -> Result<(), ProtocolError> {
    let bytes = crate::encode_frame(msg)?;
    stream.write_all(&bytes).await?;
    Ok(())
}

/// The daemon side of the handshake: sends `auth_init`, checks the proxy's answer (its
/// mode and, with a key, its proof). `key: None` is the plaintext mode (`auth = "none"`).
/// Bound it with a timeout: a silent proxy is not detected here.
pub async fn connect_daemon(
    mut stream: TcpStream,
    daemon_id: &str,
    key: Option<&Key>,
) -> Result<Link, ProtocolError> {
    let mode = if key.is_some() {
        AuthMode::HmacSha256
    } else {
        AuthMode::None
    };
    let nonce_d = new_nonce();
    let init = AuthHello::AuthInit(AuthInit {
        protocol_version: PROTOCOL_VERSION,
        daemon_id: daemon_id.to_string(),
        auth: mode,
        nonce: to_hex(&nonce_d),
    });
    send_clear(&mut stream, &init).await?;
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 4096];
    let Some(payload) = recv_payload(&mut stream, &mut decoder, &mut buf).await? else {
        return Err(ProtocolError::Violation(
            "proxy closed the connection during the handshake".into(),
        ));
    };
    let (auth, nonce, proof) = match serde_json::from_slice::<AuthAnswer>(&payload)? {
        AuthAnswer::AuthRefused { reason } => return Err(ProtocolError::Refused(reason)),
        AuthAnswer::AuthAccept { auth, nonce, proof } => (auth, nonce, proof),
    };
    if auth != mode {
        return Err(ProtocolError::Auth(format!(
            "proxy answered with auth = \"{auth}\", this daemon uses \"{mode}\""
        )));
    }
    let session = match key {
        None => None,
        Some(k) => {
            let nonce_p = from_hex_exact(&nonce)
                .ok_or_else(|| ProtocolError::Violation("malformed proxy nonce".into()))?;
            let sk = SessionKey::derive(k, daemon_id, &nonce_d, &nonce_p);
            let proof = proof
                .as_deref()
                .and_then(from_hex_exact::<TAG_LEN>)
                .ok_or_else(|| ProtocolError::Auth("proxy sent no proof".into()))?;
            if !sk.verify_proxy_proof(&proof) {
                return Err(ProtocolError::Auth(
                    "the proxy does not hold this daemon's key (bad proof)".into(),
                ));
            }
            Some(sk)
        }
    };
    Ok(Link::new(
        stream,
        decoder,
        Sealer::new(session.clone(), Direction::DaemonToProxy),
        Opener::new(session, Direction::ProxyToDaemon),
    ))
}

/// Tells the daemon why it is refused (best effort) and returns the error to log.
async fn refuse<T>(stream: &mut TcpStream, reason: String) -> Result<T, ProtocolError> {
    let _ = send_clear(
        stream,
        &AuthAnswer::AuthRefused {
            reason: reason.clone(),
        },
    )
    .await;
    Err(ProtocolError::Auth(reason))
}

/// Which daemons may connect to a proxy, and with which keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonKeys {
    /// `hmac-sha256` (keys required) or `none` (plaintext, any identity).
    pub mode: AuthMode,
    /// Pre-shared key of each daemon identity.
    pub keys: BTreeMap<String, Key>,
}

impl DaemonKeys {
    /// Plaintext mode: every daemon is accepted under the identity it claims.
    pub fn plaintext() -> DaemonKeys {
        DaemonKeys {
            mode: AuthMode::None,
            keys: BTreeMap::new(),
        }
    }

    /// Authenticated mode with these (identity, key) pairs.
    pub fn hmac(keys: impl IntoIterator<Item = (String, Key)>) -> DaemonKeys {
        DaemonKeys {
            mode: AuthMode::HmacSha256,
            keys: keys.into_iter().collect(),
        }
    }
}

/// The proxy side of the handshake on an accepted stream: reads `auth_init`, answers, and
/// reads the daemon's Hello, whose tag proves the key. The identity is the one the key
/// belongs to; a Hello naming another identity is refused. Bound it with a timeout.
pub async fn accept_daemon(
    mut stream: TcpStream,
    peer: SocketAddr,
    keys: &DaemonKeys,
) -> Result<(Link, Hello), ProtocolError> {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 4096];
    let Some(payload) = recv_payload(&mut stream, &mut decoder, &mut buf).await? else {
        return Err(ProtocolError::Violation("closed before auth_init".into()));
    };
    let init = match serde_json::from_slice::<AuthHello>(&payload) {
        Ok(AuthHello::AuthInit(i)) => i,
        Err(_) => {
            return Err(ProtocolError::Auth(format!(
                "first frame from {peer} is not auth_init (a version 1 daemon, or not a daemon)"
            )))
        }
    };
    if init.protocol_version != PROTOCOL_VERSION {
        return refuse(
            &mut stream,
            format!(
                "daemon speaks protocol version {}, this proxy {PROTOCOL_VERSION}",
                init.protocol_version
            ),
        )
        .await;
    }
    if init.auth != keys.mode {
        return refuse(
            &mut stream,
            format!(
                "daemon `{}` uses auth = \"{}\", this proxy requires \"{}\"",
                init.daemon_id, init.auth, keys.mode
            ),
        )
        .await;
    }
    let nonce_p = new_nonce();
    let session = match keys.mode {
        AuthMode::None => None,
        AuthMode::HmacSha256 => {
            let Some(k) = keys.keys.get(&init.daemon_id) else {
                return refuse(
                    &mut stream,
                    format!(
                        "daemon `{}` is not listed in this proxy's [[daemon]] tables",
                        init.daemon_id
                    ),
                )
                .await;
            };
            let Some(nonce_d) = from_hex_exact(&init.nonce) else {
                return refuse(&mut stream, "malformed daemon nonce".into()).await;
            };
            Some(SessionKey::derive(k, &init.daemon_id, &nonce_d, &nonce_p))
        }
    };
    let accept = AuthAnswer::AuthAccept {
        auth: keys.mode,
        nonce: to_hex(&nonce_p),
        proof: session.as_ref().map(|s| to_hex(&s.proxy_proof())),
    };
    send_clear(&mut stream, &accept).await?;
    let mut link = Link::new(
        stream,
        decoder,
        Sealer::new(session.clone(), Direction::ProxyToDaemon),
        Opener::new(session, Direction::DaemonToProxy),
    );
    let hello = match link.recv::<DaemonFrame>().await {
        Ok(Some(DaemonFrame {
            seq: 0,
            msg: DaemonMessage::Hello(h),
        })) => h,
        Ok(Some(other)) => {
            return Err(ProtocolError::Violation(format!(
                "first frame after the handshake is not hello (seq 0): {other:?}"
            )))
        }
        Ok(None) => return Err(ProtocolError::Violation("closed before hello".into())),
        Err(ProtocolError::Auth(e)) => {
            return Err(ProtocolError::Auth(format!(
                "daemon `{}`: {e}: it does not hold the key of that identity",
                init.daemon_id
            )))
        }
        Err(e) => return Err(e),
    };
    if hello.daemon_id != init.daemon_id {
        return Err(ProtocolError::Auth(format!(
            "hello names daemon `{}`, the handshake `{}`",
            hello.daemon_id, init.daemon_id
        )));
    }
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(ProtocolError::Violation(format!(
            "daemon speaks protocol version {}, this receiver {PROTOCOL_VERSION}",
            hello.protocol_version
        )));
    }
    Ok((link, hello))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{from_hex_exact, Key};
    use tokio::net::TcpListener;

    fn hello(id: &str) -> DaemonFrame {
        DaemonFrame {
            seq: 0,
            msg: DaemonMessage::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                daemon_id: id.into(),
                instance: 1,
                config_version: 1,
                poll_interval_ms: 1000,
                heartbeat_interval_ms: 1000,
                software: "t".into(),
            }),
        }
    }

    /// A proxy with keys for d1 and d2 on an ephemeral port; returns its address and the
    /// outcome of the first connection's handshake.
    async fn proxy(
        keys: DaemonKeys,
    ) -> (
        SocketAddr,
        tokio::task::JoinHandle<Result<(Link, Hello), ProtocolError>>,
    ) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let h = tokio::spawn(async move {
            let (s, peer) = l.accept().await.unwrap();
            accept_daemon(s, peer, &keys).await
        });
        (addr, h)
    }

    /// The proxy side's refusal of the handshake: the text of its `Auth` error.
    async fn auth_refusal(
        h: tokio::task::JoinHandle<Result<(Link, Hello), ProtocolError>>,
    ) -> String {
        match h.await.unwrap() {
            Err(ProtocolError::Auth(m)) => m,
            Err(e) => panic!("refused, but not for authentication: {e}"),
            Ok(_) => panic!("accepted"),
        }
    }

    /// The next handshake frame's payload from `s`, read with a fresh decoder (the peer
    /// sends nothing more before it is answered).
    async fn recv_clear(s: &mut TcpStream) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        recv_payload(s, &mut FrameDecoder::new(), &mut buf)
            .await
            .unwrap()
            .expect("a frame")
    }

    fn two_keys() -> (Key, Key, DaemonKeys) {
        let (k1, k2) = (Key::generate(), Key::generate());
        let keys = DaemonKeys::hmac([("d1".to_string(), k1.clone()), ("d2".into(), k2.clone())]);
        (k1, k2, keys)
    }

    /// An attacker that ignores the proxy's proof and sends a Hello for `claimed`, tagged
    /// with a session key derived from `key` under `derive_id`.
    async fn forge(addr: SocketAddr, claimed: &str, derive_id: &str, key: &Key) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let nonce_d = new_nonce();
        let init = AuthHello::AuthInit(AuthInit {
            protocol_version: PROTOCOL_VERSION,
            daemon_id: claimed.into(),
            auth: AuthMode::HmacSha256,
            nonce: to_hex(&nonce_d),
        });
        send_clear(&mut s, &init).await.unwrap();
        let p = recv_clear(&mut s).await;
        let AuthAnswer::AuthAccept { nonce, .. } = serde_json::from_slice(&p).unwrap() else {
            panic!("refused early")
        };
        let nonce_p = from_hex_exact(&nonce).unwrap();
        let sk = SessionKey::derive(key, derive_id, &nonce_d, &nonce_p);
        let mut sealer = Sealer::new(Some(sk), Direction::DaemonToProxy);
        let body = serde_json::to_vec(&hello(claimed)).unwrap();
        let _ = s.write_all(&sealer.seal(&body).unwrap()).await;
        // Keep the socket open until the proxy decides.
        let mut buf = [0u8; 1];
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf)).await;
    }

    #[tokio::test]
    async fn hello_tagged_with_another_daemons_key_is_refused() {
        let (_, k2, keys) = two_keys();
        let (addr, h) = proxy(keys).await;
        forge(addr, "d1", "d1", &k2).await;
        let m = auth_refusal(h).await;
        assert!(m.contains("daemon `d1`") && m.contains("bad tag"), "{m}");
    }

    #[tokio::test]
    async fn hello_naming_another_identity_is_refused() {
        let (k1, _, keys) = two_keys();
        let (addr, h) = proxy(keys).await;
        // Right key and identity in the handshake, but the Hello names d2.
        let s = TcpStream::connect(addr).await.unwrap();
        let mut link = connect_daemon(s, "d1", Some(&k1)).await.unwrap();
        link.send(&hello("d2")).await.unwrap();
        let m = auth_refusal(h).await;
        assert!(m.contains("`d2`"), "{m}");
    }

    /// A recorded session replayed byte for byte fails: the proxy's nonce is new, so the
    /// recorded Hello's tag does not verify.
    #[tokio::test]
    async fn replayed_session_is_refused() {
        let (k1, _, keys) = two_keys();
        // Record what a real daemon sends.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let keys2 = keys.clone();
        let rec = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let init = recv_clear(&mut s).await;
            // Answer like a proxy so the daemon sends its Hello.
            let AuthHello::AuthInit(i) = serde_json::from_slice(&init).unwrap();
            let nonce_p = new_nonce();
            let sk = SessionKey::derive(
                &keys2.keys["d1"],
                "d1",
                &from_hex_exact(&i.nonce).unwrap(),
                &nonce_p,
            );
            let ans = AuthAnswer::AuthAccept {
                auth: AuthMode::HmacSha256,
                nonce: to_hex(&nonce_p),
                proof: Some(to_hex(&sk.proxy_proof())),
            };
            send_clear(&mut s, &ans).await.unwrap();
            let hello = recv_clear(&mut s).await;
            (init, hello)
        });
        let s = TcpStream::connect(addr).await.unwrap();
        let mut link = connect_daemon(s, "d1", Some(&k1)).await.unwrap();
        link.send(&hello("d1")).await.unwrap();
        let (init, hello_payload) = rec.await.unwrap();

        let (addr, h) = proxy(keys).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        for p in [init, hello_payload] {
            s.write_all(&(p.len() as u32).to_be_bytes()).await.unwrap();
            s.write_all(&p).await.unwrap();
        }
        let m = auth_refusal(h).await;
        assert!(m.contains("bad tag"), "{m}");
    }

    #[tokio::test]
    async fn authenticated_round_trip_and_mode_mismatch() {
        let (k1, _, keys) = two_keys();
        let (addr, h) = proxy(keys.clone()).await;
        let s = TcpStream::connect(addr).await.unwrap();
        let mut link = connect_daemon(s, "d1", Some(&k1)).await.unwrap();
        link.send(&hello("d1")).await.unwrap();
        let (mut plink, hello) = h.await.unwrap().unwrap();
        assert_eq!(hello.daemon_id, "d1");
        let push = crate::ProxyMessage::ConfigPush(crate::ConfigPush {
            version: 2,
            config_toml: "x".into(),
        });
        plink.send(&push).await.unwrap();
        assert_eq!(
            link.recv::<crate::ProxyMessage>().await.unwrap(),
            Some(push)
        );

        // A plaintext daemon at an authenticating proxy is told why.
        let (addr, h) = proxy(keys).await;
        let s = TcpStream::connect(addr).await.unwrap();
        let e = connect_daemon(s, "d1", None).await.expect_err("refused");
        assert!(
            matches!(&e, ProtocolError::Refused(m) if m.contains("requires")),
            "{e}"
        );
        assert!(h.await.unwrap().is_err());
    }
}
