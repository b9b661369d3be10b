//! `GET /graphql/ws`: GraphQL subscriptions over WebSocket, in
//! graphql-transport-ws or the legacy graphql-ws (subscriptions-transport-ws).
//!
//! A session, in order:
//!
//! 1. `connection_init` within `ws_init_timeout`, with the token in its
//!    payload (browsers cannot set headers on a WebSocket). It is checked
//!    before the GraphQL protocol starts.
//! 2. A slot among the principal's sockets (`max_sockets_per_principal`).
//! 3. async-graphql's protocol driver (`async_graphql::http::WebSocket`),
//!    fed by [`Incoming`], which reads every client message first: it
//!    enforces the protocol's rules and the subscription limits
//!    (`crate::graphql::subscription_limits`), and ends the session with a
//!    close frame on a violation. The token is re-checked every
//!    `ws_token_recheck` meanwhile.
//! 4. The end: the session's counts are released, then the close frame is
//!    sent (or the client's close answered), then the client's side is read
//!    until it closes too (at most [`CLOSE_GRACE`]), so a client always gets
//!    a close frame, never just a dropped TCP connection.
//!
//! Close codes (the 44xx are graphql-transport-ws's; the legacy protocol
//! defines none, so it gets the same):
//!
//! | code | when |
//! |---|---|
//! | 4400 | a binary frame, a text frame that is not UTF-8, or a message that is not one of the protocol's |
//! | 4401 | the first message is not a `connection_init` with a token |
//! | 4403 | the token (`sv_` or JWT) is refused (the reason says which check failed), or during the session: revoked, expired (a JWT) or its person disabled |
//! | 4408 | no `connection_init` within `ws_init_timeout` |
//! | 4409 | a subscribe with the id of a live operation: "Subscriber for <id> already exists" |
//! | 4429 | a second `connection_init` |
//! | 1008 | the principal already has `max_sockets_per_principal` open sockets (sent instead of the ack). Policy Violation is the standard code for "refused by policy", and it is not 4429, which graphql-transport-ws reserves for a repeated init; the graphql-ws client does not retry on it. |
//! | 1013 | still waiting for `connection_init` when newer sockets pushed it out: more than 256 waiting from its address, or 1,024 overall, and at most a sixteenth and a quarter of the connection cap (the oldest waiter goes, so a client that sends its init at once always gets in) |
//! | 1009 | a message over the cap (`WS_MAX_MESSAGE`, or `max_body_bytes` if lower) |
//! | 1002 | a frame that breaks the WebSocket protocol itself |
//! | 1011 | the token could not be checked (database error) |
//! | 1000 | the client ended the session (`connection_terminate`) |
//!
//! A subscribe beyond `max_subscriptions_per_socket` or
//! `max_subscriptions_per_principal` is not a violation: it gets an `error`
//! message on its id with `extensions.code = LIMIT_EXCEEDED`, and the
//! socket stays usable.
//!
//! Limits over the socket, as over HTTP: one message is one operation, and
//! a message holds at most `min(WS_MAX_MESSAGE, max_body_bytes)` bytes, so
//! the body limit holds; there are no batches (a `subscribe` carries one
//! request, anything else is a malformed message). Document limits (size,
//! nesting, selections) are the schema's own, so they apply here unchanged.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use async_graphql::http::{
    ClientMessage, WebSocket as ProtocolDriver, WebSocketProtocols as Protocols, WsMessage, ALL_WEBSOCKET_PROTOCOLS,
};
use async_graphql::Data;
use async_graphql_poem::GraphQLProtocol;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use poem::web::websocket::{Message, WebSocket, WebSocketConfig};
use poem::web::{Data as PoemData, RemoteAddr};
use poem::{get, handler, Endpoint, EndpointExt, IntoResponse};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::graphql::subscription_limits::{Limit, RootFieldTicket, SocketSlot, SubscriptionLimits, SubscriptionPermit};
use crate::graphql::GatedSchema;
use crate::graphql::GraphqlConfig;
use crate::identity::{Authenticator, Session};

