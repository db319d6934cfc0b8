//! Whether the store serves this replica: a small write under `health/<instance>`, read back
//! and removed (so restarts leave no keys behind); or, for a read-only replica (perhaps on
//! read-only credentials), one listing.

use bytes::Bytes;

use crate::{Registry, keys};

impl Registry {
    /// Writes a fresh value under this instance's probe key, reads it back and deletes it.
    ///
    /// # Errors
    /// Why the store failed the probe, in words.
    pub async fn probe(&self) -> Result<(), String> {
        let key = keys::health(&self.instance);
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| e.to_string())?;
        let written = Bytes::from(hex::encode(nonce));
        let write = self.store.put_volatile(&key, written.clone()).await;
        write.map_err(|e| format!("writing {key}: {e}"))?;
        let read = self.store.get(&key).await;
        let read = read.map_err(|e| format!("reading {key}: {e}"))?;
        let removed = self.store.delete(&key).await;
        removed.map_err(|e| format!("deleting {key}: {e}"))?;
        if read == written {
            Ok(())
        } else {
            Err(format!("{key} read back another value than was written"))
        }
    }
}

impl Registry {
    /// Lists one key of the catalog: what a read-only replica needs of the store.
    ///
    /// # Errors
    /// Why the store failed the probe, in words.
    pub async fn probe_read(&self) -> Result<(), String> {
        let catalog = keys::catalog();
        let listed = self.store.list(&catalog, None, 1).await;
        listed
            .map(drop)
            .map_err(|e| format!("listing {catalog}: {e}"))
    }
}
