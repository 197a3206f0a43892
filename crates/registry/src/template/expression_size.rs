//! A bound on the size of one template expression, checked before minijinja sees it.
//!
//! minijinja's parser and compiler recurse once per operator of an expression
//! (`{{ 1+1+...+1 }}`, `{{ -----1 }}`, `{{ x|abs|abs... }}`, `{{ x.a.a... }}`), so a
//! 20 KB expression overflowed a 2 MiB thread stack and aborted the process, and its
//! constant folding is quadratic: `{{ 'a' ~ 'a' ~ ... }}` of 256 KB compiled for four
//! minutes. No prompt needs an expression of more than a few dozen operators, so a tag
//! with more than [`MAX_OPERATORS_PER_TAG`] is refused, naming where it starts.

/// The most operators, filters, attribute lookups, subscripts and calls one `{{ }}` or
/// `{% %}` tag may hold.
pub(super) const MAX_OPERATORS_PER_TAG: usize = 1000;

/// A tag that holds too many operators: its line and column (1-based) and how many.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct OversizedTag {
    pub(super) line: usize,
    pub(super) column: usize,
    pub(super) operators: usize,
}

/// The first tag of `source` with more than [`MAX_OPERATORS_PER_TAG`] operators.
///
/// The scan follows the default delimiters, skips comments, `{% raw %}` blocks and
/// string literals, and counts one operator for each of `~ + - * / % | . [ (` and the
/// words `not`, `and`, `or`, `if`, `in` and `is` in a tag. Over-counting is harmless
/// (the bound is far above real use); an unterminated tag ends at the end of the source
/// and is left to the parser to report.
pub(super) fn find_oversized_tag(source: &str) -> Option<OversizedTag> {
    let bytes = source.as_bytes();
    let mut position = 0;
    while let Some(offset) = source[position..].find('{') {
        let start = position + offset;
        let &kind = bytes.get(start + 1)?;
        position = start + 2;
        match kind {
            b'#' => position = skip_past(source, position, "#}"),
            b'{' | b'%' => {
                let closing = if kind == b'{' { "}}" } else { "%}" };
                let (end, operators, first_word) = scan_tag(source, position, closing);
                if operators > MAX_OPERATORS_PER_TAG {
                    let (line, column) = line_and_column(source, start);
                    return Some(OversizedTag {
                        line,
                        column,
                        operators,
                    });
                }
                position = end;
                if kind == b'%' && first_word == "raw" {
                    position = skip_past_endraw(source, position);
                }
            }
            _ => position = start + 1,
        }
    }
    None
}

/// Scans one tag from `from` to its `closing` delimiter (outside string literals).
/// Returns the position after the delimiter, the operators counted and the tag's first
/// word.
fn scan_tag<'a>(source: &'a str, from: usize, closing: &str) -> (usize, usize, &'a str) {
    // Byte by byte: every byte that matters is ASCII, and a multi-byte character's bytes
    // never are, so no slicing ever lands inside a character.
    let bytes = source.as_bytes();
    let closing = closing.as_bytes();
    let mut operators = 0;
    let mut first_word = "";
    let mut index = from;
    while index < bytes.len() {
        let byte = bytes[index];
        if bytes[index..].starts_with(closing) {
            return (index + closing.len(), operators, first_word);
        }
        match byte {
            b'\'' | b'"' => index = skip_string(bytes, index),
            b'~' | b'+' | b'-' | b'*' | b'/' | b'%' | b'|' | b'.' | b'[' | b'(' => {
                operators += 1;
                index += 1;
            }
            b if b.is_ascii_alphabetic() || b == b'_' => {
                let word_end = bytes[index..]
                    .iter()
                    .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                    .map_or(bytes.len(), |end| index + end);
                // ASCII bytes on both ends: character boundaries.
                let word = &source[index..word_end];
                if first_word.is_empty() {
                    first_word = word;
                }
                if matches!(word, "not" | "and" | "or" | "if" | "in" | "is") {
                    operators += 1;
                }
                index = word_end;
            }
            _ => index += 1,
        }
    }
    (bytes.len(), operators, first_word)
}

/// The position after the string literal that starts at `start` (a quote).
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut index = start + 1;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => index += 2,
            b if b == quote => return index + 1,
            _ => index += 1,
        }
    }
    bytes.len()
}

fn skip_past(source: &str, from: usize, needle: &str) -> usize {
    source[from..]
        .find(needle)
        .map_or(source.len(), |offset| from + offset + needle.len())
}

/// The position after the `{% endraw %}` that closes a raw block.
fn skip_past_endraw(source: &str, from: usize) -> usize {
    let mut position = from;
    while let Some(offset) = source[position..].find("{%") {
        let tag = position + offset + 2;
        let rest = source[tag..].trim_start_matches(['-', '+', ' ', '\t', '\n', '\r']);
        if rest.starts_with("endraw") {
            return skip_past(source, tag, "%}");
        }
        position = tag;
    }
    source.len()
}

fn line_and_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_templates_pass() {
        for source in [
            "Review this {{ language }} code for {{ focus|default('bugs')|upper }}: {{ code }}",
            "{% for m in messages %}{{ m.role ~ ': ' ~ m.content }}{% endfor %}",
            "{# a comment with ~~~~ #}{{ 'a string with |||| and ((((' }}",
            "{{ unterminated",
        ] {
            assert_eq!(find_oversized_tag(source), None, "{source}");
        }
    }

    #[test]
    fn a_tag_with_too_many_operators_is_found_with_its_position() {
        let long = format!(
            "line one\n  {{{{ 1{} }}}}",
            "+1".repeat(MAX_OPERATORS_PER_TAG + 1)
        );
        assert_eq!(
            find_oversized_tag(&long),
            Some(OversizedTag {
                line: 2,
                column: 3,
                operators: MAX_OPERATORS_PER_TAG + 1
            })
        );
        let words = format!("{{% if {}x %}}{{% endif %}}", "not ".repeat(2000));
        assert!(find_oversized_tag(&words).is_some());
        let just_under = format!("{{{{ x{} }}}}", "|abs".repeat(MAX_OPERATORS_PER_TAG));
        assert_eq!(find_oversized_tag(&just_under), None);
    }

    #[test]
    fn operators_inside_strings_comments_and_raw_blocks_do_not_count() {
        let many = "~".repeat(5000);
        for source in [
            format!("{{{{ '{many}' }}}}"),
            format!("{{{{ \"{many}\\\"{many}\" }}}}"),
            format!("{{# {many} #}}"),
            format!("{{% raw %}}{{{{ {many} }}}}{{% endraw %}}"),
            format!("plain text {many}"),
        ] {
            assert_eq!(find_oversized_tag(&source), None);
        }
    }
}
