//! The independent RFC 6962 computation the suite checks against:
//! `rs_merkle` with an RFC 6962 hasher (checked against the shared reference
//! vectors) and the RFC 9162 verifiers written out here.

use super::*;

#[derive(Clone)]
pub struct Rfc6962;

impl Hasher for Rfc6962 {
    type Hash = [u8; 32];
    fn hash(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }
    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(r) => Sha256::new()
                .chain_update([1u8])
                .chain_update(left)
                .chain_update(r)
                .finalize()
                .into(),
            None => *left, // RFC 6962: a lone node is promoted unchanged
        }
    }
}

pub fn rfc_leaf(entry: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([0u8])
        .chain_update(entry)
        .finalize()
        .into()
}

pub fn ref_root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Sha256::digest([]).into();
    }
    MerkleTree::<Rfc6962>::from_leaves(leaves).root().unwrap()
}

pub fn node(l: &Hash, r: &Hash) -> Hash {
    Rfc6962::concat_and_hash(l, Some(r))
}

/// RFC 9162 §2.1.3.2 inclusion verification.
pub fn verify_inclusion(index: u64, size: u64, leaf: Hash, proof: &[Hash], root: Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == root
}

/// RFC 9162 §2.1.4.2 consistency verification (0 < first <= second).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: Hash,
    second_root: Hash,
    proof: &[Hash],
) -> bool {
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if first.is_power_of_two() {
        path.insert(0, first_root);
    }
    if path.is_empty() {
        return false;
    }
    let (mut f_n, mut s_n) = (first - 1, second - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node(c, &fr);
            sr = node(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    fr == first_root && sr == second_root && s_n == 0
}

pub fn tl(h: &Hash) -> tlog_tiles::Hash {
    tlog_tiles::Hash(*h)
}
