//! HdrHistogram interval logs (format 1.3, V2 deflate-compressed histograms, one tagged
//! line per metric per interval), readable by HdrHistogram's own tools, and `loadgen
//! merge`, which combines the logs of several loadgen processes into one report.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriter, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use serde::Serialize;

use crate::histo::{Metric, new_histogram};
use crate::report::{self, Row};

/// The column legend HdrHistogram's log writers put after the headers.
pub const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"";
/// Values are nanoseconds; the (human-only) Interval_Max column is in milliseconds.
const MAX_VALUE_DIVISOR: f64 = 1e6;
/// Timestamps this much below StartTime are offsets from it, not absolute times (the rule
/// HdrHistogram's Java reader uses).
const YEAR_SECONDS: f64 = 365.25 * 24.0 * 3600.0;

pub type LogWriter<'a, 'b, W> = IntervalLogWriter<'a, 'b, W, V2DeflateSerializer>;

/// Writes the headers (StartTime and BaseTime both `start`, so interval time stamps are
/// offsets from it) and returns the writer for interval lines.
pub fn begin<'a, 'b, W: Write>(
    out: &'a mut W,
    serializer: &'b mut V2DeflateSerializer,
    start: SystemTime,
    comment: &str,
) -> io::Result<LogWriter<'a, 'b, W>> {
    let seconds = start
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    writeln!(out, "#[{comment}]")?;
    writeln!(out, "#[Histogram log format version 1.3]")?;
    writeln!(out, "#[StartTime: {seconds:.3} (seconds since epoch)]")?;
    writeln!(out, "#[BaseTime: {seconds:.3} (seconds since epoch)]")?;
    writeln!(out, "{LEGEND}")?;
    IntervalLogWriterBuilder::new()
        .with_max_value_divisor(MAX_VALUE_DIVISOR)
        .begin_log_with(out, serializer)
}

/// Writes one interval line for `tag`, starting `offset` after the log's BaseTime.
pub fn write<W: Write>(
    writer: &mut LogWriter<'_, '_, W>,
    tag: &str,
    offset: Duration,
    length: Duration,
    histogram: &Histogram<u64>,
) -> io::Result<()> {
    let tag = Tag::new(tag)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("bad tag {tag:?}")))?;
    writer
        .write_histogram(histogram, offset, length, Some(tag))
        .map_err(|e| io::Error::other(e.to_string()))
}

/// One interval read back from a log.
#[derive(Debug)]
pub struct Interval {
    /// Start, in seconds since the Unix epoch.
    pub start: f64,
    pub length: f64,
    pub tag: String,
    pub histogram: Histogram<u64>,
}

/// Reads every interval of a log, with absolute start times.
pub fn read(text: &[u8]) -> Result<Vec<Interval>, String> {
    let mut start_time = None;
    let mut base_time = None;
    let mut deserializer = Deserializer::new();
    let mut intervals = Vec::new();
    for entry in IntervalLogIterator::new(text) {
        match entry.map_err(|e| format!("not an interval log ({e:?})"))? {
            LogEntry::StartTime(t) => start_time = Some(t.as_secs_f64()),
            LogEntry::BaseTime(t) => base_time = Some(t.as_secs_f64()),
            LogEntry::Interval(interval) => {
                let offset = interval.start_timestamp().as_secs_f64();
                let start = match (base_time, start_time) {
                    (Some(base), _) => base + offset,
                    (None, Some(start)) if offset < start - YEAR_SECONDS => start + offset,
                    _ => offset,
                };
                let bytes = base64_decode(interval.encoded_histogram())?;
                let histogram: Histogram<u64> = deserializer
                    .deserialize(&mut bytes.as_slice())
                    .map_err(|e| format!("bad histogram at {offset:.3}s: {e:?}"))?;
                intervals.push(Interval {
                    start,
                    length: interval.duration().as_secs_f64(),
                    tag: interval
                        .tag()
                        .map_or_else(String::new, |t| t.as_str().to_owned()),
                    histogram,
                });
            }
        }
    }
    Ok(intervals)
}

fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("bad base64 histogram: {e}"))
}

/// The combined view of several logs.
#[derive(Debug, Serialize)]
pub struct Merged {
    pub files: Vec<String>,
    pub intervals: usize,
    /// From the earliest interval start to the latest interval end, in seconds.
    pub span_seconds: f64,
    /// Percentiles in µs per tag, over all intervals of all files.
    pub latency_us: BTreeMap<String, Row>,
    #[serde(skip)]
    totals: Vec<(String, Histogram<u64>)>,
    #[serde(skip)]
    buckets: BTreeMap<(u64, String), Histogram<u64>>,
    #[serde(skip)]
    origin: f64,
    #[serde(skip)]
    length: f64,
}

