//! cosign's encrypted private keys (`cosign generate-key-pair`'s `cosign.key`).
//!
//! Takes the PEM text of an `ENCRYPTED SIGSTORE PRIVATE KEY` (or the older
//! `ENCRYPTED COSIGN PRIVATE KEY`) and a password; gives the PKCS#8 DER of
//! the key inside. The PEM body is JSON: an scrypt key derivation (`N`,
//! `r`, `p`, salt) and a NaCl secretbox (XSalsa20-Poly1305, nonce) over the
//! key's PKCS#8 DER, as cosign's `pkg/cosign` encrypts it.

use base64::Engine;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Key, Nonce, XSalsa20Poly1305};
use serde::Deserialize;

/// The PEM labels cosign has used for its encrypted keys.
pub const PEM_LABELS: [&str; 2] = [
    "ENCRYPTED SIGSTORE PRIVATE KEY",
    "ENCRYPTED COSIGN PRIVATE KEY",
];

/// The most memory scrypt may use (cosign's default, N = 32768 or 65536
/// with r = 8, needs 32 or 64 MiB).
const MAX_SCRYPT_BYTES: u128 = 1 << 30;

#[derive(Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    salt: String,
}

#[derive(Deserialize)]
struct KdfParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// Whether `pem` is one of cosign's encrypted keys.
pub fn is_encrypted_key(pem: &str) -> bool {
    PEM_LABELS
        .iter()
        .any(|l| pem.contains(&format!("-----BEGIN {l}-----")))
}

/// Decrypts a cosign key; gives the PKCS#8 DER of the private key.
pub fn decrypt(pem: &str, password: &[u8]) -> Result<Vec<u8>, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let json = b64
        .decode(body)
        .map_err(|e| format!("the PEM body is not base64: {e}"))?;
    let env: Envelope =
        serde_json::from_slice(&json).map_err(|e| format!("not a cosign encrypted key: {e}"))?;
    if env.kdf.name != "scrypt" {
        return Err(format!("key derivation {:?} is not scrypt", env.kdf.name));
    }
    if env.cipher.name != "nacl/secretbox" {
        return Err(format!(
            "cipher {:?} is not nacl/secretbox",
            env.cipher.name
        ));
    }
    let KdfParams { n, r, p } = env.kdf.params;
    if !n.is_power_of_two() || n < 2 {
        return Err(format!("scrypt N = {n} is not a power of two"));
    }
    if 128 * u128::from(r) * u128::from(n) > MAX_SCRYPT_BYTES {
        return Err(format!("scrypt N = {n}, r = {r} needs more than 1 GiB"));
    }
    let params = scrypt::Params::new(n.trailing_zeros() as u8, r, p, 32)
        .map_err(|e| format!("scrypt parameters: {e}"))?;
    let salt = b64
        .decode(&env.kdf.salt)
        .map_err(|e| format!("the salt is not base64: {e}"))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password, &salt, &params, &mut key).map_err(|e| format!("scrypt: {e}"))?;
    let nonce = b64
        .decode(&env.cipher.nonce)
        .map_err(|e| format!("the nonce is not base64: {e}"))?;
    if nonce.len() != 24 {
        return Err(format!("the nonce has {} bytes, not 24", nonce.len()));
    }
    let ciphertext = b64
        .decode(&env.ciphertext)
        .map_err(|e| format!("the ciphertext is not base64: {e}"))?;
    XSalsa20Poly1305::new(Key::from_slice(&key))
        .decrypt(Nonce::from_slice(&nonce), ciphertext.as_slice())
        .map_err(|_| "cannot decrypt: wrong password (set $COSIGN_PASSWORD)".to_string())
}
