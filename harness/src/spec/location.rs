//! Line and column of a field in the TOML text it came from, so errors point into the user's file.

use std::fmt;

use toml::de::{DeTable, DeValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

impl Location {
    /// 1-based line and column (in characters) of a byte offset.
    pub fn of_offset(text: &str, offset: usize) -> Location {
        let offset = offset.min(text.len());
        let before = &text[..floor_char_boundary(text, offset)];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Location { line, column }
    }
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The field and value a parse error's span covers, as the file writes them (`network.pods = "10.200.0.0/33"`,
/// `nodes[1].address = "10.0.0.256"`), so an error names what did not parse and not only where. None when the
/// span is not a single `key = value` line.
pub fn describe_span(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    let start = floor_char_boundary(text, span.start.min(text.len()));
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = text[line_start..line_end].trim();
    let (key, value) = line.split_once('=')?;
    let key = key.trim();
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    // The table the line is in: the nearest header above it, counting `[[nodes]]` entries.
    let mut table = String::new();
    let mut index = 0usize;
    for l in text[..line_start].lines().map(str::trim) {
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
            index = if table == format!("{name}[{index}]") { index + 1 } else { 0 };
            table = format!("{name}[{index}]");
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            table = name.to_string();
        }
    }
    let field = if table.is_empty() { key.to_string() } else { format!("{table}.{key}") };
    Some(format!("{field} = {}", value.trim()))
}

/// Where the value at a field path like `nodes[1].address` or `cilium.values."k8sServiceHost"` is written.
/// Falls back to the deepest enclosing part that is written; None when the field is not in the text at all.
pub fn locate(text: &str, path: &str) -> Option<Location> {
    let root = DeTable::parse(text).ok()?;
    let mut found = None;
    let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
    let mut value: Option<&DeValue<'_>> = None;
    for segment in split_path(path) {
        let next = match segment {
            Segment::Key(k) => {
                let t = table.or_else(|| value.and_then(|v| v.as_table()))?;
                t.iter().find(|(key, _)| key.get_ref() == &k).map(|(_, v)| v)
            }
            Segment::Index(i) => value.and_then(|v| v.as_array()).and_then(|a| a.get(i)),
        };
        let Some(next) = next else { break };
        found = Some(Location::of_offset(text, next.span().start));
        table = None;
        value = Some(next.get_ref());
    }
    found
}

enum Segment {
    Key(String),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut chars = path.chars().peekable();
    let mut cur = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                for q in chars.by_ref() {
                    if q == '"' {
                        break;
                    }
                    cur.push(q);
                }
            }
            '.' => {
                if !cur.is_empty() {
                    out.push(Segment::Key(std::mem::take(&mut cur)));
                }
            }
            '[' => {
                if !cur.is_empty() {
                    out.push(Segment::Key(std::mem::take(&mut cur)));
                }
                let idx: String = chars.by_ref().take_while(|c| *c != ']').collect();
                if let Ok(i) = idx.parse() {
                    out.push(Segment::Index(i));
                }
            }
            ' ' => break, // "nodes[1].address and nodes[2].address": the first path is enough
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(Segment::Key(cur));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_lines_and_columns() {
        let text = "a = 1\nbb = \"é\"\n";
        assert_eq!(Location::of_offset(text, 0), Location { line: 1, column: 1 });
        assert_eq!(Location::of_offset(text, 11), Location { line: 2, column: 6 });
    }

    #[test]
    fn locates_nested_keys_and_array_elements() {
        let text = "[network]\npods = \"10.0.0.0/16\"\n\n[[nodes]]\nname = \"a\"\n\n[[nodes]]\nname = \"b\"\naddress = \"10.0.0.9\"\n\n[cilium.values]\n\"ipam.mode\" = \"kubernetes\"\n";
        assert_eq!(locate(text, "network.pods"), Some(Location { line: 2, column: 8 }));
        assert_eq!(locate(text, "nodes[1].address"), Some(Location { line: 9, column: 11 }));
        assert_eq!(locate(text, "cilium.values.\"ipam.mode\""), Some(Location { line: 12, column: 15 }));
        assert_eq!(locate(text, "versions.etcd"), None);
    }
}
