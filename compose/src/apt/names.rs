//! The syntax of the names a package carries (Debian policy 5.6.1, 5.6.12, 5.6.8), checked
//! before any of them names a file, a cache entry or a tree path: a name such as
//! `../../etc/x` or a version with a `/` in an index or a `.deb` is refused, not used.

use super::version::Version;

/// A package name: `[a-z0-9][a-z0-9+.-]+` (policy 5.6.1).
pub fn check_package_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok =
        bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-".contains(&b));
    if name.len() < 2 || !first_ok || !rest_ok {
        return Err(format!(
            "{name:?} is not a Debian package name (two or more of a-z, 0-9, '+', '-', '.', \
             starting with a letter or digit)"
        ));
    }
    Ok(())
}

/// A version: `[epoch:]upstream[-revision]` (policy 5.6.12; see [`Version`]).
pub fn check_version(version: &str) -> Result<(), String> {
    if version != version.trim() {
        return Err(format!("version {version:?}: has surrounding white space"));
    }
    version
        .parse::<Version>()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// An architecture: `all`, or a Debian architecture name `[a-z0-9-]+` (`amd64`, `arm64`,
/// `musl-linux-amd64`); not `any`, which only source packages may say.
pub fn check_architecture(arch: &str) -> Result<(), String> {
    let ok = !arch.is_empty()
        && arch != "any"
        && !arch.starts_with('-')
        && arch
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(format!(
            "{arch:?} is not a Debian architecture (`all`, or a-z, 0-9 and '-', e.g. `amd64`)"
        ));
    }
    Ok(())
}

/// Which identity field of a package was malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Package,
    Version,
    Architecture,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Package => "Package",
            Field::Version => "Version",
            Field::Architecture => "Architecture",
        }
    }

    /// Checks `value` against this field's syntax.
    pub fn check(self, value: &str) -> Result<(), String> {
        match self {
            Field::Package => check_package_name(value),
            Field::Version => check_version(value),
            Field::Architecture => check_architecture(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names() {
        let cases = [
            ("libc6", true),
            ("g++", true),
            ("0ad", true),
            ("lib.x-y+z", true),
            ("a", false),
            ("", false),
            ("Libc6", false),
            ("-x", false),
            (".x", false),
            ("a_b", false),
            ("../../etc", false),
            ("a/b", false),
            ("a b", false),
            ("a\n", false),
        ];
        for (name, ok) in cases {
            assert_eq!(check_package_name(name).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn versions() {
        let cases = [
            ("1.0", true),
            ("1:2.36-9+deb12u10", true),
            ("2.0~beta1", true),
            (" 1.0", false),
            ("1.0/..", false),
            ("1.0-", false),
            ("x1", false),
            ("1:", false),
        ];
        for (version, ok) in cases {
            assert_eq!(check_version(version).is_ok(), ok, "{version:?}");
        }
    }

    #[test]
    fn architectures() {
        let cases = [
            ("amd64", true),
            ("all", true),
            ("musl-linux-arm64", true),
            ("any", false),
            ("", false),
            ("AMD64", false),
            ("amd_64", false),
            ("../x", false),
            ("-x", false),
        ];
        for (arch, ok) in cases {
            assert_eq!(check_architecture(arch).is_ok(), ok, "{arch:?}");
        }
    }

    #[test]
    fn fields_say_their_name() {
        assert_eq!(Field::Version.as_str(), "Version");
        assert!(Field::Architecture.check("amd64").is_ok());
        assert!(Field::Package.check("X").unwrap_err().contains("\"X\""));
    }
}
