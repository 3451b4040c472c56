use super::*;

fn parse(name: &str, text: &str) -> (PathBuf, File) {
    (
        PathBuf::from(name),
        toml::from_str(text).expect("test fragment parses"),
    )
}

fn settings(files: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    validate(merge(files.iter().map(|(n, t)| parse(n, t))))
}

#[test]
fn defaults_are_immediate_hourly_with_jitter() {
    let s = settings(&[]).unwrap();
    assert!(s.enabled);
    assert_eq!(s.strategy, Strategy::Immediate);
    assert_eq!(s.check_interval, Duration::from_secs(3600));
    assert_eq!(s.check_jitter, Duration::from_secs(600));
    assert_eq!(s.max_postpone, Duration::from_secs(3600));
    assert!(s.schedule.is_always());
    assert_eq!(s.fleet_lock, None);
    assert_eq!(Settings::default(), s);
}

#[test]
fn later_files_win_key_by_key_and_sections_belong_to_others() {
    let s = settings(&[
        ("a.toml", "[remote]\nurl = \"http://x\"\n[updates]\nenabled = false\ncheck_interval_minutes = 5\n"),
        ("b.toml", "[updates]\ncheck_interval_minutes = 7\n"),
    ])
    .unwrap();
    assert!(!s.enabled);
    assert_eq!(s.check_interval, Duration::from_secs(7 * 60));
}

#[test]
fn windows_and_the_fleet_lock_combine() {
    let s = settings(&[
        (
            "10-windows.toml",
            "[updates.periodic]\ntime_zone = \"Europe/Berlin\"\n[[updates.periodic.window]]\ndays = [\"Sat\", \"sunday\"]\nstart_time = \"22:30\"\nlength_minutes = 120\n[[updates.periodic.window]]\ndays = [\"Wed\"]\nstart_time = \"03:00\"\nlength_minutes = 30\ntime_zone = \"UTC\"\n",
        ),
        (
            "20-lock.toml",
            "[updates]\nstrategy = \"fleet_lock\"\n[updates.fleet_lock]\nbase_url = \"http://127.0.0.1:8080/\"\ngroup = \"workers\"\n",
        ),
    ])
    .unwrap();
    assert_eq!(s.strategy, Strategy::FleetLock);
    assert_eq!(
        s.fleet_lock,
        Some(FleetLockSettings {
            base_url: "http://127.0.0.1:8080".into(),
            group: "workers".into()
        })
    );
    assert_eq!(s.schedule.windows.len(), 2);
    assert_eq!(s.schedule.windows[0].time_zone, chrono_tz::Europe::Berlin);
    assert_eq!(s.schedule.windows[1].time_zone, chrono_tz::UTC);
    assert_eq!(
        s.schedule.windows[0].days,
        vec![chrono::Weekday::Sat, chrono::Weekday::Sun]
    );
}

#[test]
fn a_later_window_list_replaces_the_earlier_one() {
    let w = "[[updates.periodic.window]]\ndays = [\"Mon\"]\nstart_time = \"01:00\"\nlength_minutes = 10\n";
    let s = settings(&[
        ("a.toml", w),
        ("b.toml", "[updates.periodic]\nwindow = []\n"),
    ])
    .unwrap();
    assert!(s.schedule.is_always());
}

#[test]
fn errors_name_the_file_and_the_key() {
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("/etc/keel/config.d/50.toml", "[updates]\nstrategy = \"weekly\"\n")],
            "/etc/keel/config.d/50.toml: updates.strategy: \"weekly\" is not a strategy",
        ),
        (
            vec![("/etc/keel/config.d/50.toml", "[updates]\nstrategy = \"periodic\"\n")],
            "/etc/keel/config.d/50.toml: updates.strategy: \"periodic\" needs at least one",
        ),
        (
            vec![("/run/keel/config.d/x.toml", "[updates]\nstrategy = \"fleet_lock\"\n")],
            "/run/keel/config.d/x.toml: updates.fleet_lock.base_url: \"fleet_lock\" needs",
        ),
        (
            vec![
                ("a.toml", "[updates]\nstrategy = \"fleet_lock\"\n[updates.fleet_lock]\nbase_url = \"http://l\"\n"),
                ("b.toml", "[updates.fleet_lock]\ngroup = \"a b\"\n"),
            ],
            "b.toml: updates.fleet_lock.group: client group \"a b\"",
        ),
        (
            vec![("w.toml", "[[updates.periodic.window]]\ndays = [\"Mo\"]\nstart_time = \"01:00\"\nlength_minutes = 10\n")],
            "w.toml: updates.periodic.window: window 1: \"Mo\" is not a day",
        ),
        (
            vec![("w.toml", "[[updates.periodic.window]]\ndays = [\"Mon\"]\nstart_time = \"25:00\"\nlength_minutes = 10\n")],
            "w.toml: updates.periodic.window: window 1: start_time \"25:00\" is not HH:MM",
        ),
        (
            vec![("w.toml", "[[updates.periodic.window]]\ndays = [\"Mon\"]\nstart_time = \"01:00\"\nlength_minutes = 0\n")],
            "window 1: length_minutes 0 is not within",
        ),
        (
            vec![("w.toml", "[[updates.periodic.window]]\ndays = [\"Mon\"]\nstart_time = \"01:00\"\nlength_minutes = 5\ntime_zone = \"Mars/Olympus\"\n")],
            "\"Mars/Olympus\" is not a time zone",
        ),
        (
            vec![("i.toml", "[updates]\ncheck_interval_minutes = 0\n")],
            "i.toml: updates.check_interval_minutes: must be at least 1",
        ),
    ];
    for (files, want) in cases {
        let err = settings(&files).expect_err(want).to_string();
        assert!(err.contains(want), "{err}\nwanted: {want}");
    }
}

#[test]
fn load_shadows_masks_and_names_unparsable_files() {
    let root = tempfile::tempdir().unwrap();
    let write = |p: &str, text: &str| {
        let p = root.path().join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "usr/lib/keel/config.d/10-defaults.toml",
        "[updates]\ncheck_interval_minutes = 30\n",
    );
    write(
        "usr/lib/keel/config.d/20-off.toml",
        "[updates]\nenabled = false\n",
    );
    write(
        "etc/keel/config.d/10-defaults.toml",
        "[updates]\ncheck_jitter_minutes = 1\n",
    );
    std::os::unix::fs::symlink(
        "/dev/null",
        root.path().join("etc/keel/config.d/20-off.toml"),
    )
    .unwrap();
    let s = load(root.path()).unwrap();
    // etc's 10-defaults shadows lib's whole file (interval back to the default); 20-off masked.
    assert_eq!(s.check_interval, Duration::from_secs(3600));
    assert_eq!(s.check_jitter, Duration::from_secs(60));
    assert!(s.enabled);

    // /run comes last: a runtime file shadows the admin's file of the same name.
    write(
        "run/keel/config.d/10-defaults.toml",
        "[updates]\ncheck_jitter_minutes = 5\n",
    );
    let s = load(root.path()).unwrap();
    assert_eq!(s.check_jitter, Duration::from_secs(300));

    write(
        "run/keel/config.d/30-typo.toml",
        "[updates]\nenabled_ = true\n",
    );
    let err = load(root.path()).unwrap_err().to_string();
    assert!(err.contains("run/keel/config.d/30-typo.toml"), "{err}");
    assert!(err.contains("enabled_"), "{err}");
}