/// Per-socket read buffer: tungstenite keeps it allocated for the socket's
/// life (its default, 128 KiB, would dominate the memory of thousands of
/// idle subscribers) and zero-fills it on each read. A client sends a few
/// small messages (`connection_init`, `subscribe`); a larger one is read in
/// several passes. 4 KiB → 512 bytes: 3.3 KB less per subscriber.
const WS_READ_BUFFER: usize = 512;
/// How much outgoing data is gathered before it is written.
const WS_WRITE_BUFFER: usize = 4 * 1024;
/// The largest WebSocket message (and frame) accepted; a subscribe is a few
/// hundred bytes. Lowered to `max_body_bytes` when that is smaller.
const WS_MAX_MESSAGE: usize = 64 * 1024;
/// How long a closing session waits for the client's side to close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// A close frame's reason holds at most 123 bytes.
const MAX_CLOSE_REASON: usize = 123;

struct WsState {
    schema: GatedSchema,
    auth: Authenticator,
    limits: GraphqlConfig,
    subscriptions: std::sync::Arc<SubscriptionLimits>,
    waiters: Arc<Waiters>,
}

/// The `/graphql/ws` endpoint, with this instance's subscription counts and
/// its waiters for `connection_init`, capped at a share of the public
/// listener's `connection_cap` (see [`pending_caps`]).
pub(crate) fn endpoint(
    schema: GatedSchema,
    auth: Authenticator,
    limits: &GraphqlConfig,
    connection_cap: Option<usize>,
) -> impl Endpoint {
    let subscriptions = SubscriptionLimits::new(limits);
    let waiters = Waiters::new(connection_cap);
    get(graphql_ws).data(Arc::new(WsState { schema, auth, limits: limits.clone(), subscriptions, waiters }))
}

/// How the server ends a session.
#[derive(Debug)]
pub(crate) struct Close {
    pub(crate) code: u16,
    pub(crate) reason: String,
}

impl Close {
    fn new(code: u16, reason: impl Into<String>) -> Close {
        let mut reason = reason.into();
        if reason.len() > MAX_CLOSE_REASON {
            let mut end = MAX_CLOSE_REASON - '…'.len_utf8();
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
            reason.push('…');
        }
        Close { code, reason }
    }

    fn binary() -> Close {
        Close::new(4400, "Invalid message: send text frames (JSON), not binary")
    }

    fn message(self) -> Message {
        Message::close_with(self.code, self.reason)
    }
}

/// The close for an error from the socket's stream, `None` when the
/// connection itself failed and nothing can be sent. poem hands tungstenite's
/// errors over as `io::Error::other(<its Display>)`, so the kind is read
/// from the text (tungstenite 0.27's messages).
fn close_for_read_error(error: &io::Error, max_message: usize) -> Option<Close> {
    let text = error.to_string();
    if text.starts_with("Space limit exceeded") {
        Some(Close::new(1009, format!("Message too big: at most {max_message} bytes")))
    } else if text.starts_with("UTF-8 encoding error") {
        Some(Close::new(4400, "Invalid message: a text frame must be UTF-8"))
    } else if text.starts_with("WebSocket protocol error") {
        Some(Close::new(1002, "WebSocket protocol error"))
    } else {
        None
    }
}

#[handler]
async fn graphql_ws(
    protocol: GraphQLProtocol,
    websocket: WebSocket,
    remote: &RemoteAddr,
    PoemData(state): PoemData<&Arc<WsState>>,
) -> impl IntoResponse {
    // Shared: each session holds a pointer, not its own copy of the settings.
    let state = state.clone();
    let address = remote.as_socket_addr().map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    let max_message = WS_MAX_MESSAGE.min(state.limits.max_body_bytes);
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    websocket.config(config).protocols(ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |socket| {
        // Split here: the session's state then holds the two halves (two
        // pointers), not a socket it would keep a moved-from copy of.
        let (sink, stream) = socket.split();
        crate::telemetry::websocket_session(Box::pin(session(sink, stream, address, protocol.0, state, max_message)))
    })
}

type SocketSink = futures_util::stream::SplitSink<poem::web::websocket::WebSocketStream, Message>;
type SocketStream = futures_util::stream::SplitStream<poem::web::websocket::WebSocketStream>;

