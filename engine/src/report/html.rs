//! HTML reports: headings, paragraphs, tables and figures gathered into ONE self-contained
//! file (inline CSS, figures as inline SVG drawn by `plot.rs`, no scripts, no fonts or
//! anything else fetched from the network).
//!
//! Every number a report shows carries its provenance: a table cell holds a [`Quantity`],
//! which knows the results it came from, and a figure knows the results it draws. Each
//! number and figure links to an entry of the closing "Provenance" table: the metric, its
//! plugin and version, the estimator, the parameters, the model (architecture, path,
//! fingerprint), the backend and tokit's version, and how many results of that kind were
//! pooled. A value that is not a finite number is never printed as `NaN`: it shows as
//! "n/a" with the reason beside it, and [`HtmlReport::render`] refuses a page that would
//! contain `NaN` anywhere.

use super::{plot, Report};
use anyhow::{anyhow, bail, Result};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

/// A number with its unit, optional standard error, how it was obtained, and the results
/// it came from.
#[derive(Clone, Debug)]
pub struct Quantity {
    pub value: f64,
    pub se: Option<f64>,
    pub unit: String,
    /// How the number follows from its sources ("scalar `se`", "Σ NLL / Σ tokens", ...).
    pub how: String,
    pub sources: Vec<Arc<Report>>,
    /// Why the value is missing (shown instead of it), when it is not a finite number.
    pub missing: Option<String>,
}

