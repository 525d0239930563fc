//! Witness add-checkpoint request bodies: parse, and canonical round trips.
#![no_main]

use attestlog::witness::AddCheckpointRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = AddCheckpointRequest::parse(data) {
        // Only canonical bodies parse, so formatting gives the input back.
        let body = req.to_body();
        assert_eq!(body.as_bytes(), data);
        assert_eq!(AddCheckpointRequest::parse(body.as_bytes()).ok(), Some(req));
    }
});
