//! [`Claims`]: the one owner of "exactly once" across loads that run at
//! the same time in the loader child (the boot plan, coldplug waves, the
//! kernel's module requests).
//!
//! Each load's coordinator already hands a module to the kernel at most once
//! per plan; with several plans at once, two of them may want the same
//! module. `Claims` wraps the kernel: the first caller for a module claims it
//! and inserts it; every later caller, from any plan and any thread, waits
//! for that insertion and gets its result (success or the same error). The
//! kernel never sees a second call for a module, so a second caller's
//! parameters cannot be silently dropped by the kernel's `EEXIST` path
//! (every plan of one loader computes a module's parameters from the same
//! manifest and command line, so they agree).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use modules_manifest::ModuleName;

use super::{InsertError, InsertRequest, Inserted, Kernel};

/// The kernel the loader child shares between its loads.
pub type SharedKernel = Box<dyn Kernel + Send + Sync>;

/// A kernel decorator that inserts each module at most once, whoever asks.
/// Thread-safe; `insert` blocks while another caller inserts the same
/// module, and only then (a later caller never waits for a module it did
/// not ask for). A later caller gets `Ok(Inserted::AlreadyLoaded)` when the
/// insertion succeeded, the same error when it failed.
pub struct Claims {
    inner: SharedKernel,
    claims: Mutex<HashMap<ModuleName, Arc<Claim>>>,
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims")
            .field("claimed", &self.claimed_count())
            .finish_non_exhaustive()
    }
}

/// One module's insertion: `None` while it runs.
#[derive(Default)]
struct Claim {
    result: Mutex<Option<Result<Inserted, InsertError>>>,
    decided: Condvar,
}

impl Claims {
    pub fn new(inner: SharedKernel) -> Self {
        Claims {
            inner,
            claims: Mutex::new(HashMap::new()),
        }
    }

    /// True if some caller has claimed `name` (it is being inserted or was).
    pub fn is_claimed(&self, name: &ModuleName) -> bool {
        self.lock().contains_key(name)
    }

    /// How many modules have been claimed.
    pub fn claimed_count(&self) -> usize {
        self.lock().len()
    }

    /// The result of `name`'s insertion if it is decided.
    pub fn result(&self, name: &ModuleName) -> Option<Result<Inserted, InsertError>> {
        let claim = self.lock().get(name).cloned()?;
        let r = claim
            .result
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        r
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ModuleName, Arc<Claim>>> {
        self.claims.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Fills a claim's result when dropped, so that waiters are released even
/// if the inner kernel panics (they get the panic as an error).
struct Decide<'c> {
    claim: &'c Claim,
    result: Option<Result<Inserted, InsertError>>,
}

impl Drop for Decide<'_> {
    fn drop(&mut self) {
        let r = self.result.take().unwrap_or_else(|| {
            Err(InsertError::other(
                "the insertion panicked in another load of this module",
            ))
        });
        *self
            .claim
            .result
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(r);
        self.claim.decided.notify_all();
    }
}

impl Kernel for Claims {
    fn module_file(&self, path: &std::path::Path) -> std::io::Result<std::fs::File> {
        self.inner.module_file(path)
    }

    fn insert(&self, req: &InsertRequest<'_>) -> Result<Inserted, InsertError> {
        let (claim, first) = {
            let mut claims = self.lock();
            match claims.get(req.name) {
                Some(c) => (Arc::clone(c), false),
                None => {
                    let c = Arc::new(Claim::default());
                    claims.insert(req.name.clone(), Arc::clone(&c));
                    (c, true)
                }
            }
        };
        if first {
            let mut decide = Decide {
                claim: &claim,
                result: None,
            };
            let r = self.inner.insert(req);
            decide.result = Some(r.clone());
            drop(decide);
            return r;
        }
        let mut slot = claim.result.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(r) = slot.as_ref() {
                // For this caller the module was loaded by another: it
                // reports `already`, as for the kernel's EEXIST; a failure
                // is the same failure.
                return r.clone().map(|_| Inserted::AlreadyLoaded);
            }
            slot = claim
                .decided
                .wait(slot)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::kernel::{FakeKernel, FakeOutcome};
    use modules_manifest::Compression;

    fn req(name: &ModuleName) -> InsertRequest<'_> {
        InsertRequest {
            name,
            path: std::path::Path::new("/m.ko"),
            compression: Compression::None,
            params: "",
        }
    }

    #[test]
    fn later_callers_share_the_first_insertion() {
        let fake = Arc::new(
            FakeKernel::new()
                .delay("a", Duration::from_millis(20))
                .outcome("b", FakeOutcome::Fail(libc::ENODEV))
                .delay("b", Duration::from_millis(20)),
        );
        let claims = Claims::new(Box::new(Arc::clone(&fake)));
        let (a, b) = (ModuleName::new("a").unwrap(), ModuleName::new("b").unwrap());
        let results: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (claims.insert(&req(&a)), claims.insert(&req(&b)))))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(fake.call_count("a"), 1);
        assert_eq!(fake.call_count("b"), 1);
        let loaded = results
            .iter()
            .filter(|(r, _)| *r == Ok(Inserted::Loaded))
            .count();
        assert_eq!(loaded, 1, "{results:?}");
        assert!(results
            .iter()
            .all(|(r, _)| matches!(r, Ok(Inserted::Loaded | Inserted::AlreadyLoaded))));
        let errors: Vec<_> = results
            .iter()
            .map(|(_, e)| e.clone().unwrap_err())
            .collect();
        assert!(errors
            .iter()
            .all(|e| e == &errors[0] && e.errno == Some(libc::ENODEV)));
        assert!(claims.is_claimed(&a) && claims.result(&b).is_some());
    }

    #[test]
    fn a_panicking_insertion_releases_the_waiters() {
        let fake = Arc::new(
            FakeKernel::new()
                .outcome("p", FakeOutcome::Panic)
                .delay("p", Duration::from_millis(20)),
        );
        let claims = Claims::new(Box::new(fake));
        let p = ModuleName::new("p").unwrap();
        std::thread::scope(|s| {
            let first = s.spawn(|| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| claims.insert(&req(&p))))
            });
            while !claims.is_claimed(&p) {
                std::thread::yield_now();
            }
            let second = claims.insert(&req(&p));
            assert!(second.unwrap_err().message.contains("panicked"));
            assert!(first.join().unwrap().is_err());
        });
    }
}
