//! P-384 ECDSA/SHA-384 verification throughput: the RustCrypto `p384` crate against
//! `aws-lc-rs`. Every attestation check costs four certificate signatures plus the
//! COSE signature, so this number decides which backend `nitro` uses.
//!
//! Both backends verify the same message, public key and fixed-width (r || s) signature.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P384_SHA384_FIXED,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use p384::ecdsa::signature::Verifier;
use std::hint::black_box;

/// A message about the size of a real Nitro Sig_structure (~4.5 KB).
fn message() -> Vec<u8> {
    (0..4500u32).map(|i| (i % 251) as u8).collect()
}

fn bench(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
        .expect("generate P-384 key");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref())
        .expect("load P-384 key");
    let msg = message();
    let sig = pair.sign(&rng, &msg).expect("sign").as_ref().to_vec();
    let public = pair.public_key().as_ref().to_vec();

    let mut group = c.benchmark_group("p384_verify");
    group.throughput(Throughput::Elements(1));

    let aws_key = UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, public.clone());
    aws_key.verify(&msg, &sig).expect("aws-lc-rs verifies");
    group.bench_function("aws-lc-rs", |b| {
        b.iter(|| aws_key.verify(black_box(&msg), black_box(&sig)).is_ok())
    });

    let rc_key = p384::ecdsa::VerifyingKey::from_sec1_bytes(&public).expect("sec1 key");
    let rc_sig = p384::ecdsa::Signature::from_slice(&sig).expect("fixed signature");
    rc_key.verify(&msg, &rc_sig).expect("p384 verifies");
    group.bench_function("p384-0.14", |b| {
        b.iter(|| rc_key.verify(black_box(&msg), black_box(&rc_sig)).is_ok())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
