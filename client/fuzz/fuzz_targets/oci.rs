//! OCI registry references, credentials files and `WWW-Authenticate` challenges.
#![no_main]

use attestlog::oci::{parse_challenge, Credentials, Reference};
use libfuzzer_sys::fuzz_target;

/// `REGISTRY/REPOSITORY[:TAG][@DIGEST]`, as parse reads it.
fn text(r: &Reference) -> String {
    let mut out = format!("{}/{}", r.registry, r.repository);
    if let Some(tag) = &r.tag {
        out.push(':');
        out.push_str(tag);
    }
    if let Some(digest) = &r.digest {
        out.push('@');
        out.push_str(digest);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Reference::parse(input) {
        // Only canonical references parse, so formatting gives the input back.
        assert_eq!(text(&r), input);
        assert_eq!(Reference::parse(&text(&r)).ok(), Some(r.clone()));
        assert!(!r.manifest_reference().is_empty());
        let _ = r.base_url();
    }
    let _ = Credentials::parse(input);
    // A registry's header: only a Bearer challenge with a realm is taken.
    if parse_challenge(input).is_some() {
        assert!(input
            .trim_start()
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case("bearer")));
    }
});
