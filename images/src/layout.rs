//! Disk layout math: sizes given on the command line, the MBR partition table of an image and
//! the `sfdisk` script that writes it. Pure; the side effects live in `build`.

use std::fmt;
use std::str::FromStr;

/// One mebibyte: partitions start and end on MiB boundaries.
pub const MIB: u64 = 1 << 20;
/// Where the first partition starts (the MBR and the gap before it).
pub const FIRST_PARTITION: u64 = MIB;
/// The default size of the /boot partition: room for three deployments' kernels and
/// uncompressed initramfs images.
pub const DEFAULT_BOOT_SIZE: u64 = 512 * MIB;
/// The smallest root partition we accept; a bootable host needs more, which
/// [`check_fits`] checks once the tree's size is known.
pub const MIN_ROOT_SIZE: u64 = 256 * MIB;
/// The MBR's 32-bit sector counts cap a disk at 2 TiB.
pub const MAX_DISK_SIZE: u64 = (u32::MAX as u64) * SECTOR;
const SECTOR: u64 = 512;

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("size {0:?} is not a number with an optional unit K, M, G or T (e.g. 8G, 4096M)")]
    BadSize(String),
    #[error("size {0:?} overflows 64 bits")]
    SizeOverflow(String),
    #[error(
        "image size {disk} MiB is too small: /boot takes {boot} MiB and the root partition needs \
         at least {root} MiB; pass a larger --size"
    )]
    TooSmall { disk: u64, boot: u64, root: u64 },
    #[error("image size {0} bytes exceeds the 2 TiB an MBR partition table can address")]
    TooLarge(u64),
    #[error(
        "the root filesystem needs about {needed} MiB but the root partition has {available} MiB; \
         pass --size of at least {suggested_gib}G"
    )]
    TreeTooLarge {
        needed: u64,
        available: u64,
        suggested_gib: u64,
    },
}

/// A size in bytes parsed from `8G`, `4096M`, `512MiB`, `1T` or a plain byte count
/// (binary units).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = LayoutError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let digits_end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(digits_end);
        if digits.is_empty() {
            return Err(LayoutError::BadSize(s.to_string()));
        }
        let shift = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "B" => 0,
            "K" | "KB" | "KIB" => 10,
            "M" | "MB" | "MIB" => 20,
            "G" | "GB" | "GIB" => 30,
            "T" | "TB" | "TIB" => 40,
            _ => return Err(LayoutError::BadSize(s.to_string())),
        };
        let value: u64 = digits
            .parse()
            .map_err(|_| LayoutError::SizeOverflow(s.to_string()))?;
        value
            .checked_mul(1u64 << shift)
            .map(ByteSize)
            .ok_or_else(|| LayoutError::SizeOverflow(s.to_string()))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} MiB", self.0 / MIB)
    }
}

/// A partition's place on the disk, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Extent {
    pub offset: u64,
    pub size: u64,
}

impl Extent {
    pub fn start_sector(&self) -> u64 {
        self.offset / SECTOR
    }
    pub fn sectors(&self) -> u64 {
        self.size / SECTOR
    }
}

/// The image's MBR layout: partition 1 is /boot (bootable flag, where extlinux lives),
/// partition 2 the root filesystem holding the ostree sysroot, to the end of the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Layout {
    pub disk_size: u64,
    pub boot: Extent,
    pub root: Extent,
}

impl Layout {
    /// Plans a disk of `disk_size` bytes (rounded down to whole MiB) with a /boot partition of
    /// `boot_size` bytes (rounded up to whole MiB).
    pub fn plan(disk_size: u64, boot_size: u64) -> Result<Layout, LayoutError> {
        if disk_size > MAX_DISK_SIZE {
            return Err(LayoutError::TooLarge(disk_size));
        }
        let disk = disk_size / MIB * MIB;
        let boot = boot_size.div_ceil(MIB) * MIB;
        let root_offset = FIRST_PARTITION + boot;
        let too_small = LayoutError::TooSmall {
            disk: disk / MIB,
            boot: boot / MIB,
            root: MIN_ROOT_SIZE / MIB,
        };
        let root_size = disk.checked_sub(root_offset).ok_or(too_small.clone())?;
        if root_size < MIN_ROOT_SIZE {
            return Err(too_small);
        }
        Ok(Layout {
            disk_size: disk,
            boot: Extent {
                offset: FIRST_PARTITION,
                size: boot,
            },
            root: Extent {
                offset: root_offset,
                size: root_size,
            },
        })
    }

