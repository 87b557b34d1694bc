//! Text that ends up on an operator's terminal: the one check a job label must pass (the
//! client runs it before sending, the coordinator's admission is the authority) and the one
//! escaping every printed server-supplied text goes through. Nothing here prints.

use std::borrow::Cow;

/// Most characters a job label may have: a listing line stays one line.
pub const MAX_LABEL_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LabelError {
    #[error("the label has {got} characters; at most {MAX_LABEL_CHARS} are allowed")]
    TooLong { got: usize },
    #[error("the label holds the control character {ch:?} (character {at}); a label is one line of printable text, at most {MAX_LABEL_CHARS} characters")]
    Control { ch: char, at: usize },
}

/// A character a terminal acts on instead of showing: C0/C1 controls (escape sequences,
/// newlines, carriage returns) and the bidirectional overrides that reorder what follows.
pub fn is_terminal_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Refuses a label with control characters or over `MAX_LABEL_CHARS` characters.
pub fn check_label(label: &str) -> Result<(), LabelError> {
    if let Some((at, ch)) = label
        .chars()
        .enumerate()
        .find(|(_, c)| is_terminal_control(*c))
    {
        return Err(LabelError::Control { ch, at });
    }
    let got = label.chars().count();
    if got > MAX_LABEL_CHARS {
        return Err(LabelError::TooLong { got });
    }
    Ok(())
}

/// `text` with every terminal control written as a visible escape (`\u{1b}`), so that text
/// from a server (labels of older jobs, errors, worker names) cannot move the cursor or
/// forge lines. Borrowed when there is nothing to escape.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_terminal_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| match c {
                c if is_terminal_control(c) => c.escape_unicode().to_string(),
                c => c.to_string(),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_one_printable_line_of_bounded_length() {
        assert_eq!(check_label(""), Ok(()));
        assert_eq!(check_label("ioi run 3 — ünïcode"), Ok(()));
        assert_eq!(check_label(&"é".repeat(MAX_LABEL_CHARS)), Ok(()));
        let e = check_label(&"x".repeat(MAX_LABEL_CHARS + 1)).unwrap_err();
        assert_eq!(e, LabelError::TooLong { got: 201 });
        assert!(e.to_string().contains("200"), "{e}");
        for bad in [
            "x\u{1b}[2J",
            "a\nb",
            "a\rb",
            "a\u{9b}b",
            "a\u{202e}b",
            "a\tb",
        ] {
            let e = check_label(bad).unwrap_err();
            assert!(matches!(e, LabelError::Control { .. }), "{bad:?}");
            assert!(e.to_string().contains("control character"), "{e}");
        }
    }

    #[test]
    fn printable_escapes_controls_and_keeps_the_rest() {
        assert!(matches!(printable("plain é"), Cow::Borrowed("plain é")));
        assert_eq!(printable("x\u{1b}[2J\ny"), "x\\u{1b}[2J\\u{a}y");
        assert_eq!(printable("a\u{202e}b"), "a\\u{202e}b");
    }
}
