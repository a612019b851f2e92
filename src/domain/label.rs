//! Short free-text labels (source, campaign, segment, provider, event id, notes).

/// Longest source, campaign, segment, provider or event id, in characters.
pub const MAX_LABEL_CHARS: usize = 128;
/// Longest SMTP response kept, in bytes.
pub const MAX_SMTP_RESPONSE_BYTES: usize = 4096;
/// Longest note or justification, in characters.
pub const MAX_NOTE_CHARS: usize = 1024;

/// Why a label was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("is required")]
    Required,
    #[error("is longer than {0} characters")]
    TooLong(usize),
    #[error("is longer than {0} bytes")]
    TooManyBytes(usize),
    #[error("contains control characters")]
    ControlChar,
}

/// Trims `input` and checks it: at most `max_chars` characters, none of them a control
/// character that `allowed` does not let through; `Required` when `required` and empty.
fn checked(
    input: &str,
    max_chars: usize,
    allowed: fn(char) -> bool,
    required: bool,
) -> Result<String, LabelError> {
    let s = input.trim();
    if s.is_empty() && required {
        return Err(LabelError::Required);
    }
    if s.chars().count() > max_chars {
        return Err(LabelError::TooLong(max_chars));
    }
    if s.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(LabelError::ControlChar);
    }
    Ok(s.to_string())
}

/// A short label: at most [`MAX_LABEL_CHARS`] characters, no control characters, surrounding
/// whitespace trimmed. Names the two ways a field can be asked for.
pub struct Label;

impl Label {
    /// A label that must be given (not empty after trimming).
    pub fn required(input: &str) -> Result<String, LabelError> {
        checked(input, MAX_LABEL_CHARS, |_| false, true)
    }

    /// A label that may be empty (empty means "not given").
    pub fn optional(input: &str) -> Result<String, LabelError> {
        checked(input, MAX_LABEL_CHARS, |_| false, false)
    }
}

/// A note or justification: at most [`MAX_NOTE_CHARS`] characters, newlines and tabs allowed,
/// surrounding whitespace trimmed.
pub struct Note;

impl Note {
    /// A note that must be given (a justification).
    pub fn required(input: &str) -> Result<String, LabelError> {
        checked(input, MAX_NOTE_CHARS, |c| c == '\n' || c == '\t', true)
    }

    /// A note that may be empty.
    pub fn optional(input: &str) -> Result<String, LabelError> {
        checked(input, MAX_NOTE_CHARS, |c| c == '\n' || c == '\t', false)
    }
}

macro_rules! optional_label {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates it as a [`Label`]; empty means "not given".
            pub fn parse(input: &str) -> Result<Self, LabelError> {
                Label::optional(input).map($name)
            }

            /// The label as given (trimmed); empty when not given.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// True when not given.
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }

            /// The label, borrowed, or `None` when not given.
            pub fn named(&self) -> Option<&str> {
                (!self.0.is_empty()).then_some(self.0.as_str())
            }

            /// The label, or `None` when not given.
            pub fn given(self) -> Option<String> {
                (!self.0.is_empty()).then_some(self.0)
            }

            /// The label as a string (empty when not given).
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

optional_label!(
    /// Where a contact was acquired (a list, a form, a partner): the dimension whose bounce
    /// rates tell which acquisition channels to pause.
    Source
);
optional_label!(
    /// The campaign a message belonged to.
    Campaign
);
optional_label!(
    /// The audience segment a message was sent to.
    Segment
);

optional_label!(
    /// A mailing list ("newsletter-weekly"): what an unsubscribe may be limited to, and what a
    /// status lookup or an import may name. Empty: no list (transactional or unlisted mail).
    ListId
);

/// Validates a raw SMTP response: at most [`MAX_SMTP_RESPONSE_BYTES`] bytes, kept verbatim.
pub fn parse_smtp_response(input: &str) -> Result<String, LabelError> {
    if input.len() > MAX_SMTP_RESPONSE_BYTES {
        return Err(LabelError::TooManyBytes(MAX_SMTP_RESPONSE_BYTES));
    }
    Ok(input.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_required_label_refuses_blank_input_and_an_optional_one_takes_it_as_not_given() {
        assert_eq!(Label::required("  "), Err(LabelError::Required));
        assert_eq!(Label::optional("  ").as_deref(), Ok(""));
        assert_eq!(Label::required(" crm ").as_deref(), Ok("crm"));
        assert_eq!(Source::parse("").map(Source::given), Ok(None));
        assert_eq!(
            Campaign::parse(" autumn ").map(Campaign::given),
            Ok(Some("autumn".to_string()))
        );
    }

    #[test]
    fn labels_refuse_control_characters_and_overlong_input_but_notes_keep_newlines() {
        assert_eq!(Label::optional("a\nb"), Err(LabelError::ControlChar));
        assert_eq!(
            Note::optional("line 1\nline 2").as_deref(),
            Ok("line 1\nline 2")
        );
        assert_eq!(Note::required(""), Err(LabelError::Required));
        let long = "x".repeat(MAX_LABEL_CHARS + 1);
        assert_eq!(
            Segment::parse(&long),
            Err(LabelError::TooLong(MAX_LABEL_CHARS))
        );
        assert!(Note::optional(&long).is_ok());
    }
}
