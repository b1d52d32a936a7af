//! The self-contained HTML report: tables of figures and inline SVG plots
//! (latency percentile spectrum, connections and throughput over time)
//! drawn with `plotters`' SVG backend. No scripts, no external files.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use plotters::prelude::*;

use super::{RunReport, fmt_num};

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn label(r: &RunReport) -> String {
    match r
        .params
        .get("connections")
        .and_then(serde_json::Value::as_u64)
    {
        Some(n) => format!("{} n={n}", r.system),
        None => r.system.clone(),
    }
}

/// (1/(1-q), µs) points of a histogram's percentile spectrum.
fn spectrum(r: &RunReport, name: &str) -> Vec<(f64, f64)> {
    let Some(h) = r.histograms.get(name).and_then(|h| h.hdr.to_latency().ok()) else {
        return Vec::new();
    };
    h.inner()
        .iter_quantiles(5)
        .filter_map(|v| {
            let q = v.quantile_iterated_to();
            (q < 0.999_999).then(|| (1.0 / (1.0 - q), v.value_iterated_to().max(1) as f64))
        })
        .collect()
}

fn plot_spectrum(runs: &[&RunReport], name: &str) -> Result<String, String> {
    let series: Vec<(String, Vec<(f64, f64)>)> = runs
        .iter()
        .map(|r| (label(r), spectrum(r, name)))
        .filter(|(_, p)| !p.is_empty())
        .collect();
    if series.is_empty() {
        return Ok(String::new());
    }
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .fold(10.0, f64::max)
        * 1.5;
    let values = || series.iter().flat_map(|(_, p)| p.iter().copied());
    let ymin = (values().map(|x| x.1).fold(f64::MAX, f64::min) / 2.0).max(1.0);
    let xmax = values().map(|x| x.0).fold(10.0, f64::max) * 2.0;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{name} latency by percentile (µs)"),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((1.0f64..xmax).log_scale(), (ymin..ymax).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("µs")
            .x_label_formatter(&|x| format!("{:.3}%", 100.0 * (1.0 - 1.0 / x)))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

fn plot_timeline(
    runs: &[&RunReport],
    title: &str,
    value: impl Fn(&RunReport, usize) -> f64,
) -> Result<String, String> {
    let series: Vec<(String, Vec<(f64, f64)>)> = runs
        .iter()
        .filter(|r| r.timeline.len() >= 2)
        .map(|r| {
            (
                label(r),
                (0..r.timeline.len())
                    .map(|i| (r.timeline[i].t_s, value(r, i)))
                    .collect(),
            )
        })
        .collect();
    if series.is_empty() {
        return Ok(String::new());
    }
    let xmax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.0))
        .fold(1.0, f64::max);
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .fold(1.0, f64::max)
        * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..xmax, 0.0..ymax)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Renders the report for `runs` with a free-form `intro` (already HTML-safe text).
pub fn render(title: &str, intro: &str, runs: &[RunReport]) -> Result<String, String> {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:sans-serif;margin:24px;max-width:1100px}}table{{border-collapse:collapse;margin:8px 0 20px}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f0f0f0}}td:first-child{{text-align:left}}\
         .bad{{color:#b00;font-weight:bold}}.ok{{color:#070}}</style></head><body><h1>{t}</h1><p>{intro}</p>",
        t = esc(title)
    );
    // Runs and validity.
    h.push_str("<h2>Runs</h2><table><tr><th>scenario</th><th>system</th><th>valid</th><th>why not</th></tr>");
    for r in runs {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            esc(&r.scenario),
            esc(&r.system),
            if r.valid { "ok" } else { "bad" },
            if r.valid { "VALID" } else { "INVALID" },
            esc(&r.invalid_reasons.join("; "))
        );
    }
    h.push_str("</table>");
    // Metrics table per scenario.
    let scenarios: BTreeSet<&str> = runs.iter().map(|r| r.scenario.as_str()).collect();
    for sc in &scenarios {
        let rs: Vec<&RunReport> = runs.iter().filter(|r| r.scenario == *sc).collect();
        let names: BTreeSet<&String> = rs.iter().flat_map(|r| r.metrics.keys()).collect();
        let _ = write!(h, "<h2>{}</h2><table><tr><th>metric</th>", esc(sc));
        for r in &rs {
            let _ = write!(h, "<th>{}</th>", esc(&label(r)));
        }
        h.push_str("</tr>");
        for n in names {
            let _ = write!(h, "<tr><td>{}</td>", esc(n));
            for r in &rs {
                let _ = write!(
                    h,
                    "<td>{}</td>",
                    r.metrics.get(n).map_or(String::from("–"), |v| fmt_num(*v))
                );
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
        let hists: BTreeSet<&String> = rs.iter().flat_map(|r| r.histograms.keys()).collect();
        for name in hists {
            h.push_str(&plot_spectrum(&rs, name)?);
        }
        h.push_str(&plot_timeline(&rs, "connections established", |r, i| {
            r.timeline[i].established as f64
        })?);
        if rs
            .iter()
            .any(|r| r.timeline.iter().any(|p| p.deliveries > 0))
        {
            h.push_str(&plot_timeline(&rs, "deliveries per second", |r, i| {
                if i == 0 {
                    return 0.0;
                }
                let (a, b) = (&r.timeline[i - 1], &r.timeline[i]);
                b.deliveries.saturating_sub(a.deliveries) as f64 / (b.t_s - a.t_s).max(1e-3)
            })?);
        }
    }
    h.push_str("</body></html>\n");
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histo::Latency;
    use crate::report::TimelinePoint;

    #[test]
    fn renders_plots_inline() {
        let mut r = RunReport::new("fanout", "gateway", serde_json::json!({}));
        let mut h = Latency::new();
        for v in 1..5000 {
            h.record_us(v);
        }
        r.histogram("delivery", &h);
        r.metric("deliveries_per_s", 1e6);
        r.timeline = (0..5)
            .map(|i| TimelinePoint {
                t_s: f64::from(i),
                established: 10 * u64::from(i as u8),
                deliveries: 100 * u64::from(i as u8),
                ..TimelinePoint::default()
            })
            .collect();
        let html = render("t <x>", "intro", &[r]).unwrap();
        assert!(html.contains("<svg"));
        assert!(html.matches("<svg").count() >= 3);
        assert!(html.contains("t &lt;x&gt;"));
        assert!(!html.contains("<script"));
    }
}
