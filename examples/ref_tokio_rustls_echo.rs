//! Reference TLS echo server for `benches/compare.sh`: the straightforward tokio +
//! tokio-rustls echo (a task per connection, `TlsAcceptor`, a 64 KiB buffer, read
//! then `write_all` and `flush`), as found in tokio-rustls's own examples. A fresh
//! self-signed certificate (rcgen, ECDSA P-256) for `localhost` and `127.0.0.1`;
//! rustls with the `ring` provider and its default cipher suites, as our servers.
//! It has no limits and no backpressure policy beyond TCP's. `TCP_NODELAY` is set
//! (as in our servers) so a comparison measures the design, not a socket option.
//!
//! `cargo run --release --features tls,tokio --example ref_tokio_rustls_echo -- --addr 127.0.0.1:0`

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// `--addr HOST:PORT` from the command line (default 127.0.0.1:0).
fn addr_arg() -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--addr")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or("127.0.0.1:0".into())
}

/// A server configuration with a fresh self-signed certificate.
fn tls_config() -> Result<ServerConfig, Box<dyn std::error::Error>> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)?;
    Ok(config)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let acceptor = TlsAcceptor::from(Arc::new(tls_config()?));
    let listener = TcpListener::bind(addr_arg()).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (socket, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(socket).await else {
                return;
            };
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        // tokio-rustls may keep ciphertext when the socket is full:
                        // flush before waiting on the next read.
                        if tls.write_all(&buf[..n]).await.is_err() || tls.flush().await.is_err() {
                            return;
                        }
                    }
                }
            }
            // The client closed (close_notify): send ours and close.
            let _ = tls.shutdown().await;
        });
    }
}
