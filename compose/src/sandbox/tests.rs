//! The sandbox's unit tests; most run real bwrap over a tree lent the host's `/usr`.

use super::*;

#[test]
fn tail_keeps_the_last_lines() {
    assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
    assert_eq!(tail("a", 5), "a");
    assert_eq!(tail("", 5), "");
}

#[test]
fn tail_of_one_endless_line_is_bounded() {
    let line = "é".repeat(TAIL_BYTES);
    let cut = tail(&line, 3);
    assert!(cut.len() <= TAIL_BYTES + "[...]".len() + 1, "{}", cut.len());
    assert!(cut.starts_with("[...]é"));
}

#[test]
fn later_env_overrides_defaults() {
    let env = Sandbox::new(Path::new("/nonexistent"))
        .env("LANG", "C")
        .environment();
    assert!(env.contains(&("LANG".into(), "C".into())));
    assert_eq!(env.iter().filter(|(k, _)| k == "LANG").count(), 1);
}

#[test]
fn binds_come_after_the_root_and_network_is_unshared() {
    let args = Sandbox::new(Path::new("/t"))
        .bind_ro(Path::new("/h"), "/in")
        .bwrap_args();
    let root = args.iter().position(|a| a == "/t").unwrap();
    let bind = args.iter().position(|a| a == "/h").unwrap();
    assert!(root < bind);
    assert!(args.contains(&"--unshare-net".to_string()));
    assert!(!args.iter().any(|a| a.starts_with("--unshare-user")));
}

#[test]
fn every_capability_is_dropped_before_the_kept_ones_are_added() {
    let args = Sandbox::new(Path::new("/t")).bwrap_args();
    let drop_all = args.windows(2).position(|w| w == ["--cap-drop", "ALL"]);
    let first_add = args.iter().position(|a| a == "--cap-add");
    assert!(drop_all.is_some() && drop_all < first_add, "{args:?}");
    let added: Vec<&str> = args
        .windows(2)
        .filter(|w| w[0] == "--cap-add")
        .map(|w| w[1].as_str())
        .collect();
    assert_eq!(added, KEPT_CAPS);
    for never in ["CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH", "CAP_MKNOD"] {
        assert!(!added.contains(&never), "{never}");
    }
}

/// A tree with the merged-/usr links, run with the host's `/usr`.
fn host_usr_tree() -> (tempfile::TempDir, Sandbox) {
    let root = tempfile::tempdir().unwrap();
    for link in ["bin", "sbin", "lib", "lib64"] {
        std::os::unix::fs::symlink(format!("usr/{link}"), root.path().join(link)).unwrap();
    }
    let sandbox = Sandbox::new(root.path()).with_host_usr();
    (root, sandbox)
}

/// The capability mask of `names` (`include/uapi/linux/capability.h` numbers).
fn mask(names: &[&str]) -> u64 {
    let number = |name: &str| match name {
        "CAP_CHOWN" => 0,
        "CAP_DAC_OVERRIDE" => 1,
        "CAP_FOWNER" => 3,
        "CAP_FSETID" => 4,
        "CAP_SETGID" => 6,
        "CAP_SETUID" => 7,
        "CAP_SETFCAP" => 31,
        other => panic!("add {other} to the test's table"),
    };
    names.iter().map(|n| 1u64 << number(n)).sum()
}

#[test]
fn the_command_has_only_the_kept_capabilities_and_the_seccomp_filter() {
    let (_root, sandbox) = host_usr_tree();
    let status = sandbox
        .run(&["cat", "/proc/self/status"], "reading the status")
        .unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in\n{status}"))
            .to_string()
    };
    let want = format!("{:016x}", mask(KEPT_CAPS));
    for set in ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:"] {
        assert_eq!(field(set), want, "{set}");
    }
    // bwrap leaves the bounding set as it was but sets no_new_privs, so no execve (of a
    // setuid or file-capability program, or root's own) can raise the set again.
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2", "a filter must be installed");
    assert_eq!(field("Uid:").split_whitespace().next(), Some("0"));
    // Besides stdio and ls's own directory, only what this process inherited from its
    // parent without close-on-exec may pass (bwrap closes nothing); the seccomp pipe and
    // the output pipe's spare ends must not.
    let fds = sandbox
        .run(&["ls", "/proc/self/fd/"], "listing descriptors")
        .unwrap();
    let extra: Vec<&str> = fds
        .split_whitespace()
        .filter(|fd| !["0", "1", "2", "3"].contains(fd))
        .filter(|fd| !Path::new("/proc/self/fd").join(fd).exists())
        .collect();
    assert_eq!(
        extra,
        Vec::<&str>::new(),
        "descriptors leaked into the sandbox"
    );
}

