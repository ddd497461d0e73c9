//! Values sealed at rest: secrets, SecureString parameters (and, next, IAM
//! secret keys) are kept in the store as AES-256-GCM ciphertext under one
//! key, so a copy of the store's files or a watch stream reveals nothing.
//!
//! The key is 32 random bytes written as hex to a file (mode 0600) in the
//! data directory on first start, or a key file given at start, which
//! every server sharing a store must be given. Each sealed value carries
//! its own random nonce and is bound to where it is kept (the additional
//! data: a secret's ARN and version), so ciphertext moved to another
//! record does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use std::io::Write;
use std::path::Path;

/// The first byte of every sealed value: the format, so a later one (a
/// rotated key, another cipher) can be told apart.
const FORMAT: u8 = 1;
const NONCE: usize = 12;
const KEY: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    /// Wrong key, a value moved from another record, or damage: nothing
    /// more is said, as AEAD tells nothing more.
    #[error("a sealed value does not open with this key")]
    Open,
}

/// Seals and opens values under one key. Cheap to share (`Arc`).
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.write_str("Sealer")
    }
}

impl Sealer {
    pub fn from_key(key: &[u8; KEY]) -> Sealer {
        Sealer {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// A sealer under a fresh random key, for tests and simulations.
    pub fn ephemeral() -> Sealer {
        let mut key = [0u8; KEY];
        rand::thread_rng().fill_bytes(&mut key);
        Sealer::from_key(&key)
    }

    /// The key in `path`, which must exist (a key file given at start).
    pub fn load(path: &Path) -> Result<Sealer, SealError> {
        let bad = |reason: String| SealError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let bytes =
            hex::decode(text.trim()).map_err(|_| bad(format!("not {} hex digits", KEY * 2)))?;
        let key: [u8; KEY] = bytes
            .try_into()
            .map_err(|_| bad(format!("not {} hex digits", KEY * 2)))?;
        Ok(Sealer::from_key(&key))
    }

    /// The key in `path`, made (32 random bytes, mode 0600, written to a
    /// temporary file, synced and renamed into place) if there is none.
    pub fn load_or_create(path: &Path) -> Result<Sealer, SealError> {
        if path.exists() {
            return Sealer::load(path);
        }
        let bad = |reason: String| SealError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let mut key = [0u8; KEY];
        rand::thread_rng().fill_bytes(&mut key);
        let tmp = path.with_extension("tmp");
        // A leftover (or planted) temporary file is not written through:
        // the key goes to a file made here, with its mode from the start.
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(bad(e.to_string())),
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(|e| bad(e.to_string()))?;
        file.write_all(format!("{}\n", hex::encode(key)).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| bad(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| bad(e.to_string()))?;
        if let Some(dir) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
            let _ = dir.sync_all();
        }
        Ok(Sealer::from_key(&key))
    }

    /// `plaintext` sealed for the record `bound_to` names.
    pub fn seal(&self, bound_to: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: bound_to.as_bytes(),
                },
            )
            // AES-GCM fails only on inputs of 64 GiB and more.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE + sealed.len());
        out.push(FORMAT);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// What [`Sealer::seal`] sealed for the same `bound_to`.
    pub fn open(&self, bound_to: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let [FORMAT, rest @ ..] = sealed else {
            return Err(SealError::Open);
        };
        if rest.len() < NONCE {
            return Err(SealError::Open);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: bound_to.as_bytes(),
                },
            )
            .map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_record() {
        let s = Sealer::ephemeral();
        let sealed = s.seal("arn:a/v1", b"hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(s.open("arn:a/v1", &sealed).unwrap(), b"hunter2");
        assert!(
            s.open("arn:a/v2", &sealed).is_err(),
            "moved to another record"
        );
        assert!(
            Sealer::ephemeral().open("arn:a/v1", &sealed).is_err(),
            "another key"
        );
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(s.open("arn:a/v1", &flipped).is_err(), "damaged");
        assert!(s.open("arn:a/v1", &sealed[..5]).is_err(), "cut short");
        assert!(s.open("arn:a/v1", &[]).is_err());
        // Two seals of one value differ (fresh nonces).
        assert_ne!(s.seal("x", b"v"), s.seal("x", b"v"));
    }

    #[test]
    fn the_key_file_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let a = Sealer::load_or_create(&path).unwrap();
        let sealed = a.seal("r", b"value");
        let b = Sealer::load_or_create(&path).unwrap();
        assert_eq!(b.open("r", &sealed).unwrap(), b"value");
        assert_eq!(
            Sealer::load(&path).unwrap().open("r", &sealed).unwrap(),
            b"value"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(
            Sealer::load(&path),
            Err(SealError::KeyFile { .. })
        ));
        assert!(Sealer::load(&dir.path().join("missing")).is_err());
    }
}
