//! The enclave's only way out for its source fetch: an HTTP CONNECT relay on
//! the host, reached over a second host<->enclave stream. TLS runs end to
//! end between `git` in the enclave and the repository's server, so the host
//! can refuse or stall a fetch but cannot change what is fetched, nor claim
//! a repository the enclave did not reach.
//!
//! Host side: [`serve`] answers one `CONNECT host:port HTTP/1.1` per stream,
//! checks the target against the [`RelayPolicy`] (port 443 on public
//! addresses, plus the operator's `--relay-allow` targets; see [`target`]),
//! dials only the checked addresses and splices the bytes. A refused
//! target gets `403 Forbidden` with the reason as its one-line body (git in
//! the enclave reports `relay_refused`); the host logs the reason. Enclave side: [`Forwarder`]
//! listens on `127.0.0.1` (given to git as `http.proxy`) and splices each
//! TCP connection onto a new relay stream, so git never needs to know about
//! vsock. The build sandbox has its own network namespace and cannot reach
//! the forwarder.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use crate::transport::{self, Endpoint, Listener, Stream};

pub mod target;
pub use target::{AllowedTarget, LookupError, RelayPolicy, TargetError};

/// Longest CONNECT request head accepted.
pub const MAX_HEAD: usize = 8192;
/// How long the host tries to reach the requested server.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long either side of a relayed connection (or a CONNECT head still
/// being sent) may stay silent before the host drops it, so a stalled peer
/// cannot hold a thread and two sockets forever.
pub const RELAY_IDLE: Duration = Duration::from_secs(300);

/// The relay stream's endpoint for a channel endpoint: the Unix socket
/// `PATH.relay`, or the vsock port after the channel's.
pub fn endpoint_for(channel: &Endpoint) -> io::Result<Endpoint> {
    match channel {
        Endpoint::Unix(path) => {
            let mut p = path.clone().into_os_string();
            p.push(".relay");
            Ok(Endpoint::Unix(p.into()))
        }
        Endpoint::Vsock { cid, port } => port
            .checked_add(1)
            .filter(|p| *p != u32::MAX)
            .map(|port| Endpoint::Vsock { cid: *cid, port })
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no vsock port after the channel's",
                )
            }),
    }
}

/// Reads the request head, byte by byte so nothing after it is consumed.
fn read_head(stream: &mut dyn Read) -> io::Result<String> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "CONNECT request head too long",
            ));
        }
        stream.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    String::from_utf8(head)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "request head is not UTF-8"))
}

/// Why a request head is not a CONNECT request the relay answers; the
/// host logs it and answers `400 Bad Request`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectRequestError {
    #[error("not a CONNECT request: {0:?}")]
    NotConnect(String),
    #[error("CONNECT target {0:?} has no port")]
    NoPort(String),
    #[error("CONNECT target {0:?} is not host:port")]
    NotHostPort(String),
}

/// The `host:port` of a `CONNECT host:port HTTP/1.x` request line.
pub fn connect_target(head: &str) -> Result<&str, ConnectRequestError> {
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("CONNECT"), Some(authority), Some(version), None)
            if version.starts_with("HTTP/1.") =>
        {
            let (host, port) = authority
                .rsplit_once(':')
                .ok_or_else(|| ConnectRequestError::NoPort(authority.to_string()))?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(ConnectRequestError::NotHostPort(authority.to_string()));
            }
            Ok(authority)
        }
        _ => Err(ConnectRequestError::NotConnect(line.to_string())),
    }
}

/// Copies bytes both ways until both directions end, passing each end of
/// stream on as a write shutdown.
fn splice(relay: Box<dyn Stream>, tcp: TcpStream) -> io::Result<()> {
    let mut relay_in = File::from(relay.as_fd().try_clone_to_owned()?);
    let mut tcp_out = tcp.try_clone()?;
    let upstream = std::thread::spawn(move || {
        let _ = io::copy(&mut relay_in, &mut tcp_out);
        let _ = tcp_out.shutdown(Shutdown::Write);
    });
    let mut relay_out = relay;
    let mut tcp_in = tcp;
    let _ = io::copy(&mut tcp_in, &mut relay_out);
    let _ = socket2::SockRef::from(&relay_out.as_fd()).shutdown(Shutdown::Write);
    let _ = upstream.join();
    Ok(())
}