impl Merged {
    /// Merges the logs at `paths`. Intervals of different processes that start within
    /// half an interval of each other fall into the same combined interval.
    pub fn from_files(paths: &[impl AsRef<Path>]) -> Result<Self, String> {
        let mut all = Vec::new();
        let mut files = Vec::new();
        for path in paths {
            let path = path.as_ref();
            let text =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let intervals = read(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            if intervals.is_empty() {
                return Err(format!("{}: no intervals", path.display()));
            }
            files.push(path.display().to_string());
            all.extend(intervals);
        }
        Ok(Self::from_intervals(files, all))
    }

    fn from_intervals(files: Vec<String>, intervals: Vec<Interval>) -> Self {
        let origin = intervals
            .iter()
            .map(|i| i.start)
            .fold(f64::INFINITY, f64::min);
        let end = intervals
            .iter()
            .map(|i| i.start + i.length)
            .fold(f64::NEG_INFINITY, f64::max);
        let length = intervals
            .iter()
            .map(|i| i.length)
            .find(|&l| l > 0.0)
            .unwrap_or(1.0);
        let mut totals: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
        let mut buckets: BTreeMap<(u64, String), Histogram<u64>> = BTreeMap::new();
        for interval in &intervals {
            let index = ((interval.start - origin) / length).round().max(0.0) as u64;
            for target in [
                totals
                    .entry(interval.tag.clone())
                    .or_insert_with(new_histogram),
                buckets
                    .entry((index, interval.tag.clone()))
                    .or_insert_with(new_histogram),
            ] {
                // Both sides auto-resize, so adding cannot fail.
                let _ = target.add(&interval.histogram);
            }
        }
        // Known metrics in report order, then any other tags.
        let mut totals: Vec<(String, Histogram<u64>)> = totals.into_iter().collect();
        totals.sort_by_key(|(tag, _)| {
            (
                Metric::from_name(tag).map_or(usize::MAX, |m| m as usize),
                tag.clone(),
            )
        });
        Merged {
            files,
            intervals: intervals.len(),
            span_seconds: if end > origin { end - origin } else { 0.0 },
            latency_us: totals
                .iter()
                .map(|(tag, h)| (tag.clone(), Row::of(h)))
                .collect(),
            totals,
            buckets,
            origin,
            length,
        }
    }

    /// Everything merged under `tag`.
    pub fn histogram(&self, tag: &str) -> Option<&Histogram<u64>> {
        self.totals.iter().find(|(t, _)| t == tag).map(|(_, h)| h)
    }

    /// The percentile table over everything merged.
    pub fn table(&self) -> String {
        let rows: Vec<(&str, Row)> = self
            .totals
            .iter()
            .map(|(tag, h)| (tag.as_str(), Row::of(h)))
            .collect();
        report::table(&rows)
    }

    /// Writes the combined intervals as one log.
    pub fn write_log<W: Write>(&self, out: &mut W) -> io::Result<()> {
        let mut serializer = V2DeflateSerializer::new();
        let start = UNIX_EPOCH + Duration::from_secs_f64(self.origin.max(0.0));
        let mut writer = begin(
            out,
            &mut serializer,
            start,
            &format!("Merged by loadgen from {} logs", self.files.len()),
        )?;
        let length = Duration::from_secs_f64(self.length);
        for ((index, tag), histogram) in &self.buckets {
            write(
                &mut writer,
                tag,
                length * (*index as u32),
                length,
                histogram,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values: &[u64]) -> Histogram<u64> {
        let mut h = new_histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        h
    }

    fn log(start: SystemTime, intervals: &[(&str, u64, &[u64])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut serializer = V2DeflateSerializer::new();
        let mut writer =
            begin(&mut out, &mut serializer, start, "Logged with loadgen test").unwrap();
        for (tag, second, values) in intervals {
            write(
                &mut writer,
                tag,
                Duration::from_secs(*second),
                Duration::from_secs(1),
                &histogram(values),
            )
            .unwrap();
        }
        drop(writer);
        out
    }

    #[test]
    fn log_has_the_standard_headers_and_round_trips() {
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let text = log(
            start,
            &[
                ("ping", 0, &[1000, 2000]),
                ("sic1-address", 0, &[5000]),
                ("ping", 1, &[3000]),
            ],
        );
        let lines: Vec<&str> = std::str::from_utf8(&text).unwrap().lines().collect();
        assert_eq!(lines[1], "#[Histogram log format version 1.3]");
        assert_eq!(
            lines[2],
            "#[StartTime: 1700000000.000 (seconds since epoch)]"
        );
        assert_eq!(lines[4], LEGEND);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("Tag=ping,1.000,1.000,0.003,")),
            "{lines:?}"
        );

        let intervals = read(&text).unwrap();
        assert_eq!(intervals.len(), 3);
        assert_eq!(intervals[0].tag, "ping");
        assert_eq!(intervals[0].start, 1_700_000_000.0);
        assert_eq!(intervals[0].histogram.len(), 2);
        assert_eq!(intervals[1].tag, "sic1-address");
        assert!(
            intervals[1]
                .histogram
                .equivalent(intervals[1].histogram.max(), 5000)
        );
        assert_eq!(intervals[2].start, 1_700_000_001.0);
    }

    #[test]
    fn merge_combines_processes_by_tag_and_time() {
        let a = log(
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            &[("ping", 0, &[1000]), ("ping", 1, &[2000])],
        );
        // A second process started 0.2 s later: its intervals line up with the first's.
        let b = log(
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_200),
            &[("ping", 0, &[3000]), ("login", 0, &[9000])],
        );
        let mut intervals = read(&a).unwrap();
        intervals.extend(read(&b).unwrap());
        let merged = Merged::from_intervals(vec!["a".into(), "b".into()], intervals);
        assert_eq!(merged.intervals, 4);
        assert_eq!(merged.latency_us["ping"].count, 3);
        assert_eq!(merged.latency_us["login"].count, 1);
        assert!(merged.table().find("login").unwrap() < merged.table().find("ping").unwrap());

        let mut out = Vec::new();
        merged.write_log(&mut out).unwrap();
        let combined = read(&out).unwrap();
        // ping at 0 s (both processes), ping at 1 s, login at 0 s.
        assert_eq!(combined.len(), 3);
        let first_ping = combined
            .iter()
            .find(|i| i.tag == "ping" && i.start == 1_700_000_000.0)
            .unwrap();
        assert_eq!(first_ping.histogram.len(), 2);
    }

    #[test]
    fn garbage_is_not_a_log() {
        assert!(read(b"hello\nworld\n").is_err());
    }
}
