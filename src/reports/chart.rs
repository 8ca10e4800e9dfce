//! Server-rendered SVG bar charts for the reports ("accesses per day", "records per LA").
//! Presentation attributes only (the CSP allows no inline style or script); every label is escaped.

use std::fmt::Write;

/// One bar: its label and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: f64,
}

impl Bar {
    pub fn new(label: impl Into<String>, value: f64) -> Bar {
        Bar { label: label.into(), value }
    }
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 56.0;
const TOP: f64 = 16.0;

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The axis maximum: the largest value rounded up to 1, 2 or 5 times a power of ten (at least 1).
pub fn nice_max(max: f64) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|v| *v >= max).unwrap_or(10.0 * magnitude)
}

/// A vertical bar chart titled `title` (its accessible name). With many bars only some labels are
/// drawn, so they never overlap; every bar carries its label and value in a `<title>` tooltip.
pub fn bar_chart(title: &str, bars: &[Bar]) -> String {
    let max = nice_max(bars.iter().map(|b| b.value).fold(0.0, f64::max));
    let plot_w = WIDTH - LEFT - 8.0;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = escape(title)
    );
    // Axis and three grid lines with their values.
    for i in 0..=2 {
        let v = max * i as f64 / 2.0;
        let y = TOP + plot_h - plot_h * i as f64 / 2.0;
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}" stroke="#d8dde0" stroke-width="1"/><text x="{tx:.1}" y="{ty:.1}" text-anchor="end" font-size="11" fill="#4c6272">{v}</text>"##,
            x2 = WIDTH - 8.0,
            tx = LEFT - 6.0,
            ty = y + 4.0,
            v = format_value(v)
        );
    }
    if bars.is_empty() {
        let _ = write!(
            s,
            r##"<text x="{x:.1}" y="{y:.1}" text-anchor="middle" font-size="13" fill="#4c6272">Nothing in this period</text>"##,
            x = LEFT + plot_w / 2.0,
            y = TOP + plot_h / 2.0
        );
    }
    let n = bars.len().max(1) as f64;
    let slot = plot_w / n;
    let bar_w = (slot * 0.8).max(1.0);
    let label_every = (bars.len() as f64 / 16.0).ceil().max(1.0) as usize;
    for (i, b) in bars.iter().enumerate() {
        let value = if b.value.is_finite() { b.value.max(0.0) } else { 0.0 };
        let h = plot_h * value / max;
        let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
        let y = TOP + plot_h - h;
        let _ = write!(
            s,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{bar_w:.1}" height="{h:.1}" fill="#005eb8"><title>{l}: {v}</title></rect>"##,
            l = escape(&b.label),
            v = format_value(value)
        );
        if i % label_every == 0 {
            let lx = x + bar_w / 2.0;
            let ly = TOP + plot_h + 14.0;
            let _ = write!(
                s,
                r##"<text x="{lx:.1}" y="{ly:.1}" text-anchor="end" font-size="10" fill="#212b32" transform="rotate(-40 {lx:.1} {ly:.1})">{l}</text>"##,
                l = escape(&b.label)
            );
        }
    }
    s.push_str("</svg>");
    s
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axis_rounds_up_to_a_readable_value() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(10.0), 10.0);
        assert_eq!(nice_max(11.0), 20.0);
        assert_eq!(nice_max(420.0), 500.0);
    }

    #[test]
    fn bars_scale_to_the_axis_and_labels_are_escaped() {
        let svg = bar_chart("Accesses <per> day", &[Bar::new("a&b", 5.0), Bar::new("c", 10.0)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("aria-label=\"Accesses &lt;per&gt; day\""));
        assert!(svg.contains("<title>a&amp;b: 5</title>"));
        // The plot is 168 units high and the axis maximum is 10: heights 84 and 168.
        assert!(svg.contains("height=\"84.0\""));
        assert!(svg.contains("height=\"168.0\""));
        assert!(!svg.contains("style=") && !svg.contains("<script"));
    }

    #[test]
    fn many_bars_draw_some_labels_and_no_bars_say_so() {
        let bars: Vec<Bar> = (0..100).map(|i| Bar::new(format!("d{i}"), i as f64)).collect();
        let svg = bar_chart("x", &bars);
        assert_eq!(svg.matches("<rect").count(), 100);
        assert!(svg.matches("rotate(").count() <= 17);
        assert!(bar_chart("x", &[]).contains("Nothing in this period"));
    }
}
