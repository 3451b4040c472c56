//! The checks a new commit must pass before any of it is deployed: its bytes hash to the
//! checksum we asked for, it carries a valid ed25519 signature from a trusted, unrevoked key,
//! its `ostree.ref-binding` names the ref we follow, and it is not older than what runs now
//! (unless a downgrade was asked for). The same signature check covers the remote's summary,
//! whose ref -> commit mapping we only trust once it holds.
//!
//! Everything here works on bytes handed in; fetching them is `pull`'s job.

use keel_common::keys::PublicKey;
use keel_common::meta;
use keel_common::sign::{self, SignError};
use ostree::glib;
use sha2::{Digest, Sha256};

/// GVariant type of a commit object: metadata, parent, related, subject, body, timestamp
/// (big-endian), root dirtree checksum, root dirmeta checksum.
const COMMIT_TYPE: &str = "(a{sv}aya(say)sstayay)";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("commit {checksum}: its bytes hash to {actual}; the server sent a corrupted or substituted object, retry later or report it to the publisher")]
    ChecksumMismatch { checksum: String, actual: String },
    #[error("commit {checksum}: not a valid commit object ({reason})")]
    Malformed { checksum: String, reason: String },
    /// `reason` is shown in the message and is deliberately not the error's `source`, so a
    /// chain printed with `{:#}` says it once.
    #[error("commit {checksum}: signature check failed: {reason}; the publisher must sign it with a key listed in trusted.ed25519.d")]
    Signature { checksum: String, reason: SignError },
    #[error("commit {checksum} is bound to {bound:?}, not to the followed ref {followed}; refusing a commit published for another ref")]
    RefBinding {
        checksum: String,
        followed: String,
        bound: Vec<String>,
    },
    #[error("commit {checksum} ({new}) is older than the running one ({current}); refusing a downgrade (use `keel deploy --allow-downgrade` to go back on purpose)")]
    Downgrade {
        checksum: String,
        new: String,
        current: String,
    },
    #[error("the remote's summary signature failed: {0}; its ref list cannot be trusted, check the remote URL and trusted keys")]
    Summary(SignError),
    #[error("summary.sig is not an a{{sv}} variant of ostree's format")]
    SummarySigMalformed,
}

/// What a commit says about itself, read from its object bytes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CommitInfo {
    pub checksum: String,
    /// Seconds since the epoch (the commit's own timestamp).
    pub timestamp: u64,
    pub version: Option<String>,
    pub subject: String,
    pub ref_binding: Vec<String>,
    /// `(name, version)` from `keel.packages`, empty when the commit has none.
    pub packages: Vec<(String, String)>,
}

/// Who must have signed, which ref the commit must be bound to, and how old it may be.
#[derive(Clone, Debug)]
pub struct Policy<'a> {
    pub trusted: &'a [PublicKey],
    pub revoked: &'a [PublicKey],
    pub followed_ref: &'a str,
    /// Timestamp of the reference (booted or default) deployment's commit, if any.
    pub not_older_than: Option<u64>,
    pub allow_downgrade: bool,
}

/// A commit that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub info: CommitInfo,
    pub signed_by: PublicKey,
}

/// Hex SHA-256 of `bytes`, as ostree names objects.
pub fn checksum_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads a commit object's bytes; `checksum` only names it in errors.
pub fn parse_commit(checksum: &str, bytes: &[u8]) -> Result<CommitInfo, VerifyError> {
    let malformed = |reason: &str| VerifyError::Malformed {
        checksum: checksum.to_string(),
        reason: reason.to_string(),
    };
    let ty = glib::VariantTy::new(COMMIT_TYPE).map_err(|_| malformed("bad type string"))?;
    let commit = glib::Variant::from_bytes_with_type(&glib::Bytes::from(bytes), ty);
    if !commit.is_normal_form() {
        return Err(malformed("not in GVariant normal form"));
    }
    let metadata = commit.child_value(0);
    let subject: String = commit.child_value(3).get().unwrap_or_default();
    let timestamp = u64::from_be(commit.child_value(5).get::<u64>().unwrap_or_default());
    let dict = glib::VariantDict::new(Some(&metadata));
    let version = dict.lookup::<String>(meta::VERSION).ok().flatten();
    let ref_binding = dict
        .lookup::<Vec<String>>(meta::REF_BINDING)
        .map_err(|_| malformed("ostree.ref-binding is not an array of strings"))?
        .unwrap_or_default();
    let packages = dict
        .lookup::<Vec<(String, String)>>(meta::PACKAGES)
        .map_err(|_| malformed("keel.packages is not a(ss)"))?
        .unwrap_or_default();
    Ok(CommitInfo {
        checksum: checksum.to_string(),
        timestamp,
        version,
        subject,
        ref_binding,
        packages,
    })
}