/// Dials the first of `addrs` (already checked by [`RelayPolicy::resolve`])
/// that answers.
fn dial(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        match TcpStream::connect_timeout(addr, DIAL_TIMEOUT) {
            Ok(s) => {
                s.set_read_timeout(Some(RELAY_IDLE))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The `403 Forbidden` answer for a refused target, its reason the body.
fn forbidden(reason: &str) -> Vec<u8> {
    let body = format!("relay_refused: {reason}\n");
    format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Host: handles one relay stream.
fn handle(mut stream: Box<dyn Stream>, policy: &RelayPolicy) -> io::Result<()> {
    transport::set_idle_timeout(stream.as_ref(), RELAY_IDLE)?;
    let head = read_head(&mut stream)?;
    let authority = match connect_target(&head) {
        Ok(a) => a.to_string(),
        Err(why) => {
            tracing::warn!("relay: {why}");
            stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")?;
            return Ok(());
        }
    };
    let addrs = match policy.resolve(&authority) {
        Ok(addrs) => addrs,
        Err(e @ TargetError::Resolve { .. }) => {
            tracing::warn!("relay: {e}");
            return stream.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        }
        Err(e) => {
            tracing::warn!("relay refused: {e}");
            return stream.write_all(&forbidden(&e.to_string()));
        }
    };
    match dial(&addrs) {
        Ok(tcp) => {
            tracing::info!(target = %authority, "relay: connected");
            stream.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
            splice(stream, tcp)
        }
        Err(e) => {
            tracing::warn!(target = %authority, "relay: {e}");
            stream.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        }
    }
}

/// Host: serves CONNECT relays on `listener` under `policy`, one thread
/// per stream, for as long as the listener accepts.
pub fn serve(listener: Box<dyn Listener>, policy: Arc<RelayPolicy>) {
    loop {
        match listener.accept() {
            Ok(stream) => {
                let policy = policy.clone();
                std::thread::spawn(move || {
                    if let Err(e) = handle(stream, &policy) {
                        tracing::warn!("relay stream: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("relay accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Enclave: a local HTTP proxy address whose connections go to the host's
/// relay. Its thread lives as long as the process (one job per enclave).
pub struct Forwarder {
    addr: SocketAddr,
}

impl Forwarder {
    pub fn start(relay: Endpoint) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let relay = relay.clone();
                std::thread::spawn(move || match transport::connect(&relay) {
                    Ok(up) => {
                        let _ = splice(up, conn);
                    }
                    Err(e) => tracing::warn!("relay connect {relay:?}: {e}"),
                });
            }
        });
        Ok(Forwarder { addr })
    }

    /// The value for git's `http.proxy`.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_connect_lines() {
        let ok = "CONNECT github.com:443 HTTP/1.1\r\nHost: github.com:443\r\n\r\n";
        assert_eq!(connect_target(ok), Ok("github.com:443"));
        assert_eq!(
            connect_target("CONNECT [::1]:8443 HTTP/1.0\r\n\r\n"),
            Ok("[::1]:8443")
        );
        for (bad, why) in [
            (
                "GET / HTTP/1.1\r\n\r\n",
                ConnectRequestError::NotConnect("GET / HTTP/1.1".into()),
            ),
            (
                "CONNECT github.com HTTP/1.1\r\n\r\n",
                ConnectRequestError::NoPort("github.com".into()),
            ),
            (
                "CONNECT :443 HTTP/1.1\r\n\r\n",
                ConnectRequestError::NotHostPort(":443".into()),
            ),
            (
                "CONNECT h:99999 HTTP/1.1\r\n\r\n",
                ConnectRequestError::NotHostPort("h:99999".into()),
            ),
            (
                "CONNECT h:443 HTTP/2\r\n\r\n",
                ConnectRequestError::NotConnect("CONNECT h:443 HTTP/2".into()),
            ),
            (
                "CONNECT h:443 HTTP/1.1 extra\r\n\r\n",
                ConnectRequestError::NotConnect("CONNECT h:443 HTTP/1.1 extra".into()),
            ),
            ("", ConnectRequestError::NotConnect(String::new())),
        ] {
            assert_eq!(connect_target(bad), Err(why), "{bad:?}");
        }
    }

    /// Connects through a relay serving `policy` and sends CONNECT `target`;
    /// returns the answer head, the reader holding the rest (the body) and
    /// the socket's directory, which must live as long as the relay.
    fn connect_through(
        policy: RelayPolicy,
        target: &str,
    ) -> (String, io::BufReader<TcpStream>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let ep = endpoint_for(&Endpoint::Unix(dir.path().join("ch"))).unwrap();
        let listener = transport::listen(&ep).unwrap();
        std::thread::spawn(move || serve(listener, Arc::new(policy)));
        let fwd = Forwarder::start(ep).unwrap();
        let mut c = TcpStream::connect(fwd.addr).unwrap();
        write!(c, "CONNECT {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut reader = io::BufReader::new(c);
        let head = read_head(&mut reader).unwrap();
        (head, reader, dir)
    }

    /// Without an allow entry a loopback target is refused with a 403 and
    /// its reason, and nothing is dialled; the echo server sees no connection.
    #[test]
    fn refused_targets_get_403_and_the_reason() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        for target in [
            addr.to_string(),
            "127.0.0.1:443".to_string(),
            "169.254.169.254:443".to_string(),
            "[fd00:ec2::254]:443".to_string(),
        ] {
            let (head, mut c, _dir) = connect_through(RelayPolicy::default(), &target);
            assert!(
                head.starts_with("HTTP/1.1 403 Forbidden"),
                "{target}: {head}"
            );
            let mut body = String::new();
            c.read_to_string(&mut body).unwrap();
            assert!(body.starts_with("relay_refused: "), "{target}: {body}");
            assert!(body.contains(&target), "{body}");
        }
        assert!(listener.accept().is_err(), "a refused target was dialled");
    }

    #[test]
    fn relay_endpoints_follow_the_channel() {
        assert_eq!(
            endpoint_for(&Endpoint::Unix("/run/e.sock".into())).unwrap(),
            Endpoint::Unix("/run/e.sock.relay".into())
        );
        assert_eq!(
            endpoint_for(&Endpoint::Vsock { cid: 3, port: 5005 }).unwrap(),
            Endpoint::Vsock { cid: 3, port: 5006 }
        );
        assert!(endpoint_for(&Endpoint::Vsock {
            cid: 3,
            port: u32::MAX - 1
        })
        .is_err());
    }

    /// Forwarder -> Unix relay -> host relay -> a TCP echo server, and back.
    #[test]
    fn bytes_cross_the_relay_both_ways() {
        let echo = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let echo_addr = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut c in echo.incoming().flatten() {
                let mut buf = Vec::new();
                let _ = c.read_to_end(&mut buf);
                buf.reverse();
                let _ = c.write_all(&buf);
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let ep = endpoint_for(&Endpoint::Unix(dir.path().join("ch"))).unwrap();
        let listener = transport::listen(&ep).unwrap();
        let policy = RelayPolicy {
            allowed: vec![echo_addr.to_string().parse().unwrap()],
        };
        std::thread::spawn(move || serve(listener, Arc::new(policy)));
        let fwd = Forwarder::start(ep).unwrap();
        let mut c = TcpStream::connect(fwd.addr).unwrap();
        write!(c, "CONNECT {echo_addr} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut reader = io::BufReader::new(c.try_clone().unwrap());
        let head = read_head(&mut reader).unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        c.write_all(b"abc").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        reader.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"cba");

        let mut bad = TcpStream::connect(fwd.addr).unwrap();
        bad.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut answer = String::new();
        bad.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
}
