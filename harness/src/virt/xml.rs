//! The little XML writing kthw needs: text and attribute values escaped, nothing else.

/// Escapes `s` for element text and for attribute values in either quote style.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
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
    }
}
