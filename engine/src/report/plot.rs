//! `Result.plot(path)`: draw a result as SVG or PNG (by the file's extension) with plotters.
//!
//! What a result draws is a small JSON *plot spec*. A metric may declare one in its output
//! (`MetricOutput.plot`); a script may override any key (`r.plot(path, #{ z: "..." })`);
//! without either, the engine picks by shape: the first 2-D tensor as a heatmap, else the
//! longest 1-D tensors as lines over the position. Keys:
//!
//! - `kind`: `"heatmap"` or `"lines"`; `title`.
//! - heatmap: `z` (a tensor name; a 3-D tensor takes `index` along its first axis),
//!   `x_label`, `y_label`, `z_label` (the colour bar). Row r of the matrix is drawn at
//!   height r (row 0 at the top, as a matrix is read); NaN cells stay blank.
//! - lines: `x` (a 1-D tensor name; absent: the position 0..n), `y` (a tensor name or a
//!   list of them, one line each, sharing the x axis), `x_label`, `y_label`, `log_y`.
//!   NaN values break a line.
//! - `point`: a marked operating point `{x, y, label}`, where `x` and `y` are numbers or
//!   names of the result's scalars.
//!
//! Labels should carry units (`"D (nats)"`); the defaults add the result's unit.
//! Text in SVG files is `<text>`; PNG text is rasterised with `ab_glyph`. Both lay text
//! out with an embedded subset of DejaVu Sans (Bitstream Vera licence,
//! `engine/assets/LICENSE-DejaVu`; Latin, Greek and math symbols, 22 KB) rather than
//! plotters' default fontconfig/freetype path, so no system fonts or C libraries are
//! needed and a plot looks the same everywhere.

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::Once;

use super::Report;

const WIDTH: u32 = 900;
const HEIGHT: u32 = 640;
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");

/// Register the embedded font for bitmap text (once per process).
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is a committed, known-good file; a failure is a build defect.
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("embedded DejaVuSans subset is not a valid font"));
    });
}

/// The spec this report draws: its declared spec, overridden key by key by `overrides`,
/// or one picked by shape.
pub fn spec_for(report: &Report, overrides: &Map<String, Value>) -> Result<Map<String, Value>> {
    let mut spec = match &report.plot {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    for (k, v) in overrides {
        spec.insert(k.clone(), v.clone());
    }
    if !spec.contains_key("kind") {
        let kind = if spec.contains_key("z") {
            "heatmap"
        } else if spec.contains_key("y") {
            "lines"
        } else if let Some((name, _)) = report.tensors.iter().find(|(_, t)| t.ndim() == 2) {
            spec.insert("z".into(), Value::String(name.clone()));
            "heatmap"
        } else {
            let n = report
                .tensors
                .values()
                .filter(|t| t.ndim() == 1)
                .map(|t| t.numel())
                .max()
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    anyhow!(
                        "plot: result `{}` has no matrix or series to draw (tensors: {})",
                        report.metric,
                        names(report)
                    )
                })?;
            let ys: Vec<Value> = report
                .tensors
                .iter()
                .filter(|(_, t)| t.ndim() == 1 && t.numel() == n)
                .map(|(k, _)| Value::String(k.clone()))
                .collect();
            spec.insert("y".into(), Value::Array(ys));
            "lines"
        };
        spec.insert("kind".into(), Value::String(kind.into()));
    }
    Ok(spec)
}

