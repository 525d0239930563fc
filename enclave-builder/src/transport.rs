//! The host <-> enclave channel: length-prefixed CBOR messages (u32
//! big-endian length, at most [`MAX_MESSAGE`] bytes, then the CBOR body) over
//! any `Read + Write` stream. Two stream kinds: AF_VSOCK (the real enclave,
//! through `libc`; binding, listening and waiting are tested where the
//! kernel has AF_VSOCK, but a connection needs a peer VM) and Unix sockets
//! (one machine, tests).
//!
//! The enclave connects; the host sends one [`Message::Job`]; the enclave may
//! send [`Message::LogSubmit`] and gets [`Message::LogAnswer`] back (the host
//! POSTs the entry to the log, since an enclave has no network); the enclave
//! ends with [`Message::Result`]. The host is untrusted: the enclave verifies
//! the log's answer itself.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest message accepted or sent, in bytes.
pub const MAX_MESSAGE: u32 = 64 * 1024 * 1024;

/// The parent's (host's) vsock CID as seen from inside an enclave.
pub const VSOCK_PARENT_CID: u32 = 3;
/// VMADDR_CID_ANY: listen on every CID.
pub const VSOCK_ANY_CID: u32 = u32::MAX;

/// A build job, sent by the host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// `git bundle` of the commit, made by the host from a fresh clone.
    #[serde(with = "serde_bytes")]
    pub git_bundle: Vec<u8>,
    /// The repository URI to record in the statement.
    pub uri: String,
    /// Full commit id.
    pub commit: String,
    /// The ref the commit was resolved from, if any.
    pub git_ref: Option<String>,
    /// Must be absent: the enclave takes the build definition only from the
    /// repository and refuses a job that sets it (`host_build_definition`).
    pub cmd: Option<String>,
    /// Must be empty, as `cmd`.
    pub outputs: Vec<String>,
    /// The full name of the branch or tag that the host says contains the
    /// commit (used in host-bundle mode, where it is the host's word; the
    /// enclave in relay mode asks the repository itself).
    #[serde(default)]
    pub source_ref: Option<String>,
    /// The operator's opt-in to build a commit that no branch or tag
    /// contains; the statement records it.
    #[serde(default)]
    pub allow_unreferenced: bool,
    /// Limits the host asks for; the enclave only ever tightens its own.
    pub timeout_secs: Option<u64>,
    pub memory_mb: Option<u64>,
    /// One `git bundle` per distinct submodule commit, nested ones too
    /// (absent in jobs from hosts that predate it).
    #[serde(default)]
    pub submodules: Vec<SubmoduleBundle>,
}

/// A submodule's recorded commit and a `git bundle` holding it. The enclave
/// uses it only for a gitlink naming that commit, so the host cannot
/// substitute content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubmoduleBundle {
    /// Full commit id, as the superproject's tree records it.
    pub commit: String,
    #[serde(with = "serde_bytes")]
    pub git_bundle: Vec<u8>,
}

/// One artifact and its bundle, sent back by the enclave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArtifactMsg {
    /// File name (no directories).
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    /// Unix mode bits.
    pub mode: u32,
    /// The offline bundle (`<name>.attestlog.json`).
    #[serde(with = "serde_bytes")]
    pub bundle: Vec<u8>,
}

/// The outcome of a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobResult {
    Ok {
        commit: String,
        index: u64,
        artifacts: Vec<ArtifactMsg>,
    },
    Err {
        code: String,
        message: String,
    },
}

/// Everything that crosses the channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    Job(Box<Job>),
    /// Entry bytes the host must POST to `/v1/entries`.
    LogSubmit {
        #[serde(with = "serde_bytes")]
        entry: Vec<u8>,
    },
    /// The log's HTTP status and body, or why it could not be reached.
    LogAnswer {
        status: u16,
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
        error: Option<String>,
    },
    Result(JobResult),
}

/// A stream that can carry the channel: a socket, so that reads can be
/// given a deadline.
pub trait Stream: Read + Write + Send + AsFd {}
impl<T: Read + Write + Send + AsFd> Stream for T {}

/// Makes a read that waits longer than `idle` fail (`WouldBlock` or
/// `TimedOut`), so a peer that stops talking cannot hold the host forever.
pub fn set_idle_timeout(stream: &dyn Stream, idle: Duration) -> io::Result<()> {
    socket2::SockRef::from(&stream).set_read_timeout(Some(idle))
}

