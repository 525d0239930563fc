//! Submodule URLs (from the repository's `.gitmodules`) resolved against the declaring repository.
#![no_main]

use enclave_builder::source::resolve_submodule_url;
use libfuzzer_sys::fuzz_target;

fn clean(s: &str) -> bool {
    !s.chars().any(|c| c.is_control() || c.is_whitespace())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `base\nurl`: the declaring repository's URL, then the submodule's.
    let (base, url) = text
        .split_once('\n')
        .unwrap_or(("https://github.com/o/r.git", text));
    if let Ok(resolved) = resolve_submodule_url(base, url) {
        // Accepted only when it is, or resolves to, an https:// URL with a
        // host and no credentials.
        let rest = resolved.strip_prefix("https://").expect("not https://");
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        assert!(!host.is_empty() && !host.contains('@'), "{resolved:?}");
        // The URL itself is checked; the base is the operator's (or an
        // already resolved) URL, so only a clean base gives a clean result.
        assert!(clean(url), "{url:?}");
        assert!(!clean(base) || clean(&resolved), "{resolved:?}");
        if !(url.starts_with("./") || url.starts_with("../")) {
            assert_eq!(resolved, url);
        }
    }
});
