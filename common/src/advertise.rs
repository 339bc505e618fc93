//! Which address a service tells others to dial: its configured `advertise`, else its listen
//! address, except that a wildcard listen address (`0.0.0.0`, `::`) is no address anyone can
//! dial, so then the machine's first non-loopback interface address is taken (found with
//! `if-addrs`), with the listen port.

use std::net::{IpAddr, SocketAddr};

/// The address to announce for a service bound to `listen`.
pub fn advertised_address(listen: SocketAddr, advertise: Option<&str>) -> String {
    let interfaces: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|all| all.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default();
    choose(listen, advertise, &interfaces)
}

/// The choice itself, given the machine's interface addresses.
fn choose(listen: SocketAddr, advertise: Option<&str>, interfaces: &[IpAddr]) -> String {
    if let Some(advertise) = advertise {
        return advertise.to_owned();
    }
    if !listen.ip().is_unspecified() {
        return listen.to_string();
    }
    let usable = |ip: &&IpAddr| !ip.is_loopback() && !ip.is_unspecified();
    // IPv4 first: it is what most peers on a LAN reach; then IPv6 that is not link-local.
    let chosen = interfaces
        .iter()
        .filter(usable)
        .find(|ip| ip.is_ipv4())
        .or_else(|| {
            interfaces.iter().filter(usable).find(|ip| match ip {
                IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
                IpAddr::V4(_) => false,
            })
        });
    match chosen {
        Some(ip) => SocketAddr::new(*ip, listen.port()).to_string(),
        // Nothing but loopback: only this machine can reach the service anyway.
        None => SocketAddr::new(IpAddr::from([127, 0, 0, 1]), listen.port()).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn advertise_wins_then_a_concrete_listen_address() {
        let listen: SocketAddr = "10.0.0.5:7301".parse().unwrap();
        assert_eq!(choose(listen, Some("mom1:7301"), &[]), "mom1:7301");
        assert_eq!(
            choose(listen, None, &ips(&["192.168.1.2"])),
            "10.0.0.5:7301"
        );
    }

    #[test]
    fn a_wildcard_listen_address_takes_the_first_non_loopback_interface() {
        let listen: SocketAddr = "0.0.0.0:7301".parse().unwrap();
        let interfaces = ips(&["127.0.0.1", "::1", "fe80::1", "192.168.1.2", "10.0.0.7"]);
        assert_eq!(choose(listen, None, &interfaces), "192.168.1.2:7301");
        let v6_only = ips(&["127.0.0.1", "fe80::1", "2001:db8::5"]);
        assert_eq!(choose(listen, None, &v6_only), "[2001:db8::5]:7301");
        assert_eq!(choose(listen, None, &ips(&["127.0.0.1"])), "127.0.0.1:7301");
    }
}
