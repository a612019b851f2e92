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

/// Validates a short label: at most [`MAX_LABEL_CHARS`] characters, no control characters.
/// Surrounding whitespace is trimmed.
pub fn parse_label(input: &str, required: bool) -> Result<String, LabelError> {
    let s = input.trim();
    if s.is_empty() && required {
        return Err(LabelError::Required);
    }
    if s.chars().count() > MAX_LABEL_CHARS {
        return Err(LabelError::TooLong(MAX_LABEL_CHARS));
    }
    if s.chars().any(char::is_control) {
        return Err(LabelError::ControlChar);
    }
    Ok(s.to_string())
}

/// Validates a note or justification: at most [`MAX_NOTE_CHARS`] characters (newlines allowed).
pub fn parse_note(input: &str, required: bool) -> Result<String, LabelError> {
    let s = input.trim();
    if s.is_empty() && required {
        return Err(LabelError::Required);
    }
    if s.chars().count() > MAX_NOTE_CHARS {
        return Err(LabelError::TooLong(MAX_NOTE_CHARS));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(LabelError::ControlChar);
    }
    Ok(s.to_string())
}

/// Validates a raw SMTP response: at most [`MAX_SMTP_RESPONSE_BYTES`] bytes, kept verbatim.
pub fn parse_smtp_response(input: &str) -> Result<String, LabelError> {
    if input.len() > MAX_SMTP_RESPONSE_BYTES {
        return Err(LabelError::TooManyBytes(MAX_SMTP_RESPONSE_BYTES));
    }
    Ok(input.to_string())
}
