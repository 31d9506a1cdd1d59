//! Encryption at rest for channel credentials and API keys (AES-256-GCM).
//!
//! The key comes from `SAPA_SECRET_KEY` (64 hex characters or base64 of 32 bytes). In embedded
//! mode without it, a key is generated into `<data dir>/secret.key` on first run (mode 0600);
//! distributed mode requires the variable, so every replica decrypts with the same key.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use rand::RngCore;

const NONCE_LEN: usize = 12;
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

/// Encrypts and decrypts small secrets. `Debug` never shows the key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox([redacted])")
    }
}

impl SecretBox {
    /// A box for a raw 32-byte key.
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
        }
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
