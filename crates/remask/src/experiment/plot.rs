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

/// The curves of one strategy, one per seed.
pub struct StrategyCurves {
    pub strategy: String,
    pub seeds: Vec<Curve>,
}

/// Median and min–max band of a strategy's seed curves on the first seed's token grid (other seeds
/// are linearly interpolated onto it; points outside a seed's range are left out for that seed).
pub fn band(seeds: &[Curve]) -> Vec<(f64, f64, f64, f64)> {
    let Some(grid) = seeds.first() else { return Vec::new() };
    grid.iter()
        .filter_map(|&(x, _)| {
            let mut ys: Vec<f64> = seeds.iter().filter_map(|c| interpolate(c, x)).collect();
            if ys.is_empty() {
                return None;
            }
            ys.sort_by(|a, b| a.total_cmp(b));
            let n = ys.len();
            let med = if n % 2 == 1 { ys[n / 2] } else { 0.5 * (ys[n / 2 - 1] + ys[n / 2]) };
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
            if *x >= 1e6 { format!("{:.1}M", x / 1e6) } else { format!("{:.0}k", x / 1e3) }
        })
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (s, b)) in curves.iter().zip(&bands).enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        if s.seeds.len() > 1 {
            let mut poly: Vec<(f64, f64)> = b.iter().map(|p| (p.0, p.3)).collect();
            poly.extend(b.iter().rev().map(|p| (p.0, p.2)));
            chart.draw_series(std::iter::once(Polygon::new(poly, c.mix(0.2)))).map_err(|e| e.to_string())?;
        }
        chart
            .draw_series(LineSeries::new(b.iter().map(|p| (p.0, p.1)), c.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(format!("{} ({} seeds)", s.strategy, s.seeds.len()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3)));
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
    let fail = |file: &str, e: String| Error::Other(format!("plotting {}: {e}", dir.join(file).display()));
    draw(BitMapBackend::new(&dir.join(&png), (900, 560)).into_drawing_area(), title, y_label, curves)
        .map_err(|e| fail(&png, e))?;
    draw(SVGBackend::new(&dir.join(&svg), (900, 560)).into_drawing_area(), title, y_label, curves)
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
        assert_eq!(s.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(s[1].1, 1.0);
        assert_eq!(s[0].1, 1.5);
    }

    #[test]
    fn writes_png_and_svg_with_legend_text() {
        let dir = std::env::temp_dir().join(format!("remask-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let curves = vec![
            StrategyCurves { strategy: "static".into(), seeds: vec![vec![(0.0, 9.0), (1e5, 6.0)], vec![(0.0, 9.2), (1e5, 6.3)]] },
            StrategyCurves { strategy: "dynamic".into(), seeds: vec![vec![(0.0, 9.1), (1e5, 5.5)]] },
        ];
        let files = plot_curves(&dir, "val_loss", "Validation loss", "loss", &curves).unwrap();
        let png = std::fs::read(dir.join(&files[0])).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let svg = std::fs::read_to_string(dir.join(&files[1])).unwrap();
        assert!(svg.contains("static (2 seeds)") && svg.contains("dynamic (1 seeds)"));
        if std::env::var_os("REMASK_KEEP_PLOT").is_none() { std::fs::remove_dir_all(&dir).ok(); }
    }
}
