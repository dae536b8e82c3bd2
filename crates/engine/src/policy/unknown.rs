//! Every unknown field of a file in one run, each with the closest known name.
//!
//! The raw structs reject unknown fields (`deny_unknown_fields`), so serde stops at the first.
//! Rather than keep a second list of field names that drifts from the structs, this asks serde
//! itself: parse; on an unknown field, note it (the error carries the struct's known names),
//! blank that entry out of the text (key and value, lines kept so every later location is
//! unchanged), parse again, up to [`MAX_UNKNOWN`] times. The structs stay the one source of
//! truth: a field added to one is known here at once.
//!
//! Not here: any other problem (see `validate.rs`).

use serde_saphyr::{Error, Location};

/// Reported per file at most; a file with more is probably not a policy.
const MAX_UNKNOWN: usize = 50;

/// One unknown key and what was expected in its place.
#[derive(Debug, Clone)]
pub(super) struct Unknown {
    pub location: Location,
    pub message: String,
}

/// The unknown field `e` reports, if that is what it is.
fn unknown_field(e: &Error) -> Option<(&str, &[&'static str], Location)> {
    let mut e = e.without_snippet();
    while let Error::AliasError { error, .. } | Error::WithSnippet { error, .. } = e {
        e = error;
    }
    match e {
        Error::SerdeUnknownField { field, expected, location } => Some((field, expected, *location)),
        _ => None,
    }
}

/// Parses `text` with `parse`; when it fails on unknown fields, returns every one of them
/// (`Err(list)`), or the first error when that is not about an unknown field.
pub(super) fn parse_all<T>(
    text: &str,
    parse: impl Fn(&str) -> Result<T, Error>,
) -> Result<T, Result<Vec<Unknown>, Error>> {
    let mut found = Vec::new();
    let mut current = text.to_owned();
    loop {
        let e = match parse(&current) {
            Ok(t) if found.is_empty() => return Ok(t),
            Ok(_) => return Err(Ok(found)),
            Err(e) => e,
        };
        let Some((field, expected, location)) = unknown_field(&e) else {
            // An error after a field was blanked may be the blanking's own doing: report the
            // unknown fields, and the rest on the next run once they are fixed.
            return Err(if found.is_empty() { Err(e) } else { Ok(found) });
        };
        let suggestion = closest(field, expected);
        found.push(Unknown { location, message: message(field, expected) });
        // Read on as if the suggestion had been written (so a required field it stands for is
        // not reported missing), or without the entry when there is none.
        let next = match suggestion {
            Some(s) => rename_key(&current, location, field, s),
            None => blank_entry(&current, location),
        };
        match next {
            Some(next) if found.len() < MAX_UNKNOWN && next != current => current = next,
            _ => return Err(Ok(found)),
        }
    }
}

fn message(field: &str, expected: &[&str]) -> String {
    match closest(field, expected) {
        Some(best) => format!("unknown field `{field}` (did you mean `{best}`?)"),
        None if expected.is_empty() => format!("unknown field `{field}` (no fields are expected here)"),
        None => format!("unknown field `{field}` (expected one of {})", expected.join(", ")),
    }
}

/// The known name nearest to `field`: by edit distance (at most a third of its length, and at
/// least 2), or one that `field` starts or ends with (`lead_time` → `lead`).
pub(super) fn closest<'a>(field: &str, known: &[&'a str]) -> Option<&'a str> {
    let f = field.to_ascii_lowercase();
    let limit = (f.chars().count() / 3).max(2);
    known
        .iter()
        .map(|k| {
            let d = edit_distance(&f, k);
            let affix = k.len() >= 3 && (f.starts_with(*k) || f.ends_with(*k) || k.starts_with(f.as_str()));
            (if affix { d.min(limit) } else { d }, *k)
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance with adjacent transpositions counted as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev2: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(prev2[j - 2] + 1);
            }
        }
        prev2 = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

