//! Witness log lists: parse, and every listed origin is found by its hash.
#![no_main]

use attestlog::witness::{origin_hash, LogList};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(list) = LogList::parse(text) {
        assert!(list.origins().next().is_some());
        for origin in list.origins() {
            assert!(!list.keys(origin).unwrap_or_default().is_empty());
            assert_eq!(list.origin_by_hash(&origin_hash(origin)), Some(origin));
        }
    }
});
