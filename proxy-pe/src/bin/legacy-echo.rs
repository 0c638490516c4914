//! `legacy-echo`: a legacy TCP echo server that knows nothing of RSerPool, for tests and
//! benchmarks of proxy-pe.
//!
//! ```text
//! legacy-echo --listen 127.0.0.11:7000 [--tag NAME]
//! ```
//!
//! Every connection first receives one greeting line `hello from NAME\n` (so tests can
//! tell the servers apart), then everything it sends is echoed back.

use std::net::SocketAddr;

use clap::Parser;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// A legacy TCP echo server.
#[derive(Debug, Parser)]
#[command(name = "legacy-echo")]
struct Args {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Name in the greeting line (default: the listen address).
    #[arg(long)]
    tag: Option<String>,
    /// Do not send a greeting line (pure echo, for benchmarks).
    #[arg(long)]
    quiet: bool,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let tag = args.tag.unwrap_or_else(|| args.listen.to_string());
    let listener = TcpListener::bind(args.listen).await?;
    loop {
        let (mut s, _) = listener.accept().await?;
        let _ = s.set_nodelay(true);
        let greeting = (!args.quiet).then(|| format!("hello from {tag}\n"));
        tokio::spawn(async move {
            if let Some(g) = greeting {
                if s.write_all(g.as_bytes()).await.is_err() {
                    return;
                }
            }
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        });
    }
}