impl Quantity {
    /// A result's value (`key` `None` or `"value"`) or one of its scalars; the standard
    /// error is scalar `se` for the value and `KEY_se` for a scalar, when present.
    pub fn of(report: &Arc<Report>, key: Option<&str>, unit: Option<&str>) -> Result<Quantity> {
        let (value, se, how) = match key {
            None | Some("value") => (
                report.value,
                report.scalars.get("se").copied(),
                "value".to_string(),
            ),
            Some(k) => match report.scalars.get(k) {
                Some(&v) => (
                    Some(v),
                    report.scalars.get(&format!("{k}_se")).copied(),
                    format!("scalar `{k}`"),
                ),
                None => bail!(
                    "quantity: result `{}` has no scalar `{k}` (scalars: {})",
                    report.metric,
                    report
                        .scalars
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        };
        let missing = match value {
            Some(v) if v.is_finite() => None,
            _ => {
                let mut why = format!("{} gave no finite {how}", report.metric);
                if let Some(n) = report.notes.first() {
                    why.push_str(": ");
                    why.push_str(&prose(n));
                }
                Some(why)
            }
        };
        Ok(Quantity {
            value: value.unwrap_or(f64::NAN),
            se: se.filter(|s| s.is_finite()),
            unit: unit.map_or_else(|| report.unit.clone(), str::to_string),
            how,
            sources: vec![report.clone()],
            missing,
        })
    }

    /// A number computed from `sources` (at least one), described by `how`.
    pub fn derived(
        value: f64,
        se: Option<f64>,
        unit: &str,
        how: &str,
        sources: Vec<Arc<Report>>,
    ) -> Result<Quantity> {
        if sources.is_empty() {
            bail!("derived: `from` must name at least one result the number comes from");
        }
        if how.trim().is_empty() {
            bail!("derived: `how` must say how the number follows from its results");
        }
        let missing = (!value.is_finite()).then(|| format!("not a finite number, from: {how}"));
        Ok(Quantity {
            value,
            se: se.filter(|s| s.is_finite()),
            unit: unit.to_string(),
            how: how.to_string(),
            sources,
            missing,
        })
    }
}

/// One table cell.
#[derive(Clone, Debug)]
pub enum Cell {
    Text(String),
    /// A count or index (an input, not a measurement).
    Int(i64),
    Num(Quantity),
    /// No value, with the reason.
    Na(String),
}

#[derive(Clone, Debug)]
enum Block {
    Heading(String),
    Paragraph(String),
    Table {
        caption: Option<String>,
        header: Vec<String>,
        rows: Vec<Vec<Cell>>,
    },
    Figure {
        svg: String,
        caption: String,
        sources: Vec<Arc<Report>>,
    },
}

/// A report being built: blocks in order, rendered by [`HtmlReport::render`].
#[derive(Clone, Debug)]
pub struct HtmlReport {
    pub title: String,
    blocks: Vec<Block>,
}

/// One line of [`HtmlReport::lines`]: its name, points and the results it comes from.
pub struct Line {
    pub name: String,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    pub sources: Vec<Arc<Report>>,
}

impl HtmlReport {
    pub fn new(title: &str) -> HtmlReport {
        HtmlReport {
            title: title.to_string(),
            blocks: Vec::new(),
        }
    }

    pub fn section(&mut self, heading: &str) {
        self.blocks.push(Block::Heading(heading.to_string()));
    }

    pub fn text(&mut self, paragraph: &str) {
        self.blocks.push(Block::Paragraph(paragraph.to_string()));
    }

    pub fn table(
        &mut self,
        caption: Option<&str>,
        header: Vec<String>,
        rows: Vec<Vec<Cell>>,
    ) -> Result<()> {
        if let Some((i, r)) = rows
            .iter()
            .enumerate()
            .find(|(_, r)| r.len() != header.len())
        {
            bail!(
                "table: row {i} has {} cells but the header has {}",
                r.len(),
                header.len()
            );
        }
        self.blocks.push(Block::Table {
            caption: caption.map(str::to_string),
            header,
            rows,
        });
        Ok(())
    }

    /// A figure of one result, drawn with its plot spec overridden by `spec`
    /// (`plot.rs`); `caption` is shown under it.
    pub fn plot(
        &mut self,
        report: &Arc<Report>,
        spec: &Map<String, Value>,
        caption: &str,
    ) -> Result<()> {
        let svg = plot::svg(report, spec)?;
        self.figure(svg, caption, vec![report.clone()])
    }

    /// A figure of lines from several results, each with its own x.
    pub fn lines(
        &mut self,
        title: &str,
        lines: Vec<Line>,
        labels: [String; 2],
        log_y: bool,
        caption: &str,
    ) -> Result<()> {
        if let Some(l) = lines.iter().find(|l| !l.y.iter().any(|v| v.is_finite())) {
            bail!("lines: line `{}` has no finite value to draw", l.name);
        }
        if let Some(l) = lines.iter().find(|l| l.sources.is_empty()) {
            bail!("lines: line `{}` names no result it comes from", l.name);
        }
        let sources = lines.iter().flat_map(|l| l.sources.clone()).collect();
        let series = lines
            .into_iter()
            .map(|l| plot::Series {
                name: l.name,
                x: l.x,
                y: l.y,
            })
            .collect();
        let svg = plot::overlay_svg(title, series, labels, log_y)?;
        self.figure(svg, caption, sources)
    }

    fn figure(&mut self, svg: String, caption: &str, sources: Vec<Arc<Report>>) -> Result<()> {
        // Inline SVG needs no XML prolog; plotters writes none, but be sure.
        let start = svg
            .find("<svg")
            .ok_or_else(|| anyhow!("figure: the drawing is not SVG"))?;
        self.blocks.push(Block::Figure {
            svg: svg[start..].to_string(),
            caption: caption.to_string(),
            sources,
        });
        Ok(())
    }

    /// Number of figures so far.
    pub fn figures(&self) -> usize {
        self.blocks
            .iter()
            .filter(|b| matches!(b, Block::Figure { .. }))
            .count()
    }

    /// The page. Fails when a `NaN` would reach it (a value must show as n/a with a reason).
    pub fn render(&self) -> Result<String> {
        let mut sources = Sources::default();
        let mut body = String::new();
        let mut fig_no = 0;
        let mut in_figs = false;
        for b in &self.blocks {
            let is_fig = matches!(b, Block::Figure { .. });
            if is_fig && !in_figs {
                body.push_str("<div class=\"figs\">\n");
            } else if !is_fig && in_figs {
                body.push_str("</div>\n");
            }
            in_figs = is_fig;
            match b {
                Block::Heading(h) => {
                    let _ = writeln!(body, "<h2>{}</h2>", esc(h));
                }
                Block::Paragraph(p) => {
                    let _ = writeln!(body, "<p>{}</p>", inline(p));
                }
                Block::Table {
                    caption,
                    header,
                    rows,
                } => {
                    body.push_str("<table>\n");
                    if let Some(c) = caption {
                        let _ = writeln!(body, "<caption>{}</caption>", inline(c));
                    }
                    body.push_str("<tr>");
                    for h in header {
                        let _ = write!(body, "<th>{}</th>", esc(h));
                    }
                    body.push_str("</tr>\n");
                    for r in rows {
                        body.push_str("<tr>");
                        for c in r {
                            body.push_str(&cell(c, &mut sources));
                        }
                        body.push_str("</tr>\n");
                    }
                    body.push_str("</table>\n");
                }
                Block::Figure {
                    svg,
                    caption,
                    sources: from,
                } => {
                    fig_no += 1;
                    let refs = sources.refs(from);
                    let _ = writeln!(
                        body,
                        "<figure id=\"fig-{fig_no}\">{svg}<figcaption>Figure {fig_no}. {}{refs}</figcaption></figure>",
                        inline(caption)
                    );
                }
            }
        }
        if in_figs {
            body.push_str("</div>\n");
        }
        let mut page = String::new();
        let _ = write!(
            page,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"generator\" content=\"tokit {}\">\n<title>{}</title>\n<style>{CSS}</style>\n\
             </head>\n<body>\n<h1>{}</h1>\n{body}",
            env!("CARGO_PKG_VERSION"),
            esc(&self.title),
            esc(&self.title)
        );
        page.push_str(&sources.table());
        page.push_str("</body>\n</html>\n");
        if let Some(i) = find_nan(&page) {
            let at = &page[i.saturating_sub(80)..(i + 40).min(page.len())];
            bail!("html report: a NaN would be printed near: …{at}…");
        }
        Ok(page)
    }

    /// Render and write the page atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        super::write_atomic(path, self.render()?.as_bytes())
    }
}

/// Where `NaN` stands as a word in `s` (not inside a longer word).
fn find_nan(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    s.match_indices("NaN").map(|(i, _)| i).find(|&i| {
        let before = i.checked_sub(1).map(|j| b[j]);
        let after = b.get(i + 3).copied();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphabetic())
    })
}

