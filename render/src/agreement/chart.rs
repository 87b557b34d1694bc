//! The per-method agreement numbers as a plain-text table (cells for HTML too) and as a
//! grouped bar chart in SVG.

use std::fmt::Write;

use super::AgreementRow;
use crate::text::{escape, px, text_width};

/// Checks that `rows` were built with `ks`.
///
/// # Panics
/// When a row has a different number of AUCs than `ks` has entries.
fn assert_rows_match(rows: &[AgreementRow], ks: &[usize]) {
    for row in rows {
        assert_eq!(
            row.auc.len(),
            ks.len(),
            "row {:?} has {} AUCs but {} ks were given",
            row.method,
            row.auc.len(),
            ks.len()
        );
    }
}

/// A plain-text table, columns aligned, numbers at 3 decimals:
///
/// ```text
/// reference: exact; Spearman of |score| vs |exact|; AUC of |score|, positives = top k by |exact|
/// method    Spearman  AUC@5  AUC@10
/// --------  --------  -----  ------
/// EAP          0.878  0.714   0.756
/// ```
///
/// # Panics
/// When a row's AUC count differs from `ks.len()` (the rows were built with other ks).
pub fn format_table(rows: &[AgreementRow], ks: &[usize]) -> String {
    let reference = rows.first().map_or("reference", |r| r.reference.as_str());
    let (header, body) = table_cells(rows, ks);
    let mut out = format!(
        "reference: {reference}; Spearman of |score| vs |{reference}|; \
         AUC of |score|, positives = top k by |{reference}|\n"
    );
    out.push_str(&aligned_table(&header, &body));
    out
}

/// The agreement table as header and rows of cells (method, Spearman, AUC per k; 3
/// decimals), for the text table and for HTML.
///
/// # Panics
/// When a row's AUC count differs from `ks.len()`.
pub fn table_cells(rows: &[AgreementRow], ks: &[usize]) -> (Vec<String>, Vec<Vec<String>>) {
    assert_rows_match(rows, ks);
    let mut header = vec!["method".to_string(), "Spearman".to_string()];
    header.extend(ks.iter().map(|k| format!("AUC@{k}")));
    let body = rows
        .iter()
        .map(|r| {
            let mut cells = vec![r.method.clone(), format!("{:.3}", r.spearman)];
            cells.extend(r.auc.iter().map(|a| format!("{a:.3}")));
            cells
        })
        .collect();
    (header, body)
}

/// A plain-text table: columns aligned, the first left and the rest right, a rule under the
/// header, one line per row.
pub fn aligned_table(header: &[String], body: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            std::iter::once(header)
                .chain(body.iter().map(Vec::as_slice))
                .map(|cells| cells[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| -> String {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, &w))| match c {
                0 => format!("{cell:<w$}"),
                _ => format!("{cell:>w$}"),
            })
            .collect();
        parts.join("  ").trim_end().to_string() + "\n"
    };
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    let mut out = line(header);
    out += &line(&rule);
    body.iter().for_each(|cells| out += &line(cells));
    out
}

/// Bar colours, one per metric (cycled past eight): colour-blind-safe Okabe-Ito hues.
const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
];
const BAR_WIDTH: f64 = 16.0;
const BAR_GAP: f64 = 2.0;
const GROUP_GAP: f64 = 24.0;
pub(super) const PLOT_HEIGHT: f64 = 240.0;
const MARGIN_LEFT: f64 = 48.0;
const MARGIN_RIGHT: f64 = 16.0;
const TITLE_BAND: f64 = 30.0;
const LEGEND_BAND: f64 = 26.0;
const LABEL_BAND: f64 = 30.0;
const FONT_SIZE: f64 = 11.0;

/// The metric names of the bars in one group: `spearman`, then `auc@k` per k.
fn metric_names(ks: &[usize]) -> Vec<(String, String)> {
    let mut names = vec![("spearman".to_string(), "Spearman".to_string())];
    names.extend(ks.iter().map(|k| (format!("auc@{k}"), format!("AUC@{k}"))));
    names
}

