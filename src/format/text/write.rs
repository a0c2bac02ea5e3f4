//! Writer for LVM2 metadata text. (Placeholder: being written.)
use super::Document;

/// How to lay out the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// As lvm2 writes into metadata areas: one item a line, no indentation.
    Disk,
    /// As lvm2 writes backup files: tab-indented.
    Backup,
}

pub fn write_document(_doc: &Document, _layout: Layout) -> String {
    String::new()
}
