//! The accounts sessions log in with: a numbered pattern sharing one password, or a file.
//! Session `i` uses account `i mod count`, so more sessions than accounts log the same
//! accounts in several times (each gets its own server-assigned resource).

use std::fmt;

use session::jid::JidPattern;

/// Why an account specification cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("user pattern {0:?} must contain %d exactly once")]
    Pattern(String),
    #[error("--from {from} is greater than --to {to}")]
    Range { from: u64, to: u64 },
    #[error("account {0:?} is not a bare JID of the form user@domain")]
    Jid(String),
    #[error("accounts file {path}: line {line}: expected 'user@domain password'")]
    Line { path: String, line: usize },
    #[error("accounts file {0} lists no account")]
    Empty(String),
    #[error("accounts do not all share one domain ({0} and {1}); pass --domain")]
    Domains(String, String),
}

/// The accounts of a run.
pub enum Accounts {
    /// The pattern's JID for N in `from..=to`, e.g. `user%d@localhost`.
    Pattern {
        pattern: JidPattern,
        from: u64,
        to: u64,
        password: String,
    },
    /// Explicit `(local part, domain, password)` triples.
    List(Vec<(String, String, String)>),
}

impl fmt::Debug for Accounts {
    /// Shows no password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Accounts::Pattern {
                pattern, from, to, ..
            } => {
                write!(f, "Accounts({pattern}, {from}..={to})")
            }
            Accounts::List(list) => write!(f, "Accounts({} listed)", list.len()),
        }
    }
}

impl Accounts {
    /// Accounts from a pattern with one `%d`.
    pub fn pattern(
        pattern: &str,
        from: u64,
        to: u64,
        password: String,
    ) -> Result<Self, AccountsError> {
        let numbered =
            JidPattern::parse(pattern).map_err(|_| AccountsError::Pattern(pattern.to_owned()))?;
        if from > to {
            return Err(AccountsError::Range { from, to });
        }
        let accounts = Accounts::Pattern {
            pattern: numbered,
            from,
            to,
            password,
        };
        // Every number yields the same shape, so checking one JID checks them all.
        split_jid(&accounts.jid(0)).ok_or_else(|| AccountsError::Jid(pattern.to_owned()))?;
        Ok(accounts)
    }

    /// Accounts from the text of a file: one `user@domain password` per line; blank lines
    /// and lines starting with `#` are skipped.
    pub fn parse_file(path: &str, text: &str) -> Result<Self, AccountsError> {
        let mut list = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || AccountsError::Line {
                path: path.to_owned(),
                line: n + 1,
            };
            let (jid, password) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
            let password = password.trim();
            let (local, domain) = split_jid(jid).ok_or_else(bad)?;
            if password.is_empty() {
                return Err(bad());
            }
            list.push((local.to_owned(), domain.to_owned(), password.to_owned()));
        }
        if list.is_empty() {
            return Err(AccountsError::Empty(path.to_owned()));
        }
        Ok(Accounts::List(list))
    }

    pub fn count(&self) -> u64 {
        match self {
            Accounts::Pattern { from, to, .. } => to - from + 1,
            Accounts::List(list) => list.len() as u64,
        }
    }

    /// The full JID of the account session `session` uses.
    pub fn jid(&self, session: u64) -> String {
        match self {
            Accounts::Pattern { pattern, from, .. } => pattern.jid(from + session % self.count()),
            Accounts::List(list) => {
                let (local, domain, _) = &list[(session % self.count()) as usize];
                format!("{local}@{domain}")
            }
        }
    }

    /// The SASL user name (the JID's local part) and password of session `session`.
    pub fn credentials(&self, session: u64) -> (String, &str) {
        match self {
            Accounts::Pattern { password, .. } => {
                let jid = self.jid(session);
                let local = split_jid(&jid)
                    .map_or(jid.as_str(), |(local, _)| local)
                    .to_owned();
                (local, password)
            }
            Accounts::List(list) => {
                let (local, _, password) = &list[(session % self.count()) as usize];
                (local.clone(), password)
            }
        }
    }

    /// The one domain all accounts share.
    pub fn domain(&self) -> Result<String, AccountsError> {
        let domain_of = |session| {
            let jid = self.jid(session);
            split_jid(&jid)
                .map(|(_, domain)| domain.to_owned())
                .ok_or(AccountsError::Jid(jid.clone()))
        };
        let first = domain_of(0)?;
        if let Accounts::List(list) = self
            && let Some((_, other, _)) = list
                .iter()
                .find(|(_, d, _)| !d.eq_ignore_ascii_case(&first))
        {
            return Err(AccountsError::Domains(first, other.clone()));
        }
        Ok(first)
    }
}

/// `local@domain` into its parts; both must be non-empty and there must be no resource.
fn split_jid(jid: &str) -> Option<(&str, &str)> {
    let (local, domain) = jid.split_once('@')?;
    let valid = !local.is_empty()
        && !domain.is_empty()
        && !domain.contains(['@', '/'])
        && !jid.contains(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '<' | '>' | '&'));
    valid.then_some((local, domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_numbers_wrap_around() {
        let a = Accounts::pattern("user%d@localhost", 5, 7, "pw".into()).unwrap();
        assert_eq!(a.count(), 3);
        assert_eq!(a.jid(0), "user5@localhost");
        assert_eq!(a.jid(4), "user6@localhost");
        assert_eq!(a.credentials(2), ("user7".to_owned(), "pw"));
        assert_eq!(a.domain().unwrap(), "localhost");
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["user@localhost", "u%d%d@x", "u%d", "u%d@x/res", "@x%d"] {
            assert!(Accounts::pattern(bad, 1, 2, "pw".into()).is_err(), "{bad}");
        }
        assert!(matches!(
            Accounts::pattern("u%d@x", 3, 2, "pw".into()),
            Err(AccountsError::Range { .. })
        ));
    }

    #[test]
    fn file_lines() {
        let a = Accounts::parse_file(
            "f",
            "# comment\n\nalice@example.org  s3cret \nbob@example.org x\n",
        )
        .unwrap();
        assert_eq!(a.count(), 2);
        assert_eq!(a.credentials(0), ("alice".to_owned(), "s3cret"));
        assert_eq!(a.jid(3), "bob@example.org");
        assert!(Accounts::parse_file("f", "alice@example.org\n").is_err());
        assert!(Accounts::parse_file("f", "# nothing\n").is_err());
        let mixed = Accounts::parse_file("f", "a@one x\nb@two y\n").unwrap();
        assert!(matches!(mixed.domain(), Err(AccountsError::Domains(..))));
    }
}
