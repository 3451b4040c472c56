//! Pure syntax checks for treefile values: ostree refs, package specs, unit names, tree paths.
//! Each returns `Err(reason)` with a sentence the caller puts after the file, line and key.

/// An ostree ref, as [`keel_common::ostree_ref::OstreeRef`] parses it (the one grammar the
/// composer, the image builder and the host share).
pub fn check_ref(reference: &str) -> Result<(), String> {
    reference
        .parse::<keel_common::ostree_ref::OstreeRef>()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A Debian package name: `[a-z0-9][a-z0-9+.-]+` (Debian policy 5.6.1).
pub fn check_package_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c));
    if name.len() < 2 || !first_ok || !rest_ok {
        return Err(format!(
            "`{name}` is not a Debian package name (two or more of a-z, 0-9, `+`, `-`, `.`, \
             starting with a letter or digit)"
        ));
    }
    Ok(())
}

/// A package spec `name` or `name=version`; returns the name.
pub fn check_package_spec(spec: &str) -> Result<&str, String> {
    let (name, version) = match spec.split_once('=') {
        Some((name, version)) => (name, Some(version)),
        None => (spec, None),
    };
    check_package_name(name)?;
    if let Some(version) = version {
        let ok = version.chars().next().is_some_and(|c| c.is_ascii_digit())
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c));
        if !ok {
            return Err(format!(
                "`{spec}`: `{version}` is not a Debian version (it starts with a digit and holds \
                 letters, digits and `.+~:-`); write \"name\" or \"name=version\""
            ));
        }
    }
    Ok(name)
}

/// A name for a repository or a postprocess step: `[A-Za-z0-9._-]+`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(format!(
            "`{name}` is not a valid name: use letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

/// A dracut module or kernel module name: `[A-Za-z0-9_-]+`.
pub fn check_module_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
    {
        return Err(format!(
            "`{name}` is not a module name: use letters, digits, `_` and `-`, one name per entry"
        ));
    }
    Ok(())
}

const UNIT_SUFFIXES: &[&str] = &[
    ".service",
    ".socket",
    ".timer",
    ".target",
    ".path",
    ".mount",
    ".automount",
    ".swap",
    ".slice",
];

/// A systemd unit name such as `podman.socket` or `getty@tty1.service`.
pub fn check_unit(unit: &str) -> Result<(), String> {
    let Some(suffix) = UNIT_SUFFIXES.iter().find(|s| unit.ends_with(*s)) else {
        return Err(format!(
            "`{unit}` is not a systemd unit name: it must end in one of {}",
            UNIT_SUFFIXES.join(", ")
        ));
    };
    let stem = &unit[..unit.len() - suffix.len()];
    if stem.is_empty()
        || !stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c))
    {
        return Err(format!(
            "`{unit}` is not a systemd unit name: use letters, digits and `:-_.\\@` before the suffix"
        ));
    }
    Ok(())
}

/// Directories whose content an ostree commit must not carry: /var is created at deploy
/// time (use systemd-tmpfiles), the others are runtime filesystems.
const FORBIDDEN_DEST_ROOTS: &[&str] = &["var", "run", "tmp", "proc", "sys", "dev"];

/// An `add-files` destination: absolute, normalized, not in a directory ostree does not commit.
pub fn check_dest(dest: &str) -> Result<(), String> {
    let Some(relative) = dest.strip_prefix('/') else {
        return Err(format!(
            "`{dest}` must be an absolute path in the tree, e.g. \"/usr/lib/...\""
        ));
    };
    check_tree_path(relative).map_err(|reason| format!("`{dest}`: {reason}"))?;
    let top = relative.split('/').next().unwrap_or_default();
    if FORBIDDEN_DEST_ROOTS.contains(&top) {
        return Err(format!(
            "`{dest}` is under /{top}, which the commit does not carry; ship the file under /usr \
             and create it at boot with a systemd-tmpfiles entry"
        ));
    }
    Ok(())
}

/// A `remove-files` entry: relative to the tree's root.
pub fn check_remove_path(path: &str) -> Result<(), String> {
    if let Some(stripped) = path.strip_prefix('/') {
        return Err(format!(
            "`{path}` must be relative to the tree's root; write \"{}\"",
            stripped.trim_start_matches('/')
        ));
    }
    check_tree_path(path).map_err(|reason| format!("`{path}`: {reason}"))
}

