//! Parser for LVM2 metadata text. (Placeholder: being written.)
use super::Document;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadata text, line {line} column {column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

pub fn parse(_text: &str) -> Result<Document, ParseError> {
    Err(ParseError { line: 1, column: 1, message: "parser not written yet".into() })
}