async fn session(
    mut sink: SocketSink,
    mut stream: SocketStream,
    address: IpAddr,
    protocol: Protocols,
    state: Arc<WsState>,
    max_message: usize,
) {
    // Sockets that have not signed in yet belong to no principal, so no
    // per-principal limit holds them: bounds per address and overall do,
    // closing the oldest waiter (see `PendingTable`).
    let pending = PendingInit::enter(&state.waiters, address);
    // Boxed, as the other one-off steps below: a step held inline would
    // size the session's state for as long as the socket lives.
    let authenticated = tokio::select! {
        authenticated = Box::pin(authenticate(&mut stream, &state, max_message)) => authenticated,
        () = pending.evicted() => {
            Err(Close::new(1013, "Try again later: too many connections are starting; send connection_init at once"))
        }
    };
    drop(pending);
    let (principal, signed_in) = match authenticated {
        Ok(Some(checked)) => checked,
        Ok(None) => return finish(&mut sink, &mut stream, None).await,
        Err(close) => return finish(&mut sink, &mut stream, Some(close)).await,
    };
    crate::telemetry::note_socket_principal(&principal, protocol.sec_websocket_protocol());
    let slot = match state.subscriptions.open_socket(&principal) {
        Ok(slot) => slot,
        Err(limit) => return finish(&mut sink, &mut stream, Some(Close::new(1008, limit.message()))).await,
    };

    let shared = Mutex::new(Shared::default());
    let incoming = Incoming {
        stream: &mut stream,
        shared: &shared,
        slot: &slot,
        protocol,
        max_message,
        init_pending: true,
        done: false,
    };
    // The driver is built inside the `select!`: a future held in a local
    // first and then moved keeps its slot in this function's state too.
    let ended = tokio::select! {
        () = drive(driver(&state, incoming, protocol, principal.clone()), &mut sink, &shared) => None,
        why = state.auth.session_ended(&signed_in, &principal, state.limits.ws_token_recheck) => {
            Some(Close::new(4403, why))
        }
        () = crate::shutdown::triggered() => Some(Close::new(1001, "Going away: the server is shutting down")),
    };
    // The driver and every operation's stream are gone: release the
    // session's permits and its socket slot before the client hears the end.
    let Shared { close, live, .. } = shared.into_inner().unwrap_or_else(PoisonError::into_inner);
    drop(live);
    drop(slot);
    let close = ended.or(close);
    finish(&mut sink, &mut stream, close).await;
}

/// async-graphql's protocol driver over the checked messages, the session's
/// principal in its data (as `connection_init` was already checked).
fn driver<'a, S>(
    state: &WsState,
    incoming: Incoming<'a, S>,
    protocol: Protocols,
    principal: Principal,
) -> impl Stream<Item = WsMessage> + 'a
where
    S: Stream<Item = io::Result<Message>> + Unpin,
{
    ProtocolDriver::from_message_stream(state.schema.clone(), incoming, protocol).on_connection_init(
        move |_| async move {
            let mut data = Data::default();
            data.insert(principal);
            Ok(data)
        },
    )
}

/// Reads and checks `connection_init`: the principal and how its sign-in
/// stays valid (an `sv_` token's hash, or a JWT's expiry),
/// `None` when the client went away first, or the close to answer with.
async fn authenticate<S>(
    stream: &mut S,
    state: &WsState,
    max_message: usize,
) -> Result<Option<(Principal, Session)>, Close>
where
    S: Stream<Item = io::Result<Message>> + Unpin,
{
    let first = match tokio::time::timeout(state.limits.ws_init_timeout, first_text(stream, max_message)).await {
        Ok(Ok(Some(first))) => first,
        Ok(Ok(None)) => return Ok(None),
        Ok(Err(close)) => return Err(close),
        Err(_) => return Err(Close::new(4408, "Connection initialisation timeout")),
    };
    let init: serde_json::Value = serde_json::from_str(&first).unwrap_or_default();
    let header =
        init["payload"].get("Authorization").or_else(|| init["payload"].get("authorization")).and_then(|v| v.as_str());
    let (Some("connection_init"), Some(header)) = (init["type"].as_str(), header) else {
        return Err(Close::new(
            4401,
            "Unauthorized: send connection_init with {\"Authorization\": \"Bearer <token>\"}",
        ));
    };
    match state.auth.authenticate_header(header).await {
        Ok(checked) => Ok(Some(checked)),
        Err(ApiError::Internal(e)) => {
            tracing::error!(error = format!("{e:#}"), "authenticating a WebSocket failed");
            Err(Close::new(1011, "Internal error"))
        }
        // The database could not answer (issue 21, item 13): try again later.
        Err(ApiError::Unavailable(m)) => Err(Close::new(1013, m)),
        // The refusal says which check failed (never the token).
        Err(e) => {
            let message = async_graphql::Error::from(e).message;
            Err(Close::new(4403, format!("Forbidden: {message}")))
        }
    }
}

