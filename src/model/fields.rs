//! Reading typed fields out of a section while remembering which keys were used, so
//! that the rest can be kept as `extra`.

use super::{ModelError, Path};
use crate::format::text::{Item, Section, Value};
use crate::uuid::Uuid;
use std::collections::HashSet;

pub(crate) struct Fields<'a> {
    pub section: &'a Section,
    pub path: Path,
    /// Keys read as pairs and names read as sections: a section may share a name with
    /// a pair (`flags = []` beside `flags { }`), and only what was read is consumed.
    used_pairs: HashSet<&'a str>,
    used_sections: HashSet<&'a str>,
}

impl<'a> Fields<'a> {
    pub fn new(section: &'a Section, path: Path) -> Fields<'a> {
        Fields {
            section,
            path,
            used_pairs: HashSet::new(),
            used_sections: HashSet::new(),
        }
    }

    fn take(&mut self, key: &'static str) -> Option<&'a Value> {
        let v = self.section.get(key)?;
        self.used_pairs.insert(key);
        Some(v)
    }

    fn wrong(&self, key: &str, expected: &'static str) -> ModelError {
        ModelError::WrongType {
            path: self.path.clone(),
            key: key.to_owned(),
            expected,
        }
    }

    pub fn invalid(&self, why: impl Into<String>) -> ModelError {
        ModelError::Invalid {
            path: self.path.clone(),
            why: why.into(),
        }
    }

    pub fn opt_u64(&mut self, key: &'static str) -> Result<Option<u64>, ModelError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Int(i)) if *i >= 0 => Ok(Some(*i as u64)),
            Some(_) => Err(self.wrong(key, "a non-negative integer")),
        }
    }
    pub fn u64(&mut self, key: &'static str) -> Result<u64, ModelError> {
        self.opt_u64(key)?.ok_or(ModelError::Missing {
            path: self.path.clone(),
            key,
        })
    }
    pub fn opt_i64(&mut self, key: &'static str) -> Result<Option<i64>, ModelError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Int(i)) => Ok(Some(*i)),
            Some(_) => Err(self.wrong(key, "an integer")),
        }
    }
    pub fn opt_str(&mut self, key: &'static str) -> Result<Option<String>, ModelError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.wrong(key, "a string")),
        }
    }
    pub fn str(&mut self, key: &'static str) -> Result<String, ModelError> {
        self.opt_str(key)?.ok_or(ModelError::Missing {
            path: self.path.clone(),
            key,
        })
    }
    /// A string array; absent means empty (lvm2 omits empty `tags`). lvm2 treats a
    /// single string as a one-element array, and so do we.
    pub fn str_list(&mut self, key: &'static str) -> Result<Vec<String>, ModelError> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Value::Str(s)) => Ok(vec![s.clone()]),
            Some(v) => v
                .as_str_array()
                .ok_or_else(|| self.wrong(key, "an array of strings")),
        }
    }
    pub fn uuid(&mut self, key: &'static str) -> Result<Uuid, ModelError> {
        let text = self.str(key)?;
        text.parse()
            .map_err(|e: crate::uuid::UuidError| self.invalid(e.to_string()))
    }
    pub fn array(&mut self, key: &'static str) -> Result<&'a [Value], ModelError> {
        match self.take(key) {
            None => Err(ModelError::Missing {
                path: self.path.clone(),
                key,
            }),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(self.wrong(key, "an array")),
        }
    }
    pub fn subsection(&mut self, key: &'static str) -> Option<&'a Section> {
        let s = self.section.section(key)?;
        self.used_sections.insert(key);
        Some(s)
    }
    /// Everything not read so far, in order.
    pub fn rest(&self) -> Section {
        let mut items: Vec<Item> = self
            .section
            .items
            .iter()
            .filter(|item| match item {
                Item::Pair { key, .. } => !self.used_pairs.contains(key.as_str()),
                Item::Section { name, .. } => !self.used_sections.contains(name.as_str()),
            })
            .cloned()
            .collect();
        // Kept with the model for as long as the VG is cached: no room to spare.
        items.shrink_to_fit();
        Section { items }
    }
}

/// Appends what lvmd did not interpret, in the order it was read, after the known
/// items: lvm2 looks keys up by name, and keeping the order makes a re-read identical.
pub(crate) fn push_extra(out: &mut Section, extra: &Section) {
    out.items.extend(extra.items.iter().cloned());
}

pub(crate) fn push_list(out: &mut Section, key: &str, list: &[String]) {
    out.push(key, Value::str_array(list.iter().cloned()));
}

/// lvm2 omits `tags` when there are none.
pub(crate) fn push_tags(out: &mut Section, tags: &[String]) {
    if !tags.is_empty() {
        push_list(out, "tags", tags);
    }
}

pub(crate) fn int(v: u64) -> Value {
    Value::Int(v as i64)
}
