//! Text rules: control-character sanitizing and the nick/room charset.

use alloc::borrow::Cow;

/// Replaces control characters (C0 except tab, DEL, C1; ESC included) with `�`.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    todo!("{text}")
}

/// Whether `name` is a valid nick or room name: 1–24 of `A-Z a-z 0-9 _ -`.
pub fn valid_name(name: &str) -> bool {
    todo!("{name}")
}