fn names(report: &Report) -> String {
    let v: Vec<&str> = report.tensors.keys().map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Draw `report` to `path` (`.svg` or `.png`), written atomically.
pub fn plot(report: &Report, path: &Path, overrides: &Map<String, Value>) -> Result<()> {
    let spec = spec_for(report, overrides)?;
    let fig = Figure::from_spec(report, &spec)?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let bytes = match ext {
        "svg" => fig.svg()?.into_bytes(),
        "png" => {
            register_font();
            let mut buf = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
            {
                let root =
                    BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
                fig.draw(&root)?;
                root.present().map_err(draw_err)?;
            }
            let mut png = Vec::new();
            let mut enc = png::Encoder::new(&mut png, WIDTH, HEIGHT);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            enc.write_header()
                .and_then(|mut w| w.write_image_data(&buf))
                .context("plot: encoding PNG")?;
            png
        }
        _ => bail!("{}: unknown plot format (use .svg or .png)", path.display()),
    };
    super::write_atomic(path, &bytes).with_context(|| format!("plot {}", path.display()))
}

/// `report` drawn as an SVG document (a string), with the spec overridden by `overrides`.
pub fn svg(report: &Report, overrides: &Map<String, Value>) -> Result<String> {
    let spec = spec_for(report, overrides)?;
    Figure::from_spec(report, &spec)?.svg()
}

/// One line of an overlay: its legend name and its points (NaN breaks the line).
pub struct Series {
    pub name: String,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
}

/// Lines from several sources, each with its own x, drawn as one SVG figure:
/// `labels` are the x and y axis labels.
pub fn overlay_svg(
    title: &str,
    series: Vec<Series>,
    labels: [String; 2],
    log_y: bool,
) -> Result<String> {
    if series.is_empty() {
        bail!("plot: an overlay needs at least one series");
    }
    for s in &series {
        if s.x.len() != s.y.len() {
            bail!(
                "plot: line `{}` has {} x values but {} y values",
                s.name,
                s.x.len(),
                s.y.len()
            );
        }
    }
    Figure::Lines {
        title: title.to_string(),
        series,
        labels,
        log_y,
        point: None,
    }
    .svg()
}

fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plot: drawing failed: {e:?}")
}

/// A figure resolved from a spec: data pulled out of the report, labels decided.
enum Figure {
    Heatmap {
        title: String,
        rows: usize,
        cols: usize,
        z: Vec<f64>,
        labels: [String; 3],
        point: Option<Point>,
    },
    Lines {
        title: String,
        series: Vec<Series>,
        labels: [String; 2],
        log_y: bool,
        point: Option<Point>,
    },
}

struct Point {
    x: f64,
    y: f64,
    label: String,
}

fn get_str(spec: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match spec.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => bail!("plot: `{key}` must be a string, found {v}"),
    }
}

impl Figure {
    /// The figure as an SVG document.
    fn svg(&self) -> Result<String> {
        register_font();
        let mut s = String::new();
        {
            let root = SVGBackend::with_string(&mut s, (WIDTH, HEIGHT)).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(draw_err)?;
        }
        Ok(s)
    }