/// The first text message, skipping pings; `None` when the socket closes.
pub(crate) async fn first_text<S>(stream: &mut S, max_message: usize) -> Result<Option<String>, Close>
where
    S: Stream<Item = io::Result<Message>> + Unpin,
{
    while let Some(message) = stream.next().await {
        match message {
            Ok(Message::Text(text)) => return Ok(Some(text)),
            Ok(Message::Binary(_)) => return Err(Close::binary()),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) => return Ok(None),
            Err(e) => return close_for_read_error(&e, max_message).map_or(Ok(None), Err),
        }
    }
    Ok(None)
}

/// Sends a close frame if the server is the one closing (1000 otherwise;
/// refused if the client closed first), flushes (which also answers the
/// client's close), then reads the client's side until it ends, for at
/// most [`CLOSE_GRACE`].
async fn finish<K, S>(sink: &mut K, stream: &mut S, close: Option<Close>)
where
    K: Sink<Message> + Unpin,
    S: Stream<Item = io::Result<Message>> + Unpin,
{
    let close = close.unwrap_or_else(|| Close::new(1000, ""));
    crate::telemetry::note_socket_close(close.code);
    let _ = sink.send(close.message()).await;
    let _ = sink.close().await;
    let _ = tokio::time::timeout(CLOSE_GRACE, async { while let Some(Ok(_)) = stream.next().await {} }).await;
}

/// Runs the protocol driver, sending what it produces and the refusals
/// [`Incoming`] queues, until the driver ends (the client closed, or a
/// violation, recorded in `shared`).
async fn drive<D, K>(driver: D, sink: &mut K, shared: &Mutex<Shared>)
where
    D: Stream<Item = WsMessage>,
    K: Sink<Message> + Unpin,
{
    futures_util::pin_mut!(driver);
    loop {
        let next = futures_util::future::poll_fn(|cx| {
            if let Some(refusal) = lock(shared).outbox.take() {
                return Poll::Ready(Some(WsMessage::Text(refusal)));
            }
            match driver.as_mut().poll_next(cx) {
                // `Incoming` returns Pending while a refusal waits: send it,
                // then it reads on.
                Poll::Pending => {
                    lock(shared).outbox.take().map_or(Poll::Pending, |r| Poll::Ready(Some(WsMessage::Text(r))))
                }
                ready => ready,
            }
        })
        .await;
        match next {
            None => return,
            Some(WsMessage::Text(text)) => {
                // The driver announces every operation that ended on the
                // server's side (stream over, or stopped by the client):
                // its id is free again and its permit released, before the
                // client can learn of it.
                if let Some(id) = completed_id(&text) {
                    lock(shared).live.remove(&id);
                }
                if sink.send(Message::Text(text)).await.is_err() {
                    return;
                }
            }
            Some(WsMessage::Close(code, reason)) => {
                lock(shared).close.get_or_insert_with(|| Close::new(code, reason));
                return;
            }
        }
    }
}

/// The id of a server `complete` message (`{"type":"complete","id":…}`,
/// the driver's serialisation, tag first), without parsing anything else.
pub(crate) fn completed_id(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Complete {
        id: String,
    }
    if !text.starts_with(r#"{"type":"complete","#) {
        return None;
    }
    serde_json::from_str::<Complete>(text).ok().map(|c| c.id)
}

/// What [`Incoming`] and [`drive`] share within one session's task.
#[derive(Default)]
pub(crate) struct Shared {
    /// Live operations by id, each holding its permit.
    pub(crate) live: HashMap<String, SubscriptionPermit>,
    /// A refusal to send; while one waits, no further message is read.
    pub(crate) outbox: Option<String>,
    /// Why the session ends, when it is the server's decision.
    pub(crate) close: Option<Close>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The client's messages, parsed once and checked before the protocol
/// driver sees them: the (already authenticated) `connection_init` first,
/// then each message, or the end of the stream on a violation (with its
/// close in [`Shared::close`]).
pub(crate) struct Incoming<'a, S> {
    pub(crate) stream: &'a mut S,
    pub(crate) shared: &'a Mutex<Shared>,
    pub(crate) slot: &'a SocketSlot,
    pub(crate) protocol: Protocols,
    pub(crate) max_message: usize,
    pub(crate) init_pending: bool,
    pub(crate) done: bool,
}

