//! A server TLS stream on rustls's unbuffered API: the connection owns its buffers, so
//! a connection waiting for its next request holds none of them.
//!
//! rustls's buffered `ServerConnection` (what tokio-rustls drives) keeps a receive
//! buffer of at least 4 KiB for the connection's whole life, which is most of what an
//! idle TLS connection costs. Here the three buffers — TLS bytes received, plaintext not
//! yet read, TLS bytes not yet sent — are plain `Vec`s released as soon as they are
//! empty and the socket has nothing more to give. rustls still does all of TLS; this
//! file only moves bytes between the socket, rustls and hyper.
//!
//! Differences from tokio-rustls a client can notice: a fatal TLS error closes the TCP
//! connection without an alert record (the unbuffered API does not hand out the alert
//! after an error).

use std::io::{self, ErrorKind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use rustls::ServerConfig;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How much room a read from the socket is given at least.
const READ_ROOM: usize = 4096;

/// At most this much application data is encrypted per write; hyper writes again.
const MAX_WRITE: usize = 64 * 1024;

/// A TLS connection over TCP, server side.
pub struct TlsStream {
    io: TcpStream,
    conn: UnbufferedServerConnection,
    /// TLS bytes received and not yet processed.
    incoming: BytesMut,
    /// Decrypted application data the reader's buffer had no room for.
    plaintext: BytesMut,
    /// TLS bytes not yet sent: `outgoing[sent..]`.
    outgoing: Vec<u8>,
    sent: usize,
    /// The peer will send nothing more (close_notify or end of stream).
    read_closed: bool,
    /// close_notify is queued.
    write_closed: bool,
}

/// Where processing the received records left the connection.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    /// More bytes from the peer are needed (handshake, or the next record).
    NeedData,
    /// Application data may be sent.
    Established,
    /// Both sides have closed.
    Closed,
}

/// What to do once the connection allows sending application data.
enum Action<'a> {
    Nothing,
    /// Encrypt (a prefix of) the data; how much is stored in the `usize`.
    Write(&'a [u8], &'a mut usize),
    /// Queue close_notify.
    Close,
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, e)
}

impl TlsStream {
    /// Runs the handshake on `io`. The caller bounds it in time.
    pub async fn accept(io: TcpStream, config: Arc<ServerConfig>) -> io::Result<Self> {
        let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
        let mut s = Self {
            io,
            conn,
            incoming: BytesMut::new(),
            plaintext: BytesMut::new(),
            outgoing: Vec::new(),
            sent: 0,
            read_closed: false,
            write_closed: false,
        };
        std::future::poll_fn(|cx| s.poll_handshake(cx)).await?;
        Ok(s)
    }

