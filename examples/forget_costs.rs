//! What forgetting a person costs on the hot paths, per address, on this machine:
//!
//! - `hash`: the keyed hash that names an address in keys and in the in-memory indexes, which
//!   CheckImport computes for every contact: SipHash-1-3 (128 bits, what the store uses) against
//!   HMAC-SHA-256 (what the erasure issue names), both keyed, over realistic addresses.
//! - `seal`: sealing a value of a history entry's size under a key of its own (a fresh cipher
//!   per value, as the store does: one key per address), with ring's ChaCha20-Poly1305 (what
//!   the store uses) and AES-256-GCM. RustCrypto's chacha20poly1305 0.11 was measured by an
//!   earlier version of this example (bench/README.md).
//! - `keyring`: reading one 32-byte slot of a keyring file with `pread` (the file in the page
//!   cache), as a write or a lookup of a known address does once.
//!
//! `cargo run --release --example forget_costs -- [addresses]` (default 1,000,000).

use std::hash::Hasher;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use siphasher::sip128::{Hasher128, SipHasher13};

fn addresses(n: usize) -> Vec<String> {
    let firsts = [
        "jane", "john", "maria", "li", "ahmed", "olga", "kwame", "sofia",
    ];
    let domains = ["gmail.com", "example.com", "yahoo.co.uk", "company-name.de"];
    (0..n)
        .map(|i| {
            format!(
                "{}.{}{}@{}",
                firsts[i % firsts.len()],
                "surname",
                i,
                domains[(i / 7) % domains.len()]
            )
        })
        .collect()
}

/// Best of five runs of `f` over every address, in ns per address.
fn per_address(addresses: &[String], mut f: impl FnMut(&str) -> u64) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        let mut acc = 0u64;
        for a in addresses {
            acc ^= f(a);
        }
        black_box(acc);
        best = best.min(started.elapsed().as_nanos() as f64 / addresses.len() as f64);
    }
    best
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let all = addresses(n);
    let avg_len = all.iter().map(String::len).sum::<usize>() as f64 / n as f64;
    println!("{n} addresses, {avg_len:.1} bytes on average");

    let (k0, k1) = (0x0123_4567_89ab_cdef_u64, 0xfedc_ba98_7654_3210_u64);
    let sip = per_address(&all, |a| {
        let mut h = SipHasher13::new_with_keys(k0, k1);
        h.write(b"tenant");
        h.write_u8(0);
        h.write(a.as_bytes());
        h.finish128().h1
    });
    println!("hash  SipHash-1-3 128 (tenant, address):       {sip:7.1} ns/address");

    // The key's inner and outer pads are hashed once; each address clones that state.
    let keyed = Hmac::<Sha256>::new_from_slice(&[7u8; 32]).expect("any key length");
    let hmac = per_address(&all, |a| {
        let mut m = keyed.clone();
        m.update(a.as_bytes());
        let out = m.finalize().into_bytes();
        u64::from_le_bytes(out[..8].try_into().expect("8 bytes"))
    });
    println!("hash  HMAC-SHA-256 (per-tenant key, address):   {hmac:7.1} ns/address");
    let fresh = per_address(&all, |a| {
        let mut m = Hmac::<Sha256>::new_from_slice(&[7u8; 32]).expect("any key length");
        m.update(a.as_bytes());
        let out = m.finalize().into_bytes();
        u64::from_le_bytes(out[..8].try_into().expect("8 bytes"))
    });
    println!("hash  HMAC-SHA-256, key set up per address:     {fresh:7.1} ns/address");

    // Sealing: a history entry of a bounce is 200-400 bytes.
    let plain = vec![0x5au8; 300];
    let keys: Vec<[u8; 32]> = (0..1024u32)
        .map(|i| {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            k
        })
        .collect();
    let sample: Vec<String> = all.iter().take(200_000).cloned().collect();
    let mut buf = plain.clone();
    for (name, alg) in [
        ("ChaCha20-Poly1305", &ring::aead::CHACHA20_POLY1305),
        ("AES-256-GCM      ", &ring::aead::AES_256_GCM),
    ] {
        let mut i = 0usize;
        let seal = per_address(&sample, |_| {
            i += 1;
            let key = ring::aead::LessSafeKey::new(
                ring::aead::UnboundKey::new(alg, &keys[i % keys.len()]).expect("32 bytes"),
            );
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&(i as u64).to_le_bytes());
            buf.copy_from_slice(&plain);
            let tag = key
                .seal_in_place_separate_tag(
                    ring::aead::Nonce::assume_unique_for_key(nonce),
                    ring::aead::Aad::empty(),
                    &mut buf,
                )
                .expect("small message");
            u64::from(tag.as_ref()[0])
        });
        println!("seal  ring {name}, 300 bytes, own key: {seal:7.1} ns/value");
    }

    // A keyring of one slot per address, read at random slots.
    let dir = std::env::temp_dir().join(format!("forget-costs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("keyring");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("keyring file");
    let slots = n as u64;
    file.set_len(32 * slots).expect("size");
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let pread = per_address(&sample, |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut key = [0u8; 32];
        file.read_exact_at(&mut key, 32 * (state % slots))
            .expect("read");
        u64::from(key[0])
    });
    println!("keyring pread of a 32-byte slot, random:        {pread:7.1} ns/read");
    let _ = std::fs::remove_dir_all(&dir);
}
