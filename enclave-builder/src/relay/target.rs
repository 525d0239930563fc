//! Which CONNECT targets the host's relay dials.
//!
//! Contract: by default only port [`DEFAULT_PORT`] on public unicast
//! addresses. The target is resolved once, every resolved address is
//! checked, and the relay dials only those checked addresses (no second
//! lookup, so no DNS rebinding between check and connect); one refused
//! address refuses the whole target. Refused everywhere: loopback,
//! unspecified, private, CGNAT, link-local, unique-local (the cloud's
//! metadata service lives at 169.254.169.254 and fd00:ec2::254),
//! multicast, broadcast, reserved, documentation and benchmarking ranges,
//! and IPv4 addresses embedded in IPv6 (mapped, compatible, NAT64, 6to4)
//! that would be refused themselves. The operator can add exact
//! `host:port` targets ([`AllowedTarget`]); those may use any port and any
//! address except the ones [`never_dialled`] names, loopback included.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// The one port the relay dials without an operator's allow entry: HTTPS,
/// the only transport the enclave's git uses.
pub const DEFAULT_PORT: u16 = 443;

/// The instance metadata service's IPv6 address on EC2 (Nitro), refused
/// even when an allow entry resolves to it.
pub const EC2_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// A `host:port` the operator allows (`--relay-allow`), compared exactly
/// (the host case-insensitively, IPv6 without brackets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedTarget {
    pub host: String,
    pub port: u16,
}

/// Why a target string or a target is refused.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{0:?} is not host:port")]
    Syntax(String),
    #[error("{target}: port {port} is not {DEFAULT_PORT} and the target is not allowed with --relay-allow")]
    Port { target: String, port: u16 },
    #[error("{target} resolves to {addr}, a {class} address")]
    Address {
        target: String,
        addr: IpAddr,
        class: &'static str,
    },
    #[error("{target}: cannot resolve: {reason}")]
    Resolve {
        target: String,
        #[source]
        reason: LookupError,
    },
}

/// Why resolving a target's host gave no address to check.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("{0}")]
    Resolver(#[source] std::io::Error),
    #[error("no answer within {RESOLVE_TIMEOUT:?}")]
    Timeout,
    #[error("no address")]
    NoAddress,
}

/// Splits `host:port` (`[v6]:port` for IPv6) into a lowercase host without
/// brackets and the port.
pub fn split_authority(authority: &str) -> Result<(String, u16), TargetError> {
    let bad = || TargetError::Syntax(authority.to_string());
    let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']').ok_or_else(bad)?,
        None if host.contains(':') => return Err(bad()),
        None => host,
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    Ok((host.to_ascii_lowercase(), port))
}

impl std::str::FromStr for AllowedTarget {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, port) = split_authority(s)?;
        Ok(AllowedTarget { host, port })
    }
}

/// The class an IPv4 address is refused as, or `None` for public unicast.
pub fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_broadcast() => "broadcast",
        (0, _, _) => "unspecified (0.0.0.0/8)",
        (127, _, _) => "loopback",
        (10, _, _) => "private",
        (172, 16..=31, _) => "private",
        (192, 168, _) => "private",
        (100, 64..=127, _) => "shared (CGNAT)",
        (169, 254, _) => "link-local",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (192, 88, 99) => "6to4 relay anycast",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address embeds by a standard mapping
