//! Text rules: control-character and look-alike sanitizing, the nick/room charset.

use alloc::borrow::Cow;
use alloc::string::String;

/// The replacement for every control character: `�` (U+FFFD).
pub const REPLACEMENT: char = '\u{FFFD}';

/// Whether `c` is an invisible or direction-changing character that lets text
/// look like something else: zero-width and direction marks (U+200B–U+200F,
/// U+2060, U+FEFF), line and paragraph separators (U+2028, U+2029), bidirectional
/// embeddings and overrides (U+202A–U+202E) and isolates (U+2066–U+2069).
pub fn is_look_alike(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
    )
}

/// Whether `c` must not reach a terminal: C0 controls except tab, DEL and C1
/// controls (ESC is a C0 control), exactly Unicode's `Cc` category minus tab; and
/// the [look-alikes](is_look_alike).
fn is_forbidden(c: char) -> bool {
    (c.is_control() && c != '\t') || is_look_alike(c)
}

/// Whether the byte at `i` starts a forbidden character. C0 and DEL are single
/// bytes; C1 (U+0080–U+009F) is encoded as `0xC2 0x80..=0x9F`; the look-alikes as
/// `0xE2 0x80 0x8B..=0x8F | 0xA8..=0xAE`, `0xE2 0x81 0xA0 | 0xA6..=0xA9` and
/// `0xEF 0xBB 0xBF`.
fn forbidden_at(bytes: &[u8], i: usize) -> bool {
    let next = |k: usize| bytes.get(i + k).copied();
    match bytes[i] {
        b'\t' => false,
        0x00..=0x1f | 0x7f => true,
        0xc2 => matches!(next(1), Some(0x80..=0x9f)),
        0xe2 => matches!(
            (next(1), next(2)),
            (Some(0x80), Some(0x8b..=0x8f | 0xa8..=0xae)) | (Some(0x81), Some(0xa0 | 0xa6..=0xa9))
        ),
        0xef => next(1) == Some(0xbb) && next(2) == Some(0xbf),
        _ => false,
    }
}

/// Replaces control characters (C0 except tab, DEL, C1; ESC included) and
/// [look-alikes](is_look_alike) (bidirectional overrides and isolates, zero-width
/// and direction marks, line and paragraph separators) with `�`, so that nobody can
/// inject terminal escape sequences into other users' screens or make text look
/// like something it is not.
///
/// Returns [`Cow::Borrowed`] (no allocation) when nothing had to change; the check
/// is a single pass over the bytes.
///
/// ```
/// use echochat::chat::sanitize;
/// assert!(matches!(sanitize("plain\ttext é"), std::borrow::Cow::Borrowed(_)));
/// assert_eq!(sanitize("a\x1b[31mb\u{9b}c\x7f"), "a�[31mb�c�");
/// assert_eq!(sanitize("x\u{202e}gpj.exe\u{200b}"), "x�gpj.exe�");
/// ```
pub fn sanitize(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let Some(first) = (0..bytes.len()).find(|&i| forbidden_at(bytes, i)) else {
        return Cow::Borrowed(text);
    };
    // `first` is a char boundary: forbidden characters start at lead bytes.
    let mut out = String::with_capacity(text.len() + 2);
    out.push_str(&text[..first]);
    out.extend(
        text[first..]
            .chars()
            .map(|c| if is_forbidden(c) { REPLACEMENT } else { c }),
    );
    Cow::Owned(out)
}

/// Longest nick or room name, in bytes (all allowed characters are ASCII).
pub const MAX_NAME: usize = 24;