/// The longest operation id accepted (clients use short counters or UUIDs).
const MAX_ID_BYTES: usize = 128;
/// Sockets at once between the upgrade and a checked `connection_init`
/// (each lasts at most `ws_init_timeout`), over all addresses and from one
/// source address.
/// At most these, and at most a quarter (overall) and a sixteenth (per
/// address) of the edge's connection cap ([`pending_caps`]): waiters
/// are upgraded connections the edge cannot evict, so they must never fill
/// the edge before this eviction engages.
const MAX_PENDING_INIT: usize = 1024;
const MAX_PENDING_INIT_PER_ADDRESS: usize = 256;

/// (overall, per address) caps on sockets waiting for `connection_init`,
/// from the public listener's connection cap (`crate::edge::connection_caps`;
/// `None` where no edge caps connections).
fn pending_caps(connection_cap: Option<usize>) -> (usize, usize) {
    match connection_cap {
        Some(cap) => (MAX_PENDING_INIT.min(cap / 4).max(1), MAX_PENDING_INIT_PER_ADDRESS.min(cap / 16).max(1)),
        None => (MAX_PENDING_INIT, MAX_PENDING_INIT_PER_ADDRESS),
    }
}

/// Sockets waiting for `connection_init`. A new socket is always admitted:
/// over a cap, the *oldest* waiter (of its address, or overall) is closed
/// with 1013 instead. A client that sends its `connection_init` at once is
/// therefore never locked out by anonymous sockets that linger (they would
/// have to open more than the cap's worth of new sockets between its upgrade
/// and its init), and one address cannot push out the waiters of others
/// beyond its own share.
struct PendingTable {
    next: u64,
    /// By age: the address and the signal that closes the waiter.
    waiting: std::collections::BTreeMap<u64, (IpAddr, Arc<tokio::sync::Notify>)>,
    per_address: HashMap<IpAddr, usize>,
}

/// The waiters of one `/graphql/ws` endpoint (one per process) and their caps.
struct Waiters {
    table: Mutex<PendingTable>,
    overall: usize,
    per_address: usize,
}

impl Waiters {
    fn new(connection_cap: Option<usize>) -> Arc<Waiters> {
        let (overall, per_address) = pending_caps(connection_cap);
        let table = PendingTable { next: 0, waiting: Default::default(), per_address: HashMap::new() };
        Arc::new(Waiters { table: Mutex::new(table), overall, per_address })
    }
}

impl PendingTable {
    fn remove(&mut self, seq: u64) -> Option<Arc<tokio::sync::Notify>> {
        let (address, evict) = self.waiting.remove(&seq)?;
        if let Some(n) = self.per_address.get_mut(&address) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&address);
            }
        }
        Some(evict)
    }

    fn evict_oldest(&mut self, of: Option<IpAddr>) {
        let oldest = self.waiting.iter().find(|(_, (a, _))| of.is_none_or(|of| *a == of)).map(|(seq, _)| *seq);
        if let Some(evict) = oldest.and_then(|seq| self.remove(seq)) {
            evict.notify_one();
        }
    }
}

/// One socket waiting for `connection_init` until dropped; [`PendingInit::evicted`]
/// completes when a newer socket pushed it out.
struct PendingInit {
    seq: u64,
    evict: Arc<tokio::sync::Notify>,
    waiters: Arc<Waiters>,
}

impl PendingInit {
    fn enter(waiters: &Arc<Waiters>, address: IpAddr) -> PendingInit {
        let mut table = waiters.table.lock().unwrap_or_else(PoisonError::into_inner);
        if table.per_address.get(&address).copied().unwrap_or(0) >= waiters.per_address {
            table.evict_oldest(Some(address));
        }
        if table.waiting.len() >= waiters.overall {
            table.evict_oldest(None);
        }
        let seq = table.next;
        table.next += 1;
        let evict = Arc::new(tokio::sync::Notify::new());
        table.waiting.insert(seq, (address, evict.clone()));
        *table.per_address.entry(address).or_default() += 1;
        PendingInit { seq, evict, waiters: waiters.clone() }
    }

