//! Fuzz body for [`LineFramer`]: chunking invariance, line bounds, buffer bounds.

use alloc::vec::Vec;

use crate::framing::{LineFramer, LineTooLong};

type Lines = Vec<Result<Vec<u8>, LineTooLong>>;

/// Input: `[max_line, n, n chunk sizes…, stream…]`. The stream is framed once in one
/// push and once in chunks of the given sizes (cycled; 0 means an empty push, never twice in a row); both
/// must give the same lines as a plain split-on-`\n` reference.
pub fn framer(data: &[u8]) {
    let Some((&max, rest)) = data.split_first() else {
        return;
    };
    let Some((&n, rest)) = rest.split_first() else {
        return;
    };
    let max_line = usize::from(max % 64);
    let n = usize::from(n % 16).min(rest.len());
    let (sizes, stream) = rest.split_at(n);
    let chunks = chunk(stream, sizes);
    check_framer(max_line, stream, &chunks);
}

/// Splits `stream` into pieces with the given sizes (cycled; `[]` means one piece).
pub fn chunk<'a>(stream: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    if sizes.is_empty() {
        return alloc::vec![stream];
    }
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    let mut last_empty = false;
    while at < stream.len() {
        // An empty push is a case worth testing, but never two in a row (progress).
        let want = match usize::from(sizes[i % sizes.len()]) {
            0 if last_empty => 1,
            n => n,
        };
        last_empty = want == 0;
        let n = want.min(stream.len() - at);
        out.push(&stream[at..at + n]);
        at += n;
        i += 1;
    }
    out
}

/// Frames `chunks` (whose concatenation is `stream`) and checks the result against
/// one push of `stream` and against the reference. Panics on any difference.
pub fn check_framer(max_line: usize, stream: &[u8], chunks: &[&[u8]]) {
    let expected = reference(max_line, stream);
    let one_shot = frame(max_line, &[stream]);
    assert_eq!(
        one_shot, expected,
        "one-shot framing differs from the reference"
    );
    let chunked = frame(max_line, chunks);
    assert_eq!(chunked, expected, "chunked framing differs from one-shot");
}

/// What framing `stream` must give: split on `\n`, drop one `\r` before it, lines
/// longer than `max_line` become errors; an unterminated tail counts as a last line.
pub fn reference(max_line: usize, stream: &[u8]) -> Lines {
    let mut parts: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    let tail = parts.pop().unwrap_or_default();
    if !tail.is_empty() {
        parts.push(tail);
    }
    parts
        .into_iter()
        .map(|p| {
            let p = p.strip_suffix(b"\r").unwrap_or(p);
            if p.len() > max_line {
                Err(LineTooLong { max: max_line })
            } else {
                Ok(p.to_vec())
            }
        })
        .collect()
}

/// Runs a real framer over `chunks`, checking per-step bounds.
fn frame(max_line: usize, chunks: &[&[u8]]) -> Lines {
    let mut f = LineFramer::new(max_line);
    let mut out = Vec::new();
    for c in chunks {
        f.push(c);
        while let Some(r) = f.next_line() {
            out.push(checked(max_line, r));
        }
        assert!(
            f.buffered() <= max_line + 1,
            "framer holds {} bytes after draining (max_line {max_line})",
            f.buffered()
        );
    }
    if let Some(r) = f.finish() {
        out.push(checked(max_line, r));
    }
    assert_eq!(f.buffered(), 0, "finish left bytes behind");
    assert!(f.finish().is_none(), "finish twice gave a line");
    out
}

fn checked(max_line: usize, r: Result<bytes::Bytes, LineTooLong>) -> Result<Vec<u8>, LineTooLong> {
    match r {
        Ok(line) => {
            assert!(
                line.len() <= max_line,
                "line of {} bytes, max {max_line}",
                line.len()
            );
            assert!(!line.contains(&b'\n'), "line contains a newline: {line:?}");
            Ok(line.to_vec())
        }
        Err(e) => {
            assert_eq!(e.max, max_line);
            Err(e)
        }
    }
}
