//! `report.html`: one self-contained page (inline SVG drawn here with `plotters`, inline CSS,
//! no script, no network) with the recall–queries/s plots, bar charts of build time, load time,
//! index size and peak memory, the notebook's table, the sweeps, and the machine and
//! parameters.

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bench_runner::{BenchFile, EngineReport, SweepPoint};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use serde_json::Value;

const PALETTE: [RGBColor; 12] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 0),
    RGBColor(100, 100, 255),
];

/// Which queries/s of a sweep point: one thread or all.
type Qps = fn(&SweepPoint) -> f64;

/// One line of a plot: its colour's index, its engine, its points.
type Series<'a, 'b> = (usize, &'a Entry<'b>, Vec<(f64, f64)>);

/// One engine or peer as the page shows it.
struct Entry<'a> {
    name: String,
    ours: bool,
    e: &'a EngineReport,
}

/// `cargo xtask report`: the page again from a JSON file.
pub fn run(args: &crate::cli::ReportArgs) -> Result<(), Box<dyn Error>> {
    let page = write(&args.report, &BenchFile::read(&args.json)?)?;
    eprintln!("wrote {}", page.display());
    Ok(())
}

/// Writes `dir/report.html` from a bench JSON document (with `"peers"` when present) and
/// returns its path.
pub fn write(dir: &Path, doc: &BenchFile) -> Result<PathBuf, Box<dyn Error>> {
    std::fs::create_dir_all(dir)?;
    let html = render(doc)?;
    let path = dir.join("report.html");
    std::fs::write(&path, html).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

fn entries(doc: &BenchFile) -> Vec<Entry<'_>> {
    let mut out = Vec::new();
    for (list, ours) in [(&doc.report.engines, true), (&doc.peers, false)] {
        for e in list {
            let name = &e.name;
            out.push(Entry {
                name: if ours {
                    format!("{name} (ours)")
                } else {
                    name.clone()
                },
                ours,
                e,
            });
        }
    }
    out
}

