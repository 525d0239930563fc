//! GitHub webhook bodies (signed by GitHub; refs and commit ids are the pusher's).
#![no_main]

use attestlog::oci::valid_tag;
use enclave_builder::webhook::parse_event;
use libfuzzer_sys::fuzz_target;

/// The events that queue a build, then two that do not.
const EVENTS: [&str; 4] = ["push", "workflow_job", "ping", "pull_request"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let event = EVENTS[usize::from(pick) % EVENTS.len()];
    let parsed = parse_event(event, body);
    if event != "push" && event != "workflow_job" {
        assert!(matches!(parsed, Ok(None)));
    }
    if let Ok(Some(build)) = parsed {
        assert_eq!(build.event, event);
        assert_eq!(build.commit, build.commit.to_ascii_lowercase());
        if let Some(git_ref) = &build.git_ref {
            assert_eq!(event, "push");
            let tag = build.tag().expect("a ref that is not a tag");
            assert_eq!(git_ref.strip_prefix("refs/tags/"), Some(tag));
            assert!(valid_tag(tag), "{tag:?}");
        }
    }
});