    /// The protocol both sides agreed on by ALPN, if any (the listener reads it from
    /// the connection; tests check it here).
    #[cfg(test)]
    pub(crate) fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let progress = self.process(None, Action::Nothing)?;
            ready!(self.poll_send(cx))?;
            match progress {
                Progress::Established if !self.conn.is_handshaking() => {
                    return Poll::Ready(Ok(()));
                }
                Progress::Closed => return Poll::Ready(Err(ErrorKind::UnexpectedEof.into())),
                _ if self.read_closed => return Poll::Ready(Err(ErrorKind::UnexpectedEof.into())),
                _ => ready!(self.poll_receive(cx))?,
            }
        }
    }

    /// Processes the received records: application data goes to `read` while it has
    /// room, then to `plaintext`; TLS records rustls wants sent go to `outgoing`. Once
    /// the connection may send application data, `action` is carried out.
    fn process(
        &mut self,
        mut read: Option<&mut ReadBuf<'_>>,
        mut action: Action<'_>,
    ) -> io::Result<Progress> {
        let Self {
            conn,
            incoming,
            plaintext,
            outgoing,
            read_closed,
            ..
        } = self;
        loop {
            let UnbufferedStatus { mut discard, state } =
                conn.process_tls_records(&mut incoming[..]);
            let state = state.map_err(tls_error)?;
            let progress = match state {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record.map_err(tls_error)?;
                        discard += record.discard;
                        match read.as_deref_mut() {
                            Some(buf)
                                if plaintext.is_empty()
                                    && buf.remaining() >= record.payload.len() =>
                            {
                                buf.put_slice(record.payload);
                            }
                            _ => plaintext.extend_from_slice(record.payload),
                        }
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    append(
                        outgoing,
                        256,
                        |buf| encode.encode(buf),
                        |e| match e {
                            EncodeError::InsufficientSize(s) => Ok(s.required_size),
                            other => Err(io::Error::other(other)),
                        },
                    )?;
                    None
                }
                // The bytes are in `outgoing`, sent before anything encrypted later.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::BlockedHandshake => Some(Progress::NeedData),
                ConnectionState::PeerClosed => {
                    *read_closed = true;
                    None
                }
                ConnectionState::Closed => {
                    *read_closed = true;
                    Some(Progress::Closed)
                }
                ConnectionState::WriteTraffic(mut traffic) => {
                    match std::mem::replace(&mut action, Action::Nothing) {
                        Action::Nothing => {}
                        Action::Write(data, written) => {
                            let data = &data[..data.len().min(MAX_WRITE)];
                            // Each record adds a header, the content type and the tag.
                            let room = data.len() + (data.len() / 16_384 + 1) * 64;
                            append(
                                outgoing,
                                room,
                                |buf| traffic.encrypt(data, buf),
                                |e| match e {
                                    EncryptError::InsufficientSize(s) => Ok(s.required_size),
                                    other => Err(io::Error::other(other)),
                                },
                            )?;
                            *written = data.len();
                        }
                        Action::Close => {
                            append(
                                outgoing,
                                64,
                                |buf| traffic.queue_close_notify(buf),
                                |e| match e {
                                    EncryptError::InsufficientSize(s) => Ok(s.required_size),
                                    other => Err(io::Error::other(other)),
                                },
                            )?;
                        }
                    }
                    Some(Progress::Established)
                }
                // Early data is off (`max_early_data_size` is 0): never offered.
                _ => return Err(io::Error::other("unexpected TLS state")),
            };
            incoming.advance(discard);
            if let Some(p) = progress {
                return Ok(p);
            }
        }
    }

    /// Reads more TLS bytes from the socket. An idle connection's empty buffer is
    /// released while it waits.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.incoming.reserve(READ_ROOM);
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.incoming) {
            Poll::Ready(Ok(0)) => {
                self.read_closed = true;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if self.incoming.is_empty() {
                    self.incoming = BytesMut::new();
                }
                Poll::Pending
            }
        }
    }

    /// Sends what is in `outgoing`; ready once all of it is sent.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        if !self.outgoing.is_empty() {
            self.outgoing = Vec::new();
            self.sent = 0;
        }
        Poll::Ready(Ok(()))
    }
}