pub fn render(doc: &BenchFile) -> Result<String, Box<dyn Error>> {
    let entries = entries(doc);
    let mut h = String::new();
    let title = "Face-embedding search: engines compared";
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>{CSS}</style></head><body>\n<h1>{title}</h1>\n"
    );
    let ds = &doc.dataset;
    let r = &doc.report;
    let _ = writeln!(
        h,
        "<p class=\"lead\">Gallery of <b>{}</b> vectors × <b>{}</b> dims ({}); recall@{} against exact \
         search over <b>{}</b> held-out queries; cosine threshold τ = {}. Headline query \
         <code>{}</code>, truth: <code>{}</code>.</p>",
        r.gallery_len,
        r.dim,
        esc(&dataset_text(ds)),
        r.k,
        r.queries,
        r.tau,
        esc(&r.query_label),
        esc(&r.truth.join(" "))
    );

    h.push_str("<h2>Recall vs queries per second</h2>\n<p>Each line is one engine or peer with its speed/accuracy knob swept (HNSW <code>ef</code>, forest/annoy <code>search_k</code>, usearch <code>expansion_search</code>); up and to the right is better. Exact engines are single points. Ours: thick lines, filled dots; peers: thin lines, open dots.</p>\n<div class=\"row\">");
    let threads: [(Qps, &str); 2] = [(|p| p.qps_1t, "one thread"), (|p| p.qps_all, "all threads")];
    for (field, label) in threads {
        h.push_str("<figure>");
        h.push_str(&recall_plot(&entries, field, label)?);
        let _ = write!(
            h,
            "<figcaption>Queries/s on {label} (log scale) vs recall@{}</figcaption></figure>",
            r.k
        );
    }
    h.push_str("</div>\n");

    h.push_str("<h2>Build, load, size, memory</h2>\n<div class=\"row\">");
    type Figure = fn(&EngineReport) -> Option<f64>;
    let bars: [(Figure, &str, f64, &str); 4] = [
        (|e| Some(e.build_s), "Build time (s)", 1.0, "s"),
        (|e| Some(e.load_s), "Load time (ms)", 1e3, "ms"),
        (
            |e| Some(e.index_bytes as f64),
            "Index size on disk (MB)",
            1e-6,
            "MB",
        ),
        (
            |e| e.peak_rss_bytes.map(|b| b as f64),
            "Peak resident memory (MB)",
            1e-6,
            "MB",
        ),
    ];
    for (field, caption, scale, unit) in bars {
        h.push_str("<figure>");
        h.push_str(&bar_chart(&entries, field, scale, unit)?);
        let _ = write!(h, "<figcaption>{caption}</figcaption></figure>");
    }
    h.push_str("</div>\n<p class=\"note\">Build time 0 or missing: the index file was given or reused from an earlier run (its recorded build time is shown when reused). Peak memory: the process's high-water mark during that engine's build, load and queries (Linux VmHWM, reset before each engine), including the gallery and queries it holds; peers each run in their own process (Python, or peers-rs/ for the Rust crates).</p>\n");

    if !doc.peers.is_empty() {
        let table = crate::peers::ratio_table(doc);
        let (legend, rows) = table.split_once('\n').unwrap_or(("", &table));
        let _ = write!(
            h,
            "<h2>Ours / theirs</h2>\n<p class=\"note\">{}</p>\n<pre>{}</pre>\n",
            esc(legend),
            esc(rows)
        );
    }
    if let Some(table) = doc.verdict.as_ref().and_then(crate::verdict::table_of) {
        let (legend, rows) = table.split_once('\n').unwrap_or(("", &table));
        let _ = write!(
            h,
            "<h2>Verdict: every run of <code>cargo xtask verdict</code></h2>\n<p class=\"note\">{}. \
             The plots and tables on this page are the last run's.</p>\n<pre>{}</pre>\n",
            esc(legend),
            esc(rows)
        );
    }
    if entries.iter().any(|en| en.e.identification.is_some()) {
        h.push_str("<h2>Who is it? Identification errors</h2>\n<p>Open-set identification as NIST FRVT 1:N and IJB-C measure it: FNIR (a probe of an enrolled person not named at rank 1 above the threshold) against FPIR (a probe of someone not enrolled named as somebody), the threshold swept over the non-mated probes' best scores; down and to the left is better. An approximate engine can only miss gallery rows: at a fixed threshold it names fewer strangers and misses more mates whose best image it did not reach; at a fixed FPIR the threshold moves with it, so its FNIR minus exact search's is usually positive but can be negative when it also misses the impostors that outscore a mate.</p>\n<div class=\"row\"><figure>");
        h.push_str(&det_plot(&entries)?);
        h.push_str("<figcaption>DET: FNIR vs FPIR (log axes), each engine at its default knob</figcaption></figure></div>\n");
        h.push_str(&identification_table(&entries));
    }
    if !doc.distributed.is_empty() {
        let _ = write!(
            h,
            "<h2>Sharded over Ray</h2>\n<p class=\"note\">The gallery split into shards, each \
             shard an index served by Ray actors (replicas on different nodes of a two-node \
             cluster on this machine), queries fanned out to every shard and merged; beside \
             each engine in one process without Ray (<code>local</code>). On one machine this \
             measures what the fan-out costs, not what more machines gain \
             (<code>cargo xtask distributed</code>; docs/distributed.md).</p>\n<pre>{}</pre>\n",
            esc(&bench_runner::distributed_table(&doc.distributed))
        );
    }
    h.push_str("<h2>The notebook's table</h2>\n");
    h.push_str(&notebook_table(&entries));

    h.push_str("<h2>Sweeps</h2>\n");
    h.push_str(&sweep_tables(&entries));

    h.push_str("<h2>Machine and parameters</h2>\n<table class=\"kv\">");
    for (k, v) in doc.machine.as_object().into_iter().flatten() {
        let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&plain(v)));
    }
    for (section, value) in [("parameters", &doc.params), ("dataset", &doc.dataset)] {
        let mut flat = Vec::new();
        flatten(section, value, &mut flat);
        for (k, v) in flat {
            let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(&k), esc(&v));
        }
    }
    h.push_str("</table>\n");
    if let Some(p) = &doc.peers_params {
        h.push_str("<p>Peers:</p><pre>");
        h.push_str(&esc(&serde_json::to_string_pretty(p).unwrap_or_default()));
        h.push_str("</pre>\n");
    }
    h.push_str("</body></html>\n");
    Ok(h)
}