/// Whether `name` is a valid nick or room name: 1–24 of `A-Z a-z 0-9 _ -`.
///
/// ```
/// use echochat::chat::valid_name;
/// assert!(valid_name("rust-fans_42"));
/// assert!(!valid_name("") && !valid_name("a b") && !valid_name("#rust") && !valid_name("é"));
/// ```
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Cluster notices (`docs/cluster.md`, "What users see"), each a whole line.
pub mod cluster {
    /// To every local user, once, when the bus is lost.
    pub const UNREACHABLE: &str = "* other servers are unreachable\n";
    /// To every local user when the bus is back after [`UNREACHABLE`].
    pub const BACK: &str = "* other servers are back (messages may have been missed)\n";
    /// To every local user when events from another node were missed (a gap in
    /// its sequence numbers).
    pub const MISSED: &str = "* some messages from other servers were missed\n";
    /// The `left` reason for the users of a node that stopped heartbeating.
    pub const SERVER_LOST: &str = "server lost";
    /// The `left` reason for the users of a node that shut down.
    pub const SERVER_SHUTTING_DOWN: &str = "server shutting down";
    /// `/nick` while the bus is lost (or the claim was not answered in time),
    /// after `! nick NAME`.
    pub const NICK_UNCHECKED: &str = "cannot be checked now (other servers are unreachable)";
    /// `/nick` while the previous one is still being claimed.
    pub const NICK_BUSY: &str = "! a nick change is already under way\n";
    /// `/msg` to a user of another node while the bus is lost.
    pub const MSG_UNREACHABLE: &str = "! other servers are unreachable\n";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_is_borrowed() {
        for s in [
            "",
            "hello",
            "tab\there",
            "héllo wörld ✓ 🦀",
            "\u{a0}\u{ff}\u{2027}\u{202f}\u{2065}\u{206a}\u{fefe}",
            "– — ‘’ “” … € ™",
        ] {
            assert!(matches!(sanitize(s), Cow::Borrowed(_)), "{s:?}");
        }
    }

    #[test]
    fn control_characters_are_replaced() {
        assert_eq!(sanitize("\x1b[2J"), "\u{FFFD}[2J");
        assert_eq!(sanitize("a\x00b\x07c\x08d\x7fe"), "a�b�c�d�e");
        assert_eq!(sanitize("\r\x0b\x0c"), "���");
        assert_eq!(sanitize("x\u{80}y\u{9b}z\u{9f}"), "x�y�z�");
        assert_eq!(sanitize("é\x1bé"), "é�é");
        // U+00A0 and U+00C2 start with 0xC2 / are 0xC3 0x82 but are not controls.
        assert_eq!(sanitize("\u{a0}\u{c2}\x1b"), "\u{a0}\u{c2}�");
    }

    #[test]
    fn every_char_below_0xa0_is_checked() {
        for c in (0u32..0x200).filter_map(char::from_u32) {
            let mut buf = [0u8; 4];
            let s = c.encode_utf8(&mut buf);
            let expect_replaced = c.is_control() && c != '\t';
            assert_eq!(sanitize(s) == "\u{FFFD}", expect_replaced, "{c:?}");
        }
    }

    #[test]
    fn look_alikes_are_replaced() {
        assert_eq!(sanitize("a\u{202e}b\u{2066}c\u{2069}d"), "a�b�c�d");
        assert_eq!(sanitize("\u{200b}\u{200f}\u{2060}\u{feff}"), "����");
        assert_eq!(sanitize("one\u{2028}two\u{2029}"), "one�two�");
        assert_eq!(sanitize("\u{202a}\u{202b}\u{202c}\u{202d}"), "����");
    }

    #[test]
    fn byte_scan_agrees_with_char_rule_for_every_bmp_char() {
        for c in (0u32..0x1_0000).filter_map(char::from_u32) {
            let mut buf = [0u8; 4];
            let s = c.encode_utf8(&mut buf);
            assert_eq!(
                forbidden_at(s.as_bytes(), 0),
                is_forbidden(c),
                "{c:?} U+{:04X}",
                c as u32
            );
            let framed = alloc::format!("a{s}b");
            assert_eq!(
                matches!(sanitize(&framed), Cow::Borrowed(_)),
                !is_forbidden(c)
            );
        }
    }

    #[test]
    fn names() {
        assert!(valid_name("a"));
        assert!(valid_name("A-Z_a-z_0-9"));
        assert!(valid_name(&"x".repeat(24)));
        assert!(!valid_name(&"x".repeat(25)));
        for bad in ["", " ", "a b", "a.b", "#a", "a\t", "ü", "a/b", "@op"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
