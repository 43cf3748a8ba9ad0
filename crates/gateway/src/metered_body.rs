//! A response body that counts the bytes it passes to the client and reports
//! the total once, when it ends or is dropped (a client that hangs up midway
//! is charged for what it received).

use crate::{BoxError, ProxyBody};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Called once with the number of body bytes sent.
pub type OnDone = Box<dyn FnOnce(u64) + Send + Sync>;

/// Counts data frames of `inner`.
pub struct MeteredBody {
    inner: ProxyBody,
    bytes: u64,
    on_done: Option<OnDone>,
}

impl MeteredBody {
    /// Wraps `inner`; `on_done` gets the byte count at the end.
    pub fn new(inner: ProxyBody, on_done: OnDone) -> Self {
        MeteredBody {
            inner,
            bytes: 0,
            on_done: Some(on_done),
        }
    }

    fn finish(&mut self) {
        if let Some(done) = self.on_done.take() {
            done(self.bytes);
        }
    }
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => self.finish(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        self.finish();
    }
}
