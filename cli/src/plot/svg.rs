//! The chart as SVG text.

use std::fmt::Write as _;

use super::axis::{time_caption, time_ticks, value_ticks};
use super::{Chart, Panel, Series, Size};

/// Okabe-Ito colours, told apart by colour-blind readers; the wall meter is drawn in black.
const COLOURS: [&str; 6] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
];
const FONT: &str = "DejaVu Sans, Liberation Sans, Arial, sans-serif";
const LEFT: f64 = 72.0;
const LEGEND: f64 = 230.0;
const TITLE: f64 = 50.0;

pub fn render(chart: &Chart, size: Size) -> String {
    let (w, h) = (f64::from(size.width), f64::from(size.height));
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}" font-family="{FONT}">"#,
        size.width, size.height, size.width, size.height
    );
    let _ = write!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="30" font-size="18" text-anchor="middle" fill="black">{}</text>"#,
        w / 2.0,
        escape(&chart.title)
    );
    let (from, to) = time_span(chart);
    let panel_h = (h - TITLE - 8.0) / chart.panels.len().max(1) as f64;
    for (i, panel) in chart.panels.iter().enumerate() {
        let top = TITLE + i as f64 * panel_h;
        draw_panel(&mut out, panel, (from, to), (top, panel_h), w);
    }
    out.push_str("</svg>\n");
    out
}

fn time_span(chart: &Chart) -> (f64, f64) {
    let times = chart
        .panels
        .iter()
        .flat_map(|p| &p.series)
        .flat_map(|s| s.points.iter().map(|(t, _)| *t));
    let (from, to) = times.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), t| {
        (a.min(t), b.max(t))
    });
    if from.is_finite() && to > from {
        (from, to)
    } else {
        (from.min(0.0), from.max(0.0) + 1.0)
    }
}

