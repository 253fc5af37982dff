//! Fuzz body for the chat text rules: [`Command::parse`], [`sanitize`], [`valid_name`].

use crate::chat::{sanitize, valid_name, Command};

use super::check::forbidden_char;

/// Input: any bytes; non-UTF-8 inputs are checked through their lossy decoding.
pub fn command(data: &[u8]) {
    let owned;
    let line = match core::str::from_utf8(data) {
        Ok(s) => s,
        Err(_) => {
            owned = alloc::string::String::from_utf8_lossy(data).into_owned();
            &owned
        }
    };
    check_sanitize(line);
    check_valid_name(line);
    check_parse(line);
    if let Some(rest) = line.get(1..) {
        check_parse(rest);
    }
}

/// `sanitize` removes every control character but tab (C0 including `\n` and
/// ESC, DEL, C1), replaces each by one `�` and leaves everything else alone; it is
/// idempotent.
pub fn check_sanitize(text: &str) {
    // Inside one line even `\n` is a control character to replace.
    let forbidden_char = |c: char| forbidden_char(c) || c == '\n';
    let clean = sanitize(text);
    assert!(
        !clean.chars().any(forbidden_char),
        "sanitize left a control char: {clean:?}"
    );
    assert_eq!(
        clean.chars().count(),
        text.chars().count(),
        "sanitize changed the char count"
    );
    for (a, b) in text.chars().zip(clean.chars()) {
        if forbidden_char(a) {
            assert_eq!(b, '\u{FFFD}', "{a:?} replaced by {b:?}");
        } else {
            assert_eq!(a, b, "sanitize changed an allowed char");
        }
    }
    assert_eq!(sanitize(&clean), clean, "sanitize is not idempotent");
}

/// `valid_name` agrees with `docs/PROTOCOL.md`: 1–24 of `A-Z a-z 0-9 _ -`.
pub fn check_valid_name(name: &str) {
    let expected = (1..=24).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    assert_eq!(valid_name(name), expected, "valid_name({name:?})");
}

/// `Command::parse` never panics, borrows only from its input, and treats lines
/// not starting with `/` (and `//…`) as text.
pub fn check_parse(line: &str) {
    let cmd = Command::parse(line);
    let inside = |s: &str| {
        let (a, b) = (line.as_ptr() as usize, s.as_ptr() as usize);
        assert!(
            b >= a && b + s.len() <= a + line.len(),
            "{cmd:?} borrows outside {line:?}"
        );
    };
    match &cmd {
        Command::Say(s)
        | Command::Nick(s)
        | Command::Join(s)
        | Command::Me(s)
        | Command::Unknown(s) => inside(s),
        Command::Msg { to, text } => {
            inside(to);
            inside(text);
        }
        Command::Quit(Some(r)) => inside(r),
        _ => {}
    }
    if !line.starts_with('/') {
        assert_eq!(cmd, Command::Say(line), "plain text parsed as a command");
    } else if let Some(rest) = line.strip_prefix("//") {
        assert_eq!(
            cmd,
            Command::Say(&line[1..]),
            "`//{rest}` must be the text `/{rest}`"
        );
    }
    match line {
        "/who" => assert_eq!(cmd, Command::Who),
        "/rooms" => assert_eq!(cmd, Command::Rooms),
        "/help" => assert_eq!(cmd, Command::Help),
        "/quit" => assert_eq!(cmd, Command::Quit(None)),
        _ => {}
    }
}
