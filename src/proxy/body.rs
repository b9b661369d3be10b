//! Bodies on their way through: counted, metered for token usage, cut at
//! the exchange's deadline, and passed on frame by frame (an SSE event
//! reaches the task as soon as the provider sends it). When an answer's
//! body ends (or the task goes away) its [`Record`] writes the request's
//! log line and adds its usage.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::usage::{Ledger, Meter};
use super::{BoxError, Held};
use crate::domain::Provider;
use crate::store::Usage;

/// A body whose data bytes are added to `count`.
pub(crate) struct Counted<B> {
    pub inner: B,
    pub count: Arc<AtomicU64>,
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One proxied exchange, written to the log and the ledger when dropped.
pub(crate) struct Record {
    pub ledger: Ledger,
    pub grant_key: String,
    pub task_id: String,
    pub provider: Provider,
    pub host: String,
    /// Without the query.
    pub path: String,
    pub status: u16,
    pub started: Instant,
    pub sent: Arc<AtomicU64>,
    pub received: u64,
    pub meter: Meter,
    /// The slot of the task's requests in flight, freed with the record.
    pub _in_flight: Option<Held>,
}

impl Drop for Record {
    fn drop(&mut self) {
        let tokens = self.meter.finish();
        let sent = self.sent.load(Ordering::Relaxed);
        let provider = self.provider.as_str();
        crate::metrics::proxy_bytes("sent", sent);
        crate::metrics::proxy_bytes("received", self.received);
        crate::metrics::proxy_tokens(provider, "input", tokens.input);
        crate::metrics::proxy_tokens(provider, "output", tokens.output);
        self.ledger.add(
            &self.grant_key,
            Usage {
                requests: 1,
                bytes_sent: sent,
                bytes_received: self.received,
                input_tokens: tokens.input,
                output_tokens: tokens.output,
            },
        );
        tracing::info!(
            task = %self.task_id,
            provider,
            host = %self.host,
            path = %self.path,
            status = self.status,
            bytes_sent = sent,
            bytes_received = self.received,
            took_ms = self.started.elapsed().as_millis() as u64,
            "proxied"
        );
    }
}

/// The provider's answer on its way to the task.
pub(crate) struct Metered<B> {
    pub inner: B,
    pub record: Record,
    pub deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err("the exchange took longer than the proxy's request timeout".into())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.record.received += data.len() as u64;
                    this.record.meter.feed(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            other => other.map(|_| None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
