//! Addresses and placement: node pod CIDRs and IPs, pod IPs from their node's CIDR, service
//! cluster IPs, and the round-robin scheduler. All of it is data in objects; the simulator never
//! sends a packet to any of these addresses.

use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
    ops::Bound,
};

use crate::store::Key;

/// Kubernetes' default kubelet `maxPods`.
pub(crate) const DEFAULT_MAX_PODS: usize = 110;
/// Addresses `.2` to `.254` of a /24: `.0` is the network, `.1` the node's bridge.
pub(crate) const MAX_PODS_PER_CIDR: usize = 253;

#[derive(Debug)]
struct NodeNet {
    ip: Ipv4Addr,
    /// First three octets of the node's /24 pod CIDR.
    prefix: [u8; 3],
    used: [bool; 256],
    pods: usize,
    max_pods: usize,
}

/// A pod's place: its node, and its own address (None on the host network).
#[derive(Debug)]
struct Placed {
    node: String,
    octet: Option<u8>,
}

#[derive(Debug, Default)]
pub(crate) struct Network {
    nodes: BTreeMap<String, NodeNet>,
    nodes_seen: u32,
    pods: HashMap<Key, Placed>,
    last_scheduled: Option<String>,
    services_seen: u32,
    node_ports_seen: u16,
}

/// What a node needs filled in on admission.
pub(crate) struct NodeAddresses {
    pub ip: Ipv4Addr,
    pub pod_cidr: String,
}

impl Network {
    /// Registers a node, with its own pod CIDR and IP when it brings them (`a.b.c.0/24`),
    /// allocated ones otherwise: 10.244.N.0/24 and 172.18.0.0/16 by order of arrival.
    pub fn add_node(
        &mut self,
        name: &str,
        ip: Option<Ipv4Addr>,
        pod_cidr: Option<&str>,
        max_pods: usize,
    ) -> NodeAddresses {
        let n = self.nodes_seen;
        self.nodes_seen += 1;
        let prefix = pod_cidr.and_then(parse_prefix).unwrap_or_else(|| {
            let [_, _, hi, lo] = (n + (244 << 8)).to_be_bytes();
            [10, hi, lo]
        });
        let ip = ip.unwrap_or_else(|| Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 18, 0, 2)) + n));
        let mut used = [false; 256];
        for reserved in [0, 1, 255] {
            used[reserved] = true;
        }
        let max_pods = max_pods.clamp(1, MAX_PODS_PER_CIDR);
        self.nodes.insert(
            name.to_string(),
            NodeNet {
                ip,
                prefix,
                used,
                pods: 0,
                max_pods,
            },
        );
        NodeAddresses {
            ip,
            pod_cidr: format!("{}.{}.{}.0/24", prefix[0], prefix[1], prefix[2]),
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        self.nodes.remove(name);
        self.pods.retain(|_, placed| placed.node != name);
    }

    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// The next node with room, round-robin in name order.
    pub fn schedule(&mut self) -> Option<String> {
        let after = self
            .last_scheduled
            .clone()
            .map_or(Bound::Unbounded, Bound::Excluded);
        let name = self
            .nodes
            .range::<String, _>((after, Bound::Unbounded))
            .chain(self.nodes.iter())
            .find(|(_, node)| node.pods < node.max_pods)
            .map(|(name, _)| name.clone())?;
        self.last_scheduled = Some(name.clone());
        Some(name)
    }

    /// Places a pod on its node: `(pod IP, host IP)`, None if the node is unknown or full.
    pub fn place(
        &mut self,
        pod: &Key,
        node_name: &str,
        host_network: bool,
    ) -> Option<(Ipv4Addr, Ipv4Addr)> {
        let node = self.nodes.get_mut(node_name)?;
        if node.pods >= node.max_pods {
            return None;
        }
        let octet = if host_network {
            None
        } else {
            let free = node.used.iter().position(|used| !used)?;
            node.used[free] = true;
            Some(u8::try_from(free).expect("256 slots"))
        };
        node.pods += 1;
        let [a, b, c] = node.prefix;
        let pod_ip = octet.map_or(node.ip, |o| Ipv4Addr::new(a, b, c, o));
        self.pods.insert(
            pod.clone(),
            Placed {
                node: node_name.to_string(),
                octet,
            },
        );
        Some((pod_ip, node.ip))
    }

    pub fn release(&mut self, pod: &Key) {
        let Some(placed) = self.pods.remove(pod) else {
            return;
        };
        if let Some(node) = self.nodes.get_mut(&placed.node) {
            node.pods -= 1;
            if let Some(octet) = placed.octet {
                node.used[usize::from(octet)] = false;
            }
        }
    }

    /// The next cluster IP from 10.96.0.0/12, after the `kubernetes` service's 10.96.0.1.
    pub fn service_ip(&mut self) -> Ipv4Addr {
        self.services_seen += 1;
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 10)) + self.services_seen)
    }

    /// The next NodePort from 30000-32767.
    pub fn node_port(&mut self) -> u16 {
        self.node_ports_seen = (self.node_ports_seen + 1) % 2768;
        30000 + self.node_ports_seen
    }
}

fn parse_prefix(cidr: &str) -> Option<[u8; 3]> {
    let (addr, _) = cidr.split_once('/')?;
    let [a, b, c, _] = addr.parse::<Ipv4Addr>().ok()?.octets();
    Some([a, b, c])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        ("ns".into(), name.into())
    }

    #[test]
    fn nodes_get_cidrs_and_pods_get_addresses_from_them() {
        let mut net = Network::default();
        let a = net.add_node("a", None, None, 2);
        let b = net.add_node(
            "b",
            Some(Ipv4Addr::new(192, 168, 0, 9)),
            Some("10.9.8.0/24"),
            110,
        );
        assert_eq!(
            (a.ip, a.pod_cidr.as_str()),
            (Ipv4Addr::new(172, 18, 0, 2), "10.244.0.0/24")
        );
        assert_eq!(b.pod_cidr, "10.9.8.0/24");

        let places: Vec<_> = (0..4)
            .map(|i| net.schedule().unwrap() + &i.to_string())
            .collect();
        assert_eq!(places, ["a0", "b1", "a2", "b3"]);
        assert_eq!(
            net.place(&key("p1"), "a", false),
            Some((Ipv4Addr::new(10, 244, 0, 2), a.ip))
        );
        assert_eq!(net.place(&key("p2"), "a", true), Some((a.ip, a.ip)));
        assert_eq!(net.place(&key("p3"), "a", false), None, "a is full");
        assert_eq!(net.schedule().as_deref(), Some("b"));
        net.release(&key("p1"));
        assert_eq!(
            net.place(&key("p4"), "a", false),
            Some((Ipv4Addr::new(10, 244, 0, 2), a.ip))
        );
        assert_eq!(
            net.place(&key("p5"), "b", false).unwrap().0,
            Ipv4Addr::new(10, 9, 8, 2)
        );
        assert_eq!(net.place(&key("p6"), "nowhere", false), None);
    }

    #[test]
    fn cidrs_past_256_nodes_move_to_the_next_second_octet() {
        let mut net = Network::default();
        let last = (0..=256)
            .map(|i| net.add_node(&i.to_string(), None, None, 110))
            .last()
            .unwrap();
        assert_eq!(last.pod_cidr, "10.245.0.0/24");
    }
}
