//! Terminal-safe output. Strings from statements, documents, logs and
//! error messages that quote them are attacker-chosen: printed raw, a
//! subject name could clear the screen, move the cursor over the `valid:`
//! line, or reorder what is shown with bidi overrides. Everything the
//! command prints from such a source goes through [`display_safe`] (text)
//! or [`json_safe`] (JSON lines).

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must not reach a terminal raw: C0 controls (newlines and
/// tabs too: every output line is one record), DEL, C1 controls, and the
/// Unicode bidi embedding, override and isolate controls.
fn is_unsafe(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every unsafe character written as `\u{..}` (its code point
/// in hex); borrowed when there is none.
pub fn display_safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `value` as one line of JSON in which every unsafe character is a
/// `\uXXXX` escape: the same JSON value, but nothing a terminal acts on.
/// (serde_json escapes C0 controls itself; this adds DEL, C1 and bidi.)
pub fn json_safe(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if !text.chars().any(is_unsafe) {
        return text;
    }
    // Outside strings, serialized JSON is ASCII without controls, so every
    // unsafe character here is inside a string, where \uXXXX is valid.
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "a\u{1b}[2J\rb\u{7f}\u{9b}c\u{202e}d\u{2066}\ne\tf";

    #[test]
    fn text_is_escaped_and_plain_text_borrowed() {
        assert_eq!(
            display_safe(HOSTILE),
            "a\\u{1b}[2J\\u{d}b\\u{7f}\\u{9b}c\\u{202e}d\\u{2066}\\u{a}e\\u{9}f"
        );
        assert!(matches!(
            display_safe("héllo wörld ✓"),
            Cow::Borrowed("héllo wörld ✓")
        ));
    }

    #[test]
    fn json_keeps_its_value_and_loses_the_controls() {
        let value = serde_json::json!({"name": HOSTILE, "n": [1, "\u{202d}"]});
        let line = json_safe(&value);
        assert!(!line.chars().any(is_unsafe), "{line}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back, value);
        assert!(line.contains("\\u202e"), "{line}");
    }
}
