//! `keel-compose image`: a bootable disk image from a commit.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use keel_common::cancel::Cancel;
use keel_common::ostree_ref::OstreeRef;
use keel_common::progress::{Event, Progress};
use keel_images::layout::ByteSize;
use keel_images::{Format, ImageSpec, RemoteSpec};

/// Build a bootable disk image (raw or qcow2) of REF from the ostree repository REPO.
///
/// The disk has an MBR partition table with two ext4 partitions: /boot (label keel-boot,
/// bootable, BIOS extlinux reading the entries libostree writes) and the root (label
/// keel-root) holding an ostree sysroot with one deployment of REF, stateroot "keel". With
/// --remote-url and --trusted-keys the host is set up to update itself: the agent's remote
/// configuration and trusted keys in the deployment's /etc, the libostree remote in the
/// sysroot's repository, and the deployment's origin following REMOTE:REF.
///
/// Needs root (loop devices, mount) and qemu-img, extlinux, syslinux-common, e2fsprogs and
/// fdisk (ci/deps installs them). The image is built next to --output and renamed into place
/// at the end: a failure leaves no partial output, loop device or mount.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// The ostree repository holding the commit (made by `keel-compose tree`).
    #[arg(long)]
    pub repo: PathBuf,

    /// The ref to deploy, e.g. keel/bookworm/x86_64/host.
    #[arg(long = "ref")]
    pub reference: OstreeRef,

    /// Image format: raw or qcow2.
    #[arg(long, default_value = "raw")]
    pub format: Format,

    /// Disk size with a binary unit (K, M, G, T), e.g. 8G.
    #[arg(long, default_value = "4G")]
    pub size: ByteSize,

    /// Size of the /boot partition.
    #[arg(long, default_value = "512M")]
    pub boot_size: ByteSize,

    /// The image file to write; replaced atomically.
    #[arg(long)]
    pub output: PathBuf,

    /// URL of the ostree repository the host updates from.
    #[arg(long, requires = "trusted_keys")]
    pub remote_url: Option<String>,

    /// File of ed25519 public keys (base64, one per line) the host trusts for updates.
    #[arg(long, requires = "remote_url")]
    pub trusted_keys: Option<PathBuf>,

    /// Name of the remote in the host's configuration and origin.
    #[arg(long, default_value = keel_images::remote::DEFAULT_REMOTE)]
    pub remote_name: String,

    /// Extra kernel argument for the first deployment (repeatable).
    #[arg(long = "karg", value_name = "ARG")]
    pub kargs: Vec<String>,

    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let remote = match (args.remote_url, args.trusted_keys) {
        (Some(url), Some(trusted_keys)) => Some(RemoteSpec {
            name: args.remote_name,
            url,
            trusted_keys,
        }),
        _ => None,
    };
    let spec = ImageSpec {
        repo: args.repo,
        reference: args.reference,
        format: args.format,
        size: args.size.0,
        boot_size: args.boot_size.0,
        output: args.output,
        osname: "keel".to_string(),
        remote,
        kargs: args.kargs,
    };
    let report = keel_images::build(&spec, &Cancel::new(), &StderrLines)
        .with_context(|| format!("building the image {}", spec.output.display()))?;
    if args.json {
        let text = serde_json::to_string_pretty(&report).context("serializing the report")?;
        println!("{text}");
    } else {
        eprintln!("{}", report.render());
    }
    Ok(())
}

/// The image builder's messages and warnings as lines on stderr, as it printed them before it
/// took a progress sink.
struct StderrLines;

impl Progress for StderrLines {
    fn report(&self, event: Event) {
        match event {
            Event::Message { text } => eprintln!("{text}"),
            Event::Warning { text } => eprintln!("warning: {text}"),
            _ => {}
        }
    }
}
