//! Parser for LVM2's config language as used by metadata areas and backup files.
//!
//! The grammar follows lvm2's own lexer and parser (`libdm/libdm-config.c`):
//!
//! ```text
//! file    = item*
//! item    = name ( '{' item* '}' | '=' value )
//! name    = identifier | "quoted" | 'quoted'
//! value   = '[' ( scalar ','? )* ']' | scalar
//! scalar  = integer | float | "string" | 'string' | bare-word
//! ```
//!
//! Details that follow lvm2 rather than intuition:
//! - Inside double quotes only `\"` and `\\` are escapes. Any other backslash is kept
//!   as it is (`"a\qb"` is the four characters `a\qb`), exactly as lvm2's
//!   `dm_unescape_double_quotes` does. Strings may span lines.
//! - Single-quoted strings have no escapes at all.
//! - An integer with a leading `0` is octal (lvm2 reads integers with `strtoll(.., 0)`);
//!   `010` is 8. lvm2 never writes one that way, but a hand-edited backup might.
//! - Commas between array elements are optional and a trailing comma is fine.
//! - A bare word on the right of `=` is a string (lvm2's `TOK_STRING_BARE`).
//! - Numbers are recognised only on the right of `=` or inside arrays; a name such as
//!   `1abc` or `-x` on the left is an identifier.
//!
//! Deliberately stricter than lvm2: unterminated strings, a number running straight
//! into letters (`10M`, `0x10`, `1.2.3`), nested arrays, integers outside `i64` and a
//! NUL byte anywhere but at the very end are errors. lvm2 stops at the first NUL; here
//! trailing NULs are ignored (a metadata area's text is stored with its terminating NUL
//! counted in its size), but a NUL followed by more text is rejected.

