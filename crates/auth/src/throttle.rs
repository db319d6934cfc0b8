//! Failed logins, counted per user and per source address over a sliding minute: past the
//! limits, further attempts are refused before any password is checked.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window failures are counted over.
const WINDOW: Duration = Duration::from_secs(60);

/// Failed-login counters.
#[derive(Debug)]
pub struct Throttle {
    per_user: usize,
    per_address: usize,
    failures: Mutex<Failures>,
}

#[derive(Debug, Default)]
struct Failures {
    users: HashMap<String, VecDeque<Instant>>,
    addresses: HashMap<IpAddr, VecDeque<Instant>>,
}

impl Throttle {
    /// At most `per_user` failures a minute for one user, `per_address` for one address.
    #[must_use]
    pub fn new(per_user: usize, per_address: usize) -> Self {
        Self {
            per_user,
            per_address,
            failures: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Failures> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long `user` from `address` must wait before trying again, if throttled.
    #[must_use]
    pub fn wait(&self, user: &str, address: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let mut failures = self.lock();
        let by_user = failures
            .users
            .get_mut(user)
            .and_then(|f| over(f, self.per_user, now));
        let by_address = failures
            .addresses
            .get_mut(&address)
            .and_then(|f| over(f, self.per_address, now));
        by_user.max(by_address)
    }

    /// Records a failed login.
    pub fn failed(&self, user: &str, address: IpAddr) {
        let now = Instant::now();
        let mut failures = self.lock();
        if failures.users.len() > 100_000 || failures.addresses.len() > 100_000 {
            failures
                .users
                .retain(|_, f| f.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
            failures
                .addresses
                .retain(|_, f| f.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        failures
            .users
            .entry(user.to_owned())
            .or_default()
            .push_back(now);
        failures
            .addresses
            .entry(address)
            .or_default()
            .push_back(now);
    }
}

/// Forgets failures older than the window; when `limit` remain, how long until the oldest
/// leaves it.
fn over(failures: &mut VecDeque<Instant>, limit: usize, now: Instant) -> Option<Duration> {
    while failures
        .front()
        .is_some_and(|t| now.duration_since(*t) >= WINDOW)
    {
        failures.pop_front();
    }
    (failures.len() >= limit).then(|| WINDOW.saturating_sub(now.duration_since(failures[0])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_and_an_address_are_throttled_apart() {
        let throttle = Throttle::new(2, 3);
        let (here, there): (IpAddr, IpAddr) =
            ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        assert!(throttle.wait("alice", here).is_none());
        throttle.failed("alice", here);
        throttle.failed("alice", here);
        assert!(
            throttle.wait("alice", there).is_some(),
            "the user is throttled anywhere"
        );
        assert!(
            throttle.wait("bob", here).is_none(),
            "others on the address still sign in"
        );
        throttle.failed("carol", here);
        assert!(
            throttle.wait("bob", here).is_some(),
            "the address reached its limit"
        );
        assert!(throttle.wait("bob", there).is_none());
    }
}
