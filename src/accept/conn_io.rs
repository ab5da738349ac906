//! The byte stream under one connection as hyper sees it: bytes the gateway already
//! read (to tell HTTP/2 from HTTP/1, or while a connection was parked) are replayed
//! first; write stalls are recorded; and a shutdown while parking leaves the socket
//! open, because the connection lives on without hyper's state.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::activity::Activity;

/// A connection's stream with read-ahead bytes in front of it.
pub struct ConnIo<S> {
    prefix: Bytes,
    inner: S,
    activity: Arc<Activity>,
}

impl<S> ConnIo<S> {
    pub fn new(prefix: Bytes, inner: S, activity: Arc<Activity>) -> Self {
        Self {
            prefix,
            inner,
            activity,
        }
    }

    /// The stream back, with whatever of the read-ahead bytes was not consumed.
    pub fn into_parts(self) -> (Bytes, S) {
        (self.prefix, self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ConnIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ConnIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.activity.note_write(r.is_pending());
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.activity.note_write(r.is_pending());
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.activity.note_write(r.is_pending());
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.activity.parking() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Reads whatever is available, at most `max` bytes, without keeping a buffer across
/// the wait: a connection waiting here costs no buffer memory. An empty answer is EOF.
pub async fn read_some<S: AsyncRead + Unpin>(io: &mut S, max: usize) -> io::Result<Bytes> {
    std::future::poll_fn(|cx| {
        let mut space = [0u8; 64];
        let mut buf = ReadBuf::new(&mut space[..max.min(64)]);
        ready!(Pin::new(&mut *io).poll_read(cx, &mut buf))?;
        Poll::Ready(Ok(Bytes::copy_from_slice(buf.filled())))
    })
    .await
}

/// `a` followed by `b`, copying only when both have bytes.
pub fn join(a: Bytes, b: Bytes) -> Bytes {
    if a.is_empty() {
        return b;
    }
    if b.is_empty() {
        return a;
    }
    let mut both = BytesMut::with_capacity(a.len() + b.len());
    both.extend_from_slice(&a);
    both.extend_from_slice(&b);
    both.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn read_ahead_bytes_come_first_and_shutdown_while_parking_keeps_the_stream() {
        let (client, server) = tokio::io::duplex(64);
        let activity = Arc::new(Activity::default());
        let mut io = ConnIo::new(Bytes::from_static(b"GE"), server, activity.clone());
        let mut client = client;
        client.write_all(b"T /").await.unwrap();
        let mut got = [0u8; 5];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"GET /");
        activity.set_parking(true);
        io.shutdown().await.unwrap();
        let (rest, mut server) = io.into_parts();
        assert!(rest.is_empty());
        server.write_all(b"still open").await.unwrap();
        let mut back = [0u8; 10];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"still open");
    }

    #[tokio::test]
    async fn read_some_reads_at_most_max_and_reports_eof_as_empty() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"PRI * HTTP/2.0").await.unwrap();
        let first = read_some(&mut server, 3).await.unwrap();
        assert_eq!(&first[..], b"PRI");
        drop(client);
        let rest = read_some(&mut server, 64).await.unwrap();
        assert_eq!(&rest[..], b" * HTTP/2.0");
        assert!(read_some(&mut server, 64).await.unwrap().is_empty());
        assert_eq!(&join(first, rest)[..], b"PRI * HTTP/2.0");
    }
}
