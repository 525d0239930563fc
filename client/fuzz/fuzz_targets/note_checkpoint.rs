//! Signed notes, checkpoints, keys and witness cosignatures.
#![no_main]

use attestlog::tlog::checkpoint::{verify_checkpoint, Checkpoint};
use attestlog::tlog::cosignature::CosignatureVerifierKey;
use attestlog::tlog::note::{verify_note, NoteVerifierKey, SignedNote};
use libfuzzer_sys::fuzz_target;

const LOG_KEY: &str = "example.com/test+b3576301+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const WITNESS_KEY: &str =
    "witness.example.com/w1+409495ad+BGG3op9v3HIXXDPBmFc/0CioJHhGCXc+pyvvFPlBZdYO";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (Ok(log), Ok(witness)) = (
        NoteVerifierKey::parse(LOG_KEY),
        CosignatureVerifierKey::parse(WITNESS_KEY),
    ) else {
        return;
    };
    if let Ok(note) = SignedNote::parse(text) {
        // A parsed note re-parses to the same thing.
        assert_eq!(SignedNote::parse(&note.to_text()).ok(), Some(note));
    }
    if let Ok(cp) = Checkpoint::parse_body(text) {
        assert_eq!(cp.to_body(), text);
    }
    let _ = verify_note(text, std::slice::from_ref(&log));
    let _ = verify_checkpoint(text, &log, std::slice::from_ref(&witness), 1);
    let _ = NoteVerifierKey::parse(text);
    let _ = CosignatureVerifierKey::parse(text);
});
