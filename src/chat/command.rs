//! Parsing one chat line into a [`Command`].
//!
//! Rules (see `docs/PROTOCOL.md`):
//! * a line not starting with `/` is text for the room; `//text` is the text `/text`;
//! * otherwise the command word runs up to the first space and is matched
//!   ASCII-case-insensitively (`/NICK` = `/nick`);
//! * arguments start after the first run of spaces; names (`/nick`, `/join`,
//!   `/msg`'s recipient) end at the next space, so trailing spaces are ignored;
//!   extra words after a name make it invalid (`/nick a b` is `! invalid nick`),
//!   except for `/who`, `/rooms` and `/help`, which ignore arguments;
//! * a missing required argument gives [`Command::Usage`].

/// What one (already sanitized, non-empty) line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command<'a> {
    /// Plain text for the room (`//text` arrives here as `/text`).
    Say(&'a str),
    /// `/nick NAME`
    Nick(&'a str),
    /// `/join ROOM` (the `#` is still there if the user typed it).
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
    /// A known command without its required argument: the usage to show, e.g.
    /// `/nick NAME` (the server answers `! usage: /nick NAME`).
    Usage(&'static str),
}

/// Splits `s` at its first run of spaces: `("word", "rest")`, `rest` may be empty.
fn split_word(s: &str) -> (&str, &str) {
    match s.find(' ') {
        Some(i) => (&s[..i], s[i..].trim_start_matches(' ')),
        None => (s, ""),
    }
}

impl<'a> Command<'a> {
    /// Parses a line (without its line ending).
    ///
    /// ```
    /// use echochat::chat::Command;
    /// assert_eq!(Command::parse("hi all"), Command::Say("hi all"));
    /// assert_eq!(Command::parse("//etc"), Command::Say("/etc"));
    /// assert_eq!(Command::parse("/MSG bob  hi there"), Command::Msg { to: "bob", text: "hi there" });
    /// assert_eq!(Command::parse("/nick"), Command::Usage("/nick NAME"));
    /// assert_eq!(Command::parse("/frob x"), Command::Unknown("/frob"));
    /// ```
    pub fn parse(line: &'a str) -> Command<'a> {
        let Some(after_slash) = line.strip_prefix('/') else {
            return Command::Say(line);
        };
        if after_slash.starts_with('/') {
            return Command::Say(after_slash);
        }
        let (word, args) = split_word(after_slash);
        let name = args.trim_end_matches(' ');
        let is = |w: &str| word.eq_ignore_ascii_case(w);
        if is("nick") {
            if name.is_empty() {
                Command::Usage("/nick NAME")
            } else {
                Command::Nick(name)
            }
        } else if is("join") {
            if name.is_empty() {
                Command::Usage("/join ROOM")
            } else {
                Command::Join(name)
            }
        } else if is("who") {
            Command::Who
        } else if is("rooms") {
            Command::Rooms
        } else if is("msg") {
            let (to, text) = split_word(args);
            if to.is_empty() || text.is_empty() {
                Command::Usage("/msg NICK text")
            } else {
                Command::Msg { to, text }
            }
        } else if is("me") {
            if args.is_empty() {
                Command::Usage("/me text")
            } else {
                Command::Me(args)
            }
        } else if is("quit") {
            Command::Quit((!name.is_empty()).then_some(name))
        } else if is("help") {
            Command::Help
        } else {
            Command::Unknown(&line[..1 + word.len()])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Command::{self, *};

    fn p(s: &str) -> Command<'_> {
        Command::parse(s)
    }

    #[test]
    fn text_and_escaped_slash() {
        assert_eq!(p("hello"), Say("hello"));
        assert_eq!(p(" /nick x"), Say(" /nick x"));
        assert_eq!(p("//nick x"), Say("/nick x"));
        assert_eq!(p("//"), Say("/"));
        assert_eq!(p("   "), Say("   "));
    }

    #[test]
    fn command_words_ignore_case() {
        assert_eq!(p("/NiCk bob"), Nick("bob"));
        assert_eq!(p("/JOIN #rust"), Join("#rust"));
        assert_eq!(p("/Who"), Who);
        assert_eq!(p("/ROOMS"), Rooms);
        assert_eq!(p("/Help"), Help);
        assert_eq!(p("/QUIT"), Quit(None));
    }

    #[test]
    fn arguments_split_on_first_run_of_spaces() {
        assert_eq!(p("/nick    bob   "), Nick("bob"));
        assert_eq!(p("/nick a b"), Nick("a b"));
        assert_eq!(p("/join rust "), Join("rust"));
        assert_eq!(
            p("/msg  bob   hi  there "),
            Msg {
                to: "bob",
                text: "hi  there "
            }
        );
        assert_eq!(p("/me  waves  "), Me("waves  "));
        assert_eq!(p("/quit  gone fishing  "), Quit(Some("gone fishing")));
        assert_eq!(p("/quit   "), Quit(None));
        assert_eq!(p("/who extra"), Who);
        assert_eq!(p("/rooms x y"), Rooms);
        assert_eq!(p("/help nick"), Help);
    }

    #[test]
    fn missing_arguments_give_usage() {
        assert_eq!(p("/nick"), Usage("/nick NAME"));
        assert_eq!(p("/nick   "), Usage("/nick NAME"));
        assert_eq!(p("/join"), Usage("/join ROOM"));
        assert_eq!(p("/join  "), Usage("/join ROOM"));
        assert_eq!(p("/msg"), Usage("/msg NICK text"));
        assert_eq!(p("/msg bob"), Usage("/msg NICK text"));
        assert_eq!(p("/msg bob   "), Usage("/msg NICK text"));
        assert_eq!(p("/me"), Usage("/me text"));
        assert_eq!(p("/me   "), Usage("/me text"));
    }

    #[test]
    fn unknown_commands_keep_their_spelling() {
        assert_eq!(p("/frob"), Unknown("/frob"));
        assert_eq!(p("/FROB a b"), Unknown("/FROB"));
        assert_eq!(p("/"), Unknown("/"));
        assert_eq!(p("/ nick"), Unknown("/"));
        assert_eq!(p("/nickname bob"), Unknown("/nickname"));
        assert_eq!(p("/nick\tbob"), Unknown("/nick\tbob"));
        assert_eq!(p("/é"), Unknown("/é"));
    }
}
