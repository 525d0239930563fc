//! RFC 6962 vectors, negative cases and property tests for `tlog::merkle`.

mod common;

use attestlog::tlog::merkle::{
    consistency_proof_from_leaves, empty_root, inclusion_proof_from_leaves, leaf_hash, node_hash,
    perfect_root, verify_consistency, verify_inclusion, RootBuilder, MAX_PROOF_LEN,
};
use attestlog::tlog::Hash;
use common::h;
use proptest::prelude::*;
use serde_json::Value;

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| h(x.as_str().expect("hex")))
        .collect()
}

fn num(v: &Value) -> u64 {
    v.as_u64().expect("number")
}

/// Left/right decisions RFC 6962 verification takes for leaf `n` of a tree
/// of `size` leaves. A proof only binds the tree size through this path, so
/// a different size with the same path (and the same root) also verifies.
fn inclusion_shape(n: u64, size: u64) -> Vec<bool> {
    let (mut lo, mut hi, mut out) = (0u64, size, Vec::new());
    while hi - lo > 1 {
        let k = 1u64 << (63 - (hi - lo - 1).leading_zeros());
        if n < lo + k {
            hi = lo + k;
            out.push(false);
        } else {
            lo += k;
            out.push(true);
        }
    }
    out
}

/// Decisions of consistency verification from `m` to `size` (see above).
fn consistency_shape(m: u64, size: u64) -> Vec<u8> {
    let (mut lo, mut hi, mut out) = (0u64, size, Vec::new());
    loop {
        if m == hi {
            out.push(if lo == 0 { 2 } else { 3 });
            return out;
        }
        let k = 1u64 << (63 - (hi - lo - 1).leading_zeros());
        if m <= lo + k {
            hi = lo + k;
            out.push(0);
        } else {
            lo += k;
            out.push(1);
        }
    }
}

/// A wrong size must fail unless it yields the same verification path.
fn check_wrong_inclusion_size(
    index: u64,
    size: u64,
    wrong: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) {
    let res = verify_inclusion(index, wrong, leaf, proof, root);
    if index < wrong && inclusion_shape(index, wrong) == inclusion_shape(index, size) {
        assert!(res.is_ok(), "same path {index}/{size} vs {wrong}");
    } else {
        assert!(
            res.is_err(),
            "wrong size {wrong} for {index}/{size} accepted"
        );
    }
}

fn check_wrong_consistency_sizes(
    first: u64,
    second: u64,
    f2: u64,
    s2: u64,
    r1: &Hash,
    r2: &Hash,
    proof: &[Hash],
) {
    let res = verify_consistency(f2, s2, r1, r2, proof);
    let same = f2 >= 1
        && f2 < s2
        && first < second
        && consistency_shape(f2, s2) == consistency_shape(first, second);
    if same {
        assert!(res.is_ok(), "same path {first}->{second} vs {f2}->{s2}");
    } else {
        assert!(
            res.is_err(),
            "wrong sizes {f2}->{s2} for {first}->{second} accepted"
        );
    }
}

fn flip_each(proof: &[Hash]) -> Vec<Vec<Hash>> {
    let mut out = Vec::new();
    for i in 0..proof.len() {
        for bit in [0usize, 77, 255] {
            let mut p = proof.to_vec();
            p[i][bit / 8] ^= 1 << (bit % 8);
            out.push(p);
        }
    }
    out
}

