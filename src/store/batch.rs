//! Natural batching ("group commit"). Requests that arrive while one batch
//! is in the database wait together and go as the next batch: under load, N
//! requests cost one set of statements and one commit instead of N; a lone
//! request is a batch of one and waits for nothing.
//!
//! A request is answered only after its batch finished (committed or
//! failed), so batching never weakens durability: nothing is acknowledged
//! before it is on disk.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::error::{ApiError, ApiResult};

type Job<Req, Resp> = (Req, oneshot::Sender<ApiResult<Resp>>);

/// A queue in front of one worker task that runs whole batches.
pub(crate) struct Batcher<Req, Resp> {
    queue: mpsc::UnboundedSender<Job<Req, Resp>>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts `workers` workers. Each takes whatever is queued (up to `max`)
    /// and runs it; with two, one batch's reads overlap the other's commit.
    /// `run` returns one answer per request, in order, or `None` when the
    /// store it works for is gone, which ends the worker.
    pub(crate) fn spawn<F, Fut>(workers: usize, max: usize, run: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Vec<ApiResult<Resp>>>> + Send,
    {
        let (queue, incoming) = mpsc::unbounded_channel::<Job<Req, Resp>>();
        let incoming = Arc::new(Mutex::new(incoming));
        let run = Arc::new(run);
        for _ in 0..workers.max(1) {
            let (incoming, run) = (incoming.clone(), run.clone());
            tokio::spawn(async move {
                let mut jobs = Vec::with_capacity(max);
                loop {
                    // Only the wait for work is exclusive; batches run side by side.
                    if incoming.lock().await.recv_many(&mut jobs, max).await == 0 {
                        break;
                    }
                    if !run_batch(&*run, &mut jobs).await {
                        break;
                    }
                }
            });
        }
        Batcher { queue }
    }

    /// Queues one request and waits for its batch.
    pub(crate) async fn submit(&self, request: Req) -> ApiResult<Resp> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((request, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Runs one batch and answers its callers; false when the store is gone.
async fn run_batch<Req, Resp, F, Fut>(run: &F, jobs: &mut Vec<Job<Req, Resp>>) -> bool
where
    F: Fn(Vec<Req>) -> Fut,
    Fut: Future<Output = Option<Vec<ApiResult<Resp>>>>,
{
    // A caller that went away (client disconnected) is not worth a
    // database round trip.
    let (requests, replies): (Vec<Req>, Vec<_>) = jobs.drain(..).filter(|(_, tx)| !tx.is_closed()).unzip();
    if requests.is_empty() {
        return true;
    }
    let count = requests.len();
    // A panic fails this batch's callers (their senders drop), not every
    // later request.
    match AssertUnwindSafe(run(requests)).catch_unwind().await {
        Ok(Some(answers)) => {
            debug_assert_eq!(answers.len(), count, "a batch must answer every request");
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(answer);
            }
            true
        }
        Ok(None) => false,
        Err(_) => {
            tracing::error!(requests = count, "a database batch panicked; its requests failed");
            true
        }
    }
}

fn stopped() -> ApiError {
    ApiError::internal(anyhow::anyhow!("the database batch worker stopped before answering"))
}

/// The distinct keys of a batch, sorted: what one `IN (…)` query looks up
/// for all of its requests.
pub(crate) fn distinct<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut keys: Vec<&str> = keys.into_iter().collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Each request's answer from the rows one query read for the whole batch
/// (`answer` picks a request's share), or, when the query failed, its error
/// for every request.
pub(crate) fn answer_each<Req, Row, Resp>(
    requests: &[Req],
    rows: ApiResult<Vec<Row>>,
    answer: impl Fn(&Req, &[Row]) -> Resp,
) -> Vec<ApiResult<Resp>> {
    match rows {
        Ok(rows) => requests.iter().map(|request| Ok(answer(request, &rows))).collect(),
        Err(e) => fail_all(requests.len(), &e),
    }
}

/// Gives every request of a failed batch its own copy of the error (an
/// internal error is not `Clone`: its cause is copied as text, for the log).
pub(crate) fn fail_all<T>(count: usize, error: &ApiError) -> Vec<ApiResult<T>> {
    (0..count).map(|_| Err(copy_error(error))).collect()
}

pub(crate) fn copy_error(error: &ApiError) -> ApiError {
    match error {
        ApiError::Unauthenticated(m) => ApiError::Unauthenticated(m.clone()),
        ApiError::Forbidden(m) => ApiError::Forbidden(m.clone()),
        ApiError::NotFound(m) => ApiError::NotFound(m.clone()),
        ApiError::BadInput(m) => ApiError::BadInput(m.clone()),
        ApiError::NoCredentials(m) => ApiError::NoCredentials(m.clone()),
        ApiError::Limit(m) => ApiError::Limit(m.clone()),
        ApiError::Unavailable(m) => ApiError::Unavailable(m.clone()),
        ApiError::Internal(cause) => ApiError::internal(anyhow::anyhow!("{cause:#}")),
    }
}