fn dataset_text(ds: &Value) -> String {
    match ds["kind"].as_str() {
        Some("synthetic") => format!(
            "synthetic: {} people × {} images + {} random distractors, seed {}",
            ds["identities"], ds["images_per_identity"], ds["distractors"], ds["seed"]
        ),
        Some("faces") => format!(
            "faces: {} people × {} images, every distractor a person; {} mated and {} non-mated \
             probes; cone {}, look-alikes {}, hard probes {}, seed {}",
            ds["people"],
            ds["images_per_person"],
            ds["mated_probes"],
            ds["non_mated_probes"],
            ds["cone"],
            ds["lookalike_fraction"],
            ds["hard_probe_fraction"],
            ds["seed"]
        ),
        Some("files") => format!(
            "from {}, queries from {}",
            ds["gallery"].as_str().unwrap_or("?"),
            ds["queries"].as_str().unwrap_or("?")
        ),
        _ => "unknown source".into(),
    }
}

fn recall_plot(entries: &[Entry<'_>], field: Qps, label: &str) -> Result<String, Box<dyn Error>> {
    let series: Vec<Series<'_, '_>> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, en)| {
            let mut pts: Vec<(f64, f64)> =
                en.e.sweep
                    .iter()
                    .map(|p| (p.recall_at_k, field(p)))
                    .filter(|(r, q)| r.is_finite() && q.is_finite() && *q > 0.0)
                    .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let pts = pts
                .into_iter()
                .map(|(r, q)| (nines(r), q))
                .collect::<Vec<_>>();
            (!pts.is_empty()).then_some((i, en, pts))
        })
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (600, 450)).into_drawing_area();
        root.fill(&WHITE)?;
        if series.is_empty() {
            root.draw(&Text::new(
                "no sweep: run with --sweep",
                (200, 220),
                ("sans-serif", 18),
            ))?;
            root.present()?;
        } else {
            let all = series.iter().flat_map(|s| s.2.iter());
            let (mut lo_x, mut lo_q, mut hi_q) = (NINES_MAX, f64::MAX, 0.0f64);
            for &(r, q) in all {
                lo_x = lo_x.min(nines(r));
                lo_q = lo_q.min(q);
                hi_q = hi_q.max(q);
            }
            let x0 = (lo_x * 2.0).floor() / 2.0;
            let y0 = 10f64.powf(lo_q.log10().floor());
            let y1 = 10f64.powf(hi_q.log10().ceil()).max(y0 * 10.0);
            let mut chart = ChartBuilder::on(&root)
                .caption(format!("recall vs queries/s, {label}"), ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(64)
                .build_cartesian_2d(x0..NINES_MAX + 0.05, (y0..y1).log_scale())?;
            chart
                .configure_mesh()
                .x_desc("recall@k (axis in nines: 0.9, 0.99, 0.999)")
                .y_desc("queries/s")
                .x_label_formatter(&|x| recall_label(*x))
                .y_label_formatter(&|y| si(*y))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()?;
            for (i, en, pts) in &series {
                let color = PALETTE[i % PALETTE.len()];
                let width = if en.ours { 3 } else { 1 };
                chart
                    .draw_series(LineSeries::new(
                        pts.iter().copied(),
                        color.stroke_width(width),
                    ))?
                    .label(en.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
                    });
                let ours = en.ours;
                chart.draw_series(pts.iter().map(|&(x, y)| {
                    if ours {
                        Circle::new((x, y), 4, color.filled())
                    } else {
                        Circle::new((x, y), 4, color.stroke_width(1))
                    }
                }))?;
            }
            draw_legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
            root.present()?;
        }
    }
    Ok(svg)
}