    /// The `sfdisk` input that writes this table: DOS label, both partitions Linux (0x83),
    /// the first one bootable.
    pub fn sfdisk_script(&self) -> String {
        format!(
            "label: dos\nunit: sectors\n\n\
             start={}, size={}, type=83, bootable\n\
             start={}, size={}, type=83\n",
            self.boot.start_sector(),
            self.boot.sectors(),
            self.root.start_sector(),
            self.root.sectors(),
        )
    }
}

/// Checks that a tree of `tree_bytes` (as counted on disk) fits a filesystem of
/// `partition_bytes`, leaving a quarter for ext4's metadata and the first upgrade.
pub fn check_fits(tree_bytes: u64, layout: &Layout) -> Result<(), LayoutError> {
    let needed = tree_bytes + tree_bytes / 4 + 64 * MIB;
    if needed <= layout.root.size {
        return Ok(());
    }
    let disk_needed = needed + layout.root.offset;
    Err(LayoutError::TreeTooLarge {
        needed: needed.div_ceil(MIB),
        available: layout.root.size / MIB,
        suggested_gib: disk_needed.div_ceil(1 << 30),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        let table = [
            ("8G", 8 << 30),
            ("4096M", 4096 << 20),
            ("512MiB", 512 << 20),
            ("1t", 1 << 40),
            ("10K", 10 << 10),
            ("12345", 12345),
            (" 2 GB ", 2 << 30),
        ];
        for (text, bytes) in table {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
        }
    }

    #[test]
    fn bad_sizes_are_refused() {
        for text in ["", "G", "8X", "-1G", "1.5G", "99999999999999999999"] {
            assert!(text.parse::<ByteSize>().is_err(), "{text}");
        }
        assert_eq!(
            "18446744073709551615G".parse::<ByteSize>(),
            Err(LayoutError::SizeOverflow("18446744073709551615G".into()))
        );
    }

    #[test]
    fn layout_puts_boot_first_and_root_to_the_end() {
        let layout = Layout::plan(4 << 30, DEFAULT_BOOT_SIZE).unwrap();
        assert_eq!(
            layout.boot,
            Extent {
                offset: MIB,
                size: 512 * MIB
            }
        );
        assert_eq!(
            layout.root,
            Extent {
                offset: 513 * MIB,
                size: (4 << 30) - 513 * MIB
            }
        );
        assert_eq!(layout.root.offset + layout.root.size, layout.disk_size);
    }

    #[test]
    fn layout_rounds_to_whole_mebibytes() {
        let layout = Layout::plan((2 << 30) + 12345, 100 * MIB + 1).unwrap();
        assert_eq!(layout.disk_size, 2 << 30);
        assert_eq!(layout.boot.size, 101 * MIB);
        assert_eq!(layout.root.offset % MIB, 0);
    }

    #[test]
    fn layout_refuses_disks_too_small_or_too_large() {
        assert!(matches!(
            Layout::plan(600 * MIB, DEFAULT_BOOT_SIZE),
            Err(LayoutError::TooSmall { .. })
        ));
        assert!(matches!(
            Layout::plan(100 * MIB, DEFAULT_BOOT_SIZE),
            Err(LayoutError::TooSmall { .. })
        ));
        assert!(matches!(
            Layout::plan(3 << 40, DEFAULT_BOOT_SIZE),
            Err(LayoutError::TooLarge(_))
        ));
    }

    #[test]
    fn sfdisk_script_marks_boot_bootable() {
        let layout = Layout::plan(2 << 30, 512 * MIB).unwrap();
        assert_eq!(
            layout.sfdisk_script(),
            "label: dos\nunit: sectors\n\n\
             start=2048, size=1048576, type=83, bootable\n\
             start=1050624, size=3143680, type=83\n"
        );
    }

    #[test]
    fn tree_must_fit_with_headroom() {
        let layout = Layout::plan(2 << 30, 512 * MIB).unwrap();
        assert!(check_fits(900 * MIB, &layout).is_ok());
        let err = check_fits(1400 * MIB, &layout).unwrap_err();
        assert!(
            matches!(
                err,
                LayoutError::TreeTooLarge {
                    suggested_gib: 3,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
