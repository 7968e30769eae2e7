//! Loss-curve plots for the comparison report (PNG and SVG through `plotters`).
//!
//! Each strategy gets one colour: a line for the median over seeds and a band for the min–max range.
//! Text in PNGs is drawn with a font compiled into the binary (no system fonts needed).

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::{Error, Result};

/// One seed's curve: (tokens seen, loss) points in increasing token order.
pub type Curve = Vec<(f64, f64)>;

/// The curves of one strategy, one per seed (the band), and its failed runs by name.
pub struct StrategyCurves {
    pub strategy: String,
    pub seeds: Vec<Curve>,
    /// Failed runs: drawn on their own (dashed, a red cross at the end) and named in the legend; a
    /// failed run may also be one of `seeds`.
    pub failed: Vec<(String, Curve)>,
}

/// Median and min–max band of a strategy's seed curves on the first seed's token grid (other seeds
/// are linearly interpolated onto it; points outside a seed's range are left out for that seed).
pub fn band(seeds: &[Curve]) -> Vec<(f64, f64, f64, f64)> {
    let Some(grid) = seeds.first() else {
        return Vec::new();
    };
    grid.iter()
        .filter_map(|&(x, _)| {
            let mut ys: Vec<f64> = seeds.iter().filter_map(|c| interpolate(c, x)).collect();
            if ys.is_empty() {
                return None;
            }
            ys.sort_by(|a, b| a.total_cmp(b));
            let n = ys.len();
            let med = if n % 2 == 1 {
                ys[n / 2]
            } else {
                0.5 * (ys[n / 2 - 1] + ys[n / 2])
            };
            Some((x, med, ys[0], ys[n - 1]))
        })
        .collect()
}

fn interpolate(c: &Curve, x: f64) -> Option<f64> {
    let i = c.partition_point(|p| p.0 < x);
    if i < c.len() && c[i].0 == x {
        return Some(c[i].1);
    }
    if i == 0 || i == c.len() {
        return None;
    }
    let (a, b) = (c[i - 1], c[i]);
    Some(a.1 + (b.1 - a.1) * (x - a.0) / (b.0 - a.0))
}

/// Smooths a noisy curve with a centred moving average over `w` points (training losses).
pub fn smooth(c: &Curve, w: usize) -> Curve {
    if w <= 1 || c.len() < 3 {
        return c.clone();
    }
    let h = w / 2;
    (0..c.len())
        .map(|i| {
            let lo = i.saturating_sub(h);
            let hi = (i + h + 1).min(c.len());
            let mean = c[lo..hi].iter().map(|p| p.1).sum::<f64>() / (hi - lo) as f64;
            (c[i].0, mean)
        })
        .collect()
}