use super::{Document, Item, Section, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadata text, line {line} column {column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// How deeply sections may nest. lvm2 metadata uses 4 levels; the cap only exists so
/// that hostile input cannot make the parser build absurd trees.
pub const MAX_DEPTH: usize = 64;

/// Parses a whole metadata text (or any lvm2 config text).
pub fn parse(text: &str) -> Result<Document, ParseError> {
    Parser { text, pos: 0 }.document()
}

/// lvm2's `isspace` in the C locale.
pub(super) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Bytes that may appear in an unquoted name or bare word. Every byte of a multi-byte
/// UTF-8 character qualifies, so splitting at the first non-qualifying byte always
/// lands on a character boundary.
pub(super) fn is_ident_byte(b: u8) -> bool {
    !is_space(b) && !matches!(b, b'#' | b'{' | b'}' | b'[' | b']' | b'=' | b'"' | b',' | 0)
}

/// Whether `name` can be written without quotes and read back as the same name.
pub(super) fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('\'') && name.bytes().all(is_ident_byte)
}

/// A section that has been opened but not yet closed.
struct Open {
    name: String,
    parent: Section,
    at: usize,
}

/// Where a value is being read, for error messages.
#[derive(Clone, Copy)]
enum ValueCtx<'k> {
    AfterEq(&'k str),
    InArray(&'k str),
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn error(&self, at: usize, message: impl Into<String>) -> ParseError {
        let (line, column) = line_column(self.text, at);
        ParseError {
            line,
            column,
            message: message.into(),
        }
    }

    /// Describes what is at `at`, for "expected X, found Y" messages.
    fn found(&self, at: usize) -> String {
        let bytes = self.bytes();
        match bytes.get(at) {
            None => "end of text".to_owned(),
            Some(0) => "a NUL byte".to_owned(),
            Some(b'"') | Some(b'\'') => "a quoted string".to_owned(),
            Some(&b) if is_ident_byte(b) => {
                let end = ident_end(bytes, at);
                let word = &self.text[at..end];
                match word.char_indices().nth(40) {
                    Some((cut, _)) => format!("{:?}...", &word[..cut]),
                    None => format!("{word:?}"),
                }
            }
            Some(&b) => format!("'{}'", b as char),
        }
    }

    /// Skips whitespace, comments and trailing NULs.
    fn skip_trivia(&mut self) -> Result<(), ParseError> {
        let bytes = self.bytes();
        while let Some(&b) = bytes.get(self.pos) {
            if is_space(b) {
                self.pos += 1;
            } else if b == b'#' {
                // A comment runs to the end of the line; a NUL inside it is dealt with
                // by the next round like any other NUL.
                while let Some(&c) = bytes.get(self.pos) {
                    if c == b'\n' || c == 0 {
                        break;
                    }
                    self.pos += 1;
                }
            } else if b == 0 {
                if bytes[self.pos..].iter().all(|&c| c == 0) {
                    self.pos = bytes.len();
                } else {
                    return Err(self.error(self.pos, "NUL byte in the middle of the text"));
                }
            } else {
                break;
            }
        }
        Ok(())
    }

    fn document(mut self) -> Result<Document, ParseError> {
        // Iterative rather than recursive so that deep input costs heap, not stack.
        let mut stack: Vec<Open> = Vec::new();
        let mut current = Section::new();
        loop {
            self.skip_trivia()?;
            match self.peek() {
                None => {
                    if let Some(open) = stack.last() {
                        let (line, column) = line_column(self.text, open.at);
                        return Err(self.error(
                            self.pos,
                            format!(
                                "expected '}}' to close section {:?} (opened at line {line}, \
                                 column {column}), found end of text",
                                open.name
                            ),
                        ));
                    }
                    return Ok(current);
                }
                Some(b'}') => {
                    let Some(open) = stack.pop() else {
                        return Err(self.error(self.pos, "unexpected '}': no section is open"));
                    };
                    self.pos += 1;
                    let body = std::mem::replace(&mut current, open.parent);
                    current.items.push(Item::Section {
                        name: open.name,
                        body,
                    });
                }
                Some(_) => {
                    let at = self.pos;
                    let name = self.name()?;
                    self.skip_trivia()?;
                    match self.peek() {
                        Some(b'{') => {
                            if stack.len() >= MAX_DEPTH {
                                return Err(self.error(
                                    self.pos,
                                    format!("sections nested deeper than {MAX_DEPTH} levels"),
                                ));
                            }
                            self.pos += 1;
                            let parent = std::mem::take(&mut current);
                            stack.push(Open { name, parent, at });
                        }
                        Some(b'=') => {
                            self.pos += 1;
                            let value = self.value(&name)?;
                            current.items.push(Item::Pair { key: name, value });
                        }
                        _ => {
                            return Err(self.error(
                                self.pos,
                                format!(
                                    "expected '=' or '{{' after {name:?}, found {}",
                                    self.found(self.pos)
                                ),
                            ))
                        }
                    }
                }
            }
        }
    }

    /// A key or section name.
    fn name(&mut self) -> Result<String, ParseError> {
        let at = self.pos;
        let name = match self.peek() {
            Some(b'"') => self.double_quoted()?,
            Some(b'\'') => self.single_quoted()?,
            Some(b) if is_ident_byte(b) => {
                let end = ident_end(self.bytes(), at);
                self.pos = end;
                self.text[at..end].to_owned()
            }
            _ => {
                return Err(self.error(
                    at,
                    format!("expected a key or section name, found {}", self.found(at)),
                ))
            }
        };
        if name.is_empty() {
            return Err(self.error(at, "empty key or section name"));
        }
        Ok(name)
    }

    /// The right-hand side of `key =`.
    fn value(&mut self, key: &str) -> Result<Value, ParseError> {
        self.skip_trivia()?;
        if self.peek() != Some(b'[') {
            return self.scalar(ValueCtx::AfterEq(key));
        }
        let open = self.pos;
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_trivia()?;
            match self.peek() {
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                None => {
                    let (line, column) = line_column(self.text, open);
                    return Err(self.error(
                        self.pos,
                        format!(
                            "expected ']' to close the array of {key:?} (opened at line \
                             {line}, column {column}), found end of text"
                        ),
                    ));
                }
                Some(b'[') => {
                    return Err(self.error(
                        self.pos,
                        format!("array of {key:?} contains an array; arrays cannot be nested"),
                    ))
                }
                _ => {}
            }
            items.push(self.scalar(ValueCtx::InArray(key))?);
            self.skip_trivia()?;
            if self.peek() == Some(b',') {
                self.pos += 1;
            }
        }
    }

    fn scalar(&mut self, ctx: ValueCtx<'_>) -> Result<Value, ParseError> {
        match self.peek() {
            Some(b'"') => Ok(Value::Str(self.double_quoted()?)),
            Some(b'\'') => Ok(Value::Str(self.single_quoted()?)),
            Some(b'0'..=b'9' | b'+' | b'-' | b'.') => self.number(),
            Some(b) if is_ident_byte(b) => {
                let at = self.pos;
                self.pos = ident_end(self.bytes(), at);
                Ok(Value::Str(self.text[at..self.pos].to_owned()))
            }
            _ => {
                let expected = match ctx {
                    ValueCtx::AfterEq(key) => format!("expected a value after \"{key} =\""),
                    ValueCtx::InArray(key) => {
                        format!("expected a value or ']' in the array of {key:?}")
                    }
                };
                Err(self.error(
                    self.pos,
                    format!("{expected}, found {}", self.found(self.pos)),
                ))
            }
        }
    }

    /// `[+-]?[0-9]*(\.[0-9]*)?`, the token lvm2's lexer takes for a number.
    fn number(&mut self) -> Result<Value, ParseError> {
        let bytes = self.bytes();
        let start = self.pos;
        let mut seen_dot = bytes[start] == b'.';
        let mut end = start + 1;
        while let Some(&b) = bytes.get(end) {
            match b {
                b'0'..=b'9' => {}
                b'.' if !seen_dot => seen_dot = true,
                _ => break,
            }
            end += 1;
        }
        // Anything glued on (`10M`, `0x1f`, `1.2.3`) makes the whole word invalid.
        let word_end = ident_end(bytes, end);
        self.pos = word_end;
        let word = &self.text[start..word_end];
        let invalid = |p: &Self, why: &str| p.error(start, format!("invalid number {word:?}{why}"));
        if word_end != end {
            return Err(invalid(self, ""));
        }
        if seen_dot {
            if !word.bytes().any(|b| b.is_ascii_digit()) {
                return Err(invalid(self, ""));
            }
            return Ok(Value::Float(word.to_owned()));
        }
        let (negative, digits) = match word.as_bytes()[0] {
            b'-' => (true, &word[1..]),
            b'+' => (false, &word[1..]),
            _ => (false, word),
        };
        if digits.is_empty() {
            return Err(invalid(self, ""));
        }
        // As strtoll with base 0: a leading zero means octal.
        let (radix, digits) = if digits.len() > 1 && digits.starts_with('0') {
            (8, &digits[1..])
        } else {
            (10, digits)
        };
        let mut magnitude: u64 = 0;
        for b in digits.bytes() {
            let d = u64::from(b - b'0');
            if d >= radix {
                return Err(invalid(self, " (a leading 0 makes it octal, as in lvm2)"));
            }
            magnitude = magnitude
                .checked_mul(radix)
                .and_then(|m| m.checked_add(d))
                .ok_or_else(|| invalid(self, ": out of the 64-bit integer range"))?;
        }
        let signed = if negative {
            -i128::from(magnitude)
        } else {
            i128::from(magnitude)
        };
        i64::try_from(signed)
            .map(Value::Int)
            .map_err(|_| invalid(self, ": out of the 64-bit integer range"))
    }

    /// A `"..."` string with lvm2's two escapes, `\"` and `\\`.
    fn double_quoted(&mut self) -> Result<String, ParseError> {
        let bytes = self.bytes();
        let open = self.pos;
        let mut out = String::new();
        let mut run = open + 1;
        let mut i = run;
        loop {
            match bytes.get(i) {
                None => return Err(self.error(open, "unterminated string")),
                Some(0) => return Err(self.error(i, "NUL byte inside a string")),
                Some(b'"') => {
                    out.push_str(&self.text[run..i]);
                    self.pos = i + 1;
                    return Ok(out);
                }
                Some(b'\\') => match bytes.get(i + 1) {
                    Some(&c @ (b'"' | b'\\')) => {
                        out.push_str(&self.text[run..i]);
                        out.push(c as char);
                        i += 2;
                        run = i;
                    }
                    // Any other backslash is literal; the next character is read as usual.
                    _ => i += 1,
                },
                Some(_) => i += 1,
            }
        }
    }

    /// A `'...'` string: no escapes.
    fn single_quoted(&mut self) -> Result<String, ParseError> {
        let bytes = self.bytes();
        let open = self.pos;
        let mut i = open + 1;
        loop {
            match bytes.get(i) {
                None => return Err(self.error(open, "unterminated string")),
                Some(0) => return Err(self.error(i, "NUL byte inside a string")),
                Some(b'\'') => {
                    self.pos = i + 1;
                    return Ok(self.text[open + 1..i].to_owned());
                }
                Some(_) => i += 1,
            }
        }
    }
}

fn ident_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| !is_ident_byte(b))
        .map_or(bytes.len(), |n| from + n)
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..at.min(text.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |n| n + 1);
    // Count characters, not bytes: count the bytes that start a UTF-8 character.
    let column = 1 + before[line_start..]
        .iter()
        .filter(|&&b| (b & 0xC0) != 0x80)
        .count();
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Value {
        let doc = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(doc.items.len(), 1, "{doc:?}");
        match &doc.items[0] {
            Item::Pair { value, .. } => value.clone(),
            other => panic!("not a pair: {other:?}"),
        }
    }

    fn err(text: &str) -> ParseError {
        match parse(text) {
            Ok(doc) => panic!("{text:?} parsed as {doc:?}"),
            Err(e) => e,
        }
    }

    fn pair(key: &str, value: Value) -> Item {
        Item::Pair {
            key: key.into(),
            value,
        }
    }

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    #[test]
    fn empty_inputs() {
        for text in [
            "",
            " \t\r\n\x0b\x0c",
            "# only a comment",
            "#\n#\n",
            "\0\0",
            "\n\0",
        ] {
            assert_eq!(parse(text).unwrap(), Document::new(), "{text:?}");
        }
    }

    #[test]
    fn integers() {
        assert_eq!(one("a = 0"), Value::Int(0));
        assert_eq!(one("a = 42"), Value::Int(42));
        assert_eq!(one("a = -42"), Value::Int(-42));
        assert_eq!(one("a = +7"), Value::Int(7));
        assert_eq!(one("a = -0"), Value::Int(0));
        assert_eq!(one("a = 9223372036854775807"), Value::Int(i64::MAX));
        assert_eq!(one("a = -9223372036854775808"), Value::Int(i64::MIN));
        // strtoll(.., 0), as lvm2 reads them.
        assert_eq!(one("a = 010"), Value::Int(8));
        assert_eq!(one("a = -0777"), Value::Int(-511));
        assert_eq!(one("a = 00"), Value::Int(0));
    }

    #[test]
    fn bad_integers() {
        for text in [
            "a = 9223372036854775808",
            "a = -9223372036854775809",
            "a = 99999999999999999999999999",
            "a = 01777777777777777777777777",
        ] {
            let e = err(text);
            assert!(e.message.contains("out of the 64-bit integer range"), "{e}");
            assert_eq!((e.line, e.column), (1, 5));
        }
        let e = err("a = 08");
        assert_eq!(
            e.message,
            "invalid number \"08\" (a leading 0 makes it octal, as in lvm2)"
        );
        for (text, word) in [
            ("a = 0x10", "0x10"),
            ("a = 10M", "10M"),
            ("a = 1.2.3", "1.2.3"),
            ("a = -", "-"),
            ("a = +", "+"),
            ("a = .", "."),
            ("a = -.", "-."),
            ("a = -x", "-x"),
            ("a = 1é", "1é"),
        ] {
            assert_eq!(
                err(text).message,
                format!("invalid number {word:?}"),
                "{text}"
            );
        }
    }

    #[test]
    fn floats_keep_their_text() {
        for lit in ["1.5", "1.50", "-.5", "+2.", "0.0", ".25", "007.100"] {
            assert_eq!(one(&format!("f = {lit}")), Value::Float(lit.into()));
        }
        assert_eq!(
            one("f = [1.5, 2]"),
            Value::Array(vec![Value::Float("1.5".into()), Value::Int(2)])
        );
    }

    #[test]
    fn strings() {
        assert_eq!(one(r#"a = "plain""#), s("plain"));
        assert_eq!(one(r#"a = """#), s(""));
        assert_eq!(one(r#"a = "q\"uote""#), s("q\"uote"));
        assert_eq!(one(r#"a = "back\\slash""#), s("back\\slash"));
        assert_eq!(one(r#"a = "ends\\""#), s("ends\\"));
        // Only \" and \\ are escapes in lvm2; other backslashes stay.
        assert_eq!(one(r#"a = "a\qb\nc\"d""#), s("a\\qb\\nc\"d"));
        assert_eq!(one("a = \"two\nlines\""), s("two\nlines"));
        assert_eq!(one("a = \"# not a comment\""), s("# not a comment"));
        assert_eq!(one("a = \"{[=,]}\""), s("{[=,]}"));
        assert_eq!(one("a = \"üñí 中文 ✓\""), s("üñí 中文 ✓"));
        assert_eq!(one("a = 'single \\ \"quoted\"'"), s("single \\ \"quoted\""));
        // A bare word is a string too, as in lvm2.
        assert_eq!(one("a = /dev/sda"), s("/dev/sda"));
        assert_eq!(one("a = [x, y.z]"), Value::Array(vec![s("x"), s("y.z")]));
    }

    #[test]
    fn bad_strings() {
        let e = err("a = 1\nb = \"open\n\nend");
        assert_eq!(
            (e.line, e.column, e.message.as_str()),
            (2, 5, "unterminated string")
        );
        let e = err("a = \"trailing backslash\\");
        assert_eq!(
            (e.line, e.column, e.message.as_str()),
            (1, 5, "unterminated string")
        );
        let e = err("a = 'open");
        assert_eq!(
            (e.line, e.column, e.message.as_str()),
            (1, 5, "unterminated string")
        );
        let e = err("a = \"nul\0inside\"");
        assert_eq!(
            (e.line, e.column, e.message.as_str()),
            (1, 9, "NUL byte inside a string")
        );
    }

    #[test]
    fn arrays() {
        assert_eq!(one("a = []"), Value::Array(vec![]));
        assert_eq!(one("a = [ ]"), Value::Array(vec![]));
        assert_eq!(one("a = [\n]"), Value::Array(vec![]));
        assert_eq!(one("a=[1]"), Value::Array(vec![Value::Int(1)]));
        let pv = Value::Array(vec![s("pv0"), Value::Int(0), s("pv1"), Value::Int(10)]);
        assert_eq!(one(r#"a = ["pv0", 0, "pv1", 10]"#), pv);
        assert_eq!(one("a = [\n\t\"pv0\", 0,\n\t\"pv1\", 10\n]"), pv);
        assert_eq!(one("a = [\"pv0\",0,\"pv1\",10,]"), pv);
        assert_eq!(one("a = [ \"pv0\" , 0 , \"pv1\" , 10 , ]"), pv);
        assert_eq!(
            one("a = [ # comment\n \"pv0\", # more\n 0, \"pv1\" 10 ] # after"),
            pv
        );
        // Commas are optional, as in lvm2.
        assert_eq!(one(r#"a = ["x" "y"]"#), Value::Array(vec![s("x"), s("y")]));
        assert_eq!(
            one(r#"a = ["READ", "WRITE", "VISIBLE"]"#),
            Value::str_array(["READ", "WRITE", "VISIBLE"])
        );
    }

    #[test]
    fn bad_arrays() {
        let e = err("a = [,]");
        assert_eq!(
            e.message,
            "expected a value or ']' in the array of \"a\", found ','"
        );
        assert_eq!((e.line, e.column), (1, 6));
        let e = err("a = [1,,2]");
        assert_eq!((e.line, e.column), (1, 8));
        let e = err("a = [1, [2]]");
        assert_eq!(
            e.message,
            "array of \"a\" contains an array; arrays cannot be nested"
        );
        assert_eq!((e.line, e.column), (1, 9));
        let e = err("x {\na = [1,\n2");
        assert_eq!(
            e.message,
            "expected ']' to close the array of \"a\" (opened at line 2, column 5), found end of text"
        );
        assert_eq!((e.line, e.column), (3, 2));
        let e = err("a = [1 }");
        assert_eq!(
            e.message,
            "expected a value or ']' in the array of \"a\", found '}'"
        );
    }

    #[test]
    fn sections() {
        let doc =
            parse("vg {\n  id = \"x\"\n  pvs {\n    pv0 { n = 1 }\n    pv1 {}\n  }\n}\n").unwrap();
        let vg = doc.section("vg").unwrap();
        assert_eq!(vg.get_str("id"), Some("x"));
        let pvs = vg.section("pvs").unwrap();
        assert_eq!(pvs.section("pv0").unwrap().get_int("n"), Some(1));
        assert_eq!(pvs.section("pv1").unwrap(), &Section::new());
        // No whitespace needed anywhere it is not needed to split tokens.
        let tight = parse("vg{id=\"x\"pvs{pv0{n=1}pv1{}}}").unwrap();
        assert_eq!(tight, doc);
    }

    #[test]
    fn names() {
        let doc = parse(
            "lv.data+1-x { a = 1 }\n_x-y.z+ = 2\n1abc = 3\n-x = 4\nnamé中 = 5\n\
             \"quoted name\" = 6\n'single' = 7\n\"esc\\\"aped\" = 8\nit's = 9",
        )
        .unwrap();
        let names: Vec<&str> = doc.items.iter().map(Item::name).collect();
        assert_eq!(
            names,
            [
                "lv.data+1-x",
                "_x-y.z+",
                "1abc",
                "-x",
                "namé中",
                "quoted name",
                "single",
                "esc\"aped",
                "it's"
            ]
        );
        let e = err("\"\" = 1");
        assert_eq!(
            (e.line, e.column, e.message.as_str()),
            (1, 1, "empty key or section name")
        );
    }

    #[test]
    fn comments_anywhere_outside_strings() {
        let doc = parse(
            "# head\nvg { # open\n seqno = 3 # after a value\n s = \"x\"# glued\n \
             flags = [] #\n}# close\n#tail",
        )
        .unwrap();
        let vg = doc.section("vg").unwrap();
        assert_eq!(vg.get_int("seqno"), Some(3));
        assert_eq!(vg.get_str("s"), Some("x"));
        assert_eq!(one("a = 1#c"), Value::Int(1));
        assert_eq!(one("a = b#c"), s("b"));
    }

    #[test]
    fn line_endings_and_odd_whitespace() {
        let doc = parse("vg {\r\n\tseqno = 1\r\n\x0b\x0cx=2\r\n}\r\n").unwrap();
        let vg = doc.section("vg").unwrap();
        assert_eq!(vg.get_int("seqno"), Some(1));
        assert_eq!(vg.get_int("x"), Some(2));
    }

    #[test]
    fn duplicates_are_kept_in_order() {
        let doc = parse("a = 1\na = 2\ns { x = 1 }\ns { y = 2 }").unwrap();
        assert_eq!(
            doc.items,
            vec![
                pair("a", Value::Int(1)),
                pair("a", Value::Int(2)),
                Item::Section {
                    name: "s".into(),
                    body: Section {
                        items: vec![pair("x", Value::Int(1))]
                    }
                },
                Item::Section {
                    name: "s".into(),
                    body: Section {
                        items: vec![pair("y", Value::Int(2))]
                    }
                },
            ]
        );
        assert_eq!(doc.get_int("a"), Some(1));
    }

    #[test]
    fn structural_errors() {
        let cases: &[(&str, (usize, usize), &str)] = &[
            (
                "vg {\n seqno }",
                (2, 8),
                "expected '=' or '{' after \"seqno\", found '}'",
            ),
            ("seqno", (1, 6), "expected '=' or '{' after \"seqno\", found end of text"),
            ("a b = 1", (1, 3), "expected '=' or '{' after \"a\", found \"b\""),
            ("a [", (1, 3), "expected '=' or '{' after \"a\", found '['"),
            ("a \"s\"", (1, 3), "expected '=' or '{' after \"a\", found a quoted string"),
            ("x = 1\n}", (2, 1), "unexpected '}': no section is open"),
            ("= 1", (1, 1), "expected a key or section name, found '='"),
            ("a = 1\n, b = 2", (2, 1), "expected a key or section name, found ','"),
            ("]", (1, 1), "expected a key or section name, found ']'"),
            ("a = }", (1, 5), "expected a value after \"a =\", found '}'"),
            ("a =", (1, 4), "expected a value after \"a =\", found end of text"),
            ("a = # c\n", (2, 1), "expected a value after \"a =\", found end of text"),
            ("a = =", (1, 5), "expected a value after \"a =\", found '='"),
            ("a = {", (1, 5), "expected a value after \"a =\", found '{'"),
            (
                "vg {\n  lvs {\n  lv {",
                (3, 7),
                "expected '}' to close section \"lv\" (opened at line 3, column 3), found end of text",
            ),
            ("a = 1\0b = 2", (1, 6), "NUL byte in the middle of the text"),
            ("a = 1 # c\0b", (1, 10), "NUL byte in the middle of the text"),
        ];
        for (text, at, message) in cases {
            let e = err(text);
            assert_eq!((e.line, e.column), *at, "{text:?}: {e}");
            assert_eq!(e.message, *message, "{text:?}");
        }
    }

    #[test]
    fn error_display_and_long_words() {
        let e = err("vg {\n seqno }");
        assert_eq!(
            e.to_string(),
            "metadata text, line 2 column 8: expected '=' or '{' after \"seqno\", found '}'"
        );
        let long = format!("a {}", "b".repeat(100));
        let e = err(&long);
        assert_eq!(
            e.message,
            format!(
                "expected '=' or '{{' after \"a\", found \"{}\"...",
                "b".repeat(40)
            )
        );
    }

    #[test]
    fn columns_count_characters() {
        let e = err("é中 = }");
        assert_eq!((e.line, e.column), (1, 6));
        let e = err("a = \"é\nxé\" }");
        assert_eq!((e.line, e.column), (2, 5));
    }

    #[test]
    fn trailing_nuls_end_the_text() {
        assert_eq!(one("a = 1\0\0\0"), Value::Int(1));
        assert_eq!(one("a = 1 # c\0"), Value::Int(1));
    }

    #[test]
    fn plain_names() {
        for name in ["vg0", "lv.data+1-x", "1", "-", "it's", "中"] {
            assert!(is_plain_name(name), "{name}");
        }
        for name in [
            "", "'x", "a b", "a#b", "a{", "a}", "a[", "a]", "a=b", "a\"", "a,b", "a\0",
        ] {
            assert!(!is_plain_name(name), "{name:?}");
        }
    }
}
