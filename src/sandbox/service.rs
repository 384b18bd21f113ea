//! The services behind the guarded ports, and a client's connection to one.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::{Netns, SandboxError};

/// A dual-stack TCP service on `port` in `ns` that greets each client with one line, then
/// echoes lines back; it runs on background threads until the process exits.
pub fn serve(ns: &Netns, port: u16, greeting: &'static str) -> Result<(), SandboxError> {
    let listener = ns
        .run(move || listen(port))?
        .map_err(|source| SandboxError::Io {
            what: format!("listening on port {port} in {}", ns.name),
            source,
        })?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || greet_and_echo(stream, greeting));
        }
    });
    Ok(())
}

fn listen(port: u16) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(false)?;
    socket.set_reuse_address(true)?;
    let addr = SocketAddr::new(IpAddr::from([0u16; 8]), port);
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(64)?;
    Ok(socket.into())
}

fn greet_and_echo(mut stream: TcpStream, greeting: &str) {
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    if writeln!(stream, "{greeting}").is_err() {
        return;
    }
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else { return };
        if writeln!(stream, "{line}").is_err() {
            return;
        }
    }
}

/// A TCP connection from a chosen source address (one of the calling thread's namespace).
pub fn connect_from(source: IpAddr, dest: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(dest), Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SockAddr::from(SocketAddr::new(source, 0)))?;
    socket.connect_timeout(&SockAddr::from(dest), timeout)?;
    Ok(socket.into())
}

/// An open connection to a [`serve`]d service.
#[derive(Debug)]
pub struct Session {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// The service's first line.
    pub greeting: String,
}

impl Session {
    /// Connects from `source` and reads the greeting; call it inside the client's namespace.
    pub fn open(source: IpAddr, dest: SocketAddr, timeout: Duration) -> io::Result<Session> {
        let stream = connect_from(source, dest, timeout)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut session = Session {
            reader: BufReader::new(stream.try_clone()?),
            stream,
            greeting: String::new(),
        };
        session.greeting = session.read_line()?;
        Ok(session)
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end().to_owned())
    }

    /// Sends a line and reads the echo: the connection still carries traffic.
    pub fn echo(&mut self, line: &str) -> io::Result<String> {
        self.stream.write_all(format!("{line}\n").as_bytes())?;
        self.read_line()
    }
}
