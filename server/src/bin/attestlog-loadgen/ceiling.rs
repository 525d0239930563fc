//! The ceiling submissions are measured against: P-384 ECDSA/SHA-384
//! verifications per second on one thread, with the backend and the kind of
//! message the server verifies (aws-lc-rs, fixed-width r || s, a message the
//! size of a Nitro COSE Sig_structure), as `client/benches/p384_backends.rs`
//! measures it. Run it pinned to one core (`taskset -c 0`). Besides the rate
//! it reports the thread's CPU time per verification, which other processes
//! on the core do not change.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P384_SHA384_FIXED,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};

use crate::{cpu_seconds, metric};

/// Bytes of the signed message, about a real Nitro Sig_structure.
const MESSAGE_BYTES: u32 = 4500;

pub fn p384(duration: Duration) -> anyhow::Result<()> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("cannot generate a P-384 key"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref())
        .map_err(|_| anyhow::anyhow!("cannot load the P-384 key"))?;
    let msg: Vec<u8> = (0..MESSAGE_BYTES).map(|i| (i % 251) as u8).collect();
    let sig = pair
        .sign(&rng, &msg)
        .map_err(|_| anyhow::anyhow!("cannot sign"))?;
    let key = UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, pair.public_key().as_ref());
    key.verify(&msg, sig.as_ref())
        .ok()
        .context("the signature just made does not verify")?;
    // Warm up (frequency, caches), then count whole verifications.
    let warm = Instant::now() + duration / 5;
    while Instant::now() < warm {
        black_box(key.verify(black_box(&msg), black_box(sig.as_ref())).is_ok());
    }
    let started = Instant::now();
    let cpu_before = cpu_seconds("thread-self");
    let mut done = 0u64;
    while started.elapsed() < duration {
        for _ in 0..64 {
            if key
                .verify(black_box(&msg), black_box(sig.as_ref()))
                .is_err()
            {
                anyhow::bail!("p384_verify_failed: a good signature did not verify");
            }
        }
        done += 64;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_us = (cpu_seconds("thread-self") - cpu_before) * 1e6 / done as f64;
    let rate = done as f64 / secs;
    println!(
        "p384: {done} verifications in {secs:.2}s on one thread: {:.1} µs each ({cpu_us:.1} µs \
         of CPU time), {rate:.0}/s",
        1e6 / rate
    );
    metric("p384_verify_per_s", format!("{rate:.0}"));
    // Independent of other processes sharing the core, unlike the rate.
    metric("p384_cpu_us_per_verify", format!("{cpu_us:.1}"));
    Ok(())
}
