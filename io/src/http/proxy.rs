//! Which proxy a URL goes through, from `http_proxy`, `https_proxy`, `all_proxy` and
//! `no_proxy` (lower-case first, then upper-case), the way curl and apt read them.
//!
//! ureq 2.12's own `try_proxy_from_env` takes the first of `ALL_PROXY`, `HTTPS_PROXY`,
//! `HTTP_PROXY` for every URL whatever its scheme and ignores `no_proxy`, so the choice is
//! made here and the client keeps one ureq agent per proxy.
//!
//! `no_proxy` is a comma-separated list: `*` (no proxy at all), a host or IP address (that
//! host), a domain with or without a leading `.` or `*.` (it and its subdomains), each
//! optionally with `:port` (only that port). CIDR ranges are not understood.

/// The proxies of an environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proxies {
    /// For `http://` URLs.
    pub http: Option<String>,
    /// For `https://` URLs.
    pub https: Option<String>,
    /// Hosts reached directly (lower-case entries of `no_proxy`).
    pub no_proxy: Vec<String>,
}

impl Proxies {
    /// No proxy for anything.
    pub fn none() -> Self {
        Self::default()
    }

    /// The proxies this process's environment names.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The proxies an environment (`lookup` answers a variable's value) names; empty values
    /// count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let first = |names: &[&str]| {
            names
                .iter()
                .filter_map(|name| lookup(name))
                .map(|value| value.trim().to_string())
                .find(|value| !value.is_empty())
        };
        let no_proxy = first(&["no_proxy", "NO_PROXY"]).unwrap_or_default();
        Proxies {
            http: first(&["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]),
            https: first(&["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]),
            no_proxy: no_proxy
                .split(',')
                .map(|entry| entry.trim().to_ascii_lowercase())
                .filter(|entry| !entry.is_empty())
                .collect(),
        }
    }

    /// The proxy for `url`, or `None` to connect directly.
    pub fn for_url(&self, url: &str) -> Option<&str> {
        let (scheme, host, port) = split_url(url)?;
        let proxy = match scheme.as_str() {
            "http" => self.http.as_deref(),
            "https" => self.https.as_deref(),
            _ => None,
        }?;
        if self
            .no_proxy
            .iter()
            .any(|entry| bypasses(entry, &host, port))
        {
            return None;
        }
        Some(proxy)
    }
}

/// Whether the `no_proxy` entry `entry` covers `host:port`.
fn bypasses(entry: &str, host: &str, port: u16) -> bool {
    if entry == "*" {
        return true;
    }
    let (name, wanted_port) = match entry.rsplit_once(':') {
        // `::1` or `[::1]` is an address, not a port.
        Some((name, p)) if !name.contains(':') || name.ends_with(']') => match p.parse() {
            Ok(p) => (name, Some(p)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    };
    if wanted_port.is_some_and(|p: u16| p != port) {
        return false;
    }
    let name = name.trim_start_matches("*.").trim_start_matches('.');
    let name = name.trim_start_matches('[').trim_end_matches(']');
    !name.is_empty() && (host == name || host.ends_with(&format!(".{name}")))
}

/// `(scheme, host, port)` of a URL, lower-cased; the port defaults to the scheme's.
fn split_url(url: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let default = if scheme == "https" { 443 } else { 80 };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default,
    };
    Some((scheme, host.to_ascii_lowercase(), port))
}

/// `proxy` with any `user:password@` replaced, for messages.
pub(crate) fn redact(proxy: &str) -> String {
    let (scheme, rest) = proxy.split_once("://").unwrap_or(("", proxy));
    let rest = rest
        .rsplit_once('@')
        .map_or(rest.to_string(), |(_, host)| format!("***@{host}"));
    if scheme.is_empty() {
        rest
    } else {
        format!("{scheme}://{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> Proxies {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Proxies::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn each_scheme_takes_its_own_variable_lower_case_first() {
        let p = env(&[
            ("http_proxy", "http://low:1"),
            ("HTTP_PROXY", "http://up:1"),
            ("HTTPS_PROXY", "http://secure:2"),
        ]);
        assert_eq!(p.for_url("http://a.example/x"), Some("http://low:1"));
        assert_eq!(p.for_url("https://a.example/x"), Some("http://secure:2"));
        assert_eq!(p.for_url("file:///etc/hosts"), None);
        let upper = env(&[("HTTP_PROXY", "http://up:1")]);
        assert_eq!(upper.for_url("http://a.example/"), Some("http://up:1"));
        assert_eq!(upper.for_url("https://a.example/"), None);
    }

    #[test]
    fn all_proxy_is_the_fallback_and_empty_values_are_unset() {
        let p = env(&[("http_proxy", " "), ("ALL_PROXY", "http://all:3")]);
        assert_eq!(p.for_url("http://a.example/"), Some("http://all:3"));
        assert_eq!(p.for_url("https://a.example/"), Some("http://all:3"));
    }

    #[test]
    fn no_proxy_entries_match_hosts_domains_and_ports() {
        let p = env(&[
            ("http_proxy", "http://proxy:8080"),
            ("https_proxy", "http://proxy:8080"),
            (
                "NO_PROXY",
                "localhost, .internal.test,*.corp.test,127.0.0.2,mirror.test:8000,[::1]",
            ),
        ]);
        let direct = [
            "http://localhost/x",
            "http://LOCALHOST:99/x",
            "http://a.internal.test/x",
            "http://internal.test/x",
            "https://deep.a.corp.test/x",
            "http://127.0.0.2:3142/x",
            "http://mirror.test:8000/x",
            "http://[::1]:80/x",
            "http://user:pw@localhost/x",
        ];
        for url in direct {
            assert_eq!(p.for_url(url), None, "{url}");
        }
        let proxied = [
            "http://notlocalhost/x",
            "http://internal.test.evil/x",
            "http://127.0.0.20/x",
            "http://mirror.test/x",
            "http://mirror.test:8001/x",
        ];
        for url in proxied {
            assert_eq!(p.for_url(url), Some("http://proxy:8080"), "{url}");
        }
    }

    #[test]
    fn a_star_bypasses_every_proxy() {
        let p = env(&[("http_proxy", "http://proxy:1"), ("no_proxy", "*")]);
        assert_eq!(p.for_url("http://anything/"), None);
    }

    #[test]
    fn credentials_are_hidden_in_messages() {
        assert_eq!(redact("http://u:secret@proxy:1"), "http://***@proxy:1");
        assert_eq!(redact("proxy:1"), "proxy:1");
    }
}
