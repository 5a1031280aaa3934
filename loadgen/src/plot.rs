//! `loadgen plot`: latency by percentile from interval logs, as an SVG chart in the style
//! of HdrHistogram's plots (the x axis stretches the tail: 90%, 99%, 99.9%, ...). Several
//! logs give one line each, which is how servers are compared.

use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::logs::Merged;

/// The deepest percentile drawn: 99.9999%.
const MAX_NINES: f64 = 6.0;
/// Latencies below this (1 µs, in ms) are drawn at it, as a log axis cannot show zero.
const MIN_MS: f64 = 0.001;

/// One line: its label and (nines, milliseconds) points.
#[derive(Debug)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// `-log10(1 - q)`: 1 for 90%, 2 for 99%, ...
fn nines(quantile: f64) -> f64 {
    if quantile >= 1.0 {
        MAX_NINES
    } else {
        (-(1.0 - quantile).log10()).clamp(0.0, MAX_NINES)
    }
}

/// The percentile at `nines`, as an axis label.
fn percentile_label(nines: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-nines));
    let decimals = (nines.ceil() as usize).saturating_sub(2);
    format!("{percent:.decimals$}%")
}

/// The latency-by-percentile curve of one histogram; the maximum is drawn at the deepest
/// percentile the sample size supports.
pub fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let deepest = (h.len().max(1) as f64).log10().clamp(1.0, MAX_NINES);
    let mut points: Vec<(f64, f64)> = h
        .iter_quantiles(4)
        .map(|v| {
            (
                nines(v.quantile_iterated_to()).min(deepest),
                v.value_iterated_to() as f64 / 1e6,
            )
        })
        .filter(|&(x, _)| x < deepest)
        .collect();
    points.push((deepest, h.max() as f64 / 1e6));
    for point in &mut points {
        point.1 = point.1.max(MIN_MS);
    }
    points
}

/// The lines for `tags` in `files`: one per file and tag.
pub fn series(files: &[PathBuf], tags: &[String]) -> Result<Vec<Series>, String> {
    let mut all = Vec::new();
    for file in files {
        let merged = Merged::from_files(std::slice::from_ref(file))?;
        let stem = file.file_stem().map_or_else(
            || file.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        for tag in tags {
            let h = merged
                .histogram(tag)
                .ok_or_else(|| format!("{}: no intervals tagged {tag:?}", file.display()))?;
            let label = match (files.len(), tags.len()) {
                (1, _) => tag.clone(),
                (_, 1) => stem.clone(),
                _ => format!("{stem}: {tag}"),
            };
            all.push(Series {
                label,
                points: curve(h),
            });
        }
    }
    Ok(all)
}

/// Draws `series` as an SVG file.
pub fn draw(series: &[Series], output: &Path) -> Result<(), String> {
    let draw_error =
        |e: Box<dyn std::error::Error>| format!("cannot draw {}: {e}", output.display());
    let points = || series.iter().flat_map(|s| s.points.iter().copied());
    let x_max = points().map(|(x, _)| x).fold(1.0, f64::max).ceil();
    let y_max = points().map(|(_, y)| y).fold(MIN_MS, f64::max) * 1.5;
    let y_min = points()
        .map(|(_, y)| y)
        .fold(f64::INFINITY, f64::min)
        .min(y_max / 10.0)
        / 1.5;
    let root = SVGBackend::new(output, (1000, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_error(Box::new(e)))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Latency by percentile", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, (y_min..y_max).log_scale())
        .map_err(|e| draw_error(Box::new(e)))?;
    chart
        .configure_mesh()
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .draw()
        .map_err(|e| draw_error(Box::new(e)))?;
    for (index, s) in series.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| draw_error(Box::new(e)))?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| draw_error(Box::new(e)))?;
    root.present().map_err(|e| draw_error(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histo::new_histogram;

    #[test]
    fn percentile_axis() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(5.0), "99.999%");
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
        assert_eq!(nines(1.0), MAX_NINES);
    }

    #[test]
    fn curves_rise_to_the_maximum_and_draw() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 1000).unwrap();
        }
        let points = curve(&h);
        assert!(
            points
                .windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1),
            "{points:?}"
        );
        let last = points.last().copied().unwrap_or_default();
        assert_eq!(last.0, 4.0);
        assert!((last.1 - 10.0).abs() < 0.01, "{last:?}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.svg");
        draw(
            &[Series {
                label: "edge".into(),
                points,
            }],
            &path,
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.contains("edge") && svg.contains("99.9%"));
    }
}