/// Runs every check on a commit fetched from a remote, in the order a user can act on.
pub fn verify_commit(
    checksum: &str,
    bytes: &[u8],
    detached: Option<&glib::Variant>,
    policy: &Policy<'_>,
) -> Result<Verified, VerifyError> {
    let actual = checksum_of(bytes);
    if actual != checksum {
        return Err(VerifyError::ChecksumMismatch {
            checksum: checksum.to_string(),
            actual,
        });
    }
    let signed_by =
        sign::verify(bytes, detached, policy.trusted, policy.revoked).map_err(|reason| {
            VerifyError::Signature {
                checksum: checksum.to_string(),
                reason,
            }
        })?;
    let info = parse_commit(checksum, bytes)?;
    if !info.ref_binding.iter().any(|r| r == policy.followed_ref) {
        return Err(VerifyError::RefBinding {
            checksum: checksum.to_string(),
            followed: policy.followed_ref.to_string(),
            bound: info.ref_binding.clone(),
        });
    }
    if let Some(current) = policy.not_older_than {
        if info.timestamp < current && !policy.allow_downgrade {
            return Err(VerifyError::Downgrade {
                checksum: checksum.to_string(),
                new: format_time(info.timestamp),
                current: format_time(current),
            });
        }
    }
    Ok(Verified { info, signed_by })
}

/// Checks `summary.sig` (an `a{sv}` in ostree's format) over the raw `summary` bytes.
pub fn verify_summary(
    summary: &[u8],
    signature_file: Option<&[u8]>,
    trusted: &[PublicKey],
    revoked: &[PublicKey],
) -> Result<PublicKey, VerifyError> {
    let detached = match signature_file {
        None => None,
        Some(bytes) => {
            let ty = glib::VariantTy::new("a{sv}").map_err(|_| VerifyError::SummarySigMalformed)?;
            let v = glib::Variant::from_bytes_with_type(&glib::Bytes::from(bytes), ty);
            if !v.is_normal_form() {
                return Err(VerifyError::SummarySigMalformed);
            }
            Some(v)
        }
    };
    sign::verify(summary, detached.as_ref(), trusted, revoked).map_err(VerifyError::Summary)
}

