//! The users file: per-account SCRAM credentials (never passwords), written atomically,
//! and the in-memory account table the sessions authenticate against.
//!
//! ```toml
//! [users."alice@localhost".sha1]
//! salt = "base64"
//! iterations = 4096
//! stored_key = "base64"
//! server_key = "base64"
//!
//! [users."alice@localhost".sha256]
//! ...
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use session::sasl::{CredentialError, ScramCredentials, ScramHash};

/// The file as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    /// Accounts by bare JID.
    #[serde(default)]
    pub users: BTreeMap<String, StoredUser>,
}

/// One account's credentials for both SCRAM hashes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredUser {
    pub sha1: StoredScram,
    pub sha256: StoredScram,
}

/// [`ScramCredentials`] with base64 byte strings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredScram {
    pub salt: String,
    pub iterations: u32,
    pub stored_key: String,
    pub server_key: String,
}

impl StoredScram {
    fn encode(credentials: &ScramCredentials) -> Self {
        Self {
            salt: BASE64.encode(&credentials.salt),
            iterations: credentials.iterations,
            stored_key: BASE64.encode(&credentials.stored_key),
            server_key: BASE64.encode(&credentials.server_key),
        }
    }

    fn decode(&self, hash: ScramHash) -> Result<ScramCredentials, String> {
        let field = |name: &str, text: &str| {
            BASE64
                .decode(text)
                .map_err(|e| format!("{name}: invalid base64: {e}"))
        };
        let key_len = match hash {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        };
        let credentials = ScramCredentials {
            salt: field("salt", &self.salt)?,
            iterations: self.iterations,
            stored_key: field("stored_key", &self.stored_key)?,
            server_key: field("server_key", &self.server_key)?,
        };
        if credentials.iterations == 0 {
            return Err("iterations must be at least 1".to_owned());
        }
        if credentials.stored_key.len() != key_len || credentials.server_key.len() != key_len {
            return Err(format!("keys must be {key_len} bytes"));
        }
        Ok(credentials)
    }
}

impl StoredUser {
    /// Derives both hashes' credentials from `password`.
    pub fn from_password(password: &str, iterations: u32) -> Result<Self, CredentialError> {
        Ok(Self {
            sha1: StoredScram::encode(&ScramCredentials::generate(
                password,
                ScramHash::Sha1,
                iterations,
            )?),
            sha256: StoredScram::encode(&ScramCredentials::generate(
                password,
                ScramHash::Sha256,
                iterations,
            )?),
        })
    }
}

/// Why the users file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("users file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("users file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl UsersFile {
    /// Reads `path`; a missing file is an empty one (`Ok(None)` tells the caller).
    pub fn load(path: &Path) -> Result<Option<Self>, UsersError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(UsersError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let invalid = |message: String| UsersError::Invalid {
            path: path.to_owned(),
            message,
        };
        let file: Self =
            toml::from_str(&text).map_err(|e| invalid(e.to_string().trim_end().to_owned()))?;
        for (jid, user) in &file.users {
            split_jid(jid).map_err(|e| invalid(format!("{jid:?}: {e}")))?;
            user.sha1
                .decode(ScramHash::Sha1)
                .map_err(|e| invalid(format!("{jid:?} sha1 {e}")))?;
            user.sha256
                .decode(ScramHash::Sha256)
                .map_err(|e| invalid(format!("{jid:?} sha256 {e}")))?;
        }
        Ok(Some(file))
    }

    /// Replaces `path` atomically: a private temporary file in the same directory,
    /// fsynced, renamed over the old one, then the directory fsynced, so a crash leaves
    /// either the old or the new file and the credentials are never world-readable.
    pub fn save(&self, path: &Path) -> Result<(), UsersError> {
        let io = |source| UsersError::Io {
            path: path.to_owned(),
            source,
        };
        let text = toml::to_string(self).map_err(|e| UsersError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(b"# xmpp-edge accounts: SCRAM credentials only, never passwords.\n")?;
            file.write_all(b"# Managed with `xmpp-edge user add|remove|list`.\n\n")?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temp, path)?;
            File::open(&dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result.map_err(io)
    }
}

/// Splits and normalises a bare JID: the domain is lowercased, the local part kept as
/// given (SCRAM compares usernames exactly).
pub fn split_jid(jid: &str) -> Result<(String, String), String> {
    let (local, domain) = jid.split_once('@').ok_or("expected local@domain")?;
    if local.is_empty() || domain.is_empty() {
        return Err("local part and domain must not be empty".to_owned());
    }
    if jid.contains('/') || domain.contains('@') {
        return Err("expected a bare JID (no resource)".to_owned());
    }
    if local
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\"&'<>:".contains(c))
    {
        return Err("local part contains a character not allowed in JIDs".to_owned());
    }
    Ok((local.to_owned(), domain.to_ascii_lowercase()))
}

/// The canonical key for `jid` in the users file.
pub fn normalize_jid(jid: &str) -> Result<String, String> {
    let (local, domain) = split_jid(jid)?;
    Ok(format!("{local}@{domain}"))
}

#[derive(Debug)]
struct Account {
    sha1: ScramCredentials,
    sha256: ScramCredentials,
}

/// Accounts by domain, then by local part: lookups borrow both without building a JID.
type Table = HashMap<String, HashMap<String, Arc<Account>>>;

