//! Throttling of logins and registrations, and who the client is.
//!
//! Invariants:
//! - Every check happens before any password is hashed or verified, so a throttled request
//!   costs no Argon2 work.
//! - A login attempt spends a cell of its client address's quota and one of its user name's
//!   quota *before* the password is checked (counting only after a failure would let
//!   concurrent guesses slip past the limit). A throttled user name refuses even the right
//!   password until its quota refills; `/auth/refresh` renews a token without logging in.
//! - The client address is the TCP peer, unless the peer is a trusted proxy: then it is the
//!   last address of the last `X-Forwarded-For` header (the one the proxy added), if that
//!   parses. IPv6 clients are counted per /64, the block one subscriber usually holds.
//! - Quotas refill continuously (GCRA, via `governor`): `n` per minute means a burst of `n`,
//!   then one more every `60/n` seconds.

use actix_web::HttpRequest;
use governor::{clock::Clock, DefaultKeyedRateLimiter, NotUntil, Quota, RateLimiter};
use mom_config::AuthConfig;
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    num::NonZeroU32,
    time::Duration,
};

/// The quota of a key is used up; try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit reached; retry after {retry_after:?}")]
pub struct Throttled {
    pub retry_after: Duration,
}

impl Throttled {
    /// `Retry-After` in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let whole = self.retry_after.as_secs();
        let rounded = whole + u64::from(self.retry_after.subsec_nanos() > 0);
        rounded.max(1)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{setting} must be at least 1")]
pub struct ZeroLimit {
    pub setting: &'static str,
}

pub struct Limits {
    logins_per_address: DefaultKeyedRateLimiter<IpAddr>,
    logins_per_user: DefaultKeyedRateLimiter<String>,
    registrations_per_address: DefaultKeyedRateLimiter<IpAddr>,
    trusted_proxies: Vec<IpAddr>,
}

fn per_minute(setting: &'static str, n: u32) -> Result<Quota, ZeroLimit> {
    NonZeroU32::new(n)
        .map(Quota::per_minute)
        .ok_or(ZeroLimit { setting })
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), Throttled> {
    limiter
        .check_key(key)
        .map_err(|not_until: NotUntil<_>| Throttled {
            retry_after: not_until.wait_time_from(limiter.clock().now()),
        })
}

impl Limits {
    pub fn new(config: &AuthConfig) -> Result<Limits, ZeroLimit> {
        Ok(Limits {
            logins_per_address: RateLimiter::keyed(per_minute(
                "logins_per_address_per_minute",
                config.logins_per_address_per_minute,
            )?),
            logins_per_user: RateLimiter::keyed(per_minute(
                "logins_per_user_per_minute",
                config.logins_per_user_per_minute,
            )?),
            registrations_per_address: RateLimiter::keyed(per_minute(
                "registrations_per_address_per_minute",
                config.registrations_per_address_per_minute,
            )?),
            trusted_proxies: config
                .trusted_proxies
                .iter()
                .map(IpAddr::to_canonical)
                .collect(),
        })
    }

    /// The address a request is counted against.
    pub fn client_address(&self, req: &HttpRequest) -> IpAddr {
        let peer = req
            .peer_addr()
            .map(|addr| addr.ip().to_canonical())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if !self.trusted_proxies.contains(&peer) {
            return peer;
        }
        req.headers()
            .get_all("x-forwarded-for")
            .last()
            .and_then(|value| value.to_str().ok())
            .and_then(|list| list.rsplit(',').next())
            .and_then(parse_forwarded)
            .unwrap_or(peer)
    }

    /// Spends one login attempt of a client address.
    pub fn login_from(&self, address: IpAddr) -> Result<(), Throttled> {
        check(&self.logins_per_address, &counted(address))
    }

    /// Spends one login attempt on a user name.
    pub fn login_as(&self, username: &str) -> Result<(), Throttled> {
        check(&self.logins_per_user, &username.to_owned())
    }

    /// Spends one registration of a client address.
    pub fn registration_from(&self, address: IpAddr) -> Result<(), Throttled> {
        check(&self.registrations_per_address, &counted(address))
    }

