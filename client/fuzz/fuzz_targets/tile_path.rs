//! Tile paths and entry bundles: parse, and canonical round trips.
#![no_main]

use attestlog::tlog::tiles::{encode_entry_bundle, parse_entry_bundle, TilePath};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(path) = TilePath::parse(text) {
            // Only canonical paths parse, so formatting gives the input back.
            assert_eq!(path.to_path(), text);
        }
    }
    if let Ok(entries) = parse_entry_bundle(data) {
        assert_eq!(encode_entry_bundle(&entries).ok().as_deref(), Some(data));
    }
});