/// `text` with the key `from` at `at` replaced by `to` (padded with spaces when shorter, so the
/// rest of the line keeps its columns).
fn rename_key(text: &str, at: Location, from: &str, to: &str) -> Option<String> {
    let line_no = usize::try_from(at.line()).ok()?.checked_sub(1)?;
    let col = usize::try_from(at.column()).ok()?.checked_sub(1)?;
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let chars: Vec<char> = lines.get(line_no)?.chars().collect();
    let key: String = chars.get(col..col + from.chars().count())?.iter().collect();
    if key != from {
        return None;
    }
    let pad = " ".repeat(from.chars().count().saturating_sub(to.chars().count()));
    let head: String = chars[..col].iter().collect();
    let tail: String = chars[col + from.chars().count()..].iter().collect();
    lines[line_no] = format!("{head}{to}{pad}{tail}");
    Some(lines.join("\n"))
}

/// `text` with the mapping entry whose key starts at `at` replaced by spaces: in block style the
/// key's line and every following line indented deeper (or a `- ` item at the key's column: a
/// sequence value), in flow style (`{a: 1, b: 2}`) the key up to the next `,` or `}` outside
/// brackets and quotes. Line breaks are kept, so every other location stays where it was.
fn blank_entry(text: &str, at: Location) -> Option<String> {
    let line_no = usize::try_from(at.line()).ok()?.checked_sub(1)?;
    let col = usize::try_from(at.column()).ok()?.checked_sub(1)?;
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let line = lines.get(line_no)?;
    let chars: Vec<char> = line.chars().collect();
    if col > chars.len() {
        return None;
    }
    let before: String = chars[..col].iter().collect();
    let blank = |s: &str| " ".repeat(s.chars().count());
    let in_flow = before.trim_end().ends_with(['{', ',']);
    if in_flow {
        // Flow entry: up to the next separator at depth 0, outside quotes.
        let mut depth = 0i32;
        let mut quote: Option<char> = None;
        let mut end = chars.len();
        for (k, &c) in chars.iter().enumerate().skip(col) {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '[' | '{') => depth += 1,
                (None, ']' | '}') if depth > 0 => depth -= 1,
                (None, ',' | '}') if depth == 0 => {
                    end = k;
                    break;
                }
                _ => {}
            }
        }
        let mut out: Vec<char> = chars.clone();
        // Take the separator with the entry: the following comma, or else the preceding one.
        let (from, to) = if chars.get(end) == Some(&',') {
            (col, end + 1)
        } else if let Some(p) = before.rfind(',').filter(|_| before.trim_end().ends_with(',')) {
            (before[..p].chars().count(), end)
        } else {
            (col, end)
        };
        for c in &mut out[from..to] {
            *c = ' ';
        }
        lines[line_no] = out.into_iter().collect();
        return Some(lines.join("\n"));
    }
    // Block entry: the key must begin its line, or follow the `- ` of a sequence item.
    let lead = before.trim_start();
    if !(lead.is_empty() || lead.trim_end() == "-") {
        return None;
    }
    let rest: String = chars[col..].iter().collect();
    lines[line_no] = format!("{before}{}", blank(&rest));
    let mut k = line_no + 1;
    while let Some(l) = lines.get(k) {
        let indent = l.chars().take_while(|c| *c == ' ').count();
        let t = l.trim_start();
        let belongs = t.is_empty() || t.starts_with('#') || indent > col || (indent == col && t.starts_with('-'));
        if !belongs {
            break;
        }
        lines[k] = blank(l);
        k += 1;
    }
    Some(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_names() {
        let known = ["target", "target_per_instance", "weight", "lead", "ramp"];
        assert_eq!(closest("traget", &known), Some("target"));
        assert_eq!(closest("wieght", &known), Some("weight"));
        assert_eq!(closest("lead_time", &known), Some("lead"));
        assert_eq!(closest("colour", &known), None);
    }
}