#[test]
fn rfc6962_roots_and_leaf_hashes() {
    let Some(v) = common::vectors("rfc6962.json") else {
        return;
    };
    let leaves: Vec<Vec<u8>> = v["leaves_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| hex::decode(x.as_str().unwrap()).unwrap())
        .collect();
    let roots = v["roots_by_size"].as_object().unwrap();
    assert_eq!(roots.len(), 9);
    assert_eq!(hex::encode(empty_root()), roots["0"].as_str().unwrap());
    let mut b = RootBuilder::new();
    assert_eq!(b.root(), empty_root());
    for (i, leaf) in leaves.iter().enumerate() {
        b.push(leaf_hash(leaf));
        assert_eq!(b.size(), i as u64 + 1);
        let want = roots[&(i + 1).to_string()].as_str().unwrap();
        assert_eq!(hex::encode(b.root()), want, "root of size {}", i + 1);
    }
}

#[test]
fn rfc6962_inclusion_vectors_and_negatives() {
    let Some(v) = common::vectors("rfc6962.json") else {
        return;
    };
    let cases = v["inclusion"].as_array().unwrap();
    assert_eq!(cases.len(), 36);
    for c in cases {
        let (index, size) = (num(&c["leaf_index"]), num(&c["tree_size"]));
        let (leaf, root, proof) = (
            h(c["leaf_hash"].as_str().unwrap()),
            h(c["root"].as_str().unwrap()),
            hashes(&c["proof"]),
        );
        verify_inclusion(index, size, &leaf, &proof, &root)
            .unwrap_or_else(|e| panic!("vector {index}/{size}: {e}"));

        let mut bad_leaf = leaf;
        bad_leaf[0] ^= 1;
        assert!(verify_inclusion(index, size, &bad_leaf, &proof, &root).is_err());
        assert!(verify_inclusion(index, size, &leaf, &proof, &bad_leaf).is_err());
        check_wrong_inclusion_size(index, size, size + 1, &leaf, &proof, &root);
        if size > 1 {
            check_wrong_inclusion_size(index, size, size - 1, &leaf, &proof, &root);
            let other = (index + 1) % size;
            assert!(verify_inclusion(other, size, &leaf, &proof, &root).is_err());
        }
        assert_eq!(
            verify_inclusion(size, size, &leaf, &proof, &root)
                .unwrap_err()
                .code(),
            "index_out_of_range"
        );
        for p in flip_each(&proof) {
            assert_eq!(
                verify_inclusion(index, size, &leaf, &p, &root)
                    .unwrap_err()
                    .code(),
                "inclusion_mismatch"
            );
        }
        if !proof.is_empty() {
            let short = &proof[..proof.len() - 1];
            assert!(verify_inclusion(index, size, &leaf, short, &root).is_err());
        }
        let mut long = proof.clone();
        long.push(root);
        assert!(verify_inclusion(index, size, &leaf, &long, &root).is_err());
    }
}

#[test]
fn rfc6962_consistency_vectors_and_negatives() {
    let Some(v) = common::vectors("rfc6962.json") else {
        return;
    };
    let cases = v["consistency"].as_array().unwrap();
    assert_eq!(cases.len(), 36);
    for c in cases {
        let (first, second) = (num(&c["first"]), num(&c["second"]));
        let (r1, r2, proof) = (
            h(c["first_root"].as_str().unwrap()),
            h(c["second_root"].as_str().unwrap()),
            hashes(&c["proof"]),
        );
        verify_consistency(first, second, &r1, &r2, &proof)
            .unwrap_or_else(|e| panic!("vector {first}->{second}: {e}"));
        if first != second {
            assert!(
                verify_consistency(first, second, &r2, &r1, &proof).is_err(),
                "swapped"
            );
            assert_eq!(
                verify_consistency(second, first, &r2, &r1, &proof)
                    .unwrap_err()
                    .code(),
                "size_order"
            );
        }
        check_wrong_consistency_sizes(first, second, first, second + 1, &r1, &r2, &proof);
        if first > 1 {
            check_wrong_consistency_sizes(first, second, first - 1, second, &r1, &r2, &proof);
        }
        for p in flip_each(&proof) {
            assert!(verify_consistency(first, second, &r1, &r2, &p).is_err());
        }
        if !proof.is_empty() {
            let short = &proof[..proof.len() - 1];
            assert!(verify_consistency(first, second, &r1, &r2, short).is_err());
        }
        let mut long = proof.clone();
        long.push(r1);
        assert!(verify_consistency(first, second, &r1, &r2, &long).is_err());
        // Our prover reproduces the vector exactly.
        let leaves: Vec<Hash> = v["leaves_hex"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| leaf_hash(&hex::decode(x.as_str().unwrap()).unwrap()))
            .collect();
        assert_eq!(
            consistency_proof_from_leaves(&leaves, first, second).unwrap(),
            proof
        );
    }
}

#[test]
fn consistency_edge_cases() {
    let a = leaf_hash(b"a");
    let r = node_hash(&a, &leaf_hash(b"b"));
    verify_consistency(0, 0, &empty_root(), &empty_root(), &[]).unwrap();
    verify_consistency(0, 2, &empty_root(), &r, &[]).unwrap();
    assert_eq!(
        verify_consistency(0, 2, &a, &r, &[]).unwrap_err().code(),
        "empty_root_mismatch"
    );
    assert_eq!(
        verify_consistency(0, 2, &empty_root(), &r, &[a])
            .unwrap_err()
            .code(),
        "unexpected_proof"
    );
    assert_eq!(
        verify_consistency(2, 2, &r, &r, &[a]).unwrap_err().code(),
        "unexpected_proof"
    );
    assert_eq!(
        verify_consistency(2, 2, &r, &a, &[]).unwrap_err().code(),
        "consistency_mismatch"
    );
    let long = vec![a; MAX_PROOF_LEN + 1];
    assert_eq!(
        verify_consistency(1, u64::MAX, &a, &r, &long)
            .unwrap_err()
            .code(),
        "proof_too_long"
    );
    assert_eq!(
        verify_inclusion(0, u64::MAX, &a, &long, &r)
            .unwrap_err()
            .code(),
        "proof_too_long"
    );
    // Huge sizes with short proofs fail cleanly (no panic).
    assert!(verify_inclusion(u64::MAX - 1, u64::MAX, &a, &[r; 63], &r).is_err());
    assert!(verify_consistency(u64::MAX - 1, u64::MAX, &a, &r, &[r; 63]).is_err());
    assert!(verify_inclusion(0, 0, &a, &[], &r).is_err());
}

/// RFC 6962 node hashing for rs_merkle: its `concat_and_hash` hashes
/// left || right and promotes a lone left node, so prefixing 0x01 here gives
/// RFC 6962 interior nodes; leaves are passed pre-hashed with 0x00.
#[derive(Clone)]
struct Rfc6962;
impl rs_merkle::Hasher for Rfc6962 {
    type Hash = [u8; 32];
    fn hash(data: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update([0x01]);
        h.update(data);
        h.finalize().into()
    }
}

fn rs_root(leaves: &[Hash]) -> Hash {
    rs_merkle::MerkleTree::<Rfc6962>::from_leaves(leaves)
        .root()
        .unwrap_or_else(empty_root)
}

#[test]
fn rs_merkle_matches_rfc6962_vectors() {
    let Some(v) = common::vectors("rfc6962.json") else {
        return;
    };
    let leaves: Vec<Hash> = v["leaves_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| leaf_hash(&hex::decode(x.as_str().unwrap()).unwrap()))
        .collect();
    for n in 1..=8 {
        let want = v["roots_by_size"][n.to_string()].as_str().unwrap();
        assert_eq!(
            hex::encode(rs_root(&leaves[..n])),
            want,
            "rs_merkle size {n}"
        );
    }
}

fn leaves_strategy() -> impl Strategy<Value = Vec<Hash>> {
    (1usize..300).prop_map(|n| {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_inclusion(leaves in leaves_strategy(), seed in any::<u64>(), bit in 0usize..256) {
        let size = leaves.len() as u64;
        let index = seed % size;
        let root = rs_root(&leaves);
        let mut b = RootBuilder::new();
        leaves.iter().for_each(|l| b.push(*l));
        prop_assert_eq!(b.root(), root);
        let proof = inclusion_proof_from_leaves(&leaves, index, size).unwrap();
        let leaf = leaves[index as usize];
        verify_inclusion(index, size, &leaf, &proof, &root).unwrap();
        // Independent prover agrees for a single leaf.
        let rs = rs_merkle::MerkleTree::<Rfc6962>::from_leaves(&leaves).proof(&[index as usize]);
        prop_assert_eq!(rs.proof_hashes().to_vec(), proof.clone());
        // Mutations fail.
        if !proof.is_empty() {
            let mut p = proof.clone();
            let i = (seed as usize) % p.len();
            p[i][bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_inclusion(index, size, &leaf, &p, &root).is_err());
        }
        if size > 1 {
            let other = (index + 1 + seed % (size - 1)) % size;
            prop_assert!(verify_inclusion(other, size, &leaf, &proof, &root).is_err());
        }
        check_wrong_inclusion_size(index, size, size + 1, &leaf, &proof, &root);
        check_wrong_inclusion_size(index, size, size + 1 + seed % 1000, &leaf, &proof, &root);
    }

    #[test]
    fn prop_consistency(leaves in leaves_strategy(), seed in any::<u64>(), bit in 0usize..256) {
        let second = leaves.len() as u64;
        let first = 1 + seed % second;
        let r1 = rs_root(&leaves[..first as usize]);
        let r2 = rs_root(&leaves);
        let proof = consistency_proof_from_leaves(&leaves, first, second).unwrap();
        verify_consistency(first, second, &r1, &r2, &proof).unwrap();
        if !proof.is_empty() {
            let mut p = proof.clone();
            let i = (seed as usize) % p.len();
            p[i][bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_consistency(first, second, &r1, &r2, &p).is_err());
            prop_assert!(verify_consistency(first, second, &r2, &r1, &proof).is_err());
        }
        if first < second {
            check_wrong_consistency_sizes(first, second, first, second + 1, &r1, &r2, &proof);
            check_wrong_consistency_sizes(first, second, first + 1, second, &r1, &r2, &proof);
        }
    }

    /// `perfect_root` over 2^k leaf hashes is their tree's root (rs_merkle's);
    /// any other count or a ragged length is `None`.
    #[test]
    fn prop_perfect_root(k in 0u32..9, extra in 1usize..300, cut in 1usize..32) {
        let leaves: Vec<Hash> = (0..1u64 << k).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let bytes = leaves.concat();
        prop_assert_eq!(perfect_root(&bytes), Some(rs_root(&leaves)));
        let more: Vec<Hash> = (0..(1usize << k) + extra)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect();
        if !more.len().is_power_of_two() {
            prop_assert_eq!(perfect_root(&more.concat()), None);
        }
        prop_assert_eq!(perfect_root(&bytes[..bytes.len() - cut]), None);
        prop_assert_eq!(perfect_root(&[]), None);
    }

    #[test]
    fn prop_verify_never_panics(
        index in any::<u64>(), size in any::<u64>(), first in any::<u64>(),
        proof in proptest::collection::vec(any::<[u8; 32]>(), 0..70),
    ) {
        let z = [0u8; 32];
        let _ = verify_inclusion(index, size, &z, &proof, &z);
        let _ = verify_consistency(first, size, &z, &z, &proof);
    }
}
