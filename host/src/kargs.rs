//! Kernel arguments: read them, or change them through a new deployment of the same commit.

use crate::host::Host;
use anyhow::{bail, Context, Result};
use keel_common::cancel::Cancel;
use keel_common::progress::Progress;
use ostree::glib;

/// The edits, in the order they apply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edits {
    pub delete: Vec<String>,
    pub replace: Vec<String>,
    pub append: Vec<String>,
}

impl Edits {
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.replace.is_empty() && self.append.is_empty()
    }
}

/// The deployment whose arguments are shown and edited: the staged one, else the default.
fn base(host: &Host) -> Result<ostree::Deployment> {
    host.staged_deployment()
        .or_else(|| host.deployments().into_iter().next())
        .context("no deployment yet, so no kernel arguments")
}

pub fn current(host: &Host) -> Result<Vec<String>> {
    Ok(Host::kargs(&base(host)?))
}

/// Deploys the base deployment's commit again with edited arguments; returns them.
pub fn change(
    host: &Host,
    edits: &Edits,
    cancel: &Cancel,
    progress: &dyn Progress,
) -> Result<Vec<String>> {
    let base = base(host)?;
    let new = edit(&Host::kargs(&base), edits)?;
    let origin = glib::KeyFile::new();
    if let Some(o) = base.origin() {
        origin
            .load_from_data(&o.to_data(), glib::KeyFileFlags::KEEP_COMMENTS)
            .context("copying the deployment's origin")?;
    }
    host.deploy_with_origin(&base.csum(), &origin, Some(&new), cancel, progress)?;
    Ok(new)
}

fn key_of(arg: &str) -> &str {
    arg.split_once('=').map_or(arg, |(k, _)| k)
}

/// Applies `edits` to `kargs`: pure, so the CLI's rules are tested here.
pub fn edit(kargs: &[String], edits: &Edits) -> Result<Vec<String>> {
    let mut out = kargs.to_vec();
    for d in &edits.delete {
        let before = out.len();
        if d.contains('=') {
            out.retain(|a| a != d);
        } else {
            out.retain(|a| key_of(a) != d);
        }
        if out.len() == before {
            bail!(
                "--delete {d}: no such kernel argument (current: {})",
                kargs.join(" ")
            );
        }
    }
    for r in &edits.replace {
        let Some((key, value)) = r.split_once('=') else {
            bail!("--replace {r}: expected KEY=VALUE or KEY=OLD=NEW");
        };
        let (old, new) = match value.split_once('=') {
            Some((old, new)) => (Some(format!("{key}={old}")), new),
            None => (None, value),
        };
        let mut hit = false;
        for a in out.iter_mut() {
            let matches = match &old {
                Some(old) => a == old,
                None => key_of(a) == key,
            };
            if matches {
                *a = format!("{key}={new}");
                hit = true;
            }
        }
        if !hit {
            bail!(
                "--replace {r}: no kernel argument {} to replace; use --append",
                old.as_deref().unwrap_or(key)
            );
        }
    }
    for a in &edits.append {
        if a.is_empty() || a.chars().any(char::is_whitespace) {
            bail!("--append {a:?}: a kernel argument is one word without spaces");
        }
        out.push(a.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn edits_apply_delete_replace_append() {
        let base = v("root=/dev/vda quiet console=tty0 console=ttyS0");
        let cases = [
            (
                Edits {
                    append: v("a=1 quiet"),
                    ..Default::default()
                },
                "root=/dev/vda quiet console=tty0 console=ttyS0 a=1 quiet",
            ),
            (
                Edits {
                    delete: v("console"),
                    ..Default::default()
                },
                "root=/dev/vda quiet",
            ),
            (
                Edits {
                    delete: v("console=tty0"),
                    ..Default::default()
                },
                "root=/dev/vda quiet console=ttyS0",
            ),
            (
                Edits {
                    replace: v("root=/dev/vdb"),
                    ..Default::default()
                },
                "root=/dev/vdb quiet console=tty0 console=ttyS0",
            ),
            (
                Edits {
                    replace: v("console=ttyS0=ttyS1"),
                    ..Default::default()
                },
                "root=/dev/vda quiet console=tty0 console=ttyS1",
            ),
            (
                Edits {
                    delete: v("quiet"),
                    replace: v("root=/dev/vdc"),
                    append: v("rw"),
                },
                "root=/dev/vdc console=tty0 console=ttyS0 rw",
            ),
        ];
        for (edits, want) in cases {
            assert_eq!(edit(&base, &edits).unwrap(), v(want), "{edits:?}");
        }
    }

    #[test]
    fn edits_that_match_nothing_are_errors() {
        let base = v("root=/dev/vda");
        let missing = Edits {
            delete: v("quiet"),
            ..Default::default()
        };
        assert!(edit(&base, &missing)
            .unwrap_err()
            .to_string()
            .contains("--delete quiet"));
        let replace = Edits {
            replace: v("x=1"),
            ..Default::default()
        };
        assert!(edit(&base, &replace)
            .unwrap_err()
            .to_string()
            .contains("use --append"));
        let bare = Edits {
            replace: v("root"),
            ..Default::default()
        };
        assert!(edit(&base, &bare).is_err());
    }
}
