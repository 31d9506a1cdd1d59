//! Encryption at rest for channel credentials and API keys (AES-256-GCM).
//!
//! The key comes from `SAPA_SECRET_KEY` (64 hex characters or base64 of 32 bytes). In embedded
//! mode without it, a key is generated into `<data dir>/secret.key` on first run (mode 0600);
//! distributed mode requires the variable, so every replica decrypts with the same key.
//!
//! Two formats: v1 `nonce || ciphertext+tag` ([`SecretBox::seal`]), and v2
//! `"sapa:v2:" || nonce || ciphertext+tag` with associated data naming the owner of the value
//! ([`SecretBox::seal_for`]), so a ciphertext copied into another row fails to open. v1 values
//! still open with [`SecretBox::open_for`], which says so, so callers re-seal them as v2.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const NONCE_LEN: usize = 12;
/// Prefix of v2 values (sealed with associated data). A v1 value starts with a random nonce,
/// so it starts with this prefix with probability 2^-64 only.
const V2_PREFIX: &[u8] = b"sapa:v2:";
const KEY_FILE: &str = "secret.key";

/// Why the secret key could not be set up, or a value not decrypted.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// `SAPA_SECRET_KEY` (or the key file) does not hold 32 bytes.
    #[error(
        "{origin} must hold 32 bytes as 64 hex characters or base64 (generate one with `openssl rand -hex 32`)"
    )]
    BadKey {
        /// Where the key came from.
        origin: String,
    },
    /// Distributed mode needs a shared key.
    #[error(
        "SAPA_SECRET_KEY must be set when database.url points at Postgres (every replica needs the same key)"
    )]
    KeyRequired,
    /// The key file could not be read or written.
    #[error("cannot use key file {path}")]
    KeyFile {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Ciphertext was tampered with or encrypted under another key.
    #[error("stored secret cannot be decrypted with this SAPA_SECRET_KEY")]
    Decrypt,
}

/// How an opened value was sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    /// v2: bound to its owner.
    Bound,
    /// v1: not bound to an owner; re-seal it with [`SecretBox::seal_for`].
    Legacy,
}

/// Encrypts and decrypts small secrets. `Debug` never shows the key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
    /// HMAC-SHA256 key derived from the server key for [`SecretBox::mac`] (never the
    /// encryption key itself).
    mac_key: [u8; 32],
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox([redacted])")
    }
}

impl SecretBox {
    /// A box for a raw 32-byte key.
    pub fn new(key: &[u8; 32]) -> Self {
        let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        derive.update(b"sapa:mac-key:v1");
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
            mac_key: derive.finalize().into_bytes().into(),
        }
    }

    /// Hex HMAC-SHA256 of `parts` (each length-prefixed, so no two lists collide) under a key
    /// derived from the server key: how one-time codes are stored.
    pub fn mac(&self, parts: &[&[u8]]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.mac_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// Loads the key from `env_value` (the content of `SAPA_SECRET_KEY`), else from the data
    /// dir, generating it there when `may_generate` (embedded mode).
    ///
    /// # Errors
    /// A malformed key, an unreadable key file, or no key where one is required.
    pub fn load(
        env_value: Option<&str>,
        data_dir: &Path,
        may_generate: bool,
    ) -> Result<Self, CryptoError> {
        if let Some(value) = env_value.filter(|v| !v.trim().is_empty()) {
            return parse_key(value, "SAPA_SECRET_KEY").map(|k| Self::new(&k));
        }
        let path = data_dir.join(KEY_FILE);
        let io_err = |source| CryptoError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => parse_key(&text, &path.display().to_string()).map(|k| Self::new(&k)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !may_generate {
                    return Err(CryptoError::KeyRequired);
                }
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                std::fs::create_dir_all(data_dir).map_err(io_err)?;
                write_private(&path, &hex::encode(key)).map_err(io_err)?;
                Ok(Self::new(&key))
            }
            Err(e) => Err(io_err(e)),
        }
    }

    /// Encrypts `plaintext`; the output is `nonce || ciphertext+tag`.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        // Encryption with a valid key and in-memory buffer cannot fail.
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend(ciphertext);
        out
    }

    /// Encrypts `plaintext` bound to `owner` (associated data, e.g. the row's tenant, kind
    /// and id): it opens only with the same `owner`. Output: v2 format.
    pub fn seal_for(&self, plaintext: &[u8], owner: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext,
            aad: owner,
        };
        // Encryption with a valid key and in-memory buffer cannot fail.
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = V2_PREFIX.to_vec();
        out.extend(nonce);
        out.extend(ciphertext);
        out
    }

    /// Decrypts a value of `owner`: v2 values must have been sealed for `owner`; v1 values
    /// (sealed before owners were bound) still open, with [`Sealing::Legacy`] so the caller
    /// re-seals them.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] when the data was altered, sealed with another key, or sealed
    /// for another owner.
    pub fn open_for(&self, sealed: &[u8], owner: &[u8]) -> Result<(Vec<u8>, Sealing), CryptoError> {
        let Some(rest) = sealed.strip_prefix(V2_PREFIX) else {
            return self.open(sealed).map(|plain| (plain, Sealing::Legacy));
        };
        if rest.len() < NONCE_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: owner,
        };
        self.cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map(|plain| (plain, Sealing::Bound))
            .map_err(|_| CryptoError::Decrypt)
    }

    /// Decrypts what [`SecretBox::seal`] produced.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] when the data was altered or sealed with another key.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| CryptoError::Decrypt)
    }
}