/// True for the errors a read deadline produces.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A framed message channel over any stream.
pub struct Channel<S> {
    stream: S,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl<S: Read + Write> Channel<S> {
    pub fn new(stream: S) -> Self {
        Channel { stream }
    }

    /// Writes one framed message.
    pub fn send(&mut self, msg: &Message) -> io::Result<()> {
        let mut body = Vec::new();
        ciborium::into_writer(msg, &mut body).map_err(|e| invalid(e.to_string()))?;
        let len = u32::try_from(body.len())
            .ok()
            .filter(|l| *l <= MAX_MESSAGE)
            .ok_or_else(|| invalid(format!("message of {} bytes is too large", body.len())))?;
        self.stream.write_all(&len.to_be_bytes())?;
        self.stream.write_all(&body)?;
        self.stream.flush()
    }

    /// Reads one framed message; refuses lengths above [`MAX_MESSAGE`]
    /// before allocating.
    pub fn recv(&mut self) -> io::Result<Message> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len);
        if len > MAX_MESSAGE {
            return Err(invalid(format!(
                "message length {len} exceeds the {MAX_MESSAGE}-byte limit"
            )));
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body)?;
        ciborium::from_reader(body.as_slice()).map_err(|e| invalid(format!("bad message: {e}")))
    }
}

/// Where the channel lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Vsock { cid: u32, port: u32 },
}

/// Accepts enclave connections.
pub trait Listener: Send + AsRawFd {
    fn accept(&self) -> io::Result<Box<dyn Stream>>;
}

/// Waits at most `timeout` for a connection on `listener`: `Ok(None)` when
/// none came, so the host can notice an enclave that died before connecting.
pub fn accept_within(
    listener: &dyn Listener,
    timeout: Duration,
) -> io::Result<Option<Box<dyn Stream>>> {
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: poll(2) on one valid pollfd that lives for the call.
    let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
    match ready {
        r if r < 0 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(e)
            }
        }
        0 => Ok(None),
        _ => listener.accept().map(Some),
    }
}

impl Listener for UnixListener {
    fn accept(&self) -> io::Result<Box<dyn Stream>> {
        let (s, _) = UnixListener::accept(self)?;
        Ok(Box::new(s))
    }
}

/// Listens on `ep` (host side).
pub fn listen(ep: &Endpoint) -> io::Result<Box<dyn Listener>> {
    match ep {
        Endpoint::Unix(path) => {
            let _ = std::fs::remove_file(path);
            Ok(Box::new(UnixListener::bind(path)?))
        }
        Endpoint::Vsock { cid, port } => Ok(Box::new(vsock::VsockListener::bind(*cid, *port)?)),
    }
}

/// Connects to `ep` (enclave side).
pub fn connect(ep: &Endpoint) -> io::Result<Box<dyn Stream>> {
    match ep {
        Endpoint::Unix(path) => Ok(Box::new(UnixStream::connect(path)?)),
        Endpoint::Vsock { cid, port } => Ok(Box::new(vsock::connect(*cid, *port)?)),
    }
}

/// AF_VSOCK through raw `libc` sockets; the fd is wrapped in a `File`,
/// whose read/write are the socket's.
mod vsock {
    use std::fs::File;
    use std::io;
    use std::os::fd::{FromRawFd, OwnedFd};

    fn socket() -> io::Result<OwnedFd> {
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, owned descriptor.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn addr(cid: u32, port: u32) -> libc::sockaddr_vm {
        // SAFETY: sockaddr_vm is plain data; all-zero is a valid value.
        let mut a: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
        a.svm_family = libc::AF_VSOCK as libc::sa_family_t;
        a.svm_cid = cid;
        a.svm_port = port;
        a
    }

    fn check(r: libc::c_int) -> io::Result<()> {
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    pub fn connect(cid: u32, port: u32) -> io::Result<File> {
        use std::os::fd::AsRawFd;
        let fd = socket()?;
        let a = addr(cid, port);
        // SAFETY: a is a valid sockaddr_vm of the given size.
        check(unsafe {
            libc::connect(
                fd.as_raw_fd(),
                &a as *const libc::sockaddr_vm as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
            )
        })?;
        Ok(File::from(fd))
    }

    pub struct VsockListener(OwnedFd);

    impl std::os::fd::AsRawFd for VsockListener {
        fn as_raw_fd(&self) -> std::os::fd::RawFd {
            std::os::fd::AsRawFd::as_raw_fd(&self.0)
        }
    }

    impl VsockListener {
        pub fn bind(cid: u32, port: u32) -> io::Result<Self> {
            use std::os::fd::AsRawFd;
            let fd = socket()?;
            let a = addr(cid, port);
            // SAFETY: a is a valid sockaddr_vm of the given size.
            check(unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    &a as *const libc::sockaddr_vm as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
                )
            })?;
            // SAFETY: fd is a bound socket.
            check(unsafe { libc::listen(fd.as_raw_fd(), 8) })?;
            Ok(VsockListener(fd))
        }
    }

