//! `chat-client` on a terminal (stdin and stdout both TTYs): a line editor
//! (rustyline) with a `guestN> ` prompt and in-memory history. Server lines are
//! printed above the prompt through the editor's external printer, so they never
//! split what is being typed; colours mark notices, errors, private messages and
//! your own nick (off with `NO_COLOR`).
//!
//! Leaving: Ctrl-C or Ctrl-D (on an empty line) closes the connection and exits 0.
//! When the server closes, the editor is stopped (the terminal restored, the
//! half-typed line discarded, never sent) and the client exits 0 after the server's
//! last lines. The editor cannot be stopped from another thread through its API,
//! but it turns SIGINT into "interrupted"; so the client sends itself SIGINT (with
//! `kill`) until the editor has returned. SIGINT/SIGTERM from outside are handled
//! the same way, as a request to leave.

use std::io::{self, BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rustyline::completion::Completer;
use rustyline::config::Config;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, ExternalPrinter, Helper};

use super::tls_client::{ClientReader, ClientWriter};
use super::CliError;

/// How long to wait for the server's word on our nick (the welcome at arrival,
/// the answer to `/nick`) before showing a prompt anyway.
const NICK_WAIT: Duration = Duration::from_millis(1500);
/// How long the printer leaves the editor to show the last lines before stopping it.
const DRAIN: Duration = Duration::from_millis(100);

/// Why the session is ending, when not by the user at the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The server closed the connection.
    ServerClosed,
    /// Reading from the server failed.
    Failed,
    /// SIGINT/SIGTERM from outside.
    Signal,
}

#[derive(Default)]
struct State {
    /// Our nick as the server last told it.
    nick: Option<String>,
    /// Error lines (`! `) seen so far.
    errors: u64,
    stop: Option<Stop>,
    /// The reading failure, for the exit message.
    failure: Option<io::Error>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// The SIGINT loop that stops the editor has started.
    stopping: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records why the session ends (first reason wins) and stops the editor.
    fn stop(self: &Arc<Self>, why: Stop) {
        {
            let mut state = self.lock();
            state.stop.get_or_insert(why);
        }
        self.changed.notify_all();
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        thread::spawn(|| {
            // Leave the editor time to take the printer's last lines.
            thread::sleep(DRAIN);
            let pid = std::process::id().to_string();
            // Repeated: a SIGINT that lands between two prompts only wakes the
            // signal handler below; the next one reaches the editor.
            loop {
                let sent = Command::new("kill")
                    .args(["-s", "INT", &pid])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                if sent.is_err() {
                    // No `kill`: leave as best we can (the terminal may stay raw).
                    let _ = io::stdout().write_all(b"\r\n");
                    std::process::exit(0);
                }
                thread::sleep(Duration::from_millis(300));
            }
        });
    }
}

/// Terminal colours (SGR), or none.
struct Style {
    on: bool,
}

const RESET: &str = "\x1b[0m";
const OWN_NICK: &str = "\x1b[1;33m";
const NOTICE: &str = "\x1b[2m";
const ERROR: &str = "\x1b[31m";
const PRIVATE: &str = "\x1b[1;35m";

impl Style {
    /// `line` (no newline) as it should appear, our own nick highlighted.
    fn line(&self, line: &str, nick: Option<&str>) -> String {
        if !self.on {
            return line.to_owned();
        }
        let base = if line.starts_with("* ") {
            NOTICE
        } else if line.starts_with("! ") {
            ERROR
        } else if line.starts_with("(pm) ") {
            PRIVATE
        } else {
            ""
        };
        let mut out = String::with_capacity(line.len() + 32);
        out.push_str(base);
        match nick.filter(|n| !n.is_empty()) {
            Some(nick) => highlight(&mut out, line, nick, base),
            None => out.push_str(line),
        }
        out.push_str(RESET);
        out
    }
}

