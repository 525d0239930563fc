//! c2sp.org/tlog-proof@v1 text: parse, format, verify.

use attestlog::tlog::checkpoint::Checkpoint;
use attestlog::tlog::cosignature::CosignatureSigner;
use attestlog::tlog::merkle::{inclusion_proof_from_leaves, leaf_hash, RootBuilder};
use attestlog::tlog::note::NoteSigner;
use attestlog::tlog::proof::TlogProof;
use proptest::prelude::*;

const CP: &str = "example.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\n\u{2014} example.com/fancylog hI2DJw==\n";

#[test]
fn spec_shaped_example() {
    let text = format!(
        "c2sp.org/tlog-proof@v1\nextra YWdlLXYx\nindex 73894\ngSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\nB95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\n\n{CP}"
    );
    let p = TlogProof::parse(&text).unwrap();
    assert_eq!(p.extra.as_deref(), Some(&b"age-v1"[..]));
    assert_eq!(p.index, 73894);
    assert_eq!(p.hashes.len(), 2);
    assert_eq!(p.checkpoint, CP);
    assert_eq!(p.to_text(), text);
    let no_extra = format!("c2sp.org/tlog-proof@v1\nindex 0\n\n{CP}");
    let p = TlogProof::parse(&no_extra).unwrap();
    assert_eq!((p.extra, p.index, p.hashes.len()), (None, 0, 0));
}

#[test]
fn malformed_proofs() {
    let h = "gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=";
    for (bad, code) in [
        (
            format!("c2sp.org/tlog-proof@v2\nindex 0\n\n{CP}"),
            "bad_header",
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nindex 01\n\n{CP}"),
            "bad_index",
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nindex -1\n\n{CP}"),
            "bad_index",
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nindex  1\n\n{CP}"),
            "bad_index",
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nextra !!\nindex 1\n\n{CP}"),
            "bad_extra",
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nextraYQ==\nindex 1\n\n{CP}"),
            "bad_extra",
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nindex 1\n{h}x\n\n{CP}"),
            "bad_hash",
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nindex 1\nYQ==\n\n{CP}"),
            "bad_hash",
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nindex 1\n{h}\n"),
            "truncated_proof",
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nindex 1\n{h}\n\n"),
            "missing_checkpoint",
        ),
        (
            format!(
                "c2sp.org/tlog-proof@v1\nindex 1\n{}\n{CP}",
                format!("{h}\n").repeat(64)
            ),
            "too_many_hashes",
        ),
    ] {
        assert_eq!(TlogProof::parse(&bad).unwrap_err().code(), code, "{bad:?}");
    }
}

#[test]
fn end_to_end_verify() {
    let leaves: Vec<_> = (0..1000u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut b = RootBuilder::new();
    leaves.iter().for_each(|l| b.push(*l));
    let log = NoteSigner::from_seed("example.com/log", [1; 32]).unwrap();
    let w = CosignatureSigner::from_seed("w.example", [2; 32]).unwrap();
    let body = Checkpoint {
        origin: "example.com/log".into(),
        size: 1000,
        root_hash: b.root(),
        extensions: vec![],
    }
    .to_body();
    let note = format!(
        "{}{}",
        log.sign(&body).unwrap(),
        w.cosign(&body, 1_700_000_000).unwrap()
    );
    let proof = TlogProof {
        extra: None,
        index: 617,
        hashes: inclusion_proof_from_leaves(&leaves, 617, 1000).unwrap(),
        checkpoint: note,
    };
    let parsed = TlogProof::parse(&proof.to_text()).unwrap();
    assert_eq!(parsed, proof);
    let (lk, wk) = (log.verifier_key().unwrap(), [w.verifier_key()]);
    parsed.verify(&leaves[617], &lk, &wk, 1).unwrap();
    assert_eq!(
        parsed.verify(&leaves[616], &lk, &wk, 1).unwrap_err().code(),
        "inclusion_mismatch"
    );
    assert_eq!(
        parsed.verify(&leaves[617], &lk, &wk, 2).unwrap_err().code(),
        "witness_quorum"
    );
}

proptest! {
    #[test]
    fn prop_roundtrip(
        extra in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        index in any::<u64>(),
        hashes in proptest::collection::vec(any::<[u8; 32]>(), 0..=63),
    ) {
        let p = TlogProof { extra, index, hashes, checkpoint: CP.to_owned() };
        prop_assert_eq!(TlogProof::parse(&p.to_text()).unwrap(), p);
    }
}
