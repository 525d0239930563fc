//! TLS to PostgreSQL: what the URL's `sslmode` and `sslrootcert` mean here.
//!
//! - No `sslmode`, or `sslmode=disable`: plain TCP, as before (a database
//!   on loopback or a private network).
//! - `sslmode=verify-full&sslrootcert=FILE`: TLS (1.3 or 1.2, rustls on
//!   aws-lc-rs), the server's certificate chained to a root in the PEM
//!   `FILE` and naming the URL's host (a DNS name or an IP address). The
//!   roots are pinned by the file; the system's store is not consulted.
//! - Every other `sslmode` (`allow`, `prefer`, `require`, `verify-ca`) is
//!   refused as `storage_url_invalid`: libpq's `prefer` and `require` accept
//!   any certificate, so anyone on the path could read and answer the
//!   log's database traffic; `verify-ca` checks no name. `sslrootcert`
//!   without `verify-full` is refused too, rather than ignored.
//!
//! Both parameters are taken out of the URL before `tokio_postgres` parses
//! it (it knows neither `verify-full` nor `sslrootcert`). SCRAM channel
//! binding is not offered (`ChannelBinding::none`); the certificate check
//! is what binds the connection to the server.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;

use crate::storage::StorageError;

/// How connections to the database are made.
#[derive(Clone)]
pub enum PgTls {
    /// Plain TCP.
    Disabled,
    /// TLS, the certificate verified against pinned roots and the host.
    VerifyFull(Arc<ClientConfig>),
}

/// Splits `url` into the URL `tokio_postgres` parses (without `sslmode` and
/// `sslrootcert`) and the TLS they ask for; see the module documentation.
pub fn split_url(url: &str) -> Result<(String, PgTls), StorageError> {
    let bad = |m: String| StorageError::BadUrl(m);
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), PgTls::Disabled));
    };
    let (mut mode, mut root, mut kept) = (None, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => mode = Some(v),
            Some(("sslrootcert", v)) => root = Some(v),
            _ => kept.push(pair),
        }
    }
    let url = match kept.is_empty() {
        true => base.to_string(),
        false => format!("{base}?{}", kept.join("&")),
    };
    let tls = match (mode, root) {
        (None | Some("disable"), None) => PgTls::Disabled,
        (Some("verify-full"), Some(file)) => PgTls::VerifyFull(client_config(file)?),
        (Some("verify-full"), None) => {
            return Err(bad(
                "sslmode=verify-full needs sslrootcert=FILE (the pinned CA's PEM)".into(),
            ))
        }
        (None | Some("disable"), Some(_)) => {
            return Err(bad(
                "sslrootcert is only used with sslmode=verify-full".into()
            ))
        }
        (Some(other), _) => {
            return Err(bad(format!(
                "sslmode={other} does not check the server's certificate and name against a \
                 pinned root; use sslmode=verify-full with sslrootcert=FILE, or sslmode=disable"
            )))
        }
    };
    Ok((url, tls))
}

/// A rustls client trusting exactly the certificates in the PEM `file`.
fn client_config(file: &str) -> Result<Arc<ClientConfig>, StorageError> {
    let bad = |m: String| StorageError::BadUrl(format!("sslrootcert={file}: {m}"));
    let pem = std::fs::read(file).map_err(|e| bad(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("not PEM certificates: {e}")))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("holds no certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// [`MakeTlsConnect`] for `tokio_postgres` over rustls.
#[derive(Clone)]
pub struct RustlsConnect(pub Arc<ClientConfig>);

impl MakeTlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnector;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsConnector, Self::Error> {
        let name = ServerName::try_from(host.to_string())?;
        Ok(RustlsConnector(Arc::clone(&self.0), name))
    }
}

/// One connection's handshake: the config and the name to verify.
pub struct RustlsConnector(Arc<ClientConfig>, ServerName<'static>);

impl TlsConnect<Socket> for RustlsConnector {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        let RustlsConnector(config, name) = self;
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await?;
            Ok(RustlsStream(tls))
        })
    }
}

/// A TLS connection to the database.
pub struct RustlsStream(tokio_rustls::client::TlsStream<Socket>);

impl tokio_postgres::tls::TlsStream for RustlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> String {
        match split_url(url) {
            Err(StorageError::BadUrl(m)) => m,
            Err(e) => panic!("{url}: {e}"),
            Ok(_) => panic!("{url}: accepted"),
        }
    }

    #[test]
    fn plain_urls_pass_through() {
        for url in [
            "postgres://u@h/db",
            "postgres://u@h/db?sslmode=disable",
            "postgres://u@h/db?connect_timeout=3&sslmode=disable",
        ] {
            let (rest, tls) = split_url(url).unwrap();
            assert!(matches!(tls, PgTls::Disabled));
            assert!(!rest.contains("sslmode"), "{rest}");
        }
        let (rest, _) = split_url("postgres://u@h/db?connect_timeout=3").unwrap();
        assert_eq!(rest, "postgres://u@h/db?connect_timeout=3");
    }

    #[test]
    fn unverified_modes_and_stray_roots_are_refused() {
        for mode in ["allow", "prefer", "require", "verify-ca", "bogus"] {
            let m = refused(&format!("postgres://u@h/db?sslmode={mode}"));
            assert!(m.contains(&format!("sslmode={mode} does not check")), "{m}");
        }
        assert!(refused("postgres://u@h/db?sslmode=verify-full").contains("needs sslrootcert"));
        assert!(refused("postgres://u@h/db?sslrootcert=/x").contains("only used with"));
        let m = refused("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem");
        assert!(m.starts_with("sslrootcert=/nonexistent.pem: "), "{m}");
    }

    #[test]
    fn a_root_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("empty.pem");
        std::fs::write(&f, "not a certificate\n").unwrap();
        let m = refused(&format!(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert={}",
            f.display()
        ));
        assert!(m.ends_with("holds no certificate"), "{m}");
    }
}
