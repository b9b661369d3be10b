// A fake of the providers' APIs for .ci/agent-clis: answers one chat turn the
// way each agent CLI asks for it, and logs which credential each request
// carried, so the script can see the credential arrive (task-env's key with
// files delivery, the REAL seeded one through the egress proxy).
//
//   Anthropic  POST /v1/messages (JSON or SSE: message_start with usage, a text
//              delta, message_delta with usage, message_stop); Claude Code's
//              side calls (/api/claude_code/settings, policy_limits, …) get {}.
//   OpenAI     POST /v1/responses and /backend-api/codex/responses (SSE:
//              response.created, output_text deltas, response.completed with
//              usage; ChatGPT bodies may be zstd, which is not read); a
//              WebSocket upgrade (Codex tries one on GET /v1/responses first)
//              is refused with 426, so Codex falls back to HTTP;
//              /backend-api/codex/models, /backend-api/wham/*; /v1/chat/completions.
//   Gemini     POST /v1beta/models/…:generateContent / :streamGenerateContent?alt=sse
//              with usageMetadata.
//   Copilot    GET /copilot_internal/user (announcing the Copilot API host:
//              FAKE_COPILOT_API, default this server's own origin), /models,
//              POST /chat/completions (SSE).
//   Token endpoints: POST /oauth/token, /v1/oauth/token, /token answer a fresh
//              (fake) token set, so a refresh that reaches the fake is logged.
//
// Usage: node fake-llm.mjs <log-file>   prints "listening <port>" once ready.
// Each log line is JSON: {"method", "host", "path", "key"} where key is the
// x-api-key, the Bearer token, x-goog-api-key, ?key=, or a refresh_token in a
// token request's body, whichever came first; a token request's line also has
// "issued": the access, refresh and id tokens it answered.
//
// With FAKE_TLS_CERT and FAKE_TLS_KEY (PEM files), the same port is also a
// CONNECT proxy that terminates TLS with that certificate and serves the
// request itself: a stand-in for the egress proxy, so CLIs whose base URL
// cannot be overridden (Copilot, Codex's ChatGPT login) can be run against the
// fake. It forwards nothing anywhere.
import { randomBytes } from 'node:crypto';
import { appendFileSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { TLSSocket, createSecureContext } from 'node:tls';

const log = process.argv[2];
const REPLY = 'pong from the fake provider';
const MAX_BODY = 4 << 20;

function keyOf(req, url, raw) {
  const auth = req.headers.authorization || '';
  if (req.headers['x-api-key']) return req.headers['x-api-key'];
  if (auth.startsWith('Bearer ')) return auth.slice(7);
  if (auth.startsWith('token ')) return auth.slice(6);
  if (req.headers['x-goog-api-key']) return req.headers['x-goog-api-key'];
  if (url.searchParams.get('key')) return url.searchParams.get('key');
  if (/\/token$/.test(url.pathname)) {
    try {
      return JSON.parse(raw).refresh_token || '';
    } catch {
      return new URLSearchParams(raw).get('refresh_token') || '';
    }
  }
  return '';
}

const now = () => Math.floor(Date.now() / 1000);

function anthropic(body) {
  return {
    id: 'msg_fake',
    type: 'message',
    role: 'assistant',
    model: body.model || 'claude-fake',
    content: [{ type: 'text', text: REPLY }],
    stop_reason: 'end_turn',
    stop_sequence: null,
    usage: { input_tokens: 1, output_tokens: 5 },
  };
}

function openaiChat(body) {
  return {
    id: 'chatcmpl-fake',
    object: 'chat.completion',
    created: now(),
    model: body.model || 'gpt-fake',
    choices: [{ index: 0, message: { role: 'assistant', content: REPLY }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 1, completion_tokens: 5, total_tokens: 6 },
  };
}

// A value of a JSON schema's shape (Gemini CLI's model router asks for JSON first).
function ofSchema(schema) {
  const type = String(schema?.type || 'STRING').toUpperCase();
  if (type === 'OBJECT') return Object.fromEntries(Object.entries(schema.properties || {}).map(([k, v]) => [k, ofSchema(v)]));
  if (type === 'ARRAY') return [];
  if (type === 'INTEGER' || type === 'NUMBER') return 1;
  if (type === 'BOOLEAN') return false;
  return schema?.enum?.[0] ?? 'fake';
}

function gemini(body) {
  const config = body.generationConfig || {};
  const schema = config.responseJsonSchema || config.responseSchema;
  const text = config.responseMimeType === 'application/json' ? JSON.stringify(ofSchema(schema || { type: 'OBJECT' })) : REPLY;
  return {
    candidates: [{ content: { role: 'model', parts: [{ text }] }, finishReason: 'STOP', index: 0 }],
    usageMetadata: { promptTokenCount: 1, candidatesTokenCount: 5, totalTokenCount: 6 },
    modelVersion: 'gemini-fake',
  };
}

// Server-sent events for a client that asked to stream.
function sse(res, events) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  for (const [event, data] of events) {
    if (event) res.write(`event: ${event}\n`);
    res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
  }
  res.end();
}

function anthropicStream(res, body) {
  const msg = { ...anthropic(body), content: [], stop_reason: null, usage: { input_tokens: 1, output_tokens: 0 } };
  sse(res, [
    ['message_start', { type: 'message_start', message: msg }],
    ['content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }],
    ['content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: REPLY } }],
    ['content_block_stop', { type: 'content_block_stop', index: 0 }],
    ['message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 5 } }],
    ['message_stop', { type: 'message_stop' }],
  ]);
}

function openaiStream(res, body) {
  const base = { id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: now(), model: body.model || 'gpt-fake' };
  sse(res, [
    [null, { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: REPLY }, finish_reason: null }] }],
    [null, { ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 5, total_tokens: 6 } }],
    [null, '[DONE]'],
  ]);
}

