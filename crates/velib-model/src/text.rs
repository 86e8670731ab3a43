//! Feed text made safe for a terminal, a log line or a mail: one physical line, no control
//! sequence.
//!
//! Station names and addresses come from bike-share feeds, outside velib's control. Real feeds
//! hold CR/LF inside addresses (102 of JCDecaux's addresses on one day of 2026), and a feed
//! could send any control character, an ANSI escape sequence among them, that would move the
//! cursor, rewrite earlier lines or change a terminal's title. velib keeps the text as the feed
//! sent it in Kafka (consumers decide how to show it) and neutralises it where it is shown as
//! text: the monitor's change lines, mail subjects and bodies.
//!
//! The rule, per character:
//!
//! - line breaks and other whitespace controls (TAB, LF, VT, FF, CR, NEL, U+2028, U+2029)
//!   become one space, so a change stays one line and words stay apart;
//! - every other C0 or C1 control character and DEL (ESC among them) becomes U+FFFD `�`, so the
//!   reader sees that something was there;
//! - bidirectional overrides and isolates (U+202A–U+202E, U+2066–U+2069), which can make a
//!   line display in another order than it is written, become U+FFFD too.
//!
//! Everything else, accents and non-Latin scripts included, is kept as it is.

use std::borrow::Cow;
use std::fmt;

/// What [`printable`] does with one character: `None` keeps it.
fn replacement(c: char) -> Option<char> {
    match c {
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' => Some(' '),
        '\u{00}'..='\u{1F}' | '\u{7F}'..='\u{9F}' => Some('\u{FFFD}'),
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => Some('\u{FFFD}'),
        _ => None,
    }
}

/// `text` with control characters neutralised (see the [module docs](self)); borrowed when
/// there is nothing to change, which is almost always.
///
/// ```
/// use velib_model::text::printable;
///
/// assert_eq!(printable("RUE DE LA REPUBLIQUE"), "RUE DE LA REPUBLIQUE");
/// assert_eq!(printable("12 RUE X\r\nLYON"), "12 RUE X  LYON");
/// assert_eq!(printable("\u{1b}[2Jcleared"), "\u{FFFD}[2Jcleared");
/// ```
pub fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().all(|c| replacement(c).is_none()) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().map(|c| replacement(c).unwrap_or(c)).collect())
}

/// Displays a text with control characters neutralised, without allocating: what
/// [`printable`] returns, written straight into a formatter.
///
/// ```
/// use velib_model::text::Printable;
///
/// assert_eq!(format!("[{}]", Printable("a\tb\u{7}")), "[a b\u{FFFD}]");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Printable<'a>(pub &'a str);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        let mut clean_from = 0;
        for (at, c) in text.char_indices() {
            if let Some(r) = replacement(c) {
                f.write_str(&text[clean_from..at])?;
                fmt::Write::write_char(f, r)?;
                clean_from = at + c.len_utf8();
            }
        }
        f.write_str(&text[clean_from..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_control_character_is_neutralised() {
        for code in (0u32..0x20).chain(0x7F..0xA0).chain([0x2028, 0x2029]) {
            let c = char::from_u32(code).unwrap();
            let text = format!("a{c}b");
            let shown = printable(&text);
            assert_eq!(shown.chars().count(), 3, "U+{code:04X}");
            assert!(
                shown.chars().all(|c| !c.is_control()),
                "U+{code:04X} survived: {shown:?}"
            );
            assert_eq!(Printable(&text).to_string(), shown, "U+{code:04X}");
        }
    }

    #[test]
    fn one_physical_line_and_no_escape_sequence() {
        let hostile = "1 RUE X\r\n-5 FAKE LINE (lyon)\u{1b}]0;title\u{7}\u{1b}[31mred\u{202E}txt";
        let shown = Printable(hostile).to_string();
        assert!(!shown.contains(['\r', '\n', '\u{1b}', '\u{7}', '\u{202E}']));
        assert_eq!(shown.lines().count(), 1);
        assert!(
            shown.contains("FAKE LINE (lyon)"),
            "the text itself is kept"
        );
    }

    #[test]
    fn ordinary_text_is_borrowed_and_unchanged() {
        for text in [
            "",
            "Place Bellecour",
            "Šmartinska cesta",
            "富山駅",
            "Ñ – « » ’",
        ] {
            assert!(matches!(printable(text), Cow::Borrowed(t) if t == text));
            assert_eq!(Printable(text).to_string(), text);
        }
    }
}