const CSS: &str = "
body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc;padding-bottom:.2em}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;vertical-align:top}
th{background:#f3f3f3;text-align:left}td.n{text-align:right;white-space:nowrap}
caption{caption-side:top;text-align:left;font-weight:bold;padding:.3em 0}
.figs{display:flex;flex-wrap:wrap;gap:1em;margin:1em 0}
figure{flex:1 1 0;min-width:320px;max-width:900px;margin:0}
figure svg{width:100%;height:auto;display:block;border:1px solid #eee}
figcaption{font-size:.9em;color:#444}
sup a{text-decoration:none;color:#06c}.na{color:#a00}.why{color:#666;font-size:.85em}
code{background:#f5f5f5;padding:0 .2em}
table.prov td{font-size:.85em}table.prov code{word-break:break-all}
";

/// A plugin's prose for the page: its word "NaN" (says a value is missing) reads "n/a",
/// so that the page-wide check for printed NaN keeps its meaning.
fn prose(s: &str) -> String {
    let mut out = s.to_string();
    while let Some(i) = find_nan(&out) {
        out.replace_range(i..i + 3, "n/a");
    }
    out
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Escaped text where `code` spans in backticks become `<code>`.
fn inline(s: &str) -> String {
    esc(s)
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{part}</code>")
            } else {
                part.to_string()
            }
        })
        .collect()
}

/// A number for reading: integers as such, else four significant digits (scientific
/// notation outside 1e-3..1e6).
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    if x.fract() == 0.0 && x.abs() < 1e15 {
        return format!("{x:.0}");
    }
    let a = x.abs();
    if (1e-3..1e6).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
        format!("{x:.decimals$}")
    } else {
        format!("{x:.3e}")
    }
}

fn cell(c: &Cell, sources: &mut Sources) -> String {
    match c {
        Cell::Text(t) => format!("<td>{}</td>", inline(t)),
        Cell::Int(i) => format!("<td class=\"n\">{i}</td>"),
        Cell::Na(why) => format!(
            "<td><span class=\"na\">n/a</span> <span class=\"why\">({})</span></td>",
            esc(why)
        ),
        Cell::Num(q) => {
            let refs = sources.refs(&q.sources);
            let tip = esc(&format!(
                "{} · {}",
                q.how,
                q.sources
                    .first()
                    .map(|r| r.metric.as_str())
                    .unwrap_or_default()
            ));
            match &q.missing {
                Some(why) => format!(
                    "<td><span class=\"na\" title=\"{tip}\">n/a</span>{refs} <span class=\"why\">({})</span></td>",
                    esc(why)
                ),
                None => {
                    let se = q
                        .se
                        .map(|s| format!(" ± {}", fmt_num(s)))
                        .unwrap_or_default();
                    let unit = if q.unit.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", esc(&q.unit))
                    };
                    format!(
                        "<td class=\"n\" title=\"{tip}\">{}{se}{unit}{refs}</td>",
                        fmt_num(q.value)
                    )
                }
            }
        }
    }
}