    /// Forgets keys whose quota is full again; call now and then so that the maps stay small.
    pub fn forget_idle(&self) {
        self.logins_per_address.retain_recent();
        self.logins_per_user.retain_recent();
        self.registrations_per_address.retain_recent();
        self.logins_per_address.shrink_to_fit();
        self.logins_per_user.shrink_to_fit();
        self.registrations_per_address.shrink_to_fit();
    }
}

/// One entry of `X-Forwarded-For`: an address, or an address with a port.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<std::net::SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The key an address is counted under: itself, or its /64 for IPv6.
fn counted(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn config(per_user: u32, per_address: u32, trusted: &[&str]) -> AuthConfig {
        let trusted: Vec<String> = trusted.iter().map(|t| format!("{t:?}")).collect();
        toml::from_str(&format!(
            "listen = \"127.0.0.1:1\"\ndatabase = \"x\"\njwt_secret = \"s\"\n\
             logins_per_user_per_minute = {per_user}\n\
             logins_per_address_per_minute = {per_address}\n\
             trusted_proxies = [{}]\n[zookeeper]\nconnect = \"127.0.0.1:1\"\n",
            trusted.join(",")
        ))
        .unwrap()
    }

    #[test]
    fn a_user_name_is_throttled_after_its_quota_and_others_are_not() {
        let limits = Limits::new(&config(3, 100, &[])).unwrap();
        for _ in 0..3 {
            limits.login_as("alice").unwrap();
        }
        let throttled = limits.login_as("alice").unwrap_err();
        // One cell comes back every 20 s.
        assert!(throttled.retry_after <= Duration::from_secs(20));
        assert!((1..=20).contains(&throttled.retry_after_secs()));
        limits.login_as("bob").unwrap();
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_never_zero() {
        let secs = |ms| {
            Throttled {
                retry_after: Duration::from_millis(ms),
            }
            .retry_after_secs()
        };
        assert_eq!(secs(0), 1);
        assert_eq!(secs(10), 1);
        assert_eq!(secs(1000), 1);
        assert_eq!(secs(1001), 2);
    }

    #[test]
    fn zero_limits_are_refused() {
        assert!(Limits::new(&config(0, 1, &[])).is_err());
        assert!(Limits::new(&config(1, 0, &[])).is_err());
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let limits = Limits::new(&config(1, 1, &["127.0.0.1"])).unwrap();
        let from = |peer: &str, xff: Option<&str>| {
            let mut req = TestRequest::default().peer_addr(peer.parse().unwrap());
            if let Some(xff) = xff {
                req = req.insert_header(("x-forwarded-for", xff));
            }
            limits.client_address(&req.to_http_request())
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            from("127.0.0.1:5000", Some("203.0.113.9")),
            ip("203.0.113.9")
        );
        assert_eq!(
            from("127.0.0.1:5000", Some("198.51.100.1, 203.0.113.9:443")),
            ip("203.0.113.9")
        );
        assert_eq!(from("127.0.0.1:5000", Some("garbage")), ip("127.0.0.1"));
        assert_eq!(from("127.0.0.1:5000", None), ip("127.0.0.1"));
        assert_eq!(from("127.0.0.2:5000", Some("203.0.113.9")), ip("127.0.0.2"));
        assert_eq!(from("[::ffff:127.0.0.1]:5000", Some("::1")), ip("::1"));
    }

    #[test]
    fn ipv6_addresses_are_counted_per_64() {
        let limits = Limits::new(&config(1, 1, &[])).unwrap();
        limits.login_from(ip("2001:db8:1:2::1")).unwrap();
        assert!(limits.login_from(ip("2001:db8:1:2::ffff")).is_err());
        limits.login_from(ip("2001:db8:1:3::1")).unwrap();
        limits.login_from(ip("192.0.2.1")).unwrap();
        assert!(limits.login_from(ip("192.0.2.1")).is_err());

        fn ip(s: &str) -> IpAddr {
            s.parse().unwrap()
        }
    }
}