/// Appends `line` to `out` with every whole-word `nick` in [`OWN_NICK`], going
/// back to `base` after each.
fn highlight(out: &mut String, line: &str, nick: &str, base: &str) {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-');
    let mut rest = line;
    while let Some(at) = rest.find(nick) {
        let end = at + nick.len();
        let whole = !word(rest[..at].chars().next_back()) && !word(rest[end..].chars().next());
        if whole {
            out.push_str(&rest[..at]);
            out.push_str(RESET);
            out.push_str(OWN_NICK);
            out.push_str(nick);
            out.push_str(RESET);
            out.push_str(base);
        } else {
            out.push_str(&rest[..end]);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
}

/// Control characters would drive the terminal: shown as U+FFFD instead.
fn sanitize(line: &str) -> String {
    line.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// Our nick as told by a server line, if it tells it.
fn nick_news(line: &str, current: Option<&str>) -> Option<String> {
    if let Some(rest) = line.strip_prefix("* welcome ") {
        let (nick, _) = rest.split_once(',')?;
        return Some(nick.to_owned());
    }
    let rest = line.strip_prefix("* ")?;
    let (old, new) = rest.split_once(" is now known as ")?;
    (Some(old) == current && !new.contains(' ')).then(|| new.to_owned())
}

fn readline_error(e: ReadlineError) -> CliError {
    match e {
        ReadlineError::Io(e) => CliError::stdin(e),
        e => CliError::stdin(io::Error::other(e.to_string())),
    }
}

/// Keeps the width of the line being edited (in chars), to erase it when the
/// server closes (it may wrap over several rows). The editor asks its hinter at
/// every change of the line.
#[derive(Default)]
struct Tracker {
    width: Arc<std::sync::atomic::AtomicUsize>,
}

impl Hinter for Tracker {
    type Hint = String;

    fn hint(&self, line: &str, _pos: usize, _ctx: &Context<'_>) -> Option<String> {
        self.width.store(line.chars().count(), Ordering::Relaxed);
        None
    }
}

impl Completer for Tracker {
    type Candidate = String;
}
impl Highlighter for Tracker {}
impl Validator for Tracker {}
impl Helper for Tracker {}

type LineEditor = rustyline::Editor<Tracker, DefaultHistory>;

/// The line editor and its printer for server lines.
pub struct Editor {
    editor: LineEditor,
    printer: Box<dyn ExternalPrinter + Send>,
}

impl Editor {
    /// The editor, or `None` where it cannot work (e.g. `TERM=dumb`): the plain
    /// line mode is used then.
    pub fn open() -> Option<Editor> {
        let config = Config::builder()
            .auto_add_history(true)
            .max_history_size(1000)
            .ok()?
            .build();
        let mut editor = LineEditor::with_config(config)
            .inspect_err(|e| log::info!("no line editor: {e}"))
            .ok()?;
        editor.set_helper(Some(Tracker::default()));
        let printer = editor
            .create_external_printer()
            .inspect_err(|e| log::info!("no line editor: {e}"))
            .ok()?;
        Some(Editor {
            editor,
            printer: Box::new(printer),
        })
    }
}

/// `echochat chat-client` on a terminal.
pub fn run(
    editor: Editor,
    addr: &str,
    nick: Option<&str>,
    reader: ClientReader,
    mut writer: ClientWriter,
) -> Result<(), CliError> {
    let Editor {
        mut editor,
        printer,
    } = editor;
    let style = Style {
        on: std::env::var_os("NO_COLOR").is_none(),
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
        stopping: AtomicBool::new(false),
    });
    let on_signal = shared.clone();
    ctrlc::set_handler(move || on_signal.stop(Stop::Signal))?;
    let for_printer = shared.clone();
    thread::Builder::new()
        .name("chat-printer".into())
        .spawn(move || print_lines(reader, printer, style, &for_printer))
        .map_err(|source| CliError::Connection {
            addr: addr.into(),
            source,
        })?;

    let mut awaited = None;
    if let Some(nick) = nick {
        let _ = writer.write_all(format!("/nick {nick}\n").as_bytes());
        awaited = Some(nick.to_owned());
    }
    // The welcome (and the answer to --nick) make the first prompt.
    let welcomed = |s: &State| match &awaited {
        Some(want) => s.nick.as_deref() == Some(want) || s.errors > 0,
        None => s.nick.is_some(),
    };
    wait_for(&shared, welcomed);

    loop {
        let prompt = match &shared.lock().nick {
            Some(nick) => format!("{nick}> "),
            None => "> ".to_owned(),
        };
        let read = editor.readline(&prompt);
        let stop = shared.lock().stop;
        if let Some(why) = stop {
            // The rows the prompt and the half-typed line took.
            let typed = editor
                .helper()
                .map_or(0, |t| t.width.load(Ordering::Relaxed));
            let rows = match editor.dimensions() {
                Some((cols, _)) if cols > 0 => {
                    (prompt.chars().count() + typed) / usize::from(cols) + 1
                }
                _ => 1,
            };
            return finish(why, addr, rows, &shared, &mut writer);
        }
        match read {
            Ok(line) => {
                let line = line.trim_end_matches(['\r', '\n']);
                let (nick, errors) = {
                    let s = shared.lock();
                    (s.nick.clone(), s.errors)
                };
                if writer
                    .write_all(format!("{line}\n").as_bytes())
                    .and_then(|()| writer.flush())
                    .is_err()
                {
                    // The printer sees the server go and reports it better.
                    wait_for(&shared, |s| s.stop.is_some());
                    continue;
                }
                if line.trim_start().starts_with("/nick ") {
                    // Show the new nick in the next prompt when the server agrees.
                    wait_for(&shared, |s| s.nick != nick || s.errors != errors);
                }
            }
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => {
                writer.finish();
                return Ok(());
            }
            Err(e) => {
                writer.finish();
                return Err(readline_error(e));
            }
        }
    }
}

/// Waits (at most [`NICK_WAIT`]) until `done` holds or the session is ending.
fn wait_for(shared: &Shared, done: impl Fn(&State) -> bool) {
    let deadline = Instant::now() + NICK_WAIT;
    let mut state = shared.lock();
    while !done(&state) && state.stop.is_none() {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return;
        };
        state = shared
            .changed
            .wait_timeout(state, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// The editor has returned because the session ends: the half-typed line (left on
/// the `rows` above the cursor by the editor) is erased, and the connection closed.
fn finish(
    why: Stop,
    addr: &str,
    rows: usize,
    shared: &Shared,
    writer: &mut ClientWriter,
) -> Result<(), CliError> {
    let mut out = io::stdout();
    let _ = out
        .write_all("\x1b[1A\r\x1b[2K".repeat(rows).as_bytes())
        .and_then(|()| out.flush());
    writer.finish();
    match why {
        Stop::ServerClosed | Stop::Signal => Ok(()),
        Stop::Failed => Err(CliError::Connection {
            addr: addr.into(),
            source: shared
                .lock()
                .failure
                .take()
                .unwrap_or_else(|| io::Error::other("connection failed")),
        }),
    }
}

/// Prints server lines above the prompt until the server closes (or reading
/// fails), then stops the editor.
fn print_lines(
    stream: ClientReader,
    mut printer: Box<dyn ExternalPrinter + Send>,
    style: Style,
    shared: &Arc<Shared>,
) {
    let mut server = BufReader::new(stream);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        match server.read_until(b'\n', &mut line) {
            Ok(0) => {
                log::info!("server closed the connection");
                return shared.stop(Stop::ServerClosed);
            }
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = sanitize(text.trim_end_matches(['\n', '\r']));
                let shown = {
                    let mut state = shared.lock();
                    if let Some(nick) = nick_news(&text, state.nick.as_deref()) {
                        state.nick = Some(nick);
                    }
                    if text.starts_with("! ") {
                        state.errors += 1;
                    }
                    style.line(&text, state.nick.as_deref())
                };
                shared.changed.notify_all();
                // With the newline: printed straight out before the first prompt.
                if printer.print(shown + "\n").is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                shared.lock().failure = Some(e);
                return shared.stop(Stop::Failed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nick_news_follows_welcome_and_own_renames() {
        assert_eq!(
            nick_news("* welcome guest3, 2 users online", None).as_deref(),
            Some("guest3")
        );
        let me = Some("guest3");
        assert_eq!(
            nick_news("* guest3 is now known as bob", me).as_deref(),
            Some("bob")
        );
        assert_eq!(nick_news("* guest4 is now known as eve", me), None);
        assert_eq!(nick_news("<guest3> * guest3 is now known as x", me), None);
    }

    #[test]
    fn styles() {
        let off = Style { on: false };
        assert_eq!(
            off.line("* welcome bob, 1", Some("bob")),
            "* welcome bob, 1"
        );
        let on = Style { on: true };
        assert_eq!(
            on.line("! no such user", None),
            format!("{ERROR}! no such user{RESET}")
        );
        assert_eq!(
            on.line("<amy> hi bob, bobby", Some("bob")),
            format!("<amy> hi {RESET}{OWN_NICK}bob{RESET}, bobby{RESET}")
        );
        assert!(on.line("(pm) <amy> x", None).starts_with(PRIVATE));
        assert_eq!(sanitize("a\x1b[5mb"), "a\u{fffd}[5mb");
    }
}
