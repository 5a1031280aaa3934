//! Who the client is: nobody yet, an authenticated account, or a bound resource. The JID
//! and where its parts end are kept here alone, so authentication and binding cannot
//! disagree about them.

/// `local@domain` once authenticated, `local@domain/resource` once bound; empty before.
#[derive(Debug, Default)]
pub(crate) struct Identity {
    jid: String,
    /// Bytes of the localpart at the start of `jid`.
    local_len: usize,
    /// Bytes of the bare JID at the start of `jid`; the resource follows its `/`.
    bare_len: usize,
}

impl Identity {
    /// SASL succeeded for `local` on `domain`.
    pub(crate) fn authenticate(&mut self, local: &str, domain: &str) {
        self.jid.clear();
        self.jid.push_str(local);
        self.jid.push('@');
        self.jid.push_str(domain);
        self.local_len = local.len();
        self.bare_len = self.jid.len();
    }

    /// Binds `resource` (non-empty, already validated) to the authenticated account.
    pub(crate) fn bind(&mut self, resource: &str) {
        debug_assert!(self.is_authenticated() && !self.is_bound() && !resource.is_empty());
        self.jid.truncate(self.bare_len);
        self.jid.push('/');
        self.jid.push_str(resource);
    }

    pub(crate) fn is_authenticated(&self) -> bool {
        !self.jid.is_empty()
    }

    pub(crate) fn is_bound(&self) -> bool {
        self.jid.len() > self.bare_len
    }

    /// The full JID once bound, else the bare JID once authenticated.
    pub(crate) fn jid(&self) -> Option<&str> {
        self.is_authenticated().then_some(self.jid.as_str())
    }

    /// The full JID, once bound.
    pub(crate) fn full(&self) -> Option<&str> {
        self.is_bound().then_some(self.jid.as_str())
    }

    pub(crate) fn local(&self) -> Option<&str> {
        self.jid().and_then(|jid| jid.get(..self.local_len))
    }

    pub(crate) fn bare(&self) -> Option<&str> {
        self.jid().and_then(|jid| jid.get(..self.bare_len))
    }

    /// The bound resource.
    pub(crate) fn resource(&self) -> Option<&str> {
        self.full().and_then(|jid| jid.get(self.bare_len + 1..))
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.jid.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_through_authentication_and_binding() {
        let mut identity = Identity::default();
        assert_eq!(
            (identity.jid(), identity.local(), identity.bare()),
            (None, None, None)
        );
        identity.authenticate("alice", "example.org");
        assert!(identity.is_authenticated() && !identity.is_bound());
        assert_eq!(identity.jid(), Some("alice@example.org"));
        assert_eq!(identity.local(), Some("alice"));
        assert_eq!(identity.bare(), Some("alice@example.org"));
        assert_eq!((identity.full(), identity.resource()), (None, None));
        identity.bind("phone");
        assert!(identity.is_bound());
        assert_eq!(identity.full(), Some("alice@example.org/phone"));
        assert_eq!(identity.bare(), Some("alice@example.org"));
        assert_eq!(identity.resource(), Some("phone"));
        assert_eq!(identity.local(), Some("alice"));
    }
}