/// (mapped, compatible, NAT64, 6to4), if any.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 1, ..] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// The class an IPv6 address is refused as, or `None` for public unicast.
pub fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if let Some(v4) = embedded_v4(ip) {
        return refused_v4(v4).or(match ip.segments()[0] {
            // Mapped and compatible forms are the IPv4 address itself;
            // NAT64 and 6to4 reach it through a translator.
            0 | 0x64 | 0x2002 => None,
            _ => Some("reserved"),
        });
    }
    let s = ip.segments();
    Some(match s[0] {
        0xfe80..=0xfebf => "link-local",
        0xfec0..=0xfeff => "site-local",
        0xfc00..=0xfdff => "unique-local",
        0xff00..=0xffff => "multicast",
        0x2001 if s[1] == 0xdb8 => "documentation",
        0x3fff if s[1] < 0x1000 => "documentation",
        0x2001 if s[1] == 2 && s[2] == 0 => "benchmarking",
        0x2001 if s[1] == 0 => "Teredo",
        0x2001 if (0x10..=0x2f).contains(&s[1]) => "ORCHID",
        0x2001 if s[1] < 0x200 => "IETF protocol assignment",
        0x0100 if s[1..4] == [0, 0, 0] => "discard-only",
        0x2000..=0x3fff => return None,
        _ => "not global unicast",
    })
}

