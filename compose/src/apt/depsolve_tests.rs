use super::*;
use crate::apt::universe::parse_packages;

/// A universe from compact `Package;Version;extra fields` lines.
fn universe(lines: &[&str]) -> Universe {
    let text: String = lines
        .iter()
        .map(|l| {
            let mut parts = l.split(';');
            let name = parts.next().unwrap();
            let version = parts.next().unwrap();
            let extra: String = parts.map(|f| format!("{f}\n")).collect();
            format!(
                "Package: {name}\nVersion: {version}\nArchitecture: amd64\n{extra}\
                 Filename: pool/{name}_{version}.deb\nSize: 1\nSHA256: 00\n\n"
            )
        })
        .collect();
    let (packages, skipped) = parse_packages(&text, "http://x", "r", "r (s main)").unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    Universe::new("amd64", packages)
}

fn names(u: &Universe, packages: &[&str]) -> Vec<String> {
    let request = Request {
        packages: packages.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    };
    resolve(u, &request)
        .unwrap()
        .iter()
        .map(|p| format!("{}={}", p.name, p.version))
        .collect()
}

#[test]
fn a_package_may_conflict_with_what_it_provides() {
    let u = universe(&[
        "mta;1;Provides: mail-transport-agent;Conflicts: mail-transport-agent",
        "app;1;Depends: mail-transport-agent",
    ]);
    assert_eq!(names(&u, &["app"]), ["app=1", "mta=1"]);
}

#[test]
fn two_providers_of_a_conflicted_virtual_cannot_coexist() {
    let u = universe(&[
        "mta-a;1;Provides: mta;Conflicts: mta",
        "mta-b;1;Provides: mta;Conflicts: mta",
    ]);
    let request = Request {
        packages: vec!["mta-a".into(), "mta-b".into()],
        ..Default::default()
    };
    let e = resolve(&u, &request).unwrap_err();
    assert!(matches!(e, DepsolveError::Conflict { .. }), "{e}");
}

#[test]
fn arch_qualifiers_and_restrictions() {
    let u = universe(&[
        "app;1;Depends: perl:any, helper [amd64], foreign-only [i386], lib:i386 | lib",
        "perl;5",
        "helper;1",
        "lib;1",
    ]);
    assert_eq!(
        names(&u, &["app"]),
        ["app=1", "helper=1", "lib=1", "perl=5"]
    );
}

#[test]
fn versioned_dependencies_skip_unversioned_provides() {
    let u = universe(&[
        "app;1;Depends: api (>= 2)",
        "plain;1;Provides: api",
        "versioned;1;Provides: api (= 2.1)",
    ]);
    assert_eq!(names(&u, &["app"]), ["app=1", "versioned=1"]);
}

#[test]
fn an_older_version_is_chosen_when_the_newest_cannot_be_installed() {
    let u = universe(&["app;2;Depends: ghost", "app;1"]);
    assert_eq!(names(&u, &["app"]), ["app=1"]);
}

#[test]
fn version_clash_names_both_chains() {
    let u = universe(&[
        "app;1;Depends: aa, bb",
        "aa;1;Depends: lib (>= 2)",
        "bb;1;Depends: lib (<< 2)",
        "lib;1",
        "lib;2",
    ]);
    let request = Request {
        packages: vec!["app".into()],
        ..Default::default()
    };
    let e = resolve(&u, &request).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no version of lib satisfies both app -> aa -> lib (>= 2) and app -> bb -> lib (<< 2)"
    );
}

#[test]
fn other_dead_ends_fall_back_to_the_solver_explanation() {
    // yy's first alternative clashes with xx's pin and its second conflicts with xx: the
    // walk along first choices sees no single culprit, the solver's account names all.
    let u = universe(&[
        "xx;1;Depends: aa (= 1)",
        "yy;1;Depends: aa (= 2) | bb",
        "aa;1",
        "aa;2",
        "bb;1;Conflicts: xx",
    ]);
    let request = Request {
        packages: vec!["xx".into(), "yy".into()],
        ..Default::default()
    };
    let e = resolve(&u, &request).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, DepsolveError::Unsolvable(_)), "{text}");
    for name in ["xx", "yy", "aa", "bb"] {
        assert!(text.contains(name), "{text}");
    }
}

#[test]
fn only_the_base_systems_repos_bring_their_essential_packages() {
    let index = |repo: &str, paragraphs: &str| {
        parse_packages(paragraphs, "http://127.0.0.1", repo, repo)
            .unwrap()
            .0
    };
    let mut packages = index(
        "debian",
        "Package: base-files\nVersion: 1\nArchitecture: amd64\nEssential: yes\n\
         Filename: b1.deb\nSize: 1\nSHA256: 00\n",
    );
    packages.extend(index(
        "vendor",
        "Package: vendor-agent\nVersion: 1\nArchitecture: amd64\nFilename: a.deb\n\
         Size: 1\nSHA256: 00\n\n\
         Package: vendor-hook\nVersion: 1\nArchitecture: amd64\nEssential: yes\n\
         Filename: h.deb\nSize: 1\nSHA256: 00\n\n\
         Package: vendor-tool\nVersion: 1\nArchitecture: amd64\nPriority: required\n\
         Filename: t.deb\nSize: 1\nSHA256: 00\n\n\
         Package: base-files\nVersion: 2\nArchitecture: amd64\nFilename: b2.deb\n\
         Size: 1\nSHA256: 00\n",
    ));
    let u = Universe::new("amd64", packages);
    let chosen = |base_system: BaseSystem| -> Vec<String> {
        let request = Request {
            packages: vec!["vendor-agent".into()],
            base_system,
            ..Default::default()
        };
        resolve(&u, &request)
            .unwrap()
            .iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect()
    };
    let only = |names: &[&str]| BaseSystem::Repos(names.iter().map(|n| n.to_string()).collect());
    // The vendor's newer base-files (not Essential itself) still wins the name, chosen by
    // version as any package is; its Essential and required packages stay out.
    assert_eq!(
        chosen(only(&["debian"])),
        ["base-files=2", "vendor-agent=1"]
    );
    assert_eq!(
        chosen(BaseSystem::AllRepos),
        // Across every repo the newest base-files decides, and it is not Essential.
        ["vendor-agent=1", "vendor-hook=1", "vendor-tool=1"]
    );
    assert_eq!(chosen(only(&[])), ["vendor-agent=1"]);
}

#[test]
fn bad_request_items_are_named() {
    let u = universe(&["app;1"]);
    let request = Request {
        packages: vec!["app=not a version".into()],
        ..Default::default()
    };
    let e = resolve(&u, &request).unwrap_err();
    assert!(
        e.to_string().starts_with("request \"app=not a version\""),
        "{e}"
    );
}
