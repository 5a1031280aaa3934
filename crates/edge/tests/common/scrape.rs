//! Reads metrics the way Prometheus does: encodes a registry as exposition text and finds
//! samples by name and labels. The edge's unit tests include this file too, so both kinds
//! of test check the numbers a scrape shows rather than private fields.

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

/// One encoding of a registry.
#[derive(Debug, Clone)]
pub struct Scrape {
    text: String,
}

impl Scrape {
    pub fn of(registry: &Registry) -> Self {
        let mut text = String::new();
        encode(&mut text, registry).expect("the registry encodes");
        Self { text }
    }

    /// The value of the one sample named `name` whose labels are exactly `labels` (in any
    /// order), if there is one.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        let sample = self.samples().find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|wanted| s.labels.contains(wanted))
        })?;
        Some(sample.count())
    }

    /// The sum of the samples named `name` (as exposed: counters end in `_total`) whose
    /// labels include `labels`. Panics when no sample has that name, so a misspelt name
    /// cannot pass as zero, and when a matching sample is not a whole count.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let samples: Vec<Sample<'_>> = self.samples().filter(|s| s.name == name).collect();
        assert!(!samples.is_empty(), "no sample {name} in\n{}", self.text);
        samples
            .iter()
            .filter(|s| labels.iter().all(|wanted| s.labels.contains(wanted)))
            .map(Sample::count)
            .sum()
    }

    /// The exposition text, for failure messages.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn samples(&self) -> impl Iterator<Item = Sample<'_>> {
        self.text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| Sample::parse(line).unwrap_or_else(|| panic!("bad sample line {line:?}")))
    }
}

/// A sample line: `name{label="value",...} value`. The edge's label values never hold
/// commas, braces or escapes.
#[derive(Debug)]
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(&'a str, &'a str)>,
    value: &'a str,
}

impl<'a> Sample<'a> {
    /// The value, which must be a whole count.
    fn count(&self) -> u64 {
        let value: f64 = self.value.parse().unwrap_or_else(|_| {
            panic!("{} has the value {:?}, not a number", self.name, self.value)
        });
        assert!(
            value >= 0.0 && value.fract() == 0.0,
            "{} has the value {value}, not a count",
            self.name
        );
        value as u64
    }

    fn parse(line: &'a str) -> Option<Self> {
        let name_end = line.find(['{', ' '])?;
        let name = &line[..name_end];
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let close = inner.find('}')?;
            for pair in inner[..close].split(',').filter(|p| !p.is_empty()) {
                let (label, value) = pair.split_once('=')?;
                labels.push((label, value.strip_prefix('"')?.strip_suffix('"')?));
            }
            rest = &inner[close + 1..];
        }
        let value = rest.trim_start().split(' ').next()?;
        Some(Self {
            name,
            labels,
            value,
        })
    }
}
