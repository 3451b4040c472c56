use super::*;

#[test]
fn options_name_layers_by_fd_and_fix_the_features() {
    assert_eq!(
        mount_options(3, 4, 5),
        "lowerdir=/proc/self/fd/3,upperdir=/proc/self/fd/4,workdir=/proc/self/fd/5,\
         redirect_dir=off,metacopy=off,index=off,xino=off"
    );
}

#[test]
fn beside_names_siblings() {
    let dirs = OverlayDirs::beside(Path::new("/var/tmp/c,o:m/rootfs"));
    assert_eq!(dirs.lower, Path::new("/var/tmp/c,o:m/rootfs"));
    assert_eq!(dirs.upper, Path::new("/var/tmp/c,o:m/rootfs.upper"));
    assert_eq!(dirs.work, Path::new("/var/tmp/c,o:m/rootfs.work"));
    assert_eq!(dirs.merged, Path::new("/var/tmp/c,o:m/rootfs.merged"));
}

fn stat_of(mode: u32, rdev: u64) -> Stat {
    let mut st = rustix::fs::stat("/").unwrap();
    st.st_mode = mode;
    st.st_rdev = rdev;
    st
}

#[test]
fn classify_follows_the_overlay_rules() {
    let dir = stat_of(libc_mode::DIR | 0o755, 0);
    let file = stat_of(libc_mode::REG | 0o644, 0);
    let whiteout = stat_of(libc_mode::CHR, 0);
    let device = stat_of(libc_mode::CHR, rustix::fs::makedev(1, 3));
    assert_eq!(classify(&whiteout, false, Some(&file)), Action::Whiteout);
    assert_eq!(classify(&whiteout, false, None), Action::Whiteout);
    assert_eq!(classify(&device, false, Some(&file)), Action::Replace);
    assert_eq!(classify(&dir, true, Some(&dir)), Action::Opaque);
    assert_eq!(classify(&dir, false, Some(&dir)), Action::Merge);
    assert_eq!(classify(&dir, false, Some(&file)), Action::Replace);
    assert_eq!(classify(&dir, false, None), Action::Replace);
    assert_eq!(classify(&file, false, Some(&dir)), Action::Replace);
}

mod libc_mode {
    pub const DIR: u32 = 0o040000;
    pub const REG: u32 = 0o100000;
    pub const CHR: u32 = 0o020000;
}