    impl super::Listener for VsockListener {
        fn accept(&self) -> io::Result<Box<dyn super::Stream>> {
            use std::os::fd::AsRawFd;
            // SAFETY: accept(2) without an address; the result is checked.
            let fd = unsafe {
                libc::accept4(
                    self.0.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fd is a fresh, owned descriptor.
            Ok(Box::new(File::from(unsafe { OwnedFd::from_raw_fd(fd) })))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_message() {
        let msgs = vec![
            Message::Job(Box::new(Job {
                git_bundle: vec![1, 2, 3],
                uri: "https://example.com/r.git".into(),
                commit: "a".repeat(40),
                git_ref: Some("main".into()),
                cmd: Some("make".into()),
                outputs: vec!["out".into()],
                source_ref: Some("refs/heads/main".into()),
                allow_unreferenced: false,
                timeout_secs: Some(10),
                memory_mb: None,
                submodules: vec![SubmoduleBundle {
                    commit: "b".repeat(40),
                    git_bundle: vec![4, 5],
                }],
            })),
            Message::LogSubmit { entry: vec![9; 5] },
            Message::LogAnswer {
                status: 200,
                body: b"{}".to_vec(),
                error: None,
            },
            Message::Result(JobResult::Err {
                code: "build_failed".into(),
                message: "exit 1".into(),
            }),
        ];
        let (a, b) = UnixStream::pair().unwrap();
        let mut tx = Channel::new(a);
        let mut rx = Channel::new(b);
        for m in &msgs {
            tx.send(m).unwrap();
            assert_eq!(&rx.recv().unwrap(), m);
        }
        // A job from a host that predates `submodules` still decodes.
        let mut value = ciborium::Value::serialized(&msgs[0]).unwrap();
        if let ciborium::Value::Map(outer) = &mut value {
            if let ciborium::Value::Map(fields) = &mut outer[0].1 {
                fields.retain(|(k, _)| k.as_text() != Some("submodules"));
            }
        }
        let mut old = Vec::new();
        ciborium::into_writer(&value, &mut old).unwrap();
        match ciborium::from_reader::<Message, _>(old.as_slice()).unwrap() {
            Message::Job(job) => assert!(job.submodules.is_empty() && job.commit == "a".repeat(40)),
            other => panic!("decoded {other:?}"),
        }
    }

    #[test]
    fn refuses_oversized_and_truncated_frames() {
        let mut buf = (MAX_MESSAGE + 1).to_be_bytes().to_vec();
        buf.extend_from_slice(&[0; 16]);
        let mut ch = Channel::new(io::Cursor::new(buf));
        let err = ch.recv().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let mut ch = Channel::new(io::Cursor::new(vec![0, 0, 0, 10, 1, 2]));
        assert_eq!(ch.recv().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        let mut ch = Channel::new(io::Cursor::new(vec![0, 0, 0, 2, 0xff, 0xff]));
        assert_eq!(ch.recv().unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn vsock_listener_binds_and_waits_with_a_deadline() {
        // Where the kernel has AF_VSOCK (a VM with a vsock device, or a
        // Nitro parent instance), bind, listen and poll are real; a
        // connection needs a peer VM, so only the empty wait is checked.
        let port = 40_000 + (std::process::id() % 20_000);
        let ep = Endpoint::Vsock {
            cid: VSOCK_ANY_CID,
            port,
        };
        let listener = match listen(&ep) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("skipped: no AF_VSOCK here ({e})");
                return;
            }
        };
        let t = std::time::Instant::now();
        let got = accept_within(listener.as_ref(), Duration::from_millis(200)).unwrap();
        assert!(got.is_none());
        assert!(t.elapsed() >= Duration::from_millis(150));
    }

    #[test]
    fn unix_listener_accepts_within_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let listener = listen(&Endpoint::Unix(path.clone())).unwrap();
        assert!(accept_within(listener.as_ref(), Duration::from_millis(50))
            .unwrap()
            .is_none());
        let _client = connect(&Endpoint::Unix(path)).unwrap();
        assert!(accept_within(listener.as_ref(), Duration::from_secs(5))
            .unwrap()
            .is_some());
    }

    #[test]
    fn vsock_endpoint_is_selectable() {
        // No hypervisor here: the call must compile and fail cleanly.
        let ep = Endpoint::Vsock {
            cid: VSOCK_PARENT_CID,
            port: 5005,
        };
        assert!(connect(&ep).is_err());
    }
}
