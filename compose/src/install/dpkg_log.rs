//! Reading dpkg's output: which maintainer script of which package failed. Pure logic.

/// A maintainer script dpkg reported as failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptFailure {
    /// Package name without an architecture qualifier.
    pub package: String,
    /// `preinst`, `postinst`, `prerm` or `postrm`.
    pub script: &'static str,
    /// What dpkg said after "subprocess returned", e.g. "error exit status 3".
    pub status: String,
}

const SCRIPTS: &[(&str, &str)] = &[
    ("pre-installation", "preinst"),
    ("post-installation", "postinst"),
    ("pre-removal", "prerm"),
    ("post-removal", "postrm"),
];

/// Finds dpkg's lines such as
/// `installed podman package post-installation script subprocess returned error exit status 1`
/// (also `new`/`old` packages, and "was killed by signal" instead of "returned ...").
pub fn script_failures(output: &str) -> Vec<ScriptFailure> {
    output.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<ScriptFailure> {
    let line = line.trim();
    let rest = ["installed ", "new ", "old "]
        .iter()
        .find_map(|prefix| line.strip_prefix(prefix))?;
    let (package, rest) = rest.split_once(" package ")?;
    let (kind, outcome) = rest.split_once(" script subprocess ")?;
    let script = SCRIPTS.iter().find(|(k, _)| *k == kind)?.1;
    let status = outcome
        .strip_prefix("returned ")
        .unwrap_or(outcome)
        .to_string();
    let package = package.split(':').next().unwrap_or(package).to_string();
    if package.is_empty() || package.contains(' ') {
        return None;
    }
    Some(ScriptFailure {
        package,
        script,
        status,
    })
}

/// The package names from dpkg's "dpkg: error processing package NAME (--configure):" lines and
/// "dependency problems prevent configuration of NAME:" lines, in order, without repeats.
pub fn failed_packages(output: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in output.lines() {
        let name = line
            .split_once("error processing package ")
            .and_then(|(_, r)| r.split_whitespace().next())
            .or_else(|| {
                line.split_once("dependency problems prevent configuration of ")
                    .and_then(|(_, r)| r.split(':').next())
            });
        if let Some(name) = name {
            let name = name.trim_end_matches(':').split(':').next().unwrap_or(name);
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
    }
    names
}

/// What dpkg lists under "Errors were encountered while processing:": package names, or the
/// paths of the `.deb` files it was given (`/run/keel-debs/0/<sha256>.deb`), in order.
pub fn processing_errors(output: &str) -> Vec<String> {
    let mut lines = output.lines();
    let mut found = Vec::new();
    while let Some(line) = lines.next() {
        if line.trim() != "Errors were encountered while processing:" {
            continue;
        }
        for item in lines.by_ref() {
            if !item.starts_with(' ') || item.trim().is_empty() {
                break;
            }
            let item = item.trim().to_string();
            if !found.contains(&item) {
                found.push(item);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_script_failure_lines_dpkg_prints() {
        let cases = [
            (
                " installed podman package post-installation script subprocess returned error exit status 1",
                Some(("podman", "postinst", "error exit status 1")),
            ),
            (
                "new libfoo1:amd64 package pre-installation script subprocess returned error exit status 42",
                Some(("libfoo1", "preinst", "error exit status 42")),
            ),
            (
                "old bar package pre-removal script subprocess was killed by signal (Terminated)",
                Some(("bar", "prerm", "was killed by signal (Terminated)")),
            ),
            (
                "installed baz package post-removal script subprocess returned error exit status 2",
                Some(("baz", "postrm", "error exit status 2")),
            ),
            ("Setting up podman (4.3.1) ...", None),
            ("installed x package frobnication script subprocess returned 1", None),
        ];
        for (line, want) in cases {
            let got = parse_line(line);
            let want = want.map(|(p, s, st)| ScriptFailure {
                package: p.into(),
                script: s,
                status: st.into(),
            });
            assert_eq!(got, want, "{line}");
        }
    }

    #[test]
    fn finds_failures_in_a_whole_log() {
        let log = "Setting up a (1) ...\n\
                   boom\n\
                   dpkg: error processing package a (--configure):\n \
                   installed a package post-installation script subprocess returned error exit status 7\n\
                   dpkg: dependency problems prevent configuration of b:\n \
                   b depends on a; however:\n\
                   Errors were encountered while processing:\n a\n b\n";
        assert_eq!(
            script_failures(log),
            vec![ScriptFailure {
                package: "a".into(),
                script: "postinst",
                status: "error exit status 7".into()
            }]
        );
        assert_eq!(failed_packages(log), vec!["a", "b"]);
    }

    #[test]
    fn lists_what_dpkg_could_not_process() {
        let log = "dpkg: error processing archive /run/keel-debs/0/ab.deb (--unpack):\n                    trying to overwrite '/x', which is also in package y 1\n\
                   Errors were encountered while processing:\n /run/keel-debs/0/ab.deb\n c\n\
                   after\n";
        assert_eq!(processing_errors(log), vec!["/run/keel-debs/0/ab.deb", "c"]);
        assert!(processing_errors("Setting up a (1) ...\n").is_empty());
    }
}