/// The accounts of the served domains, swapped whole on reload so lookups never see a
/// half-loaded file.
pub struct UserStore {
    path: PathBuf,
    domains: Vec<String>,
    table: RwLock<Arc<Table>>,
}

impl std::fmt::Debug for UserStore {
    /// Shows no credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserStore")
            .field("path", &self.path)
            .field("accounts", &self.len())
            .finish()
    }
}

/// What a (re)load found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Accounts now served.
    pub accounts: usize,
    /// The file did not exist (no accounts).
    pub missing: bool,
    /// Entries skipped, with why (domain not served).
    pub skipped: Vec<String>,
}

impl UserStore {
    /// Loads `path` for `domains`.
    pub fn open(path: &Path, domains: &[String]) -> Result<(Self, LoadReport), UsersError> {
        let store = Self {
            path: path.to_owned(),
            domains: domains.to_vec(),
            table: RwLock::new(Arc::default()),
        };
        let report = store.reload()?;
        Ok((store, report))
    }

    /// Reads the file again; on error the accounts in use are kept.
    pub fn reload(&self) -> Result<LoadReport, UsersError> {
        let file = UsersFile::load(&self.path)?;
        let missing = file.is_none();
        let mut table = Table::new();
        let mut skipped = Vec::new();
        for (jid, user) in file.unwrap_or_default().users {
            // Validated by load, so splitting and decoding succeed here.
            let Ok((local, domain)) = split_jid(&jid) else {
                continue;
            };
            if !self.domains.contains(&domain) {
                skipped.push(format!("{jid}: domain not served"));
                continue;
            }
            let (Ok(sha1), Ok(sha256)) = (
                user.sha1.decode(ScramHash::Sha1),
                user.sha256.decode(ScramHash::Sha256),
            ) else {
                continue;
            };
            table
                .entry(domain)
                .or_default()
                .insert(local, Arc::new(Account { sha1, sha256 }));
        }
        let accounts = table.values().map(HashMap::len).sum();
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
        Ok(LoadReport {
            accounts,
            missing,
            skipped,
        })
    }

    pub fn len(&self) -> usize {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        table.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl session::Accounts for UserStore {
    fn scram_credentials(
        &self,
        user: &str,
        domain: &str,
        hash: ScramHash,
    ) -> Option<ScramCredentials> {
        let table = Arc::clone(&self.table.read().unwrap_or_else(|e| e.into_inner()));
        let account = table.get(domain)?.get(user)?;
        Some(match hash {
            ScramHash::Sha1 => account.sha1.clone(),
            ScramHash::Sha256 => account.sha256.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use session::Accounts as _;

    use super::*;

    #[test]
    fn jids() {
        assert_eq!(normalize_jid("Alice@LocalHost").unwrap(), "Alice@localhost");
        assert!(normalize_jid("alice").is_err());
        assert!(normalize_jid("alice@host/res").is_err());
        assert!(normalize_jid("@host").is_err());
        assert!(normalize_jid("a b@host").is_err());
    }

    #[test]
    fn round_trip_and_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let mut file = UsersFile::default();
        file.users.insert(
            "alice@localhost".into(),
            StoredUser::from_password("secret", 16).unwrap(),
        );
        file.users.insert(
            "bob@elsewhere".into(),
            StoredUser::from_password("pw", 16).unwrap(),
        );
        file.save(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("secret"));

        let (store, report) = UserStore::open(&path, &["localhost".to_owned()]).unwrap();
        assert_eq!(report.accounts, 1);
        assert_eq!(report.skipped.len(), 1);
        let creds = store
            .scram_credentials("alice", "localhost", ScramHash::Sha256)
            .unwrap();
        assert!(creds.verify_password("secret", ScramHash::Sha256));
        assert!(
            store
                .scram_credentials("bob", "localhost", ScramHash::Sha1)
                .is_none()
        );

        std::fs::write(&path, "[users.broken]\n").unwrap();
        assert!(store.reload().is_err());
        assert_eq!(store.len(), 1, "a broken file keeps the old accounts");
    }

    #[test]
    fn the_same_local_part_on_two_domains_is_two_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let mut file = UsersFile::default();
        for (jid, password) in [("alice@a.example", "first"), ("alice@b.example", "second")] {
            file.users
                .insert(jid.into(), StoredUser::from_password(password, 16).unwrap());
        }
        file.save(&path).unwrap();
        let domains = ["a.example".to_owned(), "b.example".to_owned()];
        let (store, report) = UserStore::open(&path, &domains).unwrap();
        assert_eq!((report.accounts, report.skipped.len()), (2, 0));
        let password = |domain| {
            let creds = store
                .scram_credentials("alice", domain, ScramHash::Sha256)
                .unwrap();
            ["first", "second"]
                .into_iter()
                .find(|p| creds.verify_password(p, ScramHash::Sha256))
        };
        assert_eq!(password("a.example"), Some("first"));
        assert_eq!(password("b.example"), Some("second"));
        assert!(
            store
                .scram_credentials("alice", "c.example", ScramHash::Sha256)
                .is_none()
        );
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (store, report) = UserStore::open(&dir.path().join("none.toml"), &[]).unwrap();
        assert!(report.missing);
        assert!(store.is_empty());
    }
}
