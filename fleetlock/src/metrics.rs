//! The server's Prometheus metrics, rendered in the text exposition format on the metrics
//! address. Counters are kept here; the gauges (holders and slots per group, etcd up) are
//! read at each scrape and passed to [`Metrics::render`].

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

#[derive(Default)]
pub struct Metrics(Mutex<Counters>);

#[derive(Default)]
struct Counters {
    requests: BTreeMap<String, u64>,
    errors: BTreeMap<(String, String), u64>,
    expired: BTreeMap<String, u64>,
    conflicts: u64,
    config_reload_errors: u64,
}

/// What a scrape reads: per group (slots from config, holders from etcd when it answered).
#[derive(Debug, Default)]
pub struct Gauges {
    pub groups: Vec<(String, u32, Option<usize>)>,
    pub etcd_up: bool,
}

impl Metrics {
    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        match self.0.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub fn request(&self, endpoint: &str) {
        *self.counters().requests.entry(endpoint.into()).or_default() += 1;
    }

    pub fn error(&self, endpoint: &str, kind: &str) {
        let key = (endpoint.to_string(), kind.to_string());
        *self.counters().errors.entry(key).or_default() += 1;
    }

    pub fn expired(&self, group: &str, count: usize) {
        *self.counters().expired.entry(group.into()).or_default() += count as u64;
    }

    pub fn conflicts(&self, count: u32) {
        self.counters().conflicts += u64::from(count);
    }

    pub fn config_reload_error(&self) {
        self.counters().config_reload_errors += 1;
    }

    pub fn render(&self, gauges: &Gauges) -> String {
        let c = self.counters();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let by = |label: &str, v: &str| format!("{{{label}=\"{}\"}}", escape(v));
        family(
            "keel_fleetlock_requests_total",
            "counter",
            "FleetLock requests received, by endpoint.",
            c.requests
                .iter()
                .map(|(e, n)| (by("endpoint", e), n.to_string()))
                .collect(),
        );
        family(
            "keel_fleetlock_errors_total",
            "counter",
            "FleetLock requests answered with an error, by endpoint and error kind.",
            c.errors
                .iter()
                .map(|((e, k), n)| {
                    let labels = format!("{{endpoint=\"{}\",kind=\"{}\"}}", escape(e), escape(k));
                    (labels, n.to_string())
                })
                .collect(),
        );
        family(
            "keel_fleetlock_slots",
            "gauge",
            "Reboot slots configured per group.",
            gauges
                .groups
                .iter()
                .map(|(g, s, _)| (by("group", g), s.to_string()))
                .collect(),
        );
        family(
            "keel_fleetlock_holders",
            "gauge",
            "Slots held per group, as etcd holds them at the scrape.",
            gauges
                .groups
                .iter()
                .filter_map(|(g, _, h)| h.map(|h| (by("group", g), h.to_string())))
                .collect(),
        );
        family(
            "keel_fleetlock_expired_holders_total",
            "counter",
            "Holders dropped because they held their slot longer than the group allows.",
            c.expired
                .iter()
                .map(|(g, n)| (by("group", g), n.to_string()))
                .collect(),
        );
        family(
            "keel_fleetlock_store_conflicts_total",
            "counter",
            "Compare-and-swap writes to etcd that another writer won first (then retried).",
            vec![(String::new(), c.conflicts.to_string())],
        );
        family(
            "keel_fleetlock_config_reload_errors_total",
            "counter",
            "Changed config files that did not parse (the last good config stays).",
            vec![(String::new(), c.config_reload_errors.to_string())],
        );
        family(
            "keel_fleetlock_etcd_up",
            "gauge",
            "Whether etcd answered at the scrape.",
            vec![(String::new(), u8::from(gauges.etcd_up).to_string())],
        );
        out
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_render_in_the_text_format() {
        let m = Metrics::default();
        m.request("pre-reboot");
        m.request("pre-reboot");
        m.error("pre-reboot", "unknown_group");
        m.expired("default", 2);
        m.conflicts(3);
        let text = m.render(&Gauges {
            groups: vec![("default".into(), 2, Some(1)), ("db".into(), 1, None)],
            etcd_up: true,
        });
        for line in [
            "# TYPE keel_fleetlock_requests_total counter",
            "keel_fleetlock_requests_total{endpoint=\"pre-reboot\"} 2",
            "keel_fleetlock_errors_total{endpoint=\"pre-reboot\",kind=\"unknown_group\"} 1",
            "keel_fleetlock_slots{group=\"default\"} 2",
            "keel_fleetlock_slots{group=\"db\"} 1",
            "keel_fleetlock_holders{group=\"default\"} 1",
            "keel_fleetlock_expired_holders_total{group=\"default\"} 2",
            "keel_fleetlock_store_conflicts_total 3",
            "keel_fleetlock_etcd_up 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(
            !text.contains("holders{group=\"db\"}"),
            "unknown holders are left out"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }
}
