//! uid/gid stability between commits (rpm-ostree's check-passwd idea).
//!
//! Files in /var and /etc that a host already has keep their numeric owners across updates.
//! If a new commit gives an existing user or group another id, those files silently change
//! owner. [`check`] compares the previous commit's /etc/passwd and /etc/group with the new
//! ones and refuses such changes; users and groups that appear or disappear are fine.

use std::collections::BTreeMap;
use std::fmt;

/// A user or group whose id differs between the previous and the new commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdChange {
    /// A user's uid changed.
    Uid { user: String, old: u32, new: u32 },
    /// A user's primary group id changed.
    PrimaryGid { user: String, old: u32, new: u32 },
    /// A group's gid changed.
    Gid { group: String, old: u32, new: u32 },
}

impl fmt::Display for IdChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdChange::Uid { user, old, new } => {
                write!(f, "user `{user}` changes uid from {old} to {new}")
            }
            IdChange::PrimaryGid { user, old, new } => {
                write!(f, "user `{user}` changes primary gid from {old} to {new}")
            }
            IdChange::Gid { group, old, new } => {
                write!(f, "group `{group}` changes gid from {old} to {new}")
            }
        }
    }
}

/// Why the check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswdError {
    /// Existing users or groups got other ids.
    #[error(
        "{}; files they own on deployed hosts would change owner. Pin the old ids (add-files \
         with passwd/group entries, or a sysusers.d file, so the package's user gets the same \
         id), or set `[passwd] check = false` in the treefile if the change is intended",
        render_changes(changes)
    )]
    Changed { changes: Vec<IdChange> },
    /// A line that is not in /etc/passwd or /etc/group format.
    #[error("{file} line {line}: {reason}")]
    Malformed {
        /// e.g. "previous /etc/passwd", "new /etc/group".
        file: String,
        line: usize,
        reason: String,
    },
}

fn render_changes(changes: &[IdChange]) -> String {
    changes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Compares the previous and new passwd/group files (their text); fails when an entry present
/// in both has a different uid or gid.
pub fn check(
    previous_passwd: &str,
    previous_group: &str,
    new_passwd: &str,
    new_group: &str,
) -> Result<(), PasswdError> {
    let old_users = parse_passwd(previous_passwd, "previous /etc/passwd")?;
    let new_users = parse_passwd(new_passwd, "new /etc/passwd")?;
    let old_groups = parse_group(previous_group, "previous /etc/group")?;
    let new_groups = parse_group(new_group, "new /etc/group")?;

    let mut changes = Vec::new();
    for (user, &(old_uid, old_gid)) in &old_users {
        let Some(&(new_uid, new_gid)) = new_users.get(user) else {
            continue;
        };
        if old_uid != new_uid {
            changes.push(IdChange::Uid {
                user: user.clone(),
                old: old_uid,
                new: new_uid,
            });
        }
        if old_gid != new_gid {
            changes.push(IdChange::PrimaryGid {
                user: user.clone(),
                old: old_gid,
                new: new_gid,
            });
        }
    }
    for (group, &old) in &old_groups {
        match new_groups.get(group) {
            Some(&new) if new != old => changes.push(IdChange::Gid {
                group: group.clone(),
                old,
                new,
            }),
            _ => {}
        }
    }
    match changes.is_empty() {
        true => Ok(()),
        false => Err(PasswdError::Changed { changes }),
    }
}

/// Entries of an /etc/passwd text: name -> (uid, gid). The first entry of a name wins, as in
/// getpwnam(3).
fn parse_passwd(text: &str, file: &str) -> Result<BTreeMap<String, (u32, u32)>, PasswdError> {
    let mut users = BTreeMap::new();
    for (line, fields) in records(text) {
        if fields.len() != 7 {
            return Err(malformed(
                file,
                line,
                format!(
                    "expected 7 `:`-separated fields (name:password:uid:gid:gecos:home:shell), found {}",
                    fields.len()
                ),
            ));
        }
        let uid = id(fields[2], "uid", file, line)?;
        let gid = id(fields[3], "gid", file, line)?;
        users
            .entry(name(fields[0], file, line)?)
            .or_insert((uid, gid));
    }
    Ok(users)
}

/// Entries of an /etc/group text: name -> gid.
fn parse_group(text: &str, file: &str) -> Result<BTreeMap<String, u32>, PasswdError> {
    let mut groups = BTreeMap::new();
    for (line, fields) in records(text) {
        if fields.len() != 4 {
            return Err(malformed(
                file,
                line,
                format!(
                    "expected 4 `:`-separated fields (name:password:gid:members), found {}",
                    fields.len()
                ),
            ));
        }
        let gid = id(fields[2], "gid", file, line)?;
        groups.entry(name(fields[0], file, line)?).or_insert(gid);
    }
    Ok(groups)
}

/// Numbered, split lines, skipping blank lines, comments and NIS `+`/`-` entries.
fn records(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim_end_matches('\r')))
        .filter(|(_, line)| {
            !(line.trim().is_empty()
                || line.starts_with('#')
                || line.starts_with('+')
                || line.starts_with('-'))
        })
        .map(|(number, line)| (number, line.split(':').collect()))
}

