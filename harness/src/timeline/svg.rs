//! A [`Chart`] drawn as SVG text: written by hand (a few rectangles, lines and texts need no drawing
//! library), self-contained (no script, no external font or style), and valid XML whatever a node name or a
//! wait's text holds. Every bar's x and width are its seconds times one scale, so the picture measures.

use std::fmt::Write;

use super::{Bar, Chart, End, Group, Kind, Row};
use crate::virt::xml::escape;

/// The picture's width; the names and durations column; where the time axis begins and how wide it is.
pub const WIDTH: f64 = 1100.0;
pub const LABELS: f64 = 410.0;
pub const AXIS_X: f64 = LABELS + 10.0;
pub const AXIS_W: f64 = WIDTH - AXIS_X - 30.0;
const ROW_H: f64 = 22.0;
const BAR_H: f64 = 14.0;
const TOP: f64 = 78.0;
/// Rows drawn at most: a cluster kept for weeks and run through many phases still gives a picture a browser
/// opens; the rows beyond are counted in a last line.
pub const MAX_ROWS: usize = 300;
/// Characters of a row's name shown; the whole name is in the bar's title.
const NAME_CHARS: usize = 38;

const FAILED: &str = "#d62728";
const OPEN: &str = "#9e9e9e";

fn colour(kind: Kind) -> &'static str {
    match kind {
        Kind::Image => "#9467bd",
        Kind::Probe => "#8c564b",
        Kind::Boot => "#1f77b4",
        Kind::Restore => "#17becf",
        Kind::Phase => "#2ca02c",
        Kind::Wait => "#ff7f0e",
    }
}

/// Seconds from the chart's start to an x coordinate, one scale for every bar.
pub fn scale(span: f64) -> f64 {
    AXIS_W / span.max(1.0)
}

/// The SVG document of `chart`.
pub fn render(chart: &Chart) -> String {
    let rows: Vec<&Row> = chart.rows.iter().take(MAX_ROWS).collect();
    let left_out = chart.rows.len() - rows.len();
    let groups = {
        let mut g: Vec<Group> = rows.iter().map(|r| r.group).collect();
        g.dedup();
        g.len()
    };
    let lines = rows.len() + groups + usize::from(left_out > 0);
    let legend_y = TOP + lines as f64 * ROW_H + 16.0;
    let height = legend_y + 30.0;
    let k = scale(chart.span);
    let mut s = String::new();
    let _ = write!(
        s,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"DejaVu Sans, Verdana, sans-serif\" font-size=\"12\">\n\
         <rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{height}\" fill=\"#ffffff\"/>\n\
         <text x=\"12\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n\
         <text x=\"12\" y=\"40\" fill=\"#555555\">{} in all, from {} UTC</text>\n",
        escape(&chart.title),
        duration(chart.span),
        utc(chart.start_ms)
    );
    axis(&mut s, chart.span, k, TOP - 12.0, legend_y - 10.0);

    let mut y = TOP;
    let mut group = None;
    for row in rows {
        if group != Some(row.group) {
            group = Some(row.group);
            let name = match row.group {
                Group::Image => "node image, acceleration probe",
                Group::Nodes => "nodes: boot to SSH, or golden restore",
                Group::Phases => "phases, and the waits in them",
            };
            let _ = writeln!(s, "<text x=\"12\" y=\"{}\" font-weight=\"bold\">{name}</text>", y + 15.0);
            y += ROW_H;
        }
        draw_row(&mut s, row, y, k);
        y += ROW_H;
    }
    if left_out > 0 {
        let _ =
            writeln!(s, "<text x=\"12\" y=\"{}\" fill=\"#555555\">… {left_out} more rows not drawn</text>", y + 15.0);
    }
    legend(&mut s, legend_y);
    s.push_str("</svg>\n");
    s
}

/// Ticks every "nice" number of seconds (about ten across), with a faint line down through the rows.
fn axis(s: &mut String, span: f64, k: f64, y: f64, bottom: f64) {
    let step = [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0]
        .into_iter()
        .find(|step| span / step <= 10.0)
        .unwrap_or(7200.0);
    let _ = writeln!(
        s,
        "<line x1=\"{AXIS_X}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#333333\"/>",
        AXIS_X + span.max(1.0) * k
    );
    let mut t = 0.0;
    while t <= span.max(1.0) + 1e-9 {
        let x = AXIS_X + t * k;
        let _ = writeln!(
            s,
            "<line x1=\"{x:.2}\" y1=\"{y}\" x2=\"{x:.2}\" y2=\"{bottom}\" stroke=\"#e0e0e0\"/>\n\
             <text x=\"{x:.2}\" y=\"{}\" text-anchor=\"middle\" fill=\"#333333\">{} s</text>",
            y - 5.0,
            t as u64
        );
        t += step;
    }
}