function openaiResponses(body) {
  return {
    id: 'resp_fake',
    object: 'response',
    created_at: now(),
    status: 'completed',
    model: body.model || 'gpt-fake',
    output: [{ id: 'msg_fake', type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: REPLY, annotations: [] }] }],
    usage: {
      input_tokens: 1,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 5,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 6,
    },
  };
}

function openaiResponsesStream(res, body) {
  const done = openaiResponses(body);
  const item = done.output[0];
  const started = { ...done, status: 'in_progress', output: [], usage: null };
  let seq = 0;
  const ev = (type, rest) => [type, { type, sequence_number: seq++, ...rest }];
  sse(res, [
    ev('response.created', { response: started }),
    ev('response.in_progress', { response: started }),
    ev('response.output_item.added', { output_index: 0, item: { ...item, status: 'in_progress', content: [] } }),
    ev('response.content_part.added', { item_id: item.id, output_index: 0, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } }),
    ev('response.output_text.delta', { item_id: item.id, output_index: 0, content_index: 0, delta: REPLY }),
    ev('response.output_text.done', { item_id: item.id, output_index: 0, content_index: 0, text: REPLY }),
    ev('response.content_part.done', { item_id: item.id, output_index: 0, content_index: 0, part: item.content[0] }),
    ev('response.output_item.done', { output_index: 0, item }),
    ev('response.completed', { response: done }),
  ]);
}

