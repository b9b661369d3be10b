// A fake of the providers' model APIs for .ci/agent-clis: answers one
// chat turn the way Anthropic (/v1/messages), OpenAI (/v1/chat/completions,
// /v1/responses) and Gemini (…:generateContent) do, and logs which key each
// request carried, so the script can see the key task-env issued arrive.
//
// Usage: node fake-llm.mjs <log-file>   prints "listening <port>" once ready.
// Each log line is JSON: {"method", "path", "key"} where key is the
// x-api-key, the Bearer token, x-goog-api-key or ?key= value, whichever came.
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';

const log = process.argv[2];
const REPLY = 'pong from the fake provider';

function keyOf(req, url) {
  const auth = req.headers.authorization || '';
  if (req.headers['x-api-key']) return req.headers['x-api-key'];
  if (auth.startsWith('Bearer ')) return auth.slice(7);
  if (req.headers['x-goog-api-key']) return req.headers['x-goog-api-key'];
  return url.searchParams.get('key') || '';
}

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
    created: Math.floor(Date.now() / 1000),
    model: body.model || 'gpt-fake',
    choices: [{ index: 0, message: { role: 'assistant', content: REPLY }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 1, completion_tokens: 5, total_tokens: 6 },
  };
}

function gemini() {
  return {
    candidates: [{ content: { role: 'model', parts: [{ text: REPLY }] }, finishReason: 'STOP', index: 0 }],
    usageMetadata: { promptTokenCount: 1, candidatesTokenCount: 5, totalTokenCount: 6 },
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
  const base = { id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model: body.model || 'gpt-fake' };
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
    created_at: Math.floor(Date.now() / 1000),
    status: 'completed',
    model: body.model || 'gpt-fake',
    output: [{ id: 'msg_fake', type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: REPLY, annotations: [] }] }],
    usage: { input_tokens: 1, output_tokens: 5, total_tokens: 6 },
  };
}

const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://fake');
  let raw = '';
  req.on('data', (c) => (raw += c));
  req.on('end', () => {
    appendFileSync(log, JSON.stringify({ method: req.method, path: url.pathname, key: keyOf(req, url) }) + '\n');
    let body = {};
    try {
      body = raw ? JSON.parse(raw) : {};
    } catch {
      // not JSON: answered below as an unknown request
    }
    const json = (status, value) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    const p = url.pathname;
    if (req.method === 'POST' && p.endsWith('/messages')) return body.stream ? anthropicStream(res, body) : json(200, anthropic(body));
    if (req.method === 'POST' && p.endsWith('/chat/completions')) return body.stream ? openaiStream(res, body) : json(200, openaiChat(body));
    if (req.method === 'POST' && p.endsWith('/responses')) return json(200, openaiResponses(body));
    if (req.method === 'POST' && /:(generateContent|streamGenerateContent)$/.test(p)) {
      if (p.endsWith(':streamGenerateContent')) return sse(res, [[null, gemini()]]);
      return json(200, gemini());
    }
    if (req.method === 'GET' && p.endsWith('/models')) return json(200, { object: 'list', data: [], models: [] });
    json(404, { error: { message: `the fake provider does not serve ${req.method} ${p}` } });
  });
});
server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