fn draw_row(s: &mut String, row: &Row, y: f64, k: f64) {
    let failed = row.bars.iter().any(|b| b.end == End::Failed);
    let indent = if row.nested { 28.0 } else { 12.0 };
    let name = if row.nested { format!("wait: {}", row.name) } else { row.name.clone() };
    let ink = if failed { FAILED } else { "#000000" };
    let _ = writeln!(
        s,
        "<text x=\"{indent}\" y=\"{}\" fill=\"{ink}\"{}>{}</text>",
        y + 15.0,
        if row.nested { " font-style=\"italic\"" } else { "" },
        escape(&shorten(&name, NAME_CHARS - (indent as usize - 12) / 6))
    );
    let durations: Vec<String> = row.bars.iter().map(said).collect();
    let _ = writeln!(
        s,
        "<text x=\"{LABELS}\" y=\"{}\" text-anchor=\"end\" fill=\"{ink}\">{}</text>",
        y + 15.0,
        escape(&durations.join(", "))
    );
    for bar in &row.bars {
        let (x, w) = (AXIS_X + bar.from * k, (bar.seconds() * k).max(1.0));
        let h = if row.nested { BAR_H - 4.0 } else { BAR_H };
        let top = y + (ROW_H - h) / 2.0;
        let (fill, stroke) = match bar.end {
            End::Ok => (colour(bar.kind), "none"),
            End::Failed => (FAILED, "#7f0000"),
            End::Open => (OPEN, "#424242"),
        };
        let dash = if bar.end == End::Open { " stroke-dasharray=\"4 2\"" } else { "" };
        let _ = writeln!(
            s,
            "<rect class=\"bar {}\" x=\"{x:.3}\" y=\"{top}\" width=\"{w:.3}\" height=\"{h}\" rx=\"2\" \
             fill=\"{fill}\" stroke=\"{stroke}\"{dash}><title>{} ({})</title></rect>",
            kind_name(bar.kind),
            escape(&bar.title),
            said(bar)
        );
    }
}

/// A bar's duration as the names column says it.
fn said(bar: &Bar) -> String {
    let d = duration(bar.seconds());
    match (bar.kind, bar.end) {
        (_, End::Open) => format!("{d}+, unfinished"),
        (Kind::Wait, End::Failed) => format!("{d}, gave up"),
        (_, End::Failed) => format!("{d}, FAILED"),
        (Kind::Restore, End::Ok) => format!("restore {d}"),
        (Kind::Boot, End::Ok) => format!("boot {d}"),
        (_, End::Ok) => d,
    }
}

pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Image => "image",
        Kind::Probe => "probe",
        Kind::Boot => "boot",
        Kind::Restore => "restore",
        Kind::Phase => "phase",
        Kind::Wait => "wait",
    }
}

fn legend(s: &mut String, y: f64) {
    let items = [
        (colour(Kind::Image), "node image"),
        (colour(Kind::Probe), "acceleration probe"),
        (colour(Kind::Boot), "boot to SSH"),
        (colour(Kind::Restore), "golden restore"),
        (colour(Kind::Phase), "phase"),
        (colour(Kind::Wait), "wait"),
        (FAILED, "failed"),
        (OPEN, "unfinished"),
    ];
    let mut x = 12.0;
    for (fill, what) in items {
        let _ = writeln!(
            s,
            "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" rx=\"2\" fill=\"{fill}\"/>\
             <text x=\"{}\" y=\"{}\">{what}</text>",
            y - 10.0,
            x + 16.0,
            y
        );
        x += 32.0 + what.len() as f64 * 7.0;
    }
}

/// "12.3 s" under a minute, "4 min 05 s" above.
fn duration(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else {
        let whole = seconds.round() as u64;
        format!("{} min {:02} s", whole / 60, whole % 60)
    }
}

fn utc(ms: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}