// A token set for a refresh that reaches the fake: the vault's own real
// refresh (its issuer pointed here), or a CLI's when no proxy answers it.
// ChatGPT tokens carry FAKE_CHATGPT_ACCOUNT_ID (Codex routes by it). The
// access token is logged as "issued": it is then a real credential too.
// How long they last: FAKE_TOKEN_TTL seconds (default 3600), changed by
// `POST /__fake/ttl?seconds=N` (the test script's control, on loopback): a
// login the vault refreshes when issuing a task can so expire during the task.
let ttl = Number(process.env.FAKE_TOKEN_TTL || 3600);
function tokens() {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const auth = { chatgpt_account_id: process.env.FAKE_CHATGPT_ACCOUNT_ID || 'fake-account', chatgpt_plan_type: 'plus' };
  const claims = { iss: 'https://auth.openai.com', exp: now() + ttl, iat: now(), 'https://api.openai.com/auth': auth };
  const jwt = (extra) => `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...claims, ...extra })}.${randomBytes(24).toString('base64url')}`;
  return {
    access_token: jwt({ aud: ['https://api.openai.com/v1'] }),
    id_token: jwt({ aud: ['app_EMoamEEZ73f0CkXaXp7hrann'], email: 'cli@example.com' }),
    refresh_token: `rt_fake_${randomBytes(24).toString('base64url')}`,
    token_type: 'Bearer',
    expires_in: ttl,
    scope: 'openid profile email offline_access',
  };
}

function copilotModel(id) {
  return {
    id,
    name: id,
    object: 'model',
    vendor: 'fake',
    version: id,
    preview: false,
    model_picker_enabled: true,
    is_chat_default: true,
    is_chat_fallback: true,
    policy: { state: 'enabled', terms: '' },
    supported_endpoints: ['/chat/completions'],
    model_picker_category: 'versatile',
    billing: { is_premium: false, multiplier: 0 },
    capabilities: {
      family: id,
      type: 'chat',
      object: 'model_capabilities',
      tokenizer: 'o200k_base',
      limits: { max_context_window_tokens: 128000, max_output_tokens: 16384, max_prompt_tokens: 112000 },
      supports: { streaming: true, tool_calls: true, parallel_tool_calls: true },
    },
  };
}

function handle(req, res, raw, tls) {
  const url = new URL(req.url, 'http://fake');
  const host = req.headers.host || '';
  const p = url.pathname;
  const entry = { method: req.method, host, path: p, key: keyOf(req, url, raw) };
  const logged = (extra) => appendFileSync(log, JSON.stringify({ ...entry, ...extra }) + '\n');
  const tokenRequest = req.method === 'POST' && /^\/(v1\/oauth\/token|oauth\/token|token)$/.test(p);
  if (!tokenRequest) logged({});
  if (req.method === 'POST' && p === '/__fake/ttl') {
    ttl = Math.max(1, Math.min(86400, Number(url.searchParams.get('seconds')) || 3600));
    res.writeHead(204);
    return res.end();
  }
  let body = {};
  try {
    body = raw ? JSON.parse(raw) : {};
  } catch {
    // not JSON (a form, or a zstd body from Codex): nothing in it is needed
  }
  const json = (status, value) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(value));
  };
  const post = req.method === 'POST';
  const get = req.method === 'GET';
  // A model request without a credential is refused, as the providers do
  // (so a CLI that found no credential cannot pass by the fake's answer).
  const modelCall = post && (/\/(messages|responses|chat\/completions)$/.test(p) || /:(generateContent|streamGenerateContent)$/.test(p));
  if (modelCall && !entry.key) return json(401, { error: { type: 'authentication_error', message: 'no credential in the request' } });
  // Anthropic
  if (post && p.endsWith('/messages') && !p.includes('chat')) return body.stream ? anthropicStream(res, body) : json(200, anthropic(body));
  if (post && p.endsWith('/messages/count_tokens')) return json(200, { input_tokens: 1 });
  // Claude Code's start-up calls: an answer of the wrong shape is retried for seconds.
  if (p === '/api/claude_code/policy_limits') return json(200, { restrictions: {} });
  if (p === '/api/claude_code/settings') return json(200, { uuid: '00000000-0000-4000-8000-000000000000', checksum: 'fake', settings: {} });
  if (p.startsWith('/api/')) return json(200, {}); // bootstrap, …
  // Token endpoints (Anthropic, OpenAI, Google)
  if (tokenRequest) {
    const set = tokens();
    logged({ issued: [set.access_token, set.refresh_token, set.id_token] });
    return json(200, set);
  }
  // OpenAI and ChatGPT
  if (post && p.endsWith('/responses')) return body.stream === false ? json(200, openaiResponses(body)) : openaiResponsesStream(res, body);
  if (post && p.endsWith('/chat/completions')) return body.stream ? openaiStream(res, body) : json(200, openaiChat(body));
  if (get && p.endsWith('/codex/models')) return json(200, { models: [] });
  if (get && p.endsWith('/wham/accounts/check')) {
    // Codex's workspace routing: the account it asks for (chatgpt-account-id) must be listed.
    const id = String(req.headers['chatgpt-account-id'] || 'fake-account');
    const origin = `https://${host || 'chatgpt.com'}`;
    const account = { account_id: id, id, name: null, structure: 'personal', plan_type: 'plus', is_default: true, workspace_backend_origin: origin, account_routing_override: 'NO_CONSTRAINT' };
    return json(200, { accounts: [account], account_ordering: [id] });
  }
  if (p.includes('/wham/')) return json(200, {});
  // Gemini
  if (post && /:(generateContent|streamGenerateContent)$/.test(p)) {
    if (p.endsWith(':streamGenerateContent')) return sse(res, [[null, gemini(body)]]);
    return json(200, gemini(body));
  }
  if (post && p.endsWith(':countTokens')) return json(200, { totalTokens: 1 });
  // GitHub and Copilot
  if (get && p === '/copilot_internal/user') {
    const api = process.env.FAKE_COPILOT_API || `${tls ? 'https' : 'http'}://${host}`;
    return json(200, {
      login: 'fake-user',
      copilot_plan: 'individual',
      chat_enabled: true,
      access_type_sku: 'free_limited_copilot',
      analytics_tracking_id: 'fake',
      endpoints: { api, proxy: api, telemetry: api, 'origin-tracker': api },
    });
  }
  if (get && p === '/user') return json(200, { login: 'fake-user', id: 1, type: 'User' });
  if (p.startsWith('/copilot_internal/')) return json(200, {});
  if (get && p.endsWith('/models')) {
    if (host.includes('githubcopilot') || url.searchParams.has('copilot') || req.headers['copilot-integration-id'])
      return json(200, { object: 'list', data: ['claude-sonnet-4.6', 'claude-haiku-4.5', 'gpt-5.4', 'gpt-4.1'].map(copilotModel) });
    return json(200, { object: 'list', data: [], models: [] });
  }
  if (get && p === '/') return json(200, {});
  json(404, { error: { message: `the fake provider does not serve ${req.method} ${p}` } });
}

