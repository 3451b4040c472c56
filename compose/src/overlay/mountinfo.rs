//! Finding the mounts a killed compose left below a scratch dir, from /proc/self/mountinfo.

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::mount::UnmountFlags;

use super::{io_err, std_err, OverlayError, Result};

/// Lazily unmounts every mount at or below `dir` (deepest first, later mounts on one point
/// first), as listed in /proc/self/mountinfo; returns how many. For cleaning scratch trees a
/// killed compose left mounted.
pub fn unmount_below(dir: &Path) -> Result<usize> {
    let dir = match fs::canonicalize(dir) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(std_err("resolve", dir)(e)),
    };
    let info_path = Path::new("/proc/self/mountinfo");
    let info = fs::read(info_path).map_err(std_err("read", info_path))?;
    let mut count = 0;
    for point in mounts_below(parse_mount_points(&info)?, &dir) {
        match rustix::mount::unmount(&point, UnmountFlags::DETACH) {
            Ok(()) => count += 1,
            // Gone already (unmounted by someone else, or with its parent).
            Err(Errno::INVAL) | Err(Errno::NOENT) => {}
            Err(errno) => return Err(io_err("unmount", &point)(errno)),
        }
    }
    Ok(count)
}

/// The mount points of /proc/self/mountinfo (field 5), in file order, octal escapes decoded.
fn parse_mount_points(info: &[u8]) -> Result<Vec<PathBuf>> {
    let mut points = Vec::new();
    for line in info.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let field = line
            .split(|b| *b == b' ')
            .nth(4)
            .ok_or_else(|| OverlayError::MountInfo {
                line: String::from_utf8_lossy(line).into_owned(),
            })?;
        points.push(PathBuf::from(OsString::from_vec(unescape_octal(field))));
    }
    Ok(points)
}

/// Decodes the kernel's `\NNN` octal escapes (space, tab, newline, backslash in paths).
fn unescape_octal(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let digits = field.get(i + 1..i + 4);
        let octal = digits.filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (field[i], octal) {
            (b'\\', Some(d)) => {
                let value = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                out.push(value as u8);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// The mount points at or below `dir`, in unmount order: deepest first, and among mounts on
/// one point the later (upper) one first.
fn mounts_below(points: Vec<PathBuf>, dir: &Path) -> Vec<PathBuf> {
    let mut below: Vec<PathBuf> = points
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .rev()
        .collect();
    below.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    below
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_decodes_octal_and_keeps_the_rest() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"/plain", b"/plain"),
            (br"/a\040b", b"/a b"),
            (br"/t\011ab\012nl", b"/t\tab\nnl"),
            (br"/back\134slash", br"/back\slash"),
            (br"/short\04", br"/short\04"),
            (br"/not\089", br"/not\089"),
            (br"/end\\", br"/end\\"),
        ];
        for (input, want) in cases {
            assert_eq!(
                unescape_octal(input),
                *want,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    const MOUNTINFO: &[u8] = b"\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /proc rw,nosuid - proc proc rw
41 22 0:40 / /var/tmp/x/my\\040tree.merged rw - overlay keel-overlay rw,lowerdir=/proc/self/fd/3
42 41 0:41 / /var/tmp/x/my\\040tree.merged/proc rw - proc proc rw
43 22 0:42 / /var/tmp/x/my\\040tree.merged rw - overlay keel-overlay rw
44 22 0:43 / /var/tmp/xy rw - tmpfs tmpfs rw
";

    #[test]
    fn mountinfo_points_are_decoded_in_order() {
        let points = parse_mount_points(MOUNTINFO).unwrap();
        assert_eq!(points.len(), 6);
        assert_eq!(points[2], Path::new("/var/tmp/x/my tree.merged"));
        assert_eq!(points[3], Path::new("/var/tmp/x/my tree.merged/proc"));
    }

    #[test]
    fn mountinfo_rejects_a_short_line() {
        let err = parse_mount_points(b"22 1 254:0 /\n").unwrap_err();
        assert!(matches!(err, OverlayError::MountInfo { .. }), "{err}");
    }

    #[test]
    fn mounts_below_are_deepest_and_latest_first() {
        let points = parse_mount_points(MOUNTINFO).unwrap();
        let below = mounts_below(points, Path::new("/var/tmp/x"));
        let want = [
            "/var/tmp/x/my tree.merged/proc",
            "/var/tmp/x/my tree.merged",
            "/var/tmp/x/my tree.merged",
        ];
        assert_eq!(below, want.map(PathBuf::from));
        // `/var/tmp/xy` shares a string prefix, not a path prefix.
        assert!(mounts_below(
            parse_mount_points(MOUNTINFO).unwrap(),
            Path::new("/var/tmp/xy")
        )
        .iter()
        .all(|p| p == Path::new("/var/tmp/xy")));
    }
}