/// `2026-11-22 02:13:35 UTC` for messages.
pub fn format_time(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{seconds} s after the epoch"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_common::keys::SecretKey;
    use ostree::glib::prelude::*;

    fn commit_bytes(timestamp: u64, binding: &[&str], version: &str) -> Vec<u8> {
        let dict = glib::VariantDict::new(None);
        dict.insert_value(meta::VERSION, &version.to_variant());
        let binding: Vec<String> = binding.iter().map(|s| s.to_string()).collect();
        dict.insert_value(meta::REF_BINDING, &binding.to_variant());
        let packages = vec![("bash".to_string(), "5.2".to_string())];
        dict.insert_value(meta::PACKAGES, &packages.to_variant());
        let related: Vec<(String, Vec<u8>)> = Vec::new();
        let v = glib::Variant::tuple_from_iter([
            dict.end(),
            Vec::<u8>::new().to_variant(),
            related.to_variant(),
            "subject".to_variant(),
            "".to_variant(),
            timestamp.to_be().to_variant(),
            vec![1u8; 32].to_variant(),
            vec![2u8; 32].to_variant(),
        ]);
        v.data().to_vec()
    }

    struct Fixture {
        key: SecretKey,
        bytes: Vec<u8>,
        checksum: String,
        detached: glib::Variant,
    }

    fn fixture(timestamp: u64, binding: &[&str]) -> Fixture {
        let key = SecretKey::generate().unwrap();
        let bytes = commit_bytes(timestamp, binding, "2");
        let checksum = checksum_of(&bytes);
        let detached = sign::add_signature(None, &sign::sign(&key, &bytes)).unwrap();
        Fixture {
            key,
            bytes,
            checksum,
            detached,
        }
    }

    fn policy<'a>(trusted: &'a [PublicKey], not_older_than: Option<u64>) -> Policy<'a> {
        Policy {
            trusted,
            revoked: &[],
            followed_ref: "keel/x86_64/host",
            not_older_than,
            allow_downgrade: false,
        }
    }

    #[test]
    fn a_signed_bound_newer_commit_passes_and_is_read() {
        let f = fixture(2000, &["keel/x86_64/host"]);
        let trusted = [f.key.public()];
        let v = verify_commit(
            &f.checksum,
            &f.bytes,
            Some(&f.detached),
            &policy(&trusted, Some(1000)),
        )
        .unwrap();
        assert_eq!(v.signed_by, f.key.public());
        assert_eq!(v.info.timestamp, 2000);
        assert_eq!(v.info.version.as_deref(), Some("2"));
        assert_eq!(v.info.subject, "subject");
        assert_eq!(v.info.packages, vec![("bash".into(), "5.2".into())]);
    }

    #[test]
    fn each_failed_check_names_its_reason() {
        let f = fixture(2000, &["keel/x86_64/other"]);
        let trusted = [f.key.public()];
        let err = verify_commit(
            &f.checksum,
            &f.bytes,
            Some(&f.detached),
            &policy(&trusted, None),
        )
        .unwrap_err();
        assert!(matches!(err, VerifyError::RefBinding { .. }), "{err}");

        let f = fixture(500, &["keel/x86_64/host"]);
        let trusted = [f.key.public()];
        let err = verify_commit(
            &f.checksum,
            &f.bytes,
            Some(&f.detached),
            &policy(&trusted, Some(1000)),
        )
        .unwrap_err();
        assert!(matches!(err, VerifyError::Downgrade { .. }), "{err}");
        assert!(err.to_string().contains("--allow-downgrade"));
        let mut allow = policy(&trusted, Some(1000));
        allow.allow_downgrade = true;
        assert!(verify_commit(&f.checksum, &f.bytes, Some(&f.detached), &allow).is_ok());

        let err = verify_commit(&f.checksum, &f.bytes, None, &policy(&trusted, None)).unwrap_err();
        assert!(matches!(
            err,
            VerifyError::Signature {
                reason: SignError::Unsigned,
                ..
            }
        ));
        let shown = format!("{:#}", anyhow::Error::new(err));
        assert_eq!(
            shown.matches("not signed").count(),
            1,
            "the cause is said once: {shown}"
        );

        let mut tampered = f.bytes.clone();
        tampered[0] ^= 1;
        let err = verify_commit(
            &f.checksum,
            &tampered,
            Some(&f.detached),
            &policy(&trusted, None),
        )
        .unwrap_err();
        assert!(matches!(err, VerifyError::ChecksumMismatch { .. }), "{err}");
    }

    #[test]
    fn signature_is_checked_before_metadata_is_trusted() {
        // A commit bound to the wrong ref but signed by a stranger reports the signature.
        let f = fixture(2000, &["elsewhere"]);
        let stranger = [SecretKey::generate().unwrap().public()];
        let err = verify_commit(
            &f.checksum,
            &f.bytes,
            Some(&f.detached),
            &policy(&stranger, None),
        )
        .unwrap_err();
        assert!(matches!(err, VerifyError::Signature { .. }), "{err}");
    }

    #[test]
    fn summary_signature_in_ostree_format_is_checked() {
        let key = SecretKey::generate().unwrap();
        let summary = b"summary bytes";
        let sig = sign::add_signature(None, &sign::sign(&key, summary)).unwrap();
        let trusted = [key.public()];
        assert_eq!(
            verify_summary(summary, Some(sig.data()), &trusted, &[]),
            Ok(key.public())
        );
        assert!(matches!(
            verify_summary(b"other", Some(sig.data()), &trusted, &[]),
            Err(VerifyError::Summary(SignError::NoValidSignature { .. }))
        ));
        assert_eq!(
            verify_summary(summary, None, &trusted, &[]),
            Err(VerifyError::Summary(SignError::Unsigned))
        );
    }

    #[test]
    fn garbage_commit_bytes_are_malformed_not_a_panic() {
        let err = parse_commit("abc", &[1, 2, 3]).unwrap_err();
        assert!(matches!(err, VerifyError::Malformed { .. }));
    }
}