/// The class `ip` is refused as without an allow entry.
pub fn refused(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

/// The class `ip` is refused as even for an allowed target: nothing that
/// can be a repository (unspecified, multicast, broadcast) and the cloud's
/// metadata service (link-local, [`EC2_METADATA_V6`]).
pub fn never_dialled(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => Some("unspecified"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("broadcast"),
        IpAddr::V4(v4) if v4.is_multicast() => Some("multicast"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("link-local"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("unspecified"),
        IpAddr::V6(v6) if v6.is_multicast() => Some("multicast"),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Some("link-local"),
        IpAddr::V6(v6) if v6 == EC2_METADATA_V6 => Some("instance metadata"),
        _ => None,
    }
}

/// How long the relay waits for the resolver: the system's lookup has no
/// deadline of its own, and a stalled one must not hold the relay stream.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves `host:port` on a helper thread, waiting at most
/// [`RESOLVE_TIMEOUT`] (a lookup still running then is left to finish);
/// an empty answer is an error.
fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, LookupError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let host = host.to_string();
    std::thread::spawn(move || {
        let result = (host.as_str(), port)
            .to_socket_addrs()
            .map(|a| a.collect::<Vec<_>>());
        let _ = tx.send(result);
    });
    match rx.recv_timeout(RESOLVE_TIMEOUT) {
        Ok(Ok(addrs)) if addrs.is_empty() => Err(LookupError::NoAddress),
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(LookupError::Resolver(e)),
        Err(_) => Err(LookupError::Timeout),
    }
}

/// The relay's dial policy: the default rule plus the operator's targets.
#[derive(Clone, Debug, Default)]
pub struct RelayPolicy {
    pub allowed: Vec<AllowedTarget>,
}

impl RelayPolicy {
    /// The addresses to dial for a CONNECT `authority`, each one checked.
    pub fn resolve(&self, authority: &str) -> Result<Vec<SocketAddr>, TargetError> {
        let (host, port) = split_authority(authority)?;
        let allowed = self
            .allowed
            .iter()
            .any(|t| t.host == host && t.port == port);
        if !allowed && port != DEFAULT_PORT {
            return Err(TargetError::Port {
                target: authority.to_string(),
                port,
            });
        }
        let addrs = lookup(&host, port).map_err(|reason| TargetError::Resolve {
            target: authority.to_string(),
            reason,
        })?;
        for addr in &addrs {
            let class = match allowed {
                true => never_dialled(addr.ip()),
                false => refused(addr.ip()),
            };
            if let Some(class) = class {
                return Err(TargetError::Address {
                    target: authority.to_string(),
                    addr: addr.ip(),
                    class,
                });
            }
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_refused_with_their_class() {
        let cases = [
            ("0.0.0.0", "unspecified (0.0.0.0/8)"),
            ("0.1.2.3", "unspecified (0.0.0.0/8)"),
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.0.0.1", "private"),
            ("10.255.255.255", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.254", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("100.127.255.255", "shared (CGNAT)"),
            ("169.254.169.254", "link-local"),
            ("192.0.0.8", "IETF protocol assignment"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.1", "benchmarking"),
            ("192.88.99.1", "6to4 relay anycast"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.1.2.3", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::127.0.0.1", "loopback"),
            ("::192.168.0.1", "private"),
            ("64:ff9b::10.0.0.1", "private"),
            ("64:ff9b:1::a9fe:a9fe", "link-local"),
            ("2002:a9fe:a9fe::1", "link-local"),
            ("2002:7f00:1::", "loopback"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("fc00::1", "unique-local"),
            ("fd00:ec2::254", "unique-local"),
            ("fdff:ffff::1", "unique-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("2001:2::1", "benchmarking"),
            ("2001::1", "Teredo"),
            ("2001:10::1", "ORCHID"),
            ("2001:20::1", "ORCHID"),
            ("2001:1::1", "IETF protocol assignment"),
            ("100::1", "discard-only"),
            ("4000::1", "not global unicast"),
            ("1::1", "not global unicast"),
        ];
        for (addr, class) in cases {
            assert_eq!(refused(ip(addr)), Some(class), "{addr}");
        }
    }

    #[test]
    fn public_unicast_addresses_pass() {
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "140.82.112.3",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "192.0.3.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.254",
            "11.0.0.1",
            "::ffff:140.82.112.3",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2606:50c0::1",
            "2a00:1450:4001::1",
            "2001:4860:4860::8888",
            "2001:200::1",
            "3fff:1000::1",
        ] {
            assert_eq!(refused(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn allowed_targets_still_never_reach_metadata_or_nonsense() {
        for addr in [
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "fe80::1",
            "fd00:ec2::254",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "ff02::1",
            "255.255.255.255",
        ] {
            assert!(never_dialled(ip(addr)).is_some(), "{addr}");
        }
        for addr in ["127.0.0.1", "::1", "10.0.0.5", "fd12::1", "140.82.112.3"] {
            assert_eq!(never_dialled(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn targets_parse_and_policy_applies() {
        assert_eq!(
            "Git.Example:8443".parse::<AllowedTarget>().unwrap(),
            AllowedTarget {
                host: "git.example".into(),
                port: 8443
            }
        );
        assert_eq!(
            "[::1]:443".parse::<AllowedTarget>().unwrap().host,
            "::1".to_string()
        );
        for bad in ["host", ":443", "h:99999", "::1:443", "[::1:443", "a b:1"] {
            assert!(bad.parse::<AllowedTarget>().is_err(), "{bad}");
        }
        let none = RelayPolicy::default();
        assert!(matches!(
            none.resolve("127.0.0.1:8443"),
            Err(TargetError::Port { port: 8443, .. })
        ));
        assert!(matches!(
            none.resolve("127.0.0.1:443"),
            Err(TargetError::Address {
                class: "loopback",
                ..
            })
        ));
        assert!(matches!(
            none.resolve("localhost:443"),
            Err(TargetError::Address { .. })
        ));
        assert!(matches!(
            none.resolve("[fd00:ec2::254]:443"),
            Err(TargetError::Address {
                class: "unique-local",
                ..
            })
        ));
        assert!(matches!(
            none.resolve("169.254.169.254:443"),
            Err(TargetError::Address {
                class: "link-local",
                ..
            })
        ));
        let allow = RelayPolicy {
            allowed: vec![
                "127.0.0.1:8443".parse().unwrap(),
                "169.254.169.254:80".parse().unwrap(),
            ],
        };
        assert_eq!(
            allow.resolve("127.0.0.1:8443").unwrap(),
            vec!["127.0.0.1:8443".parse::<SocketAddr>().unwrap()]
        );
        // Exact host:port only, and metadata stays out of reach.
        assert!(allow.resolve("127.0.0.1:8444").is_err());
        assert!(allow.resolve("127.0.0.2:443").is_err());
        assert!(matches!(
            allow.resolve("169.254.169.254:80"),
            Err(TargetError::Address { .. })
        ));
    }
}
