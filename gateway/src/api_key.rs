//! Tenant API keys: `sapa_<prefix>_<secret>`.
//!
//! The prefix (8 lowercase hex digits) is public: it names the key in listings, finds it at
//! authentication and revokes it. The secret is 32 random bytes (base64url). Only the hex SHA-256
//! of the whole key is stored, and an incoming key's hash is compared with it in constant time,
//! so neither a database leak nor response timing reveals a usable key.

use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const SCHEME: &str = "sapa_";

/// What a key may do. A key created without scopes has every scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Scope {
    /// The knowledge base: upload, list, delete and search documents.
    Knowledge,
    /// Conversations and messages: find conversations, send as an agent, fetch media.
    Messages,
    /// One-time codes: send and verify (`/v1/otp`).
    Otp,
    /// Flow documents (`/v1/admin/flows`).
    Flows,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 4] = [Scope::Knowledge, Scope::Messages, Scope::Otp, Scope::Flows];

    /// The scope's name in storage, listings and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Knowledge => "knowledge",
            Self::Messages => "messages",
            Self::Otp => "otp",
            Self::Flows => "flows",
        }
    }

    /// The scope named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name.trim())
    }
}

/// Scopes as stored: comma-separated names, `None` for every scope.
pub fn scopes_to_column(scopes: &[Scope]) -> Option<String> {
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() || scopes.len() == Scope::ALL.len() {
        return None;
    }
    Some(
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// Scopes from their stored form (`None`: every scope). Unknown names are ignored, so a key
/// never gains a scope it was not given.
pub fn scopes_from_column(column: Option<&str>) -> Vec<Scope> {
    match column {
        None => Scope::ALL.to_vec(),
        Some(list) => list.split(',').filter_map(Scope::parse).collect(),
    }
}
const PREFIX_BYTES: usize = 4;
const SECRET_BYTES: usize = 32;

/// A newly generated key: shown once, then only `hash` and `prefix` are kept.
#[derive(Clone)]
pub struct NewApiKey {
    /// The full key, to give to the tenant once.
    pub key: String,
    /// Its public prefix.
    pub prefix: String,
    /// Hex SHA-256 of `key`, for storage.
    pub hash: String,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Generates a key from the OS CSPRNG.
pub fn generate() -> NewApiKey {
    let mut prefix = [0u8; PREFIX_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut prefix);
    rand::rng().fill_bytes(&mut secret);
    let prefix = hex::encode(prefix);
    let key = format!(
        "{SCHEME}{prefix}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    NewApiKey {
        hash: hash(&key),
        prefix,
        key,
    }
}

/// The prefix of a well-formed key, or None.
pub fn prefix(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(SCHEME)?;
    let (prefix, secret) = rest.split_once('_')?;
    let well_formed = prefix.len() == PREFIX_BYTES * 2
        && prefix
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && !secret.is_empty();
    well_formed.then_some(prefix)
}

/// Hex SHA-256 of a whole key.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// True when `key` hashes to `stored_hash`; constant time in the hash bytes.
pub fn verify(key: &str, stored_hash: &str) -> bool {
    hash(key).as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn scopes_round_trip_and_default_to_all() {
        assert_eq!(scopes_to_column(&[]), None);
        assert_eq!(scopes_to_column(&Scope::ALL), None);
        assert_eq!(scopes_from_column(None), Scope::ALL.to_vec());
        let column = scopes_to_column(&[Scope::Otp, Scope::Knowledge, Scope::Otp]).unwrap();
        assert_eq!(column, "knowledge,otp");
        assert_eq!(
            scopes_from_column(Some(&column)),
            vec![Scope::Knowledge, Scope::Otp]
        );
        assert_eq!(scopes_from_column(Some("otp,admin")), vec![Scope::Otp]);
    }

    #[test]
    fn generated_keys_parse_verify_and_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with("sapa_"));
        assert_eq!(prefix(&a.key), Some(a.prefix.as_str()));
        assert!(verify(&a.key, &a.hash));
        assert!(!verify(&b.key, &a.hash));
        assert!(!a.hash.contains(&a.key) && !format!("{a:?}").contains(&a.key));
        let mut tampered = a.key.clone();
        tampered.push('x');
        assert!(!verify(&tampered, &a.hash));
        for bad in [
            "",
            "sapa_",
            "sapa_abc_x",
            "sapa_ABCDEF12_x",
            "sapa_abcdef12_",
            "xyz_abcdef12_s",
        ] {
            assert_eq!(prefix(bad), None, "{bad}");
        }
    }
}
