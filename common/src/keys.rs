//! ed25519 keys in ostree's text format: a secret key is base64 of 64 bytes (seed then public
//! key), a public key base64 of 32 bytes. Key files hold one key per line; blank lines and
//! lines starting with `#` are ignored.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{SigningKey, VerifyingKey};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("line {line}: not base64: {reason}")]
    NotBase64 { line: usize, reason: String },
    #[error("line {line}: a {what} key is {want} bytes, this one is {got}")]
    WrongLength {
        line: usize,
        what: &'static str,
        want: usize,
        got: usize,
    },
    #[error("line {line}: the secret key's second half is not the public key of its seed")]
    Mismatched { line: usize },
    #[error("line {line}: not a valid ed25519 public key")]
    InvalidPoint { line: usize },
    #[error("no key found (expected one base64 key per line)")]
    Empty,
    #[error("could not read random bytes for a new key: {0}")]
    Random(String),
}

/// A signing key, as read from a secret key file.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

/// A verifying key, as read from a trusted or revoked key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// Reads the first key of a secret key file.
    pub fn parse_file(text: &str) -> Result<Self, KeyError> {
        let (line, b64) = key_lines(text).next().ok_or(KeyError::Empty)?;
        Self::parse_line(line, b64)
    }

    fn parse_line(line: usize, b64: &str) -> Result<Self, KeyError> {
        let bytes = decode(line, b64)?;
        let bytes: [u8; 64] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| KeyError::WrongLength {
                line,
                what: "secret",
                want: 64,
                got: b.len(),
            })?;
        let key =
            SigningKey::from_keypair_bytes(&bytes).map_err(|_| KeyError::Mismatched { line })?;
        Ok(Self(key))
    }

    /// The key as ostree writes it: base64 of seed followed by public key.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0.to_keypair_bytes())
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.0
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(public {})", self.public().to_base64())
    }
}

impl PublicKey {
    /// Reads every key of a public key file (trusted or revoked list).
    pub fn parse_file(text: &str) -> Result<Vec<Self>, KeyError> {
        key_lines(text)
            .map(|(line, b64)| Self::parse_line(line, b64))
            .collect()
    }

    pub fn parse_line(line: usize, b64: &str) -> Result<Self, KeyError> {
        let bytes = decode(line, b64)?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| KeyError::WrongLength {
                line,
                what: "public",
                want: 32,
                got: b.len(),
            })?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| KeyError::InvalidPoint { line })
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.0.as_bytes())
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_base64())
    }
}

/// Numbered (from 1) non-empty, non-comment lines.
fn key_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

fn decode(line: usize, b64: &str) -> Result<Vec<u8>, KeyError> {
    B64.decode(b64).map_err(|e| KeyError::NotBase64 {
        line,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_key_round_trips_through_ostree_text_format() {
        let key = SecretKey::generate().unwrap();
        let text = format!("# my key\n\n{}\n", key.to_base64());
        let back = SecretKey::parse_file(&text).unwrap();
        assert_eq!(back.public(), key.public());
        assert_eq!(B64.decode(key.to_base64()).unwrap().len(), 64);
    }

    #[test]
    fn public_key_file_lists_every_key_and_names_bad_lines() {
        let a = SecretKey::generate().unwrap().public();
        let b = SecretKey::generate().unwrap().public();
        let text = format!("{a}\n# comment\n{b}\n");
        assert_eq!(PublicKey::parse_file(&text).unwrap(), vec![a, b]);

        let short = B64.encode([7u8; 31]);
        let err = PublicKey::parse_file(&format!("{a}\n{short}\n")).unwrap_err();
        assert_eq!(
            err,
            KeyError::WrongLength {
                line: 2,
                what: "public",
                want: 32,
                got: 31
            }
        );
        assert!(matches!(
            PublicKey::parse_file("not base64!!\n").unwrap_err(),
            KeyError::NotBase64 { line: 1, .. }
        ));
    }

    #[test]
    fn secret_key_with_foreign_public_half_is_refused() {
        let a = SecretKey::generate().unwrap();
        let b = SecretKey::generate().unwrap();
        let mut bytes = a.signing_key().to_keypair_bytes().to_vec();
        bytes[32..].copy_from_slice(b.public().verifying_key().as_bytes());
        let err = SecretKey::parse_file(&B64.encode(bytes)).unwrap_err();
        assert_eq!(err, KeyError::Mismatched { line: 1 });
    }

    #[test]
    fn empty_secret_key_file_is_an_error() {
        assert_eq!(
            SecretKey::parse_file("# nothing\n").unwrap_err(),
            KeyError::Empty
        );
    }
}
