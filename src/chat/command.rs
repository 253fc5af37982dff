//! Parsing one chat line into a [`Command`].

/// What one (already sanitized, non-empty) line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command<'a> {
    /// Plain text for the room (`//text` arrives here as `/text`).
    Say(&'a str),
    /// `/nick NAME`
    Nick(&'a str),
    /// `/join ROOM`
    Join(&'a str),
    /// `/who`
    Who,
    /// `/rooms`
    Rooms,
    /// `/msg NICK text`
    Msg {
        /// Recipient nick.
        to: &'a str,
        /// Message text.
        text: &'a str,
    },
    /// `/me text`
    Me(&'a str),
    /// `/quit [reason]`
    Quit(Option<&'a str>),
    /// `/help`
    Help,
    /// `/other`: the command word as sent, with its slash.
    Unknown(&'a str),
}

impl<'a> Command<'a> {
    /// Parses a line (without its line ending).
    pub fn parse(line: &'a str) -> Command<'a> {
        todo!("{line}")
    }
}