/// The provenance entries, numbered in order of first use. Results that agree on metric,
/// plugin, version, estimator, model, backend and tokit version share one entry (the same
/// measurement over several inputs, e.g. one per verse); parameters that differ between
/// them (a seed per verse, a length) are named as varying.
#[derive(Default)]
struct Sources {
    keys: BTreeMap<String, usize>,
    entries: Vec<Entry>,
}

struct Entry {
    first: Arc<Report>,
    /// The distinct results (by identity) this entry stands for.
    results: Vec<*const Report>,
    params: Vec<Map<String, Value>>,
    notes: Vec<String>,
}

impl Sources {
    fn key(r: &Report) -> String {
        let p = &r.provenance;
        serde_json::json!([
            r.metric,
            r.plugin,
            r.plugin_version,
            r.estimator,
            p.model_hash,
            p.model_path,
            p.arch,
            p.ablation,
            p.backend,
            p.tokit_version
        ])
        .to_string()
    }

    /// Register results; their entry numbers, deduplicated, as superscript links.
    fn refs(&mut self, from: &[Arc<Report>]) -> String {
        let mut ids: Vec<usize> = Vec::new();
        for r in from {
            let k = Self::key(r);
            let id = match self.keys.get(&k) {
                Some(&id) => id,
                None => {
                    self.entries.push(Entry {
                        first: r.clone(),
                        results: Vec::new(),
                        params: Vec::new(),
                        notes: Vec::new(),
                    });
                    self.keys.insert(k, self.entries.len());
                    self.entries.len()
                }
            };
            let e = &mut self.entries[id - 1];
            if !e.results.contains(&Arc::as_ptr(r)) {
                e.results.push(Arc::as_ptr(r));
            }
            if !e.params.contains(&r.params) {
                e.params.push(r.params.clone());
            }
            for n in &r.notes {
                if !e.notes.contains(n) && e.notes.len() < 4 {
                    e.notes.push(n.clone());
                }
            }
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        if ids.is_empty() {
            return String::new();
        }
        let links: Vec<String> = ids
            .iter()
            .map(|i| format!("<a href=\"#src-{i}\">{i}</a>"))
            .collect();
        format!("<sup>[{}]</sup>", links.join(","))
    }

    /// The parameters all results of an entry share, and the names of those that vary.
    fn params(sets: &[Map<String, Value>]) -> String {
        let mut common = Map::new();
        let mut varying = Vec::new();
        let mut keys: Vec<&String> = sets.iter().flat_map(|m| m.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let v = sets[0].get(k);
            if sets.iter().all(|m| m.get(k) == v) {
                if let Some(v) = v {
                    common.insert(k.clone(), v.clone());
                }
            } else {
                varying.push(format!("<code>{}</code>", esc(k)));
            }
        }
        let mut o = format!(
            "<code>{}</code>",
            esc(&prose(&Value::Object(common).to_string()))
        );
        if !varying.is_empty() {
            let _ = write!(
                o,
                "<br>varying over {} parameter sets: {}",
                sets.len(),
                varying.join(", ")
            );
        }
        o
    }

    fn table(&self) -> String {
        let mut o = String::from(
            "<h2 id=\"provenance\">Provenance</h2>\n<p>Every number and figure above links to \
             one of these entries. An entry is one measurement: results of the same metric, \
             plugin version, estimator and model (say, the same metric on each verse of a \
             text) share it; <em>results</em> counts them.</p>\n\
             <table class=\"prov\">\n<tr><th>#</th><th>metric</th><th>plugin</th>\
             <th>estimator</th><th>parameters</th><th>model</th><th>backend, tokit</th>\
             <th>results</th><th>notes</th></tr>\n",
        );
        for (i, e) in self.entries.iter().enumerate() {
            let r = &e.first;
            let p = &r.provenance;
            let model = match (&p.arch, &p.model_path) {
                (None, None) => "none".to_string(),
                _ => format!(
                    "{} <code>{}</code><br>fingerprint <code>{}</code>{}",
                    esc(p.arch.as_deref().unwrap_or("?")),
                    esc(p.model_path.as_deref().unwrap_or("?")),
                    esc(p.model_hash.as_deref().unwrap_or("?")),
                    p.ablation
                        .as_deref()
                        .map(|a| format!("<br>ablation {}", esc(a)))
                        .unwrap_or_default()
                ),
            };
            let notes: Vec<String> = e.notes.iter().map(|n| esc(&prose(n))).collect();
            let _ = writeln!(
                o,
                "<tr id=\"src-{}\"><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td>\
                 <td>{}</td><td>{model}</td><td>{}, tokit {}</td>\
                 <td class=\"n\">{}</td><td>{}</td></tr>",
                i + 1,
                i + 1,
                esc(&r.metric),
                esc(&r.plugin),
                esc(&r.plugin_version),
                esc(&r.estimator),
                Self::params(&e.params),
                esc(&p.backend),
                esc(&p.tokit_version),
                e.results.len(),
                notes.join("<br>")
            );
        }
        o.push_str("</table>\n");
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Provenance;
    use tokit_compute::Tensor;

    fn report(metric: &str, value: Option<f64>) -> Arc<Report> {
        Arc::new(Report {
            metric: metric.into(),
            plugin: "info".into(),
            plugin_version: "0.1.0".into(),
            description: String::new(),
            reconstruction: false,
            value,
            unit: "nats".into(),
            estimator: "exact".into(),
            scalars: BTreeMap::from([("se".to_string(), 0.25), ("k".to_string(), 3.0)]),
            params: Map::new(),
            notes: vec!["a note".into()],
            tensors: BTreeMap::from([(
                "curve".to_string(),
                Tensor::new(vec![3], vec![1.0, f32::NAN, 2.0]).unwrap(),
            )]),
            tokens: Vec::new(),
            provenance: Provenance {
                model_path: Some("models/m".into()),
                model_hash: Some("abcd".into()),
                arch: Some("toy".into()),
                ..Default::default()
            },
            plot: None,
        })
    }

    #[test]
    fn numbers_link_to_one_provenance_entry_per_measurement() {
        let a = report("cross_entropy", Some(1.5));
        let mut b = (*report("cross_entropy", Some(2.5))).clone();
        b.params.insert("seed".into(), 2.into());
        let b = Arc::new(b);
        let mut rep = HtmlReport::new("T <1>");
        rep.section("S");
        let q = Quantity::derived(2.0, None, "nats", "mean of two", vec![a.clone(), b]).unwrap();
        rep.table(
            Some("c"),
            vec!["model".into(), "H".into(), "n".into()],
            vec![
                vec![
                    Cell::Text("`m`".into()),
                    Cell::Num(Quantity::of(&a, None, None).unwrap()),
                    Cell::Int(3),
                ],
                vec![
                    Cell::Text("m2".into()),
                    Cell::Num(q),
                    Cell::Na("not causal".into()),
                ],
            ],
        )
        .unwrap();
        rep.plot(&a, &Map::new(), "the curve").unwrap();
        let page = rep.render().unwrap();
        assert!(page.contains("<title>T &lt;1&gt;</title>"), "{page}");
        assert!(page.contains("1.500 ± 0.2500 nats<sup>[<a href=\"#src-1\">1</a>]</sup>"));
        assert!(page.contains("<code>m</code>"));
        // Same metric and model: one entry for both results (used by two cells, a figure).
        assert_eq!(page.matches("<tr id=\"src-").count(), 1);
        assert!(
            page.contains("<td class=\"n\">2</td><td>a note</td>"),
            "{page}"
        );
        assert!(page.contains("varying over 2 parameter sets: <code>seed</code>"));
        assert!(page.contains("n/a</span> <span class=\"why\">(not causal)</span>"));
        assert!(page.contains("<figure id=\"fig-1\"><svg"));
        assert!(!page.contains("<?xml"));
    }

    #[test]
    fn nan_is_never_printed() {
        let r = report("capacity_probe", None);
        let q = Quantity::of(&r, None, None).unwrap();
        assert!(q.missing.as_deref().unwrap().contains("a note"));
        let mut rep = HtmlReport::new("t");
        rep.table(None, vec!["x".into()], vec![vec![Cell::Num(q)]])
            .unwrap();
        let nan = Quantity::derived(f64::NAN, None, "", "0/0", vec![r.clone()]).unwrap();
        rep.table(None, vec!["y".into()], vec![vec![Cell::Num(nan)]])
            .unwrap();
        let page = rep.render().unwrap();
        assert!(
            find_nan(&page).is_none() && page.matches(">n/a<").count() == 2,
            "{page}"
        );
        // A paragraph that would print NaN is refused.
        rep.text("x = NaN");
        let e = rep.render().unwrap_err().to_string();
        assert!(e.contains("NaN would be printed"), "{e}");
        // But words containing it are fine.
        assert!(find_nan("NaNa DNaN NaN2").is_some() && find_nan("NaNa DNaN").is_none());
        // Errors: no sources, unknown scalar, a line with nothing finite.
        assert!(Quantity::derived(1.0, None, "", "x", vec![]).is_err());
        let e = Quantity::of(&r, Some("nope"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("se") && e.contains("k"), "{e}");
        let line = Line {
            name: "l".into(),
            x: vec![0.0],
            y: vec![f64::NAN],
            sources: vec![r],
        };
        assert!(rep
            .lines("t", vec![line], ["x".into(), "y".into()], false, "")
            .is_err());
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_num(384.0), "384");
        assert_eq!(fmt_num(7.634226), "7.634");
        assert_eq!(fmt_num(0.0123456), "0.01235");
        assert_eq!(fmt_num(2067.77), "2068");
        assert_eq!(fmt_num(1.2e-7), "1.200e-7");
        assert_eq!(fmt_num(f64::NAN), "n/a");
    }
}
