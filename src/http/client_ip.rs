//! Which address a request comes from, and whether its forwarding headers are believed.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// True when `peer` is one of the configured trusted proxies.
pub fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    let peer = canonical(peer);
    trusted.iter().any(|n| n.contains(&peer))
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The client's address: the peer, or — behind a trusted proxy — the last untrusted
/// address in `X-Forwarded-For`.
pub fn client_ip(peer: SocketAddr, xff: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let peer_ip = canonical(peer.ip());
    if !is_trusted(peer_ip, trusted) {
        return peer_ip;
    }
    let Some(xff) = xff else { return peer_ip };
    for part in xff.rsplit(',') {
        match part.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip, trusted) => continue,
            Ok(ip) => return canonical(ip),
            Err(_) => return peer_ip,
        }
    }
    peer_ip
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_peers_are_taken_as_they_are() {
        let peer: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        assert_eq!(client_ip(peer, Some("1.2.3.4"), &[]), peer.ip());
    }

    #[test]
    fn trusted_proxies_reveal_the_client() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: SocketAddr = "10.1.1.1:5000".parse().unwrap();
        let ip = client_ip(peer, Some("198.51.100.7, 10.2.2.2"), &trusted);
        assert_eq!(ip, "198.51.100.7".parse::<IpAddr>().unwrap());
    }
}