/// Draws a chart's legend at `position`, in the one style every plot of the report uses.
fn draw_legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), Box<dyn Error>>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;
    Ok(())
}

fn det_plot(entries: &[Entry<'_>]) -> Result<String, Box<dyn Error>> {
    const FLOOR: f64 = 1e-4;
    let series: Vec<Series<'_, '_>> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, en)| {
            let id = en.e.identification.as_ref()?;
            let pts: Vec<(f64, f64)> = id
                .at_default
                .det
                .iter()
                .map(|&[fpir, fnir]| (fpir.max(FLOOR), fnir.max(FLOOR)))
                .collect();
            (!pts.is_empty()).then_some((i, en, pts))
        })
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (600, 450)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("DET", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d((FLOOR..1.0).log_scale(), (FLOOR..1.0).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("FPIR (non-mated probes named as someone)")
            .y_desc("FNIR (mated probes missed)")
            .x_label_formatter(&|x| format!("{x}"))
            .y_label_formatter(&|y| format!("{y}"))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        for (i, en, pts) in &series {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
                .label(en.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present()?;
    }
    Ok(svg)
}

fn identification_table(entries: &[Entry<'_>]) -> String {
    let exact = entries
        .iter()
        .find(|en| en.ours && en.e.name == "linear")
        .and_then(|en| en.e.identification.as_ref());
    let mut h =
        String::from("<table><tr><th>engine</th><th>knob</th><th>rank-1</th><th>rank-5</th>");
    let targets: Vec<f64> = entries
        .iter()
        .find_map(|en| en.e.identification.as_ref())
        .map(|id| {
            id.at_default
                .operating_points
                .iter()
                .map(|p| p.target_fpir)
                .collect()
        })
        .unwrap_or_default();
    for t in &targets {
        let _ = write!(h, "<th>FNIR at FPIR {t}</th><th>vs exact</th>");
    }
    h.push_str("<th>FPIR at τ</th><th>FNIR at τ</th><th>watchlist recall@k</th><th>threshold search, mated (ms)</th><th>threshold search, non-mated (ms)</th></tr>\n");
    for en in entries {
        let Some(id) = &en.e.identification else {
            continue;
        };
        for p in std::iter::once(&id.at_default).chain(&id.sweep) {
            let _ = write!(
                h,
                "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
                if en.ours { "ours" } else { "peer" },
                esc(&en.name),
                esc(p.knob.as_deref().unwrap_or("exact")),
                num(Some(p.rank1), 4),
                num(Some(p.rank5), 4)
            );
            for (i, op) in p.operating_points.iter().enumerate() {
                let delta = exact
                    .and_then(|x| x.at_default.operating_points.get(i))
                    .map(|x| op.fnir - x.fnir);
                let _ = write!(
                    h,
                    "<td>{}</td><td>{}</td>",
                    num(Some(op.fnir), 4),
                    delta.map_or("–".into(), |d| format!("{d:+.4}"))
                );
            }
            let _ = writeln!(
                h,
                "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                num(Some(p.at_tau.fpir), 4),
                num(Some(p.at_tau.fnir), 4),
                num(p.watchlist_recall_at_k, 4),
                num(Some(p.mated_threshold_median_s * 1e3), 3),
                num(Some(p.non_mated_threshold_median_s * 1e3), 3)
            );
        }
    }
    h.push_str("</table>\n");
    h
}

/// Recall 1.0 sits here on the "nines" axis (recall 0.999 and above).
const NINES_MAX: f64 = 3.0;

/// The "nines" of a recall, `-log10(1 - r)`, capped at [`NINES_MAX`]: 0.9 → 1, 0.99 → 2. Spreads
/// the high-recall end where the engines differ, as ann-benchmarks' plots do.
fn nines(recall: f64) -> f64 {
    (-(1.0 - recall).max(10f64.powf(-NINES_MAX)).log10()).clamp(0.0, NINES_MAX)
}

fn recall_label(x: f64) -> String {
    if x >= NINES_MAX - 1e-9 {
        return "1".into();
    }
    let r = 1.0 - 10f64.powf(-x);
    let digits = (x.ceil() as usize).max(1) + 1;
    let text = format!("{r:.digits$}");
    let text = text.trim_end_matches('0');
    text.trim_end_matches('.').to_owned()
}

fn bar_chart(
    entries: &[Entry<'_>],
    field: fn(&EngineReport) -> Option<f64>,
    scale: f64,
    unit: &str,
) -> Result<String, Box<dyn Error>> {
    let bars: Vec<(usize, &Entry<'_>, f64)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, en)| Some((i, en, field(en.e)? * scale)))
        .filter(|b| b.2.is_finite())
        .collect();
    let names: Vec<String> = bars.iter().map(|b| b.1.name.clone()).collect();
    let n = bars.len().max(1);
    let height = 70 + 30 * n as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (600, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let max = bars.iter().map(|b| b.2).fold(0.0f64, f64::max);
        let right = if max > 0.0 { max * 1.25 } else { 1.0 };
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(130)
            .build_cartesian_2d(0.0..right, (0..n as i32 - 1).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .x_desc(unit)
            .x_label_formatter(&|x| si(*x))
            .y_labels(n)
            .y_label_style(("sans-serif", 13))
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()?;
        for (slot, (i, en, v)) in bars.iter().enumerate() {
            let slot = slot as i32;
            let color = PALETTE[i % PALETTE.len()];
            let style = if en.ours {
                color.filled()
            } else {
                color.mix(0.5).filled()
            };
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(slot)),
                    (*v, SegmentValue::Exact(slot + 1)),
                ],
                style,
            );
            bar.set_margin(3, 3, 0, 0);
            chart.draw_series(std::iter::once(bar))?;
            chart.draw_series(std::iter::once(Text::new(
                si(*v),
                (*v + right * 0.01, SegmentValue::CenterOf(slot)),
                ("sans-serif", 12).into_font(),
            )))?;
        }
        root.present()?;
    }
    Ok(svg)
}

fn notebook_table(entries: &[Entry<'_>]) -> String {
    let mut h = String::from(
        "<table><tr><th>engine</th><th>Load (s)</th><th>Query (s)</th><th>Total (s)</th><th>median query (ms)</th><th>recall@k</th><th>threshold recall</th><th>build (s)</th><th>index (MB)</th><th>peak RSS (MB)</th><th>knob</th><th>labels of the headline query</th></tr>\n",
    );
    for en in entries {
        let e = en.e;
        let build = match e.index_origin.as_str() {
            "given" => "given".to_owned(),
            "cached" => format!("{:.2} (cached)", e.build_s),
            _ => format!("{:.2}", e.build_s),
        };
        let _ = writeln!(
            h,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            if en.ours { "ours" } else { "peer" },
            esc(&en.name),
            num(Some(e.load_s), 4),
            num(Some(e.query_s), 6),
            num(Some(e.total_s), 4),
            num(Some(e.query_median_s * 1e3), 3),
            num(Some(e.recall_at_k), 3),
            num(e.threshold_recall, 3),
            build,
            num(Some(e.index_bytes as f64 * 1e-6), 1),
            num(e.peak_rss_bytes.map(|b| b as f64 * 1e-6), 0),
            esc(e.knob.as_deref().unwrap_or("")),
            esc(&e.labels.join(" "))
        );
    }
    h.push_str("</table>\n");
    h
}

fn sweep_tables(entries: &[Entry<'_>]) -> String {
    let mut h = String::from("<div class=\"row\">");
    for en in entries {
        let points = &en.e.sweep;
        if points.is_empty() {
            continue;
        }
        let _ = write!(
            h,
            "<table class=\"sweep\"><caption>{}</caption><tr><th>{}</th><th>recall@k</th><th>q/s 1 thread</th><th>q/s all</th></tr>",
            esc(&en.name),
            esc(&points[0].param)
        );
        for p in points {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                p.value,
                num(Some(p.recall_at_k), 4),
                num(Some(p.qps_1t), 0),
                num(Some(p.qps_all), 0)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</div>\n");
    h
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or("–".into(), |x| format!("{x:.digits$}"))
}

/// `{"hnsw": {"m": 48}}` as `("prefix.hnsw.m", "48")` rows; arrays of scalars on one line.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            let joined: Vec<String> = items.iter().map(plain).collect();
            out.push((prefix.to_owned(), joined.join(", ")));
        }
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            out.push((prefix.to_owned(), (x as f32).to_string()));
        }
        other => out.push((prefix.to_owned(), plain(other))),
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "–".into(),
        other => other.to_string(),
    }
}

/// A number in a short form: 1.2k, 35M, 0.004.
fn si(x: f64) -> String {
    let a = x.abs();
    if a >= 1e9 {
        format!("{:.3}G", x / 1e9)
    } else if a >= 1e6 {
        format!("{:.3}M", x / 1e6)
    } else if a >= 1e5 {
        format!("{:.0}k", x / 1e3)
    } else if a >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else if a == 0.0 {
        "0".into()
    } else {
        format!("{x:.3}")
    }
    .trim_end_matches(".00")
    .to_owned()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1300px;color:#222;padding:0 16px}\
h1{font-size:26px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}\
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}figure{margin:0}figcaption{text-align:center;font-size:14px;color:#555}\
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}\
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}tr.ours td:first-child{font-weight:bold}\
table.sweep caption{font-weight:bold;text-align:left}table.kv td{text-align:left}\
code{font-size:12px}pre{background:#f7f7f7;padding:8px;font-size:12px;overflow:auto}.note,.lead{max-width:1100px}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::engine;

    #[test]
    fn nines_axis() {
        assert!((nines(0.9) - 1.0).abs() < 1e-9 && (nines(0.99) - 2.0).abs() < 1e-9);
        assert_eq!(nines(1.0), NINES_MAX);
        assert_eq!(nines(0.0), 0.0);
        assert_eq!(recall_label(1.0), "0.9");
        assert_eq!(recall_label(2.0), "0.99");
        assert_eq!(recall_label(NINES_MAX), "1");
    }

    #[test]
    fn a_recorded_verdict_is_shown_with_every_run() {
        let mut doc = crate::fixtures::bench_file(
            vec![engine("hnsw", &[], &[(20, 0.995, 1000.0, 1900.0)])],
            vec![engine("symqg", &[], &[(100, 0.995, 800.0, 1500.0)])],
        );
        let line = |figure: &str, runs: [f64; 2]| serde_json::json!({"who": "hnsw / symqg", "figure": figure, "per_run": runs});
        doc.verdict = Some(serde_json::json!({
            "runs": 2,
            "ratios": [line("qps1@.99", [1.25, 0.75])],
            "best_qps": [],
        }));
        let page = render(&doc).unwrap();
        assert!(page.contains("Verdict"), "the section is there");
        assert!(
            page.contains("run 2") && page.contains("0.75–1.25"),
            "{page}"
        );
    }

    #[test]
    fn page_is_self_contained_and_has_every_engine() {
        let doc = crate::fixtures::bench_file(
            vec![engine(
                "hnsw",
                &["a<b"],
                &[(10, 0.9, 1000.0, 1900.0), (20, 0.95, 800.0, 1500.0)],
            )],
            vec![engine("hnswlib", &[], &[(10, 0.91, 900.0, 1700.0)])],
        );
        let page = render(&doc).unwrap();
        assert!(page.contains("hnsw (ours)") && page.contains("hnswlib"));
        assert!(!page.contains("Verdict"), "no verdict recorded, none shown");
        assert!(page.contains("a&lt;b"), "labels are escaped");
        assert!(
            page.matches("<svg").count() >= 6,
            "two plots and four bar charts"
        );
        for remote in ["http://", "https://", "<script", "<link"] {
            assert!(
                !page
                    .replace("http://www.w3.org/2000/svg", "")
                    .contains(remote),
                "page loads {remote}"
            );
        }
    }
}
