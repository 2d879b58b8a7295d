//! Text from files is data, not terminal control: class names (from a model file's metadata,
//! `batches.meta.txt` or folder names), image file names and other file-supplied text are passed
//! through [`escape_control`] wherever they are printed, so an escape sequence in them
//! (`ESC ] 0 ; title BEL` retitles a terminal, `ESC [ 31 m` recolours it) is shown, not obeyed.
//!
//! Log lines need nothing more: `tracing-subscriber` escapes ESC and the C1 controls in every
//! message it formats. JSON output (`--json`, `summary.json`) needs nothing either: JSON escapes
//! every control character in a string (`\u001b`).

use std::borrow::Cow;

/// `text` with its control characters written out as escapes, as Rust's
/// [`char::escape_debug`] writes them but for control characters only: tab, line feed and
/// carriage return as `\t`, `\n`, `\r`; the other C0 controls and DEL as `\x1b`, `\x7f`; the C1
/// controls (U+0080 to U+009F) as `\u{9b}`; and the bidirectional formatting characters
/// (U+202A to U+202E, U+2066 to U+2069, which reorder what a terminal shows: CVE-2021-42574)
/// as `\u{202e}`. Everything else, letters of any script included, is kept, and a backslash is
/// left as it is, so escaping twice changes nothing more. Borrows when there is nothing to
/// escape.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 && needs_escape(c) => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Names read from a file (class names, tensor names, archive entries) for one line of a log or
/// error message: each through [`escape_control`] (so a line break in a name cannot start a
/// forged line), joined by `, `.
pub fn names<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> String {
    names.into_iter().map(|n| escape_control(n.as_ref()).into_owned()).collect::<Vec<_>>().join(", ")
}

/// [`escape_control`] for each line of `text`, keeping the line breaks: for a message of several
/// lines (an error with its causes).
pub fn escape_control_lines(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && needs_escape(c)) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.split('\n').map(escape_control).collect::<Vec<_>>().join("\n"))
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_one_by_one_and_joined() {
        assert_eq!(names(["cat", "dog\nINFO forged line", "\x1b[31mred"]), "cat, dog\\nINFO forged line, \\x1b[31mred");
        assert_eq!(names(Vec::<String>::new()), "");
    }

    #[test]
    fn control_characters_are_written_out_and_letters_kept() {
        assert!(matches!(escape_control("Flugzeug äöü 飛行機"), Cow::Borrowed("Flugzeug äöü 飛行機")));
        assert_eq!(escape_control("\x1b]0;pwned\x07cat"), "\\x1b]0;pwned\\x07cat");
        assert_eq!(escape_control("\x1b[31mred\x1b[0m"), "\\x1b[31mred\\x1b[0m");
        assert_eq!(escape_control("a\tb\nc\rd\0e\x7f"), "a\\tb\\nc\\rd\\x00e\\x7f");
        assert_eq!(escape_control("\u{9b}31m \u{202e}txt.exe"), "\\u{9b}31m \\u{202e}txt.exe");
        // Idempotent: what it writes holds no control character.
        let once = escape_control("\x1b\\x1b").into_owned();
        assert_eq!(once, "\\x1b\\x1b");
        assert_eq!(escape_control(&once), once);
    }

    #[test]
    fn lines_keep_their_breaks() {
        assert_eq!(escape_control_lines("error: a\x1b[2J\nb\tc"), "error: a\\x1b[2J\nb\\tc");
        assert!(matches!(escape_control_lines("a\nb"), Cow::Borrowed("a\nb")));
    }
}