    fn from_spec(report: &Report, spec: &Map<String, Value>) -> Result<Figure> {
        let unit = if report.unit.is_empty() {
            String::new()
        } else {
            format!(" ({})", report.unit)
        };
        let title = get_str(spec, "title")?.unwrap_or_else(|| report.metric.clone());
        let tensor = |name: &str| {
            report.tensors.get(name).ok_or_else(|| {
                anyhow!(
                    "plot: result `{}` has no tensor `{name}` (tensors: {})",
                    report.metric,
                    names(report)
                )
            })
        };
        let point = match spec.get("point") {
            None | Some(Value::Null) => None,
            Some(Value::Object(p)) => Some(Point {
                x: point_coord(report, p, "x")?,
                y: point_coord(report, p, "y")?,
                label: get_str(p, "label")?.unwrap_or_else(|| "operating point".into()),
            }),
            Some(v) => bail!("plot: `point` must be a map #{{x, y, label}}, found {v}"),
        };
        match get_str(spec, "kind")?.as_deref() {
            Some("heatmap") => {
                let name = get_str(spec, "z")?
                    .ok_or_else(|| anyhow!("plot: a heatmap needs `z` (a tensor name)"))?;
                let t = tensor(&name)?;
                let (rows, cols, data) = match t.shape() {
                    [r, c] => (*r, *c, t.data().to_vec()),
                    [n, r, c] => {
                        let i = spec.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                        if i >= *n {
                            bail!(
                                "plot: `index` {i} out of range for `{name}` of shape {:?}",
                                t.shape()
                            );
                        }
                        (*r, *c, t.data()[i * r * c..(i + 1) * r * c].to_vec())
                    }
                    s => bail!(
                        "plot: heatmap `{name}` must be 2-D (or 3-D with `index`), has shape {s:?}"
                    ),
                };
                if rows == 0 || cols == 0 {
                    bail!("plot: heatmap `{name}` is empty");
                }
                Ok(Figure::Heatmap {
                    title,
                    rows,
                    cols,
                    z: data.iter().map(|&v| v as f64).collect(),
                    labels: [
                        get_str(spec, "x_label")?.unwrap_or_else(|| "column".into()),
                        get_str(spec, "y_label")?.unwrap_or_else(|| "row".into()),
                        get_str(spec, "z_label")?.unwrap_or_else(|| format!("{name}{unit}")),
                    ],
                    point,
                })
            }
            Some("lines") => {
                let ys: Vec<String> = match spec.get("y") {
                    Some(Value::String(s)) => vec![s.clone()],
                    Some(Value::Array(a)) if !a.is_empty() => a
                        .iter()
                        .map(|v| {
                            v.as_str().map(str::to_string).ok_or_else(|| {
                                anyhow!("plot: `y` entries must be tensor names, found {v}")
                            })
                        })
                        .collect::<Result<_>>()?,
                    _ => bail!("plot: lines need `y` (a tensor name or a list of them)"),
                };
                let ys_data: Vec<(String, Vec<f64>)> = ys
                    .iter()
                    .map(|n| {
                        let t = tensor(n)?;
                        if t.ndim() != 1 {
                            bail!("plot: line `{n}` must be 1-D, has shape {:?}", t.shape());
                        }
                        Ok((n.clone(), t.data().iter().map(|&v| v as f64).collect()))
                    })
                    .collect::<Result<_>>()?;
                let n = ys_data.iter().map(|s| s.1.len()).max().unwrap_or(0);
                let (x, x_default) = match get_str(spec, "x")? {
                    Some(name) => {
                        let t = tensor(&name)?;
                        (t.data().iter().map(|&v| v as f64).collect::<Vec<_>>(), name)
                    }
                    None => ((0..n).map(|i| i as f64).collect(), "position".to_string()),
                };
                if let Some((bad, s)) = ys_data.iter().find(|s| s.1.len() != x.len()) {
                    bail!(
                        "plot: line `{bad}` has {} points but x has {}",
                        s.len(),
                        x.len()
                    );
                }
                let y_default = if ys.len() == 1 {
                    format!("{}{unit}", ys[0])
                } else {
                    format!("value{unit}")
                };
                let series = ys_data
                    .into_iter()
                    .map(|(name, y)| Series {
                        name,
                        x: x.clone(),
                        y,
                    })
                    .collect();
                Ok(Figure::Lines {
                    title,
                    series,
                    labels: [
                        get_str(spec, "x_label")?.unwrap_or(x_default),
                        get_str(spec, "y_label")?.unwrap_or(y_default),
                    ],
                    log_y: spec.get("log_y").and_then(Value::as_bool).unwrap_or(false),
                    point,
                })
            }
            Some(k) => bail!("plot: unknown kind `{k}` (heatmap, lines)"),
            None => bail!("plot: `kind` missing"),
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        root.fill(&WHITE).map_err(draw_err)?;
        match self {
            Figure::Heatmap {
                title,
                rows,
                cols,
                z,
                labels,
                point,
            } => {
                let (main, bar) = root.split_horizontally(WIDTH - 130);
                let finite = z.iter().copied().filter(|v| v.is_finite());
                let lo = finite.clone().fold(f64::INFINITY, f64::min);
                let hi = finite.fold(f64::NEG_INFINITY, f64::max);
                let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
                let span = if hi > lo { hi - lo } else { 1.0 };
                let mut chart = ChartBuilder::on(&main)
                    .caption(title, ("sans-serif", 22))
                    .margin(12)
                    .x_label_area_size(48)
                    .y_label_area_size(60)
                    .build_cartesian_2d(0f64..*cols as f64, *rows as f64..0f64)
                    .map_err(draw_err)?;
                let int = |v: &f64| format!("{v:.0}");
                chart
                    .configure_mesh()
                    .disable_mesh()
                    .x_label_formatter(&int)
                    .y_label_formatter(&int)
                    .label_style(("sans-serif", 13))
                    .x_desc(labels[0].as_str())
                    .y_desc(labels[1].as_str())
                    .axis_desc_style(("sans-serif", 16))
                    .draw()
                    .map_err(draw_err)?;
                chart
                    .draw_series(
                        (0..*rows)
                            .flat_map(|r| (0..*cols).map(move |c| (r, c)))
                            .filter_map(|(r, c)| {
                                let v = z[r * cols + c];
                                v.is_finite().then(|| {
                                    let color =
                                        ViridisRGB::get_color_normalized((v - lo) / span, 0.0, 1.0);
                                    Rectangle::new(
                                        [(c as f64, r as f64), (c as f64 + 1.0, r as f64 + 1.0)],
                                        color.filled(),
                                    )
                                })
                            }),
                    )
                    .map_err(draw_err)?;
                if let Some(p) = point {
                    draw_point(&mut chart, p)?;
                }
                // Colour bar: the value scale of the cells.
                let mut bar = ChartBuilder::on(&bar)
                    .margin_top(46)
                    .margin_bottom(60)
                    .margin_right(10)
                    .y_label_area_size(70)
                    .build_cartesian_2d(0f64..1f64, lo..lo + span)
                    .map_err(draw_err)?;
                bar.configure_mesh()
                    .disable_mesh()
                    .disable_x_axis()
                    .y_desc(labels[2].as_str())
                    .axis_desc_style(("sans-serif", 14))
                    .label_style(("sans-serif", 12))
                    .y_labels(6)
                    .draw()
                    .map_err(draw_err)?;
                let steps = 64;
                bar.draw_series((0..steps).map(|i| {
                    let a = lo + span * i as f64 / steps as f64;
                    let b = lo + span * (i + 1) as f64 / steps as f64;
                    let color =
                        ViridisRGB::get_color_normalized((i as f64 + 0.5) / steps as f64, 0.0, 1.0);
                    Rectangle::new([(0.0, a), (1.0, b)], color.filled())
                }))
                .map_err(draw_err)?;
            }
            Figure::Lines {
                title,
                series,
                labels,
                log_y,
                point,
            } => {
                let (x0, x1) = range(
                    series
                        .iter()
                        .flat_map(|s| s.x.iter().copied())
                        .chain(point.iter().map(|p| p.x)),
                );
                let ys = series
                    .iter()
                    .flat_map(|s| s.y.iter().copied())
                    .chain(point.iter().map(|p| p.y));
                let mut chart = ChartBuilder::on(root);
                chart
                    .caption(title, ("sans-serif", 22))
                    .margin(14)
                    .x_label_area_size(48)
                    .y_label_area_size(72);
                if *log_y {
                    let (y0, y1) = log_range(ys.filter(|v| *v > 0.0));
                    let mut c = chart
                        .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                        .map_err(draw_err)?;
                    mesh_and_lines(&mut c, series, labels, point, |v| v > 0.0)?;
                } else {
                    let (y0, y1) = range(ys);
                    let mut c = chart.build_cartesian_2d(x0..x1, y0..y1).map_err(draw_err)?;
                    mesh_and_lines(&mut c, series, labels, point, |_| true)?;
                }
            }
        }
        Ok(())
    }
}

fn point_coord(report: &Report, p: &Map<String, Value>, key: &str) -> Result<f64> {
    match p.get(key) {
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| anyhow!("plot: point.{key} is not a number")),
        Some(Value::String(s)) => match report.scalars.get(s) {
            Some(v) => Ok(*v),
            None if s == "value" => report
                .value
                .ok_or_else(|| anyhow!("plot: point.{key} = value, but the result has no value")),
            None => bail!(
                "plot: point.{key} names scalar `{s}`, which result `{}` does not have",
                report.metric
            ),
        },
        _ => bail!("plot: point needs `{key}` (a number or a scalar's name)"),
    }
}

