//! LVM2's metadata text as a lossless tree.
//!
//! The typed VG model (`crate::model`) reads what it understands out of this tree and
//! keeps everything else (unknown keys, sections, segment types) as tree items, so that a
//! read-modify-write carries them through unchanged. Comments are not kept: lvm2 writes its
//! own on every commit and gives them no meaning.

mod parse;
mod write;

pub use parse::{parse, ParseError};
pub use write::{write_document, write_document_filling, Layout, ListWriter};

/// A value on the right of `=`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    /// lvm2's config language has floats; metadata never uses them, but a reader must
    /// keep whatever it finds. Kept as the text written so it round-trips exactly.
    Float(String),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
    /// An array of strings (flags, tags), or `None` if anything else is in it.
    pub fn as_str_array(&self) -> Option<Vec<String>> {
        self.as_array()?
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect()
    }
    pub fn str_array<I, S>(items: I) -> Value
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Value::Array(items.into_iter().map(|s| Value::Str(s.into())).collect())
    }
}

/// One entry of a section, in file order.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Pair { key: String, value: Value },
    Section { name: String, body: Section },
}

impl Item {
    pub fn name(&self) -> &str {
        match self {
            Item::Pair { key, .. } => key,
            Item::Section { name, .. } => name,
        }
    }
}

/// An ordered list of items. Keys are looked up by name; lvm2 never writes a key twice
/// in a section, and when a hand-edited file does, the first one wins (as in lvm2).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Section {
    pub items: Vec<Item>,
}

impl Section {
    pub fn new() -> Section {
        Section::default()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.items.iter().find_map(|item| match item {
            Item::Pair { key: k, value } if k == key => Some(value),
            _ => None,
        })
    }
    pub fn get_int(&self, key: &str) -> Option<i64> {
        self.get(key)?.as_int()
    }
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.items.iter().find_map(|item| match item {
            Item::Section { name: n, body } if n == name => Some(body),
            _ => None,
        })
    }
    pub fn section_mut(&mut self, name: &str) -> Option<&mut Section> {
        self.items.iter_mut().find_map(|item| match item {
            Item::Section { name: n, body } if n == name => Some(body),
            _ => None,
        })
    }
    /// All subsections, in order.
    pub fn sections(&self) -> impl Iterator<Item = (&str, &Section)> {
        self.items.iter().filter_map(|item| match item {
            Item::Section { name, body } => Some((name.as_str(), body)),
            _ => None,
        })
    }

    /// Sets `key` in place if present (keeping its position), else appends it.
    pub fn set(&mut self, key: &str, value: Value) {
        for item in &mut self.items {
            if let Item::Pair { key: k, value: v } = item {
                if k == key {
                    *v = value;
                    return;
                }
            }
        }
        self.items.push(Item::Pair {
            key: key.to_owned(),
            value,
        });
    }
    /// Appends a pair without looking for an existing one.
    pub fn push(&mut self, key: &str, value: Value) {
        self.items.push(Item::Pair {
            key: key.to_owned(),
            value,
        });
    }
    pub fn push_section(&mut self, name: &str, body: Section) {
        self.items.push(Item::Section {
            name: name.to_owned(),
            body,
        });
    }
    /// Removes every item (pair or section) named `name`; returns whether any was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.items.len();
        self.items.retain(|item| item.name() != name);
        before != self.items.len()
    }
}

/// A whole metadata text: the top-level items (the VG section, `contents`, `version`,
/// `description`, `creation_host`, `creation_time`).
pub type Document = Section;

#[cfg(test)]
mod tests;
