//! The Prometheus text exposition format (0.0.4), written from tables.
//!
//! Each daemon describes its metrics as rows of [`Metric`] (name, type, help, value) or
//! [`Family`] (one labelled counter or gauge with a value per label), and this module
//! writes them: `# HELP`, `# TYPE`, then the samples. The exported names, HELP and TYPE
//! lines are what dashboards and alert rules read, so they live in those tables alone.

use std::fmt::Write as _;

/// The Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (until the process restarts).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One unlabelled metric: a row of a daemon's metrics table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric<'a> {
    /// The exported name, e.g. `airlock_frames_received_total`.
    pub name: &'a str,
    /// Counter or gauge.
    pub kind: Kind,
    /// The `# HELP` text: what is counted, for a person reading `/metrics`; `None`
    /// writes only the `# TYPE` line.
    pub help: Option<&'a str>,
    /// The value now.
    pub value: u64,
}

impl<'a> Metric<'a> {
    /// A counter row.
    pub const fn counter(name: &'a str, help: &'a str, value: u64) -> Self {
        Metric {
            name,
            kind: Kind::Counter,
            help: Some(help),
            value,
        }
    }

    /// A gauge row.
    pub const fn gauge(name: &'a str, help: &'a str, value: u64) -> Self {
        Metric {
            name,
            kind: Kind::Gauge,
            help: Some(help),
            value,
        }
    }
}

/// One metric with a label: one sample per label value, in the order given.
#[derive(Debug, Clone, Copy)]
pub struct Family<'a> {
    /// The exported name.
    pub name: &'a str,
    /// Counter or gauge.
    pub kind: Kind,
    /// The `# HELP` text; `None` writes only the `# TYPE` line.
    pub help: Option<&'a str>,
    /// The label's name, e.g. `reason`.
    pub label: &'a str,
}

/// A text exposition being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty exposition with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Exposition {
            out: String::with_capacity(capacity),
        }
    }

    /// Writes every row of `table` in order.
    pub fn metrics(&mut self, table: &[Metric<'_>]) -> &mut Self {
        for m in table {
            self.head(m.name, m.kind, m.help);
            let _ = writeln!(self.out, "{} {}", m.name, m.value);
        }
        self
    }

    /// Writes `family` with one sample per `(label value, value)`. Label values are the
    /// daemon's own words; anything but ASCII letters, digits and `_` is dropped so that
    /// no value can break the line.
    pub fn family<'v>(
        &mut self,
        family: &Family<'_>,
        samples: impl IntoIterator<Item = (&'v str, u64)>,
    ) -> &mut Self {
        self.head(family.name, family.kind, family.help);
        for (value, n) in samples {
            let value: String = value
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let _ = writeln!(
                self.out,
                "{}{{{}=\"{value}\"}} {n}",
                family.name, family.label
            );
        }
        self
    }

    /// The text, ready to serve as `text/plain; version=0.0.4`.
    pub fn finish(self) -> String {
        self.out
    }

    fn head(&mut self, name: &str, kind: Kind, help: Option<&str>) {
        if let Some(help) = help {
            let _ = writeln!(self.out, "# HELP {name} {help}");
        }
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.word());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_written_with_help_type_and_value_in_order() {
        let mut e = Exposition::default();
        e.metrics(&[
            Metric::counter("a_total", "Things done.", 3),
            Metric::gauge("b", "Things held.", 7),
            Metric {
                help: None,
                ..Metric::gauge("c", "", 1)
            },
        ]);
        assert_eq!(
            e.finish(),
            "# HELP a_total Things done.\n# TYPE a_total counter\na_total 3\n\
             # HELP b Things held.\n# TYPE b gauge\nb 7\n# TYPE c gauge\nc 1\n"
        );
    }

    #[test]
    fn a_family_has_one_head_and_a_sample_per_label() {
        let mut e = Exposition::default();
        let f = Family {
            name: "x_total",
            kind: Kind::Counter,
            help: Some("Refused, by reason."),
            label: "reason",
        };
        e.family(&f, [("stale", 2), ("bad\"}\n", 1)]);
        let bare = Family { help: None, ..f };
        e.family(&bare, [("ok", 0)]);
        assert_eq!(
            e.finish(),
            "# HELP x_total Refused, by reason.\n# TYPE x_total counter\n\
             x_total{reason=\"stale\"} 2\nx_total{reason=\"bad\"} 1\n\
             # TYPE x_total counter\nx_total{reason=\"ok\"} 0\n"
        );
    }
}