/// Lets `encode` write at the end of `out`, first with `room` bytes, then with as many
/// as it asks for.
fn append<E>(
    out: &mut Vec<u8>,
    room: usize,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, E>,
    needed: impl Fn(E) -> io::Result<usize>,
) -> io::Result<()> {
    let start = out.len();
    let mut room = room;
    loop {
        out.resize(start + room, 0);
        match encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(e) => {
                out.truncate(start);
                let want = needed(e)?;
                if want <= room {
                    return Err(io::Error::other("TLS encoder asked for no more room"));
                }
                room = want;
            }
        }
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.plaintext.is_empty() {
                let n = this.plaintext.len().min(buf.remaining());
                buf.put_slice(&this.plaintext[..n]);
                this.plaintext.advance(n);
                if this.plaintext.is_empty() {
                    this.plaintext = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            let before = buf.filled().len();
            let progress = this.process(Some(buf), Action::Nothing)?;
            // Records rustls wants sent (a key update, a ticket) start going out; a send
            // that would block waits for the next write or flush.
            if this.sent < this.outgoing.len()
                && let Poll::Ready(Err(e)) = this.poll_send(cx)
            {
                return Poll::Ready(Err(e));
            }
            if buf.filled().len() > before {
                return Poll::Ready(Ok(()));
            }
            if !this.plaintext.is_empty() {
                continue;
            }
            if progress == Progress::Closed || this.read_closed {
                return Poll::Ready(Ok(()));
            }
            ready!(this.poll_receive(cx))?;
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Bounded buffering: what was encrypted before goes out first.
        ready!(this.poll_send(cx))?;
        if this.write_closed {
            return Poll::Ready(Err(ErrorKind::BrokenPipe.into()));
        }
        let mut written = 0;
        match this.process(None, Action::Write(data, &mut written))? {
            Progress::Established => {}
            Progress::Closed => return Poll::Ready(Err(ErrorKind::BrokenPipe.into())),
            Progress::NeedData => return Poll::Ready(Err(ErrorKind::NotConnected.into())),
        }
        // Start sending now; what the socket does not take goes with the next write or
        // the flush.
        if let Poll::Ready(Err(e)) = this.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_closed {
            this.write_closed = true;
            // A connection that is already closed just ends.
            let _ = this.process(None, Action::Close);
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn configs(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (Arc<ServerConfig>, Arc<rustls::ClientConfig>) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = CertificateDer::from(ck.cert.der().to_vec());
        let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        (Arc::new(server), Arc::new(client))
    }

    /// A connected pair: our server stream and a tokio-rustls client.
    async fn pair(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (TlsStream, tokio_rustls::client::TlsStream<TcpStream>) {
        let (server_cfg, client_cfg) = configs(versions);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            tokio_rustls::TlsConnector::from(client_cfg)
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap()
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let server = TlsStream::accept(tcp, server_cfg).await.unwrap();
        (server, client.await.unwrap())
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn data_crosses_both_ways_in_both_tls_versions_and_alpn_is_agreed() {
        for versions in [
            &[&rustls::version::TLS13][..],
            &[&rustls::version::TLS12][..],
        ] {
            let (mut server, mut client) = pair(versions).await;
            assert_eq!(server.alpn_protocol(), Some(&b"http/1.1"[..]));
            let request = pattern(70_000);
            let sent = request.clone();
            let writer = tokio::spawn(async move {
                client.write_all(&sent).await.unwrap();
                client.flush().await.unwrap();
                let mut answer = vec![0u8; 300_000];
                client.read_exact(&mut answer).await.unwrap();
                (client, answer)
            });
            let mut got = vec![0u8; request.len()];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(got, request);
            let answer = pattern(300_000);
            server.write_all(&answer).await.unwrap();
            server.flush().await.unwrap();
            let (_client, received) = writer.await.unwrap();
            assert_eq!(received, answer);
        }
    }

    #[tokio::test]
    async fn a_reader_with_a_tiny_buffer_gets_every_byte_in_order() {
        let (mut server, mut client) = pair(&[&rustls::version::TLS13]).await;
        let message = pattern(40_000);
        client.write_all(&message).await.unwrap();
        client.flush().await.unwrap();
        let mut got = Vec::new();
        let mut byte = [0u8; 7];
        while got.len() < message.len() {
            let n = server.read(&mut byte).await.unwrap();
            assert!(n > 0, "early end of stream");
            got.extend_from_slice(&byte[..n]);
        }
        assert_eq!(got, message);
    }

    #[tokio::test]
    async fn a_waiting_connection_holds_no_buffers() {
        let (mut server, mut client) = pair(&[&rustls::version::TLS13]).await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        client.flush().await.unwrap();
        let mut got = [0u8; 18];
        server.read_exact(&mut got).await.unwrap();
        server
            .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
        server.flush().await.unwrap();
        // Wait for a next request that does not come yet.
        let mut more = [0u8; 1];
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), server.read(&mut more))
                .await;
        assert!(waited.is_err(), "nothing was sent");
        assert_eq!(server.incoming.capacity(), 0, "receive buffer kept");
        assert_eq!(server.plaintext.capacity(), 0, "plaintext buffer kept");
        assert_eq!(server.outgoing.capacity(), 0, "send buffer kept");
        // And it still works afterwards.
        client.write_all(b"again").await.unwrap();
        client.flush().await.unwrap();
        let mut again = [0u8; 5];
        server.read_exact(&mut again).await.unwrap();
        assert_eq!(&again, b"again");
    }

    #[tokio::test]
    async fn close_notify_ends_the_stream_cleanly_both_ways() {
        let (mut server, mut client) = pair(&[&rustls::version::TLS13]).await;
        client.shutdown().await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            server.read(&mut buf).await.unwrap(),
            0,
            "peer's close_notify is the end"
        );
        server.write_all(b"bye").await.unwrap();
        server.shutdown().await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(
            rest, b"bye",
            "our close_notify ends the client's stream without an error"
        );
    }

    #[tokio::test]
    async fn a_client_that_does_not_speak_tls_is_refused() {
        let (server_cfg, _) = configs(&[&rustls::version::TLS13]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut sink = Vec::new();
            let _ = tcp.read_to_end(&mut sink).await;
        });
        let (tcp, _) = listener.accept().await.unwrap();
        assert!(TlsStream::accept(tcp, server_cfg).await.is_err());
        client.await.unwrap();
    }
}
