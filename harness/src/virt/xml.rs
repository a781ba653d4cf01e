//! The little XML writing kthw needs: text and attribute values escaped, nothing else.

/// Escapes `s` for element text and for attribute values in either quote style. The characters XML 1.0
/// cannot hold at all, even escaped (control characters other than tab, newline and carriage return; U+FFFE
/// and U+FFFF), become U+FFFD, so any string gives a document that parses (a node name, a wait's text).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_characters_are_escaped_and_others_kept() {
        assert_eq!(super::escape(r#"a<b>&'c"/é"#), "a&lt;b&gt;&amp;&apos;c&quot;/é");
        assert_eq!(super::escape("\u{0}\u{1b}\t\n\u{FFFF}"), "\u{FFFD}\u{FFFD}\t\n\u{FFFD}");
    }
}
