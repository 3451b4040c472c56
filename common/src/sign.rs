//! ostree's ed25519 signature format, written and checked by us because Debian's libostree is
//! built without ed25519.
//!
//! A commit's detached metadata (`a{sv}`) holds [`ED25519_KEY`] of type `aay`: each element is a
//! raw 64-byte signature over the commit object's serialized bytes (the bytes whose SHA-256 is
//! the commit checksum). `summary.sig` is the same `a{sv}` over the raw bytes of `summary`.
//! One valid signature from a trusted, unrevoked key is enough.

use crate::keys::{PublicKey, SecretKey};
use ed25519_dalek::Signature;
use ostree::glib::{self, prelude::*};

/// The detached-metadata key ostree uses for ed25519 signatures.
pub const ED25519_KEY: &str = "ostree.sign.ed25519";
/// Its GVariant type.
pub const ED25519_TYPE: &str = "aay";
/// The length of one raw ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("not signed: no {ED25519_KEY} signatures in its detached metadata")]
    Unsigned,
    #[error("{ED25519_KEY} has type {found}, expected {ED25519_TYPE}")]
    WrongType { found: String },
    #[error("detached metadata has type {found}, expected a{{sv}}")]
    NotADict { found: String },
    #[error("no trusted keys configured: add one with `keel remote add --trusted-keys FILE`")]
    NoTrustedKeys,
    #[error("signed only by revoked key {key}")]
    Revoked { key: String },
    #[error("none of its {count} signature(s) is valid for a trusted key ({malformed} malformed)")]
    NoValidSignature { count: usize, malformed: usize },
}

/// Signs `data` (a commit object's bytes, or a summary's) with `key`.
pub fn sign(key: &SecretKey, data: &[u8]) -> [u8; SIGNATURE_LEN] {
    use ed25519_dalek::Signer;
    key.signing_key().sign(data).to_bytes()
}

/// Returns `detached` (or an empty dict) with `signature` appended to its ed25519 list; other
/// keys are kept as they are, and a signature already present is not added twice.
pub fn add_signature(
    detached: Option<&glib::Variant>,
    signature: &[u8; SIGNATURE_LEN],
) -> Result<glib::Variant, SignError> {
    let mut list = match detached {
        Some(d) => signatures(d).or_else(|e| match e {
            SignError::Unsigned => Ok(Vec::new()),
            other => Err(other),
        })?,
        None => Vec::new(),
    };
    if !list.iter().any(|s| s.as_slice() == signature) {
        list.push(signature.to_vec());
    }
    let dict = glib::VariantDict::new(detached);
    dict.insert_value(ED25519_KEY, &list.to_variant());
    Ok(dict.end())
}

/// The raw ed25519 signatures in a detached-metadata dict, as stored (not yet checked).
pub fn signatures(detached: &glib::Variant) -> Result<Vec<Vec<u8>>, SignError> {
    if detached.type_().as_str() != "a{sv}" {
        return Err(SignError::NotADict {
            found: detached.type_().to_string(),
        });
    }
    let dict = glib::VariantDict::new(Some(detached));
    let value = dict
        .lookup_value(ED25519_KEY, None)
        .ok_or(SignError::Unsigned)?;
    if value.type_().as_str() != ED25519_TYPE {
        return Err(SignError::WrongType {
            found: value.type_().to_string(),
        });
    }
    let list: Vec<Vec<u8>> = value.get().ok_or_else(|| SignError::WrongType {
        found: value.type_().to_string(),
    })?;
    if list.is_empty() {
        return Err(SignError::Unsigned);
    }
    Ok(list)
}

/// Checks that `detached` holds a valid signature over `data` from a key in `trusted` that is
/// not in `revoked`, and returns that key.
pub fn verify(
    data: &[u8],
    detached: Option<&glib::Variant>,
    trusted: &[PublicKey],
    revoked: &[PublicKey],
) -> Result<PublicKey, SignError> {
    let detached = detached.ok_or(SignError::Unsigned)?;
    verify_signatures(data, &signatures(detached)?, trusted, revoked)
}