/// The range of the finite positive `vals` for a log axis, padded by a factor (an
/// additive pad could reach below zero).
fn log_range(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = vals
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.1, 1.0);
    }
    let f = if hi > lo { (hi / lo).powf(0.04) } else { 1.1 };
    (lo / f, hi * f)
}

/// The finite range of `vals`, padded so a flat series still has height.
fn range(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = vals
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        (hi - lo) * 0.04
    } else {
        lo.abs().max(1.0) * 0.05
    };
    (lo - pad, hi + pad)
}

fn draw_point<'a, DB: DrawingBackend + 'a, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    p: &Point,
) -> Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let red = RGBColor(200, 0, 0);
    chart
        .draw_series(std::iter::once(
            EmptyElement::at((p.x, p.y))
                + Circle::new((0, 0), 6, red.filled())
                + Text::new(
                    p.label.clone(),
                    (9, -18),
                    ("sans-serif", 15).into_font().color(&red),
                ),
        ))
        .map_err(draw_err)?
        .label(p.label.clone())
        .legend(move |(x, y)| Circle::new((x + 10, y), 5, red.filled()));
    Ok(())
}

fn mesh_and_lines<'a, DB: DrawingBackend + 'a, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    series: &[Series],
    labels: &[String; 2],
    point: &Option<Point>,
    valid: impl Fn(f64) -> bool,
) -> Result<()>
where
    Y: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(labels[0].as_str())
        .y_desc(labels[1].as_str())
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(draw_err)?;
    for (i, Series { name, x, y: ys }) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        // NaN (or a non-positive value on a log axis) breaks the line into segments.
        let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (&a, &b) in x.iter().zip(ys) {
            if a.is_finite() && b.is_finite() && valid(b) {
                segments.last_mut().expect("non-empty").push((a, b));
            } else if !segments.last().expect("non-empty").is_empty() {
                segments.push(Vec::new());
            }
        }
        let mut first = true;
        for seg in segments.into_iter().filter(|s| !s.is_empty()) {
            let singles: Vec<(f64, f64)> = if seg.len() == 1 {
                seg.clone()
            } else {
                Vec::new()
            };
            let drawn = chart
                .draw_series(LineSeries::new(seg, color.stroke_width(2)))
                .map_err(draw_err)?;
            if first {
                drawn.label(name.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
                first = false;
            }
            chart
                .draw_series(
                    singles
                        .into_iter()
                        .map(|p| Circle::new(p, 3, color.filled())),
                )
                .map_err(draw_err)?;
        }
    }
    if let Some(p) = point {
        draw_point(chart, p)?;
    }
    if series.len() > 1 || point.is_some() {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(draw_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Provenance;
    use std::collections::BTreeMap;
    use tokit_compute::Tensor;

    fn report(tensors: Vec<(&str, Tensor)>, plot: Option<Value>) -> Report {
        Report {
            metric: "demo".into(),
            plugin: "test".into(),
            plugin_version: "0".into(),
            description: String::new(),
            reconstruction: false,
            value: Some(1.0),
            unit: "nats".into(),
            estimator: "exact".into(),
            scalars: BTreeMap::from([("d0".to_string(), 0.5), ("r0".to_string(), 0.7)]),
            params: Map::new(),
            notes: Vec::new(),
            tensors: tensors
                .into_iter()
                .map(|(k, t)| (k.to_string(), t))
                .collect(),
            tokens: Vec::new(),
            provenance: Provenance::default(),
            plot,
        }
    }

    /// The `<text>` contents of an SVG file, after checking that it parses as XML.
    fn svg_texts(path: &Path) -> Vec<String> {
        let s = std::fs::read_to_string(path).unwrap();
        let doc = roxmltree::Document::parse(&s).expect("valid XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or("").trim().to_string())
            .collect()
    }

    fn curve() -> Report {
        let d = Tensor::new(vec![4], vec![0.0, 0.1, 0.3, 0.6]).unwrap();
        let r = Tensor::new(vec![4], vec![1.0, 0.5, f32::NAN, 0.0]).unwrap();
        report(
            vec![("distortion", d), ("rate", r)],
            Some(serde_json::json!({
                "kind": "lines", "x": "distortion", "y": "rate",
                "x_label": "D (nats)", "y_label": "R (nats)",
                "point": { "x": "d0", "y": "r0", "label": "model" },
            })),
        )
    }

    #[test]
    fn svg_lines_have_labelled_axes_and_the_operating_point() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rd.svg");
        plot(&curve(), &path, &Map::new()).unwrap();
        let texts = svg_texts(&path);
        for label in ["D (nats)", "R (nats)", "model", "demo"] {
            assert!(
                texts.iter().any(|t| t == label),
                "no `{label}` in {texts:?}"
            );
        }
    }

    #[test]
    fn a_matrix_is_a_heatmap_with_a_colour_bar_by_default() {
        let g = Tensor::new(
            vec![3, 3],
            vec![f32::NAN, 0.0, 0.0, 0.2, f32::NAN, 0.0, 0.1, 0.4, f32::NAN],
        )
        .unwrap();
        let r = report(vec![("granger_kl", g)], None);
        let spec = spec_for(&r, &Map::new()).unwrap();
        assert_eq!(spec["kind"], "heatmap");
        assert_eq!(spec["z"], "granger_kl");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.svg");
        let mut o = Map::new();
        o.insert("x_label".into(), "source j".into());
        o.insert("y_label".into(), "target t".into());
        plot(&r, &path, &o).unwrap();
        let texts = svg_texts(&path);
        for label in ["source j", "target t", "granger_kl (nats)"] {
            assert!(
                texts.iter().any(|t| t == label),
                "no `{label}` in {texts:?}"
            );
        }
    }

    #[test]
    fn png_is_a_valid_image_with_ink_in_the_axis_label_areas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rd.png");
        plot(&curve(), &path, &Map::new()).unwrap();
        if let Ok(keep) = std::env::var("TOKIT_KEEP_PLOT") {
            std::fs::copy(&path, keep).unwrap();
        }
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
        let px = |x: u32, y: u32| {
            let i = ((y * info.width + x) * 3) as usize;
            (buf[i] as u32 + buf[i + 1] as u32 + buf[i + 2] as u32) / 3
        };
        // The y label is drawn rotated in the leftmost strip; the x label along the bottom.
        let dark_left = (0..HEIGHT)
            .flat_map(|y| (0..30).map(move |x| (x, y)))
            .filter(|&(x, y)| px(x, y) < 128)
            .count();
        let dark_bottom = (HEIGHT - 30..HEIGHT)
            .flat_map(|y| (0..WIDTH).map(move |x| (x, y)))
            .filter(|&(x, y)| px(x, y) < 128)
            .count();
        assert!(dark_left > 50, "no y label ink ({dark_left} dark pixels)");
        assert!(
            dark_bottom > 50,
            "no x label ink ({dark_bottom} dark pixels)"
        );
    }

    #[test]
    fn bad_specs_are_named_errors() {
        let r = curve();
        let dir = tempfile::tempdir().unwrap();
        let mut o = Map::new();
        o.insert("y".into(), "nope".into());
        let e = plot(&r, &dir.path().join("a.svg"), &o)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no tensor `nope`") && e.contains("distortion, rate"),
            "{e}"
        );
        let e = plot(&r, &dir.path().join("a.pdf"), &Map::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("use .svg or .png"), "{e}");
        let empty = report(vec![], None);
        let e = plot(&empty, &dir.path().join("a.svg"), &Map::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("nothing") || e.contains("no matrix"), "{e}");
    }
}