/// A grouped bar chart as one self-contained SVG: a group per method (in row order), a bar per
/// metric (Spearman, then the AUC at each k), y-axis from 0 to 1 with gridlines every 0.2, a
/// legend and a title naming the reference. Every bar is a `<rect class="bar">` carrying
/// `data-method`, `data-metric` (`spearman`, `auc@5`, ...) and `data-value` (the exact f64) so
/// tests and scripts can read it back, and a `<title>` tooltip. Values outside [0, 1] (a
/// negative Spearman) are drawn clamped to the axis; `data-value` keeps the true number.
/// Uses only the generic `DejaVu Sans, sans-serif` font stack, no external resources.
///
/// # Panics
/// When a row's AUC count differs from `ks.len()`.
pub fn agreement_svg(rows: &[AgreementRow], ks: &[usize]) -> String {
    assert_rows_match(rows, ks);
    let metrics = metric_names(ks);
    let bars_width = metrics.len() as f64 * (BAR_WIDTH + BAR_GAP) - BAR_GAP;
    let group_widths: Vec<f64> = rows
        .iter()
        .map(|r| bars_width.max(text_width(&r.method, FONT_SIZE, false)) + GROUP_GAP)
        .collect();
    let plot_width = group_widths.iter().sum::<f64>().max(200.0);
    let legend_width: f64 = metrics
        .iter()
        .map(|(_, label)| 14.0 + text_width(label, FONT_SIZE, false) + 12.0)
        .sum();
    let width = MARGIN_LEFT + plot_width.max(legend_width) + MARGIN_RIGHT;
    let plot_top = TITLE_BAND + LEGEND_BAND;
    let plot_bottom = plot_top + PLOT_HEIGHT;
    let height = plot_bottom + LABEL_BAND;
    let y_of = |v: f64| plot_bottom - v * PLOT_HEIGHT;
    let reference = rows.first().map_or("reference", |r| r.reference.as_str());

    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, sans-serif" font-size="{FONT_SIZE}">"#,
        w = px(width),
        h = px(height)
    );
    let _ = write!(
        s,
        r#"<rect width="{}" height="{}" fill="white"/>"#,
        px(width),
        px(height)
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="20" font-size="14" font-weight="bold">Agreement with {}</text>"#,
        px(MARGIN_LEFT),
        escape(reference)
    );
    write_legend(&mut s, &metrics, TITLE_BAND + 12.0);
    write_axis(&mut s, plot_width, plot_bottom, &y_of);

    let mut x = MARGIN_LEFT;
    for (row, group_width) in rows.iter().zip(&group_widths) {
        let centre = x + group_width / 2.0;
        let mut bar_x = centre - bars_width / 2.0;
        let values = std::iter::once(row.spearman).chain(row.auc.iter().copied());
        for (i, (value, (metric, label))) in values.zip(&metrics).enumerate() {
            let shown = if value.is_nan() {
                0.0
            } else {
                value.clamp(0.0, 1.0)
            };
            let _ = write!(
                s,
                r#"<rect class="bar" data-method="{m}" data-metric="{metric}" data-value="{value}" x="{x}" y="{y}" width="{BAR_WIDTH}" height="{h}" fill="{c}"><title>{m}, {label}: {value:.3}</title></rect>"#,
                m = escape(&row.method),
                x = px(bar_x),
                y = px(y_of(shown)),
                h = px(shown * PLOT_HEIGHT),
                c = PALETTE[i % PALETTE.len()],
            );
            bar_x += BAR_WIDTH + BAR_GAP;
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            px(centre),
            px(plot_bottom + 18.0),
            escape(&row.method)
        );
        x += group_width;
    }
    if rows.is_empty() {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">no methods to compare</text>"#,
            px(MARGIN_LEFT + plot_width / 2.0),
            px(plot_top + PLOT_HEIGHT / 2.0)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// One coloured square and name per metric, left to right, at baseline `y`.
fn write_legend(s: &mut String, metrics: &[(String, String)], y: f64) {
    let mut x = MARGIN_LEFT;
    for (i, (_, label)) in metrics.iter().enumerate() {
        let _ = write!(
            s,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            px(x),
            px(y - 9.0),
            PALETTE[i % PALETTE.len()],
            px(x + 14.0),
            px(y),
            escape(label)
        );
        x += 14.0 + text_width(label, FONT_SIZE, false) + 12.0;
    }
}

/// The y-axis (0 to 1, ticks and gridlines every 0.2) and the baseline.
fn write_axis(s: &mut String, plot_width: f64, plot_bottom: f64, y_of: &dyn Fn(f64) -> f64) {
    let right = MARGIN_LEFT + plot_width;
    for tick in 0..=5 {
        let v = tick as f64 * 0.2;
        let y = px(y_of(v));
        let _ = write!(
            s,
            r##"<line x1="{l}" y1="{y}" x2="{r}" y2="{y}" stroke="#dddddd"/><text x="{t}" y="{y}" dy="4" text-anchor="end">{v:.1}</text>"##,
            l = px(MARGIN_LEFT),
            r = px(right),
            t = px(MARGIN_LEFT - 6.0),
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{l}" y1="{top}" x2="{l}" y2="{b}" stroke="#333333"/><line x1="{l}" y1="{b}" x2="{r}" y2="{b}" stroke="#333333"/>"##,
        l = px(MARGIN_LEFT),
        top = px(y_of(1.0)),
        b = px(plot_bottom),
        r = px(right),
    );
}