/// [`verify`] on a list of raw signatures.
pub fn verify_signatures(
    data: &[u8],
    signatures: &[Vec<u8>],
    trusted: &[PublicKey],
    revoked: &[PublicKey],
) -> Result<PublicKey, SignError> {
    let usable: Vec<&PublicKey> = trusted.iter().filter(|k| !revoked.contains(k)).collect();
    if trusted.is_empty() {
        return Err(SignError::NoTrustedKeys);
    }
    let mut malformed = 0;
    let mut revoked_signer = None;
    for raw in signatures {
        let Ok(bytes) = <[u8; SIGNATURE_LEN]>::try_from(raw.as_slice()) else {
            malformed += 1;
            continue;
        };
        let signature = Signature::from_bytes(&bytes);
        let valid_for = |k: &PublicKey| k.verifying_key().verify_strict(data, &signature).is_ok();
        if let Some(key) = usable.iter().find(|k| valid_for(k)) {
            return Ok(**key);
        }
        if revoked_signer.is_none() {
            revoked_signer = revoked.iter().find(|k| valid_for(k)).copied();
        }
    }
    match revoked_signer {
        Some(key) => Err(SignError::Revoked {
            key: key.to_base64(),
        }),
        None => Err(SignError::NoValidSignature {
            count: signatures.len(),
            malformed,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::generate().unwrap()
    }

    #[test]
    fn a_signature_verifies_only_its_own_data() {
        let k = key();
        let d = add_signature(None, &sign(&k, b"commit A")).unwrap();
        assert_eq!(
            verify(b"commit A", Some(&d), &[k.public()], &[]),
            Ok(k.public())
        );
        // The same signature transplanted onto another commit's bytes.
        assert_eq!(
            verify(b"commit B", Some(&d), &[k.public()], &[]),
            Err(SignError::NoValidSignature {
                count: 1,
                malformed: 0
            })
        );
    }

    #[test]
    fn detached_metadata_has_ostrees_type_and_keeps_other_keys() {
        let k = key();
        let dict = glib::VariantDict::new(None);
        dict.insert_value("other", &"kept".to_variant());
        let d = add_signature(Some(&dict.end()), &sign(&k, b"x")).unwrap();
        let d = add_signature(Some(&d), &sign(&k, b"x")).unwrap();
        assert_eq!(d.type_().as_str(), "a{sv}");
        let lookup = glib::VariantDict::new(Some(&d));
        assert_eq!(
            lookup
                .lookup_value(ED25519_KEY, None)
                .unwrap()
                .type_()
                .as_str(),
            "aay"
        );
        assert_eq!(
            lookup.lookup::<String>("other").unwrap().as_deref(),
            Some("kept")
        );
        assert_eq!(
            signatures(&d).unwrap().len(),
            1,
            "same signature not added twice"
        );
    }

    #[test]
    fn unknown_and_revoked_keys_fail() {
        let (signer, stranger) = (key(), key());
        let d = add_signature(None, &sign(&signer, b"c")).unwrap();
        assert!(matches!(
            verify(b"c", Some(&d), &[stranger.public()], &[]),
            Err(SignError::NoValidSignature { .. })
        ));
        assert_eq!(
            verify(b"c", Some(&d), &[signer.public()], &[signer.public()]),
            Err(SignError::Revoked {
                key: signer.public().to_base64()
            })
        );
        assert_eq!(
            verify(b"c", Some(&d), &[], &[]),
            Err(SignError::NoTrustedKeys)
        );
    }

    #[test]
    fn one_good_signature_among_junk_is_enough() {
        let k = key();
        let mut list: Vec<Vec<u8>> = (0..10_000u32).map(|i| i.to_le_bytes().repeat(16)).collect();
        list.push(vec![1, 2, 3]);
        assert!(matches!(
            verify_signatures(b"c", &list, &[k.public()], &[]),
            Err(SignError::NoValidSignature {
                count: 10_001,
                malformed: 1
            })
        ));
        list.push(sign(&k, b"c").to_vec());
        assert_eq!(
            verify_signatures(b"c", &list, &[k.public()], &[]),
            Ok(k.public())
        );
    }

    #[test]
    fn wrong_variant_types_are_rejected() {
        let dict = glib::VariantDict::new(None);
        dict.insert_value(ED25519_KEY, &"not bytes".to_variant());
        assert_eq!(
            signatures(&dict.end()),
            Err(SignError::WrongType { found: "s".into() })
        );
        assert_eq!(
            signatures(&42u32.to_variant()),
            Err(SignError::NotADict { found: "u".into() })
        );
        assert_eq!(
            signatures(&glib::VariantDict::new(None).end()),
            Err(SignError::Unsigned)
        );
        assert_eq!(
            verify(b"c", None, &[key().public()], &[]),
            Err(SignError::Unsigned)
        );
    }
}