/// Regression: bwrap left `/proc/sys` writable, and a maintainer script could set the
/// host's `kernel.core_pattern`. Probed on a sysctl of the sandbox's own UTS namespace, so
/// the test changes nothing of the host even where it would fail.
#[test]
fn proc_sys_is_read_only_so_no_script_sets_the_hosts_core_pattern() {
    let (_root, sandbox) = host_usr_tree();
    let err = sandbox
        .run(
            &["sh", "-c", "echo keel > /proc/sys/kernel/domainname"],
            "writing a sysctl",
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("Read-only file system"), "{text}");
}

#[test]
fn a_raised_cancel_token_kills_the_command() {
    let (_root, sandbox) = host_usr_tree();
    let cancel = Cancel::new();
    let sandbox = sandbox.cancel_on(&cancel);
    let raiser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        cancel.cancel();
    });
    let started = Instant::now();
    let err = sandbox.run(&["sleep", "30"], "sleeping").unwrap_err();
    raiser.join().unwrap();
    assert!(matches!(err, SandboxError::Cancelled { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Host processes whose command line contains `token`.
fn host_processes_with(token: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(token))
        .collect()
}

#[test]
fn a_command_past_its_deadline_is_killed_with_what_it_started() {
    let (_root, sandbox) = host_usr_tree();
    let script = "sleep 713.25 & echo started; while :; do :; done";
    let started = Instant::now();
    let err = sandbox
        .deadline(Duration::from_millis(1500))
        .run(&["sh", "-c", script], "a looping step")
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SandboxError::Overdue(_)), "{text}");
    assert!(text.contains("a looping step"), "{text}");
    assert!(text.contains("within 1.5 s"), "{text}");
    assert!(text.contains("started"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(host_processes_with("713.25"), Vec::<String>::new());
}

#[test]
fn a_daemon_a_command_leaves_behind_does_not_outlive_the_step() {
    let (_root, sandbox) = host_usr_tree();
    // One daemon detached from everything, one still holding the output pipe.
    let script = "setsid sleep 711.25 </dev/null >/dev/null 2>&1 & sleep 712.25 & echo spawned";
    let started = Instant::now();
    let out = sandbox.run(&["sh", "-c", script], "daemonizing").unwrap();
    assert_eq!(out.trim(), "spawned");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(host_processes_with("711.25"), Vec::<String>::new());
    assert_eq!(host_processes_with("712.25"), Vec::<String>::new());
}

#[test]
fn output_beyond_the_cap_keeps_the_tail_and_counts_the_rest() {
    let (_root, sandbox) = host_usr_tree();
    let script = "head -c 5000000 /dev/zero | tr '\\0' x; echo; echo the-last-line; exit 4";
    let err = sandbox
        .output_cap(1000)
        .run(&["sh", "-c", script], "a loud step")
        .unwrap_err();
    let text = err.to_string();
    let SandboxError::Failed(failure) = &err else {
        panic!("{text}");
    };
    assert_eq!(failure.output.len(), 1000);
    assert_eq!(failure.dropped, 5_000_015 - 1000);
    assert!(
        text.contains("4999015 bytes before them were dropped"),
        "{text}"
    );
    assert!(text.ends_with("the-last-line"), "{text}");
}

#[test]
fn missing_root_is_an_error_naming_it() {
    let err = Sandbox::new(Path::new("/nonexistent-keel-root"))
        .run(&["true"], "a test step")
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent-keel-root"), "{err}");
}

/// On demand (`--run-ignored only`): the seccomp filter's cost on a file-heavy workload like
/// dpkg's unpack (copying the host's documentation and manual pages, ~20k files, with their
/// modes and owners), against the same bwrap without the filter. Best of five each, run
/// alternately so both see the same load.
#[test]
#[ignore = "benchmark; run on demand"]
fn seccomp_filter_costs_little_on_a_file_heavy_workload() {
    let (_root, sandbox) = host_usr_tree();
    let workload =
        "tar -C /usr/share -cf - doc man | tar -C /tmp -xpf - && rm -rf /tmp/doc /tmp/man";
    let argv = ["sh", "-c", workload];
    let without_filter = || {
        let started = Instant::now();
        let status = Command::new("bwrap")
            .args(sandbox.bwrap_args())
            .arg("--")
            .args(argv)
            .env_clear()
            .envs(sandbox.environment())
            .stdin(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        started.elapsed()
    };
    let with_filter = || {
        let started = Instant::now();
        sandbox.run(&argv, "the workload").unwrap();
        started.elapsed()
    };
    let (mut with, mut without) = (Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        without = without.min(without_filter());
        with = with.min(with_filter());
    }
    eprintln!("best of five: {with:?} with the filter, {without:?} without");
    assert!(with.as_secs_f64() < without.as_secs_f64() * 1.10);
}