fn draw_panel(
    out: &mut String,
    panel: &Panel,
    (from, to): (f64, f64),
    (top, height): (f64, f64),
    w: f64,
) {
    let plot = Rect {
        left: LEFT,
        right: w - LEGEND,
        top: top + 26.0,
        bottom: top + height - 46.0,
    };
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" font-size="14" fill="black">{}</text>"#,
        plot.left,
        top + 18.0,
        escape(&panel.title)
    );
    let values = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|(_, v)| *v))
        .filter(|v| v.is_finite());
    let (min, max) = values.fold((0.0f64, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let (bottom_v, top_v, ticks) = value_ticks(min, max, 5);
    let y = |v: f64| plot.bottom - (v - bottom_v) / (top_v - bottom_v) * plot.height();
    let x = |t: f64| plot.left + (t - from) / (to - from) * plot.width();
    for v in ticks {
        let _ = write!(
            out,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#333333">{}</text>"##,
            plot.left,
            y(v),
            plot.right,
            y(v),
            plot.left - 6.0,
            y(v) + 4.0,
            format_watts(v)
        );
    }
    for (t, label) in time_ticks(from, to, ((plot.width() / 110.0) as usize).max(2)) {
        let _ = write!(
            out,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#eeeeee"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#333333">{}</text>"##,
            x(t),
            plot.top,
            x(t),
            plot.bottom,
            x(t),
            plot.bottom + 15.0,
            escape(&label)
        );
    }
    let _ = write!(
        out,
        r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#555555"/><text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle" fill="black">{}</text><text transform="translate({:.1} {:.1}) rotate(-90)" font-size="12" text-anchor="middle" fill="black">power (W)</text>"##,
        plot.left,
        plot.top,
        plot.width(),
        plot.height(),
        (plot.left + plot.right) / 2.0,
        plot.bottom + 33.0,
        escape(&time_caption(from, to)),
        18.0,
        (plot.top + plot.bottom) / 2.0
    );
    let mut colours = COLOURS.iter().cycle();
    for (k, series) in panel.series.iter().enumerate() {
        let colour = if series.dashed {
            "#000000"
        } else {
            colours.next().expect("a cycle")
        };
        let dash = if series.dashed {
            r#" stroke-dasharray="6 3""#
        } else {
            ""
        };
        for run in runs(series, plot.width()) {
            let mut d = String::new();
            for (i, (t, v)) in run.iter().enumerate() {
                let _ = write!(
                    d,
                    "{}{:.1},{:.1}",
                    if i == 0 { "M" } else { " L" },
                    x(*t),
                    y(*v)
                );
            }
            let _ = write!(
                out,
                r#"<path d="{d}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}/>"#
            );
        }
        let ly = plot.top + 10.0 + 20.0 * k as f64;
        let lx = plot.right + 14.0;
        let _ = write!(
            out,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2.5"{dash}/><text x="{:.1}" y="{:.1}" font-size="12" fill="black">{}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            escape(&series.name)
        );
    }
}

struct Rect {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Rect {
    fn width(&self) -> f64 {
        self.right - self.left
    }
    fn height(&self) -> f64 {
        self.bottom - self.top
    }
}

/// The series cut at gaps (more than three times its usual step) and averaged down to about
/// two points per pixel, so a day of seconds draws as fast and as truthfully as a minute.
fn runs(series: &Series, width_px: f64) -> Vec<Vec<(f64, f64)>> {
    let points: Vec<(f64, f64)> = series
        .points
        .iter()
        .copied()
        .filter(|(t, v)| t.is_finite() && v.is_finite())
        .collect();
    if points.is_empty() {
        return Vec::new();
    }
    let mut steps: Vec<f64> = points.windows(2).map(|p| p[1].0 - p[0].0).collect();
    steps.sort_by(f64::total_cmp);
    let usual = steps.get(steps.len() / 2).copied().unwrap_or(1.0).max(1e-9);
    let mut runs: Vec<Vec<(f64, f64)>> = vec![vec![points[0]]];
    for pair in points.windows(2) {
        if pair[1].0 - pair[0].0 > 3.0 * usual {
            runs.push(Vec::new());
        }
        runs.last_mut().expect("one run").push(pair[1]);
    }
    let span = points[points.len() - 1].0 - points[0].0;
    let bucket = span / (2.0 * width_px.max(1.0));
    if bucket <= usual {
        return runs;
    }
    runs.into_iter()
        .map(|run| {
            let mut out: Vec<(f64, f64)> = Vec::new();
            let (mut start, mut sum_t, mut sum_v, mut n) = (run[0].0, 0.0, 0.0, 0.0);
            for (t, v) in run {
                if t - start >= bucket && n > 0.0 {
                    out.push((sum_t / n, sum_v / n));
                    (start, sum_t, sum_v, n) = (t, 0.0, 0.0, 0.0);
                }
                sum_t += t;
                sum_v += v;
                n += 1.0;
            }
            out.push((sum_t / n, sum_v / n));
            out
        })
        .collect()
}

fn format_watts(v: f64) -> String {
    if v.abs() >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(points: Vec<(f64, f64)>) -> Series {
        Series {
            name: "s".into(),
            points,
            dashed: false,
        }
    }

    #[test]
    fn a_gap_in_the_data_is_left_as_a_gap() {
        let mut points: Vec<(f64, f64)> = (0..10).map(|t| (f64::from(t), 5.0)).collect();
        points.extend((30..40).map(|t| (f64::from(t), 7.0)));
        let runs = runs(&series(points), 1000.0);
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[0].len(), runs[1].len()), (10, 10));
    }

    #[test]
    fn a_long_series_is_averaged_per_pixel_keeping_its_mean() {
        let points: Vec<(f64, f64)> = (0..86_400)
            .map(|t| (f64::from(t), if t % 2 == 0 { 100.0 } else { 300.0 }))
            .collect();
        let runs = runs(&series(points), 900.0);
        assert_eq!(runs.len(), 1);
        assert!(runs[0].len() <= 1900, "{}", runs[0].len());
        let mean = runs[0].iter().map(|(_, v)| v).sum::<f64>() / runs[0].len() as f64;
        assert!((mean - 200.0).abs() < 1.0, "{mean}");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