fn name(field: &str, file: &str, line: usize) -> Result<String, PasswdError> {
    match field.is_empty() {
        true => Err(malformed(file, line, "the name field is empty".into())),
        false => Ok(field.to_string()),
    }
}

fn id(field: &str, what: &str, file: &str, line: usize) -> Result<u32, PasswdError> {
    field
        .parse()
        .map_err(|_| malformed(file, line, format!("{what} `{field}` is not a number")))
}

fn malformed(file: &str, line: usize, reason: String) -> PasswdError {
    PasswdError::Malformed {
        file: file.to_string(),
        line,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
                          messagebus:x:100:101::/nonexistent:/usr/sbin/nologin\n\
                          # a comment\n\
                          \n\
                          systemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nmessagebus:x:101:\nsystemd-network:x:998:\n";

    #[test]
    fn identical_files_pass() {
        assert_eq!(check(PASSWD, GROUP, PASSWD, GROUP), Ok(()));
    }

    #[test]
    fn added_and_removed_entries_pass() {
        let new_passwd = format!("{PASSWD}podman:x:997:997::/home/podman:/bin/sh\n")
            .replace("messagebus:x:100:101::/nonexistent:/usr/sbin/nologin\n", "");
        let new_group = format!("{GROUP}podman:x:997:\n").replace("messagebus:x:101:\n", "");
        assert_eq!(check(PASSWD, GROUP, &new_passwd, &new_group), Ok(()));
    }

    #[test]
    fn changed_ids_fail_naming_entry_and_ids() {
        let cases = [
            (
                PASSWD.replace("messagebus:x:100:", "messagebus:x:105:"),
                GROUP.to_string(),
                vec![IdChange::Uid {
                    user: "messagebus".into(),
                    old: 100,
                    new: 105,
                }],
            ),
            (
                PASSWD.replace("messagebus:x:100:101:", "messagebus:x:100:107:"),
                GROUP.to_string(),
                vec![IdChange::PrimaryGid {
                    user: "messagebus".into(),
                    old: 101,
                    new: 107,
                }],
            ),
            (
                PASSWD.to_string(),
                GROUP.replace("systemd-network:x:998:", "systemd-network:x:990:"),
                vec![IdChange::Gid {
                    group: "systemd-network".into(),
                    old: 998,
                    new: 990,
                }],
            ),
        ];
        for (new_passwd, new_group, expected) in cases {
            let err = check(PASSWD, GROUP, &new_passwd, &new_group).unwrap_err();
            assert_eq!(
                err,
                PasswdError::Changed {
                    changes: expected.clone()
                }
            );
        }
        let err = check(PASSWD, GROUP, &PASSWD.replace(":100:", ":105:"), GROUP).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("user `messagebus` changes uid from 100 to 105;"),
            "{text}"
        );
        assert!(text.contains("[passwd] check = false"), "{text}");
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let cases = [
            (
                "root:x:0:0:root:/root:/bin/bash\nbroken line\n",
                GROUP,
                "previous /etc/passwd",
                2,
            ),
            (PASSWD, "root:x:zero:\n", "previous /etc/group", 1),
            ("root:x:0:0:root:/root\n", GROUP, "previous /etc/passwd", 1),
            (
                ":x:0:0:root:/root:/bin/sh\n",
                GROUP,
                "previous /etc/passwd",
                1,
            ),
        ];
        for (passwd, group, file, line) in cases {
            match check(passwd, group, PASSWD, GROUP) {
                Err(PasswdError::Malformed {
                    file: got_file,
                    line: got_line,
                    ..
                }) => assert_eq!((got_file.as_str(), got_line), (file, line), "{passwd:?}"),
                other => panic!("{passwd:?}: expected Malformed, got {other:?}"),
            }
        }
    }
}