    async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Drop for PendingInit {
    fn drop(&mut self) {
        self.waiters.table.lock().unwrap_or_else(PoisonError::into_inner).remove(self.seq);
    }
}

/// What to do with one client message. (It lives on the stack for one
/// message; boxing the large variant, async-graphql's request, would cost
/// an allocation per message.)
#[allow(clippy::large_enum_variant)]
enum Verdict {
    Pass(ClientMessage),
    /// Not passed on; this text is sent on the operation's id instead.
    Refuse(String),
    Close(Close),
}

impl<S> Incoming<'_, S> {
    fn check(&self, text: &str) -> Verdict {
        // serde's message could quote the value sent: the reason does not.
        let Ok(mut message) = serde_json::from_str::<ClientMessage>(text) else {
            let protocol = self.protocol.sec_websocket_protocol();
            return Verdict::Close(Close::new(4400, format!("Invalid message: not a {protocol} message")));
        };
        let mut shared = lock(self.shared);
        match &mut message {
            ClientMessage::ConnectionInit { .. } => {
                return Verdict::Close(Close::new(4429, "Too many initialisation requests"));
            }
            ClientMessage::Start { id, payload } => {
                if id.len() > MAX_ID_BYTES {
                    // Ids are kept while their operation lives: bound them.
                    return Verdict::Close(Close::new(
                        4400,
                        format!("Invalid message: an operation id is at most {MAX_ID_BYTES} bytes"),
                    ));
                }
                if shared.live.contains_key(id.as_str()) {
                    return Verdict::Close(Close::new(4409, format!("Subscriber for {id} already exists")));
                }
                match self.slot.subscribe() {
                    Ok(permit) => {
                        crate::telemetry::note_subscription();
                        shared.live.insert(id.clone(), permit);
                        payload.data.insert(RootFieldTicket::default());
                    }
                    Err(limit) => return Verdict::Refuse(refusal(id, limit)),
                }
            }
            ClientMessage::Stop { id } => {
                shared.live.remove(id.as_str());
            }
            _ => {}
        }
        Verdict::Pass(message)
    }
}

/// An `error` message for a refused operation (both protocols have one; it
/// ends the operation, so its id stays free).
fn refusal(id: &str, limit: Limit) -> String {
    serde_json::json!({
        "type": "error",
        "id": id,
        "payload": [{ "message": limit.message(), "extensions": { "code": "LIMIT_EXCEEDED" } }],
    })
    .to_string()
}

impl<S> Stream for Incoming<'_, S>
where
    S: Stream<Item = io::Result<Message>> + Unpin,
{
    type Item = serde_json::Result<ClientMessage>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if std::mem::take(&mut this.init_pending) {
            return Poll::Ready(Some(Ok(ClientMessage::ConnectionInit { payload: None })));
        }
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if lock(this.shared).outbox.is_some() {
                // `drive` sends it as soon as the driver returns; a flood of
                // refused subscribes is read no faster than refusals leave.
                return Poll::Pending;
            }
            let verdict = match std::task::ready!(this.stream.poll_next_unpin(cx)) {
                Some(Ok(Message::Text(text))) => this.check(&text),
                Some(Ok(Message::Binary(_))) => Verdict::Close(Close::binary()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                // The client's close (its reply is flushed in `finish`, after
                // the session has released its counts), or the end.
                Some(Ok(Message::Close(_))) | None => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Some(Err(e)) => match close_for_read_error(&e, this.max_message) {
                    Some(close) => Verdict::Close(close),
                    None => {
                        this.done = true;
                        return Poll::Ready(None);
                    }
                },
            };
            match verdict {
                Verdict::Pass(message) => return Poll::Ready(Some(Ok(message))),
                Verdict::Refuse(text) => lock(this.shared).outbox = Some(text),
                Verdict::Close(close) => {
                    lock(this.shared).close.get_or_insert(close);
                    this.done = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_are_cut_to_fit_a_frame() {
        let close = Close::new(4409, format!("Subscriber for {} already exists", "é".repeat(200)));
        assert!(close.reason.len() <= MAX_CLOSE_REASON);
        assert!(close.reason.ends_with('…'));
        assert_eq!(Close::new(4429, "short").reason, "short");
    }

    #[test]
    fn completed_ids_are_read_from_complete_messages_only() {
        assert_eq!(completed_id(r#"{"type":"complete","id":"a"}"#).as_deref(), Some("a"));
        assert_eq!(completed_id(r#"{"type":"next","id":"a","payload":{}}"#), None);
    }

    #[test]
    fn read_errors_map_to_close_codes() {
        let code = |text: &str| close_for_read_error(&io::Error::other(text.to_owned()), 10).map(|c| c.code);
        assert_eq!(code("Space limit exceeded: Message too long: 11 > 10"), Some(1009));
        assert_eq!(code("UTF-8 encoding error: invalid utf-8 sequence"), Some(4400));
        assert_eq!(code("WebSocket protocol error: Reserved bits are non-zero"), Some(1002));
        assert_eq!(close_for_read_error(&io::Error::from(io::ErrorKind::ConnectionReset), 10).map(|c| c.code), None);
    }
}