const server = createServer((req, res) => {
  let raw = '';
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size <= MAX_BODY) raw += c.toString('latin1');
  });
  req.on('end', () => handle(req, res, Buffer.from(raw, 'latin1').toString('utf8'), req.socket instanceof TLSSocket));
});

// A WebSocket upgrade (Codex, GET /v1/responses) is refused: Codex then uses HTTP.
server.on('upgrade', (req, socket) => {
  const url = new URL(req.url, 'http://fake');
  const auth = req.headers.authorization || '';
  appendFileSync(
    log,
    JSON.stringify({ method: 'UPGRADE', host: req.headers.host || '', path: url.pathname, key: auth.startsWith('Bearer ') ? auth.slice(7) : '' }) + '\n',
  );
  socket.end('HTTP/1.1 426 Upgrade Required\r\ncontent-type: text/plain\r\ncontent-length: 27\r\nconnection: close\r\n\r\nno WebSocket: use HTTP here');
});

// The MITM stand-in (see the header).
if (process.env.FAKE_TLS_CERT && process.env.FAKE_TLS_KEY) {
  const context = createSecureContext({ cert: readFileSync(process.env.FAKE_TLS_CERT), key: readFileSync(process.env.FAKE_TLS_KEY) });
  server.on('connect', (req, socket, head) => {
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head && head.length) socket.unshift(head);
    const tls = new TLSSocket(socket, { isServer: true, secureContext: context, ALPNProtocols: ['http/1.1'] });
    tls.on('error', () => socket.destroy());
    server.emit('connection', tls);
  });
}

server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
