//! A switch on each TCP connection the server accepts (`connections.rs` wraps them), to cut it
//! from outside: how a WebSocket whose client does not keep up is closed (see `overflow`).
//!
//! engineioxide has no way to close one socket's transport from outside, and its WebSocket
//! writer waits for ever on a peer that stopped reading: a cut connection fails its pending and
//! later reads and writes at once, so both of the transport's tasks end, the session closes, and
//! the client sees its connection drop and reconnects.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Cuts one connection: what its reads and writes wait on is woken, and they fail from then on.
#[derive(Debug, Default)]
pub struct Switch {
    cut: AtomicBool,
    /// The tasks waiting to read and to write.
    waiting: Mutex<[Option<Waker>; 2]>,
}

const READ: usize = 0;
const WRITE: usize = 1;

impl Switch {
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        let waiting =
            std::mem::take(&mut *self.waiting.lock().unwrap_or_else(PoisonError::into_inner));
        for waker in waiting.into_iter().flatten() {
            waker.wake();
        }
    }

    fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }

    /// Records who waits on `side`; true if the connection was cut meanwhile (then nobody will
    /// wake it, and the caller fails instead of waiting).
    fn wait(&self, side: usize, waker: &Waker) -> bool {
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            match &mut waiting[side] {
                Some(known) if known.will_wake(waker) => {}
                slot => *slot = Some(waker.clone()),
            }
        }
        self.is_cut()
    }
}

/// The error a cut connection's reads and writes fail with.
fn cut_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection cut by the server",
    )
}

/// A connection that its `Switch` can cut.
pub struct Cuttable<T> {
    io: T,
    switch: Arc<Switch>,
}

/// `io`, which the returned `Connection` can cut.
pub fn cuttable<T>(io: T) -> (Cuttable<T>, Connection) {
    let switch = Arc::new(Switch::default());
    let connection = Connection(switch.clone());
    (Cuttable { io, switch }, connection)
}

impl<T> Cuttable<T> {
    /// Passes `result` on, or waits on `side` when it is pending, or fails if cut meanwhile.
    fn pending<R>(
        &self,
        side: usize,
        cx: &Context<'_>,
        result: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match result {
            Poll::Pending if self.switch.wait(side, cx.waker()) => Poll::Ready(Err(cut_error())),
            other => other,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Cuttable<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.switch.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        this.pending(READ, cx, result)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Cuttable<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.switch.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.pending(WRITE, cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.switch.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.pending(WRITE, cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.switch.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        let result = Pin::new(&mut this.io).poll_flush(cx);
        this.pending(WRITE, cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A cut connection is shut down too: the socket closes when it is dropped.
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_shutdown(cx);
        this.pending(WRITE, cx, result)
    }
}

/// The connection a request came on, to cut it.
#[derive(Debug, Clone)]
pub struct Connection(Arc<Switch>);

impl Connection {
    pub fn cut(&self) {
        self.0.cut();
    }

    /// A reference that does not keep the switch of a closed connection.
    pub fn downgrade(&self) -> Weak<Switch> {
        Arc::downgrade(&self.0)
    }
}

impl From<Arc<Switch>> for Connection {
    fn from(switch: Arc<Switch>) -> Self {
        Connection(switch)
    }
}
