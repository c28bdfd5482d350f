//! HTML reports through the Rhai API (`html_report`, `quantity`, `derived`, `na`), built
//! from fixture models and opened in headless Chromium: every figure is laid out and has
//! ink where the page puts it, the page holds no `NaN`, and it fetches nothing.
//!
//! Chromium (Debian package `chromium`, installed by `.ci/run`) is a prerequisite: under CI
//! its absence fails the test, locally it skips with a message.

use std::path::{Path, PathBuf};
use std::process::Command;
use tokit_engine::script::ScriptHost;
use tokit_tests::*;

fn path(f: &str) -> String {
    fixture(f).to_str().unwrap().replace('\\', "/")
}

/// Build a report from the three fixture architectures into `out`; returns the number of
/// figures the script added.
fn build_report(out: &Path) -> i64 {
    let src = format!(
        r#"
        let tr = load_model("{llama}");
        let ssm = load_model("{mamba}");
        let dif = load_model("{llada}");
        let ids = [0, 15, 38, 14, 54, 11, 6, 17, 33, 32, 45, 12, 13, 29, 7, 4, 21, 9, 30, 12];
        let s_tr = analyze("token_stats", #{{ model: tr, tokens: ids }});
        let s_ssm = analyze("token_stats", #{{ model: ssm, tokens: ids }});
        let e_dif = analyze("elbo", #{{ model: dif, tokens: ids, draws: 8, batch: 8, seed: 1 }});
        let e_dif2 = analyze("elbo", #{{ model: dif, tokens: ids, draws: 8, batch: 8, seed: 2 }});
        let g = analyze("granger_map", #{{ model: tr, tokens: ids }});
        let p = analyze("capacity_probe", #{{ model: tr, trials: 2, counts: [1, 2], token_min: 2 }});
        let rep = html_report("fixture <report> & co");
        rep.section("Likelihood");
        rep.text("Numbers live in tables; `code` is allowed.");
        rep.table("NLL", ["model", "value", "per token", "pooled", "count"], [
            ["llama", s_tr, s_tr.quantity("entropy_mean"), derived(#{{ value: (e_dif.value + e_dif2.value) / 2.0, unit: "nats",
                se: (), how: "mean of two seeds", from: [e_dif, e_dif2] }}), ids.len()],
            ["mamba2", s_ssm, s_ssm.quantity("heat_capacity_mean", ""), na("not measured here"), 3],
            ["probe", p, p.quantity("trials", ""), derived(#{{ value: 0.0 / 0.0, unit: "", how: "0/0", from: p }}), 0],
        ]);
        rep.plot(g, #{{ kind: "heatmap", z: "granger_kl", caption: "Granger map" }});
        rep.plot(g, #{{ kind: "lines", y: "lag_profile", caption: "lag profile" }});
        rep.lines(#{{ title: "surprisal", x_label: "t", y_label: "nats", series: [
            #{{ name: "llama", from: s_tr, y: "surprisal" }}, #{{ name: "mamba2", from: s_ssm, y: "surprisal" }}] }});
        rep.section("Alone");
        rep.lines(#{{ title: "running bound", x_label: "draw", y_label: "nats", log_y: true, series: [
            #{{ name: "seed 1", from: e_dif, y: "running_mean" }}, #{{ name: "seeds", from: [e_dif, e_dif2], y: [1.0, 2.0, 3.0] }}] }});
        rep.save("{out}");
        rep.figures()
        "#,
        llama = path("transformer/llama_gqa_tied"),
        mamba = path("mamba2/g1_chunk7_tied"),
        llada = path("llada/llada"),
        out = out.display().to_string().replace('\\', "/"),
    );
    let mut host = ScriptHost::new(engine());
    host.eval_named(&src, "report.rhai")
        .unwrap_or_else(|e| panic!("{e:#}"))
        .as_int()
        .unwrap()
}

/// The `<svg>...</svg>` elements of a page.
fn svgs(page: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = page;
    while let Some(i) = rest.find("<svg") {
        let end = rest[i..].find("</svg>").expect("closed svg") + i + 6;
        out.push(&rest[i..end]);
        rest = &rest[end..];
    }
    out
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn headless(chrome: &Path, args: &[&str], page: &Path) -> std::process::Output {
    let out = Command::new(chrome)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--virtual-time-budget=5000",
        ])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("running chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn report_is_self_contained_and_every_number_has_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sub/report.html");
    let figures = build_report(&file);
    assert_eq!(figures, 4);
    let page = std::fs::read_to_string(&file).unwrap();
    assert!(page.contains("<title>fixture &lt;report&gt; &amp; co</title>"));
    // Nothing fetched: no scripts, links, images, imports or urls.
    for bad in [
        "<script", "<link", "<img", "src=", "@import", "url(", "https:",
    ] {
        assert!(!page.contains(bad), "page contains `{bad}`");
    }
    // The only address is the SVG namespace, a name that is never fetched.
    assert_eq!(
        page.matches("http:").count(),
        page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
    );
    assert!(!page.contains("NaN"), "NaN printed");
    // Each figure is well-formed SVG.
    let figs = svgs(&page);
    assert_eq!(figs.len(), 4);
    for s in &figs {
        let doc = roxmltree::Document::parse(s).expect("figure is valid SVG");
        assert!(doc.descendants().filter(|n| n.has_tag_name("text")).count() > 3);
    }
    // The 0/0 and the probe's missing value show as n/a with their reasons.
    assert!(page.contains("(not a finite number, from: 0/0)"), "{page}");
    assert!(page.contains("(not measured here)"));
    // Provenance: the two ELBO seeds share one entry whose varying parameter is named.
    let entries = page.matches("<tr id=\"src-").count();
    assert_eq!(
        entries, 5,
        "token_stats ×2, elbo, granger_map, capacity_probe"
    );
    assert!(page.contains("varying over 2 parameter sets: <code>seed</code>"));
    for (metric, model) in [("elbo", "llada"), ("granger_map", "llama_gqa_tied")] {
        let row = page
            .split("<tr id=\"src-")
            .find(|r| r.contains(&format!("<td>{metric}</td>")))
            .unwrap_or_else(|| panic!("no provenance row for {metric}"));
        assert!(
            row.contains(model) && row.contains("fingerprint <code>"),
            "{row}"
        );
    }
    // Every number cell links to a provenance entry.
    for cell in page.split("<td class=\"n\" title=").skip(1) {
        let cell = &cell[..cell.find("</td>").unwrap()];
        assert!(
            cell.contains("href=\"#src-"),
            "number without provenance: {cell}"
        );
    }
}

#[test]
fn figures_render_in_headless_chromium() {
    let Some(chrome) = chromium() else {
        missing_prerequisite(
            "figures_render_in_headless_chromium",
            "no `chromium` on PATH (Debian package chromium)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.html");
    let figures = build_report(&file) as usize;
    renders_in_chromium(&chrome, &file, figures);
}

/// tokit's main job: `scripts/compare_architectures.rhai` on the three trained models of
/// `models/` writes a report whose every figure renders.
#[test]
fn the_architecture_comparison_renders_in_headless_chromium() {
    let Some(chrome) = chromium() else {
        missing_prerequisite(
            "the_architecture_comparison_renders_in_headless_chromium",
            "no `chromium` on PATH (Debian package chromium)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("compare.rhai");
    let out = dir.path().join("report.html");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let src = std::fs::read_to_string(root.join("scripts/compare_architectures.rhai")).unwrap();
    let src = src.replacen(
        "let out = \"out/compare/report.html\";",
        &format!(
            "let out = \"{}\";",
            out.display().to_string().replace('\\', "/")
        ),
        1,
    );
    assert!(
        src.contains(&out.display().to_string().replace('\\', "/")),
        "output line"
    );
    std::fs::write(&script, src).unwrap();
    let o = tokit(&["run", script.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = std::fs::read_to_string(&out).unwrap();
    let figures = page.matches("<figure").count();
    assert!(figures >= 8, "{figures} figures");
    renders_in_chromium(&chrome, &out, figures);
}

/// Opens `file` in headless Chromium: `figures` figures are laid out, each box has ink
/// and colours in a screenshot, and the rendered page holds no `NaN`.
fn renders_in_chromium(chrome: &Path, file: &Path, figures: usize) {
    let dir = tempfile::tempdir().unwrap();
    // A copy of the page that, once laid out, writes each figure's box into the DOM.
    let probe = dir.path().join("probe.html");
    let page = std::fs::read_to_string(file).unwrap();
    let script = r#"<pre id="boxes">BOXES<script>
        const b = [...document.querySelectorAll('figure svg')].map(e => {
          const r = e.getBoundingClientRect();
          return [r.left + scrollX, r.top + scrollY, r.width, r.height].map(Math.round).join(',');
        });
        document.getElementById('boxes').textContent =
          'BOXES ' + document.documentElement.scrollHeight + ';' + b.join(';') + ' END';
        </script></pre></body>"#;
    std::fs::write(&probe, page.replace("</body>", script)).unwrap();
    let width = 1200;
    let dom = headless(
        chrome,
        &[&format!("--window-size={width},900"), "--dump-dom"],
        &probe,
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(!dom.contains("NaN"), "NaN in the rendered page");
    let boxes = dom
        .split("BOXES ")
        .nth(1)
        .and_then(|s| s.split(" END").next())
        .unwrap_or_else(|| panic!("no boxes written: {dom}"));
    let mut parts = boxes.split(';');
    let height: u32 = parts.next().unwrap().parse().unwrap();
    let boxes: Vec<[u32; 4]> = parts
        .map(|b| {
            let v: Vec<u32> = b.split(',').map(|x| x.parse().unwrap()).collect();
            [v[0], v[1], v[2], v[3]]
        })
        .collect();
    assert_eq!(boxes.len(), figures, "figures laid out");
    // Screenshot the whole page at the same width and look into each figure's box.
    let shot = dir.path().join("shot.png");
    headless(
        chrome,
        &[
            &format!("--window-size={width},{height}"),
            &format!("--screenshot={}", shot.display()),
        ],
        &probe,
    );
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert_eq!(info.width, width);
    for (i, &[x, y, w, h]) in boxes.iter().enumerate() {
        assert!(w >= 200 && h >= 140, "figure {i} is {w}x{h}");
        assert!(y + h <= info.height, "figure {i} below the screenshot");
        let mut ink = 0usize;
        let mut colours = std::collections::BTreeSet::new();
        for py in y..y + h {
            for px in x..(x + w).min(info.width) {
                let o = (py * info.width + px) as usize * channels;
                let (r, g, b) = (buf[o], buf[o + 1], buf[o + 2]);
                if r.min(g).min(b) < 200 {
                    ink += 1;
                }
                colours.insert((r / 32, g / 32, b / 32));
            }
        }
        let area = (w * h) as usize;
        assert!(
            ink * 200 > area && colours.len() >= 4,
            "figure {i} looks blank: {ink} ink pixels of {area}, {} colours",
            colours.len()
        );
    }
}

#[test]
fn bare_numbers_and_unknown_keys_are_refused() {
    let mut host = ScriptHost::new(engine());
    let cases = [
        (
            r#"html_report("t").table(["x"], [[1.5]])"#,
            "a bare number has no provenance",
        ),
        (r#"derived(#{ value: 1.0, how: "x" })"#, "needs `from`"),
        (
            r#"derived(#{ value: 1.0, how: "x", from: [] })"#,
            "at least one result",
        ),
        (
            r#"html_report("t").lines(#{ series: [], colour: "red" })"#,
            "unknown key `colour`",
        ),
        (
            r#"html_report("t").table(["a", "b"], [["x"]])"#,
            "row 0 has 1 cells but the header has 2",
        ),
    ];
    for (src, want) in cases {
        let e = format!("{:#}", host.eval_named(src, "t.rhai").unwrap_err());
        assert!(e.contains(want), "{src}: {e}");
    }
}