fn parse_key(value: &str, origin: &str) -> Result<[u8; 32], CryptoError> {
    let value = value.trim();
    let bytes = hex::decode(value)
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(value).ok())
        .or_else(|| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(value)
                .ok()
        });
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| CryptoError::BadKey {
            origin: origin.to_owned(),
        })
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn sealed_secrets_round_trip_and_detect_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let sbox = SecretBox::load(None, dir.path(), true).unwrap();
        let sealed = sbox.seal(b"EAAG-access-token");
        assert!(!sealed.windows(6).any(|w| w == b"access"));
        assert_eq!(sbox.open(&sealed).unwrap(), b"EAAG-access-token");
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(matches!(sbox.open(&tampered), Err(CryptoError::Decrypt)));
        // The generated key is reused on the next start.
        let again = SecretBox::load(None, dir.path(), true).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), b"EAAG-access-token");
    }

    #[test]
    fn values_sealed_for_an_owner_open_only_for_it_and_legacy_values_still_open() {
        let sbox = SecretBox::new(&[7u8; 32]);
        let sealed = sbox.seal_for(b"app-secret", b"tenant-a\0whatsapp\0acct-1");
        let (plain, how) = sbox
            .open_for(&sealed, b"tenant-a\0whatsapp\0acct-1")
            .unwrap();
        assert_eq!(
            (plain.as_slice(), how),
            (&b"app-secret"[..], Sealing::Bound)
        );
        // Copied into another row (another tenant, or another account), it does not open.
        assert!(matches!(
            sbox.open_for(&sealed, b"tenant-b\0whatsapp\0acct-1"),
            Err(CryptoError::Decrypt)
        ));
        assert!(matches!(
            sbox.open_for(&sealed, b"tenant-a\0whatsapp\0acct-2"),
            Err(CryptoError::Decrypt)
        ));
        // A v1 value (no owner) still opens, and says it must be re-sealed.
        let legacy = sbox.seal(b"old-secret");
        let (plain, how) = sbox
            .open_for(&legacy, b"tenant-a\0whatsapp\0acct-1")
            .unwrap();
        assert_eq!(
            (plain.as_slice(), how),
            (&b"old-secret"[..], Sealing::Legacy)
        );
    }

    #[test]
    fn key_from_environment_must_be_32_bytes_and_is_required_for_postgres() {
        let dir = tempfile::tempdir().unwrap();
        let hex_key = "11".repeat(32);
        let a = SecretBox::load(Some(&hex_key), dir.path(), false).unwrap();
        let b = SecretBox::load(Some(&hex_key), dir.path(), false).unwrap();
        assert_eq!(b.open(&a.seal(b"x")).unwrap(), b"x");
        let err = SecretBox::load(Some("short"), dir.path(), false).unwrap_err();
        assert!(
            err.to_string()
                .contains("SAPA_SECRET_KEY must hold 32 bytes"),
            "{err}"
        );
        assert!(matches!(
            SecretBox::load(None, dir.path(), false),
            Err(CryptoError::KeyRequired)
        ));
        assert!(format!("{a:?}").contains("redacted"));
    }
}