/// A relative path made of plain components: not empty, no `.`/`..`, no empty parts.
fn check_tree_path(relative: &str) -> Result<(), String> {
    if relative.is_empty() {
        return Err("the path names the tree's root; name a file or directory in it".into());
    }
    for part in relative.split('/') {
        match part {
            "" => return Err("the path has an empty component (`//` or a trailing `/`)".into()),
            "." | ".." => {
                return Err(format!(
                    "the path has a `{part}` component; write the plain path"
                ))
            }
            _ if part.contains('\0') => return Err("the path holds a NUL byte".into()),
            _ => {}
        }
    }
    Ok(())
}

/// A file mode written as an octal string such as `"0644"` or `"755"`.
pub fn parse_mode(mode: &str) -> Result<u32, String> {
    let reason = || format!("`{mode}` is not a file mode: write octal digits like \"0644\"");
    if mode.is_empty() || mode.len() > 5 || !mode.chars().all(|c| ('0'..='7').contains(&c)) {
        return Err(reason());
    }
    let value = u32::from_str_radix(mode, 8).map_err(|_| reason())?;
    if value > 0o7777 {
        return Err(reason());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs() {
        let cases = [
            ("keel/bookworm/x86_64/host", true),
            ("a", true),
            ("_x/y-1.2", true),
            ("", false),
            ("/leading", false),
            ("trailing/", false),
            ("a//b", false),
            ("-dash/start", false),
            ("has space", false),
            ("remote:ref", false),
        ];
        for (input, ok) in cases {
            assert_eq!(check_ref(input).is_ok(), ok, "{input:?}");
        }
    }

    #[test]
    fn package_specs() {
        let cases = [
            ("podman", Some("podman")),
            ("libc6=2.36-9+deb12u10", Some("libc6")),
            ("g++", Some("g++")),
            ("linux-image-amd64=6.1.0-35", Some("linux-image-amd64")),
            ("epoch=1:2.0", Some("epoch")),
            ("a", None),
            ("Podman", None),
            ("-x", None),
            ("pkg=", None),
            ("pkg=abc", None),
            ("pkg=1 2", None),
            ("", None),
        ];
        for (input, name) in cases {
            assert_eq!(check_package_spec(input).ok(), name, "{input:?}");
        }
    }

    #[test]
    fn units() {
        let cases = [
            ("podman.socket", true),
            ("getty@tty1.service", true),
            ("multi-user.target", true),
            ("podman", false),
            (".service", false),
            ("a b.service", false),
        ];
        for (input, ok) in cases {
            assert_eq!(check_unit(input).is_ok(), ok, "{input:?}");
        }
    }

    #[test]
    fn dests_and_removals() {
        let dests = [
            ("/usr/lib/x.conf", true),
            ("/etc/hostname", true),
            ("usr/lib/x", false),
            ("/", false),
            ("/usr/../etc/x", false),
            ("/usr//x", false),
            ("/usr/x/", false),
            ("/var/lib/x", false),
            ("/run/x", false),
            ("/variable/x", true),
        ];
        for (input, ok) in dests {
            assert_eq!(check_dest(input).is_ok(), ok, "{input:?}");
        }
        let removals = [
            ("usr/share/doc", true),
            ("var/cache/apt/archives", true),
            ("/usr/share/doc", false),
            ("usr/../etc", false),
            ("./usr", false),
            ("", false),
        ];
        for (input, ok) in removals {
            assert_eq!(check_remove_path(input).is_ok(), ok, "{input:?}");
        }
        let err = check_remove_path("/usr/share/doc").unwrap_err();
        assert!(err.contains("write \"usr/share/doc\""), "{err}");
    }

    #[test]
    fn modes() {
        let cases = [
            ("0644", Some(0o644)),
            ("755", Some(0o755)),
            ("4755", Some(0o4755)),
            ("0", Some(0)),
            ("0888", None),
            ("rw-r--r--", None),
            ("", None),
            ("017777", None),
        ];
        for (input, mode) in cases {
            assert_eq!(parse_mode(input).ok(), mode, "{input:?}");
        }
    }

    #[test]
    fn module_names() {
        let cases = [
            ("virtio_blk", true),
            ("systemd-initrd", true),
            ("", false),
            ("a b", false),
        ];
        for (input, ok) in cases {
            assert_eq!(check_module_name(input).is_ok(), ok, "{input:?}");
        }
    }

    #[test]
    fn names() {
        for (input, ok) in [
            ("debian", true),
            ("my.repo_2-x", true),
            ("", false),
            ("a b", false),
        ] {
            assert_eq!(check_name(input).is_ok(), ok, "{input:?}");
        }
    }
}