const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in; registering it cannot fail for a valid TTF.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    y_label: &str,
    curves: &[StrategyCurves],
) -> std::result::Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let bands: Vec<_> = curves.iter().map(|s| band(&s.seeds)).collect();
    let pts = bands.iter().flatten();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, _, lo, hi) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(lo);
        y1 = y1.max(hi);
    }
    for &(x, y) in curves
        .iter()
        .flat_map(|s| s.failed.iter().flat_map(|f| f.1.iter()))
        .filter(|p| p.1.is_finite())
    {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Err("no points to plot".into());
    }
    if x1 == x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("training tokens seen")
        .y_desc(y_label)
        .x_label_formatter(&|x| {
            if *x >= 1e6 {
                format!("{:.1}M", x / 1e6)
            } else {
                format!("{:.0}k", x / 1e3)
            }
        })
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (s, b)) in curves.iter().zip(&bands).enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        if s.seeds.len() > 1 {
            let mut poly: Vec<(f64, f64)> = b.iter().map(|p| (p.0, p.3)).collect();
            poly.extend(b.iter().rev().map(|p| (p.0, p.2)));
            chart
                .draw_series(std::iter::once(Polygon::new(poly, c.mix(0.2))))
                .map_err(|e| e.to_string())?;
        }
        chart
            .draw_series(LineSeries::new(
                b.iter().map(|p| (p.0, p.1)),
                c.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(format!("{} ({} seeds)", s.strategy, s.seeds.len()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3)));
        if !s.failed.is_empty() {
            for (_, curve) in &s.failed {
                let pts: Vec<(f64, f64)> =
                    curve.iter().copied().filter(|p| p.1.is_finite()).collect();
                chart
                    .draw_series(DashedLineSeries::new(pts.clone(), 6, 4, c.stroke_width(1)))
                    .map_err(|e| e.to_string())?;
                if let Some(&end) = pts.last() {
                    chart
                        .draw_series(std::iter::once(Cross::new(end, 6, RED.stroke_width(2))))
                        .map_err(|e| e.to_string())?;
                }
            }
            let names: Vec<&str> = s.failed.iter().map(|f| f.0.as_str()).collect();
            // An empty series carries the legend entry naming the failed runs.
            chart
                .draw_series(std::iter::empty::<Cross<(f64, f64), i32>>())
                .map_err(|e| e.to_string())?
                .label(format!("FAILED: {}", names.join(", ")))
                .legend(|(x, y)| Cross::new((x + 9, y), 5, RED.stroke_width(2)));
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// Writes `<stem>.png` and `<stem>.svg` into `dir`; returns their file names.
pub fn plot_curves(
    dir: &Path,
    stem: &str,
    title: &str,
    y_label: &str,
    curves: &[StrategyCurves],
) -> Result<Vec<String>> {
    register_font();
    let png = format!("{stem}.png");
    let svg = format!("{stem}.svg");
    let fail =
        |file: &str, e: String| Error::Other(format!("plotting {}: {e}", dir.join(file).display()));
    draw(
        BitMapBackend::new(&dir.join(&png), (900, 560)).into_drawing_area(),
        title,
        y_label,
        curves,
    )
    .map_err(|e| fail(&png, e))?;
    draw(
        SVGBackend::new(&dir.join(&svg), (900, 560)).into_drawing_area(),
        title,
        y_label,
        curves,
    )
    .map_err(|e| fail(&svg, e))?;
    Ok(vec![png, svg])
}

/// One series of the regime map: (epochs, mean difference, interval low, interval high) per regime.
pub struct RegimeSeries {
    pub label: String,
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// One panel of the regime map (one measure).
pub struct RegimePanel {
    pub title: String,
    pub series: Vec<RegimeSeries>,
    /// E = K of a static strategy, drawn as a dashed vertical line (up to it static is dynamic).
    pub dupe_factor: Option<f64>,
    /// (epochs, failed runs) of the regimes that had failed runs: marked with a red cross.
    pub failed: Vec<(f64, usize)>,
}

fn draw_regime_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &RegimePanel,
) -> std::result::Result<(), String> {
    let pts = panel.series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, 0.0f64, 0.0f64);
    for &(x, m, lo, hi) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(lo).min(m);
        y1 = y1.max(hi).max(m);
    }
    if x0 > x1 {
        return Err("no points to plot".into());
    }
    let (x0, x1) = (x0 / 1.5, x1 * 1.5);
    let pad = ((y1 - y0) * 0.1).max(1e-3);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("epochs over the subset (E, log scale)")
        .y_desc("difference to baseline")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(
            [(x0, 0.0), (x1, 0.0)],
            BLACK.stroke_width(1),
        ))
        .map_err(|e| e.to_string())?;
    if let Some(k) = panel.dupe_factor.filter(|k| *k > x0 && *k < x1) {
        chart
            .draw_series(DashedLineSeries::new(
                [(k, y0), (k, y1)],
                5,
                4,
                BLACK.mix(0.6).stroke_width(1),
            ))
            .map_err(|e| e.to_string())?
            .label(format!(
                "E = K = {k:.0} (up to here static reads each copy once)"
            ))
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.6).stroke_width(1))
            });
    }
    for (i, s) in panel.series.iter().enumerate() {
        let c = COLOURS[(i + 1) % COLOURS.len()];
        let mut poly: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0, p.3)).collect();
        poly.extend(s.points.iter().rev().map(|p| (p.0, p.2)));
        chart
            .draw_series(std::iter::once(Polygon::new(poly, c.mix(0.2))))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                s.points.iter().map(|p| (p.0, p.1)),
                c.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(format!("{} (mean, 95% interval)", s.label))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3)));
        chart
            .draw_series(
                s.points
                    .iter()
                    .map(|p| Circle::new((p.0, p.1), 3, c.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    if !panel.failed.is_empty() {
        let y = y1 - pad * 0.5;
        chart
            .draw_series(
                panel
                    .failed
                    .iter()
                    .map(|&(x, _)| Cross::new((x, y), 6, RED.stroke_width(2))),
            )
            .map_err(|e| e.to_string())?
            .label(format!(
                "failed runs: {}",
                panel
                    .failed
                    .iter()
                    .map(|f| format!("{} at E={}", f.1, f.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .legend(|(x, y)| Cross::new((x + 9, y), 5, RED.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| e.to_string())
}

fn draw_regime_map<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    panels: &[RegimePanel],
) -> std::result::Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| e.to_string())?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (area, panel) in areas.iter().zip(panels) {
        draw_regime_panel(area, panel)?;
    }
    root.present().map_err(|e| e.to_string())
}

/// Writes the regime map (`<stem>.png` and `<stem>.svg`): per measure, the paired difference to the
/// baseline against epochs of repetition (log x), the 95% interval as a band, failed runs marked.
pub fn plot_regime_map(
    dir: &Path,
    stem: &str,
    title: &str,
    panels: &[RegimePanel],
) -> Result<Vec<String>> {
    register_font();
    let png = format!("{stem}.png");
    let svg = format!("{stem}.svg");
    let size = ((460 * panels.len().max(1)) as u32, 460);
    let fail =
        |file: &str, e: String| Error::Other(format!("plotting {}: {e}", dir.join(file).display()));
    draw_regime_map(
        BitMapBackend::new(&dir.join(&png), size).into_drawing_area(),
        title,
        panels,
    )
    .map_err(|e| fail(&png, e))?;
    draw_regime_map(
        SVGBackend::new(&dir.join(&svg), size).into_drawing_area(),
        title,
        panels,
    )
    .map_err(|e| fail(&svg, e))?;
    Ok(vec![png, svg])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_interpolates_other_seeds_onto_the_first_grid() {
        let a = vec![(0.0, 4.0), (10.0, 2.0), (20.0, 1.0)];
        let b = vec![(0.0, 6.0), (20.0, 2.0)];
        let c = vec![(5.0, 3.0), (20.0, 3.0)];
        let band = band(&[a, b, c]);
        assert_eq!(band[0], (0.0, 5.0, 4.0, 6.0)); // c starts later: two seeds at x=0
        assert_eq!(band[1], (10.0, 3.0, 2.0, 4.0)); // b interpolated to 4.0, c to 3.0
        assert_eq!(band[2], (20.0, 2.0, 1.0, 3.0));
    }

    #[test]
    fn smoothing_keeps_x_and_averages_y() {
        let c: Curve = vec![(0.0, 0.0), (1.0, 3.0), (2.0, 0.0), (3.0, 3.0)];
        let s = smooth(&c, 3);
        assert_eq!(
            s.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![0.0, 1.0, 2.0, 3.0]
        );
        assert_eq!(s[1].1, 1.0);
        assert_eq!(s[0].1, 1.5);
    }

    #[test]
    fn writes_png_and_svg_with_legend_text() {
        let dir = std::env::temp_dir().join(format!("remask-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let curves = vec![
            StrategyCurves {
                strategy: "static".into(),
                seeds: vec![vec![(0.0, 9.0), (1e5, 6.0)], vec![(0.0, 9.2), (1e5, 6.3)]],
                failed: vec![("static-seed3".into(), vec![(0.0, 9.1), (5e4, f64::NAN)])],
            },
            StrategyCurves {
                strategy: "dynamic".into(),
                seeds: vec![vec![(0.0, 9.1), (1e5, 5.5)]],
                failed: vec![],
            },
        ];
        let files = plot_curves(&dir, "val_loss", "Validation loss", "loss", &curves).unwrap();
        let png = std::fs::read(dir.join(&files[0])).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let svg = std::fs::read_to_string(dir.join(&files[1])).unwrap();
        assert!(svg.contains("static (2 seeds)") && svg.contains("dynamic (1 seeds)"));
        assert!(
            svg.contains("FAILED: static-seed3"),
            "a failed run is named in the plot"
        );

        let panel = |title: &str| RegimePanel {
            title: title.into(),
            series: vec![RegimeSeries {
                label: "static − dynamic".into(),
                points: vec![
                    (1.0, 0.0, 0.0, 0.0),
                    (16.0, 0.01, -0.01, 0.03),
                    (64.0, 0.1, 0.05, 0.15),
                ],
            }],
            failed: vec![(64.0, 1)],
            dupe_factor: Some(10.0),
        };
        let files = plot_regime_map(
            &dir,
            "regime_map",
            "Regime map",
            &[panel("validation loss"), panel("minimal pairs")],
        )
        .unwrap();
        assert_eq!(&std::fs::read(dir.join(&files[0])).unwrap()[1..4], b"PNG");
        let svg = std::fs::read_to_string(dir.join(&files[1])).unwrap();
        assert!(
            svg.contains("static − dynamic (mean, 95% interval)")
                && svg.contains("failed runs: 1 at E=64"),
            "{svg}"
        );
        assert!(svg.contains("E = K = 10"), "{svg}");
        if std::env::var_os("REMASK_KEEP_PLOT").is_none() {
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}
