//! The SVG plots (plotters, SVG backend: no fonts or C libraries needed), log-log
//! against the number of rules.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use super::table::PLOTS;
use super::Report;

/// One line: a label, a colour, (rules, value) points.
struct Series {
    label: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

fn series(
    report: &Report,
    label: &'static str,
    color: RGBColor,
    value: impl Fn(&super::SizeResult) -> Option<f64>,
) -> Series {
    Series {
        label,
        color,
        points: report
            .sizes
            .iter()
            .filter_map(|s| value(s).map(|v| (s.rules.max(1) as f64, v)))
            .filter(|&(_, v)| v > 0.0)
            .collect(),
    }
}

/// An axis label: 3 significant digits at most, with k/M for thousands and millions.
pub fn short(v: f64) -> String {
    let (scaled, suffix) = if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let digits = if scaled >= 100.0 || scaled.fract() == 0.0 {
        0
    } else if scaled >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{scaled:.digits$}");
    // 2.50 -> 2.5, 2.00 -> 2
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{suffix}")
}

/// A log-log line chart of `lines` into `path`.
fn draw(path: &Path, title: &str, y_desc: &str, lines: &[Series]) -> anyhow::Result<()> {
    let all: Vec<(f64, f64)> = lines.iter().flat_map(|s| s.points.clone()).collect();
    if all.is_empty() {
        return Err(anyhow!("{title}: nothing to plot"));
    }
    let x_max = all.iter().map(|p| p.0).fold(1.0, f64::max) * 2.0;
    let y_min = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min) / 2.0;
    let y_max = all.iter().map(|p| p.1).fold(0.0, f64::max) * 2.0;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<_>| anyhow!("{title}: {e}");
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d((0.8..x_max).log_scale(), (y_min..y_max).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("rules (N)")
        .y_desc(y_desc)
        .x_label_formatter(&|x| short(*x))
        .y_label_formatter(&|y| short(*y))
        .draw()
        .map_err(e)?;
    for s in lines.iter().filter(|s| !s.points.is_empty()) {
        let color = s.color;
        chart
            .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))
            .map_err(e)?
            .label(s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

const KERNEL: RGBColor = RGBColor(200, 60, 40);
const SHIM: RGBColor = RGBColor(30, 100, 200);
const CEILING: RGBColor = RGBColor(90, 90, 90);
const EXTRA: RGBColor = RGBColor(40, 150, 70);

/// Writes the three plots of [`PLOTS`] into `dir`.
pub fn write_all(report: &Report, dir: &Path) -> anyhow::Result<()> {
    let ns = |d: std::time::Duration| d.as_nanos() as f64;
    draw(
        &dir.join(PLOTS[0].0),
        PLOTS[0].1,
        "ns per packet (BPF_PROG_TEST_RUN)",
        &[
            series(report, "no rule matches", SHIM, |s| {
                s.classify.map(|c| ns(c.miss))
            }),
            series(report, "match at rule N/2", EXTRA, |s| {
                s.classify.and_then(|c| c.hit_middle).map(ns)
            }),
            series(report, "established flow", CEILING, |s| {
                s.classify.and_then(|c| c.established).map(ns)
            }),
        ],
    )?;
    draw(
        &dir.join(PLOTS[1].0),
        PLOTS[1].1,
        "packets per second delivered",
        &[
            series(report, "no filter", CEILING, |s| s.ceiling_pps),
            series(report, "kernel nftables", KERNEL, |s| s.kernel.pps),
            series(report, "nftshim", SHIM, |s| s.shim.pps),
        ],
    )?;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    draw(
        &dir.join(PLOTS[2].0),
        PLOTS[2].1,
        "ms (median)",
        &[
            series(report, "kernel: add rule", KERNEL, |s| {
                s.kernel.add.map(|a| ms(a.median))
            }),
            series(report, "nftshim: add rule", SHIM, |s| {
                s.shim.add.map(|a| ms(a.median))
            }),
            series(report, "kernel: nft -f", RGBColor(240, 150, 120), |s| {
                s.kernel.load.map(ms)
            }),
            series(report, "nftshim: nft -f", RGBColor(120, 170, 240), |s| {
                s.shim.load.map(ms)
            }),
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::short;

    #[test]
    fn axis_labels_are_short() {
        assert_eq!(short(1.0), "1");
        assert_eq!(short(250.0), "250");
        assert_eq!(short(2500.0), "2.5k");
        assert_eq!(short(10_000.0), "10k");
        assert_eq!(short(123_456.0), "123k");
        assert_eq!(short(1_500_000.0), "1.5M");
        assert_eq!(short(0.25), "0.25");
    }
}
