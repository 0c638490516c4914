//! A minimal proxy-side receiver: accepts legacy-daemon connections and prints every
//! message as one JSON line (with the receive time), keeping a `StatusTable` per daemon.
//! Used by `bench/footprint.sh`; also a starting point for proxy-pe.
//!
//! `cargo run -p legacy-daemon --example proxy_sink -- 127.0.0.1:7100 [ID=HEXKEY ...]`
//!
//! Without `ID=HEXKEY` pairs the sink accepts plaintext daemons (`auth = "none"`).

use legacy_protocol::auth::Key;
use legacy_protocol::link::DaemonKeys;
use legacy_protocol::receiver::{DaemonConnection, DaemonListener, StatusTable};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7100".into());
    let pairs: Vec<(String, Key)> = std::env::args()
        .skip(2)
        .map(|a| {
            let (id, k) = a.split_once('=').ok_or("expected ID=HEXKEY")?;
            Ok::<_, Box<dyn std::error::Error>>((id.to_string(), Key::from_hex(k)?))
        })
        .collect::<Result<_, _>>()?;
    let keys = if pairs.is_empty() {
        DaemonKeys::plaintext()
    } else {
        DaemonKeys::hmac(pairs)
    };
    let l = DaemonListener::bind(addr.as_str()).await?;
    eprintln!("proxy_sink listening on {}", l.local_addr()?);
    loop {
        match l.accept(&keys).await {
            Ok(c) => {
                tokio::spawn(serve(c));
            }
            Err(e) => eprintln!("handshake failed: {e}"),
        }
    }
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

async fn serve(mut c: DaemonConnection) {
    let hello = legacy_protocol::DaemonMessage::Hello(c.hello().clone());
    println!(
        "{} {}",
        now_ns(),
        serde_json::to_string(&hello).unwrap_or_default()
    );
    let mut table = StatusTable::new(c.hello().clone());
    loop {
        match c.next_message().await {
            Ok(Some(m)) => {
                if let Err(e) = table.apply(&m) {
                    eprintln!("{}: {e}", c.peer());
                }
                println!(
                    "{} {}",
                    now_ns(),
                    serde_json::to_string(&m).unwrap_or_default()
                );
            }
            Ok(None) => break,
            Err(e) => {
                eprintln!("{}: {e}", c.peer());
                break;
            }
        }
    }
    eprintln!(
        "{} disconnected; running apps: {:?}",
        c.peer(),
        table.running()
    );
}
