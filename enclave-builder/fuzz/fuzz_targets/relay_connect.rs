//! CONNECT request heads (sent by the enclave to the host's relay), then their `host:port` split.
#![no_main]

use enclave_builder::relay::connect_target;
use enclave_builder::relay::target::split_authority;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(head) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(target) = connect_target(head) else {
        return;
    };
    // The second word of a `CONNECT host:port HTTP/1.x` first line: no
    // space, a non-empty host before the last ':', and a u16 port after it
    // (the host may hold more ':', as in `[::1]:443`).
    let line = head.lines().next().unwrap();
    assert_eq!(line.split(' ').nth(1), Some(target));
    assert!(line.starts_with("CONNECT ") && !target.contains(' '));
    let (host, port) = target.rsplit_once(':').expect("no ':'");
    assert!(!host.is_empty());
    let port: u16 = port.parse().expect("port is not a u16");
    // What the relay resolves: a lowercase host without brackets, no
    // whitespace or control characters, and the same port.
    if let Ok((h, p)) = split_authority(target) {
        assert_eq!(p, port);
        assert!(!h.is_empty() && h == h.to_ascii_lowercase(), "{h:?}");
        assert!(
            !h.chars().any(|c| c.is_whitespace() || c.is_control()),
            "{h:?}"
        );
    }
});
