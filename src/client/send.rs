//! The client's I/O: resolve once, then one packet per knock.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::thread::sleep;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::config::Proto;

use super::{AddressFamily, ClientError, KnockPlan, Verbosity, strip_brackets};

/// Sends the plan's knocks in order; with [`Verbosity::EachKnock`], one line per knock on `out`.
pub fn send(plan: &KnockPlan, out: &mut impl Write) -> Result<(), ClientError> {
    let addr = resolve(&plan.host, plan.family)?;
    for (index, knock) in plan.knocks.iter().enumerate() {
        if index > 0 && !plan.delay.is_zero() {
            sleep(plan.delay);
        }
        let dest = SocketAddr::new(addr, knock.port);
        if plan.verbosity == Verbosity::EachKnock {
            // A closed stdout (`| head`) must not stop the knocks.
            let _ = writeln!(out, "hitting {} {dest}", knock.proto);
            let _ = out.flush();
        }
        hit(dest, knock.proto).map_err(|source| ClientError::Send {
            proto: knock.proto,
            dest,
            source,
        })?;
    }
    Ok(())
}

/// The host's first address of the requested family (the resolver's order, as `knock` does).
pub fn resolve(host: &str, family: AddressFamily) -> Result<IpAddr, ClientError> {
    let host = strip_brackets(host);
    let found: Vec<IpAddr> = (host, 0)
        .to_socket_addrs()
        .map_err(|e| ClientError::Resolve {
            host: host.to_owned(),
            reason: e.to_string(),
        })?
        .map(|a| a.ip())
        .collect();
    let wanted = |ip: &&IpAddr| match family {
        AddressFamily::Any => true,
        AddressFamily::V4 => ip.is_ipv4(),
        AddressFamily::V6 => ip.is_ipv6(),
    };
    found
        .iter()
        .find(wanted)
        .copied()
        .ok_or_else(|| ClientError::NoAddress {
            host: host.to_owned(),
            family,
            found,
        })
}

/// One knock: a TCP SYN (a non-blocking connect, closed without waiting) or a UDP datagram.
fn hit(dest: SocketAddr, proto: Proto) -> io::Result<()> {
    match proto {
        Proto::Tcp => syn(dest),
        Proto::Udp => datagram(dest),
    }
}

fn syn(dest: SocketAddr) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(dest), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    match socket.connect(&SockAddr::from(dest)) {
        // The SYN is on the wire once connect returns EINPROGRESS; dropping the socket in
        // SYN-SENT sends nothing more. A refusal from a local host still counts as a knock.
        Err(e)
            if !matches!(
                e.raw_os_error(),
                Some(libc::EINPROGRESS | libc::ECONNREFUSED)
            ) =>
        {
            Err(e)
        }
        _ => Ok(()),
    }
}

/// The wildcard address of `dest`'s family, to send from.
pub(super) fn unspecified(dest: SocketAddr) -> IpAddr {
    match dest {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

fn datagram(dest: SocketAddr) -> io::Result<()> {
    let socket = UdpSocket::bind(SocketAddr::new(unspecified(dest), 0))?;
    // One byte, as knockd's client sends.
    socket.send_to(&[0], dest).map(drop)
}
