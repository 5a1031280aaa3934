//! The XML declaration (`<?xml version='1.0'?>`) a stream may start with. It looks like a
//! processing instruction but is not one, so RFC 6120 allows it.

use crate::Error;
use crate::chars::is_ws;

/// Checks a complete declaration, `<?xml` through `?>`, against XML 1.0 production 23.
/// Only UTF-8 may be declared: RFC 6120 streams are UTF-8.
pub(crate) fn check(decl: &[u8]) -> Result<(), Error> {
    let body = decl
        .strip_prefix(b"<?xml")
        .and_then(|b| b.strip_suffix(b"?>"))
        .ok_or(Error::MalformedXmlDecl)?;
    let mut c = Cursor { b: body, i: 0 };

    let mut ws = c.ws();
    if !ws || !c.keyword(b"version") {
        return Err(Error::MalformedXmlDecl);
    }
    let version = c.value()?;
    let minor = version.strip_prefix(b"1.").unwrap_or_default();
    if minor.is_empty() || !minor.iter().all(u8::is_ascii_digit) {
        return Err(Error::MalformedXmlDecl);
    }

    ws = c.ws();
    if ws && c.keyword(b"encoding") {
        let name = c.value()?;
        let valid = name.first().is_some_and(u8::is_ascii_alphabetic)
            && name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            return Err(Error::MalformedXmlDecl);
        }
        if !name.eq_ignore_ascii_case(b"UTF-8") {
            return Err(Error::UnsupportedEncoding);
        }
        ws = c.ws();
    }
    if ws && c.keyword(b"standalone") {
        let value = c.value()?;
        if value != b"yes" && value != b"no" {
            return Err(Error::MalformedXmlDecl);
        }
        c.ws();
    }
    if c.i == body.len() {
        Ok(())
    } else {
        Err(Error::MalformedXmlDecl)
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    /// Skips whitespace; whether there was any.
    fn ws(&mut self) -> bool {
        let start = self.i;
        while self.b.get(self.i).copied().is_some_and(is_ws) {
            self.i += 1;
        }
        self.i > start
    }

    fn keyword(&mut self, word: &[u8]) -> bool {
        let found = self
            .b
            .get(self.i..)
            .is_some_and(|rest| rest.starts_with(word));
        if found {
            self.i += word.len();
        }
        found
    }

    /// `Eq` and a quoted value without the quotes.
    fn value(&mut self) -> Result<&'a [u8], Error> {
        self.ws();
        if !self.keyword(b"=") {
            return Err(Error::MalformedXmlDecl);
        }
        self.ws();
        let quote = match self.b.get(self.i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(Error::MalformedXmlDecl),
        };
        let rest = self.b.get(self.i + 1..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == quote)
            .ok_or(Error::MalformedXmlDecl)?;
        self.i += len + 2;
        Ok(rest.get(..len).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts() {
        for d in [
            "<?xml version='1.0'?>",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
            "<?xml version = '1.1' encoding='utf-8' standalone='yes' ?>",
            "<?xml\n\tversion='1.0'\nstandalone=\"no\"?>",
        ] {
            assert_eq!(check(d.as_bytes()), Ok(()), "{d}");
        }
    }

    #[test]
    fn rejects() {
        for d in [
            "<?xml?>",
            "<?xml encoding='UTF-8'?>",
            "<?xml version='2.0'?>",
            "<?xml version='1.'?>",
            "<?xml version='1.0'encoding='UTF-8'?>",
            "<?xml version='1.0' standalone='maybe'?>",
            "<?xml version='1.0' standalone='yes' encoding='UTF-8'?>",
            "<?xml version='1.0' foo='bar'?>",
            "<?xml version='1.0?>",
            "<?xml version='1.0' encoding='8bit'?>",
        ] {
            assert_eq!(check(d.as_bytes()), Err(Error::MalformedXmlDecl), "{d}");
        }
        assert_eq!(
            check(b"<?xml version='1.0' encoding='ISO-8859-1'?>"),
            Err(Error::UnsupportedEncoding)
        );
    }
}
