//! Small text helpers shared by the SVG and HTML writers: escaping (token labels such as
//! `<|endoftext|>` contain markup characters), short numbers for people, and a width estimate
//! so the layout can keep labels apart without measuring glyphs.

/// Escapes text for XML/HTML content and double-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Characters XML 1.0 forbids even escaped: show them as \u{..} instead.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// A token label as a person should see it: whitespace a renderer would collapse or drop is
/// made visible (`\n`, a quoted blank), everything else as is.
pub fn visible_label(s: &str) -> String {
    let v = s
        .replace('\n', "\\n")
        .replace('\t', "\\t")
        .replace('\r', "\\r");
    if v.trim().is_empty() || v.starts_with(' ') || v.ends_with(' ') {
        format!("\"{v}\"")
    } else {
        v
    }
}

/// About three significant digits, trailing zeros dropped: `1.5785` -> `1.58`, `3.5` -> `3.5`,
/// `0.00001234` -> `0.0000123`. For captions and messages, never for data.
pub fn short_num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x == 0.0 {
        return "0".into();
    }
    let mag = x.abs().log10().floor() as i32;
    let decimals = (2 - mag).clamp(0, 12) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Rounds a coordinate to 0.1 px and prints it without a needless `.0` (smaller files).
pub fn px(x: f64) -> String {
    let r = (x * 10.0).round() / 10.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// Estimated advance width of `s` in DejaVu Sans at `font_size` px: digits and most letters
/// are 0.55–0.7 em there, so 0.62 em per character (0.68 for bold) errs on the wide side.
pub fn text_width(s: &str, font_size: f64, bold: bool) -> f64 {
    let per = if bold { 0.68 } else { 0.62 };
    s.chars().count() as f64 * per * font_size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_shortens_numbers() {
        assert_eq!(
            escape("<|endoftext|> & \"x\""),
            "&lt;|endoftext|&gt; &amp; &quot;x&quot;"
        );
        assert_eq!(escape("a\u{1}b"), "a\\u{1}b");
        assert_eq!(short_num(1.5785735845565796), "1.58");
        assert_eq!(short_num(3.5), "3.5");
        assert_eq!(short_num(-0.0000123456), "-0.0000123");
        assert_eq!(short_num(12345.6), "12346");
        assert_eq!(px(12.345), "12.3");
        assert_eq!(px(12.0), "12");
        assert_eq!(px(-0.04), "0");
        assert_eq!(visible_label(" Mary"), "\" Mary\"");
        assert_eq!(visible_label("Mary"), "Mary");
        assert_eq!(visible_label("\n"), "\\n");
    }
}
