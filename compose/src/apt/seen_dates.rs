//! The newest `Date:` this cache has seen in each suite's verified `InRelease`, so a mirror
//! cannot hand an older, validly signed Release back (a replay that hides security
//! updates): a suite's Date never goes backwards unless the user allows it.
//!
//! Layout: `INDICES/dates/<sha256 of "URL SUITE", 32 hex>`, one small text file per
//! repository URL and suite holding `URL SUITE` on the first line and the Date as written
//! on the second. Written atomically; a file that cannot be read counts as never seen.

use super::{index, inrelease, AptError};
use std::path::{Path, PathBuf};

/// The directory under the index cache (the cache directory's `apt/`, see
/// [`crate::cachedir::CacheDir::indices`]).
pub const DIR: &str = "dates";

fn record_path(cachedir: &Path, url: &str, suite: &str) -> PathBuf {
    let key = index::sha256_hex(format!("{url} {suite}").as_bytes());
    cachedir.join(DIR).join(&key[..32])
}

/// The Date last recorded for `url` and `suite`, as written.
pub fn last_seen(cachedir: &Path, url: &str, suite: &str) -> Option<String> {
    let text = std::fs::read_to_string(record_path(cachedir, url, suite)).ok()?;
    let mut lines = text.lines();
    (lines.next()? == format!("{url} {suite}")).then(|| lines.next().map(str::to_string))?
}

/// Checks the `Date:` of a suite's just verified Release against the last one seen, then
/// records it. An older Date (or none, where one was seen) is refused unless
/// `allow_older`; then it is recorded, so the user's choice sticks.
pub fn check_and_record(
    cachedir: &Path,
    url: &str,
    suite: &str,
    date: Option<&str>,
    allow_older: bool,
) -> Result<(), AptError> {
    let parse = |text: &str| {
        inrelease::parse_date(text).map_err(|detail| AptError::Parse {
            file: format!("{url}/dists/{suite}/InRelease"),
            detail: format!("Date {text:?}: {detail}"),
        })
    };
    let new = date.map(parse).transpose()?;
    let last = last_seen(cachedir, url, suite);
    // A record we wrote ourselves that no longer parses is as good as none.
    let last_date = last.as_deref().and_then(|t| inrelease::parse_date(t).ok());
    let older = match (last_date, new) {
        (Some(last), Some(new)) => new < last,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if older && !allow_older {
        return Err(AptError::OlderDate {
            url: url.to_string(),
            suite: suite.to_string(),
            date: date.unwrap_or("(none)").to_string(),
            last: last.unwrap_or_default(),
        });
    }
    let Some(date) = date else {
        return Ok(());
    };
    if last.as_deref() != Some(date) {
        let text = format!("{url} {suite}\n{date}\n");
        index::store(&record_path(cachedir, url, suite), text.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://127.0.0.1:1/debian";
    const MAY: &str = "Sat, 10 May 2025 08:00:00 UTC";
    const JUNE: &str = "Tue, 10 Jun 2025 08:00:00 UTC";

    #[test]
    fn dates_only_move_forward_unless_allowed() {
        let cache = tempfile::tempdir().unwrap();
        let c = cache.path();
        let check = |date: Option<&str>, allow| check_and_record(c, URL, "stable", date, allow);
        check(Some(MAY), false).unwrap();
        check(Some(MAY), false).unwrap();
        check(Some(JUNE), false).unwrap();
        assert_eq!(last_seen(c, URL, "stable").as_deref(), Some(JUNE));
        let e = check(Some(MAY), false).unwrap_err().to_string();
        assert!(e.contains(MAY) && e.contains(JUNE), "{e}");
        assert!(
            e.contains("suite stable") && e.contains("--allow-older-metadata"),
            "{e}"
        );
        assert!(
            check(None, false).is_err(),
            "a Date that disappears is older"
        );
        // Another suite and another URL have records of their own.
        check_and_record(c, URL, "stable-updates", Some(MAY), false).unwrap();
        check_and_record(c, "http://127.0.0.1:2/debian", "stable", Some(MAY), false).unwrap();
        check(Some(MAY), true).unwrap();
        assert_eq!(
            last_seen(c, URL, "stable").as_deref(),
            Some(MAY),
            "the choice sticks"
        );
        check(Some(MAY), false).unwrap();
        assert!(check(Some("someday"), false).is_err());
    }
}
