// Browser test of the Credentials app at /settings (and the explorer's
// storage), against the real server binary and fake providers.
//
//   node playground/tests/settings.mjs
//
// Environment: SESAME_BIN (default <repo>/target/debug/sesame-vault),
// CHROMIUM (default /usr/bin/chromium), ARTIFACTS (default
// playground/test-artifacts).
//
// One journey per bullet of issue 16's "Tests in a real browser":
//   api-keys        save / replace / remove an API key for each provider
//   bad-key         a bad key shows the server's message and changes nothing
//   provider-check  a key the provider refuses is not saved; Check marks a dead key, then a working one
//   claude-token    Claude setup-token
//   codex-authjson  Codex auth.json
//   copilot-classic-token  a classic ghp_ token: the server's refusal at the field
//   copilot-device  Copilot device flow to AUTHORIZED with live status; Remove revokes the token at GitHub
//   openai-denied   an OpenAI device flow DENIED, then Retry
//   anthropic-code  Anthropic code flow with a wrong code#state, a reload (resumed), then the right one
//   resume          a pending sign-in is shown again after a reload
//   gemini          an agent that takes API keys only: the catalog's note, its key inline
//   live-expiring   a badge changes live when the scheduler marks a key expiring
//   reconnect       live updates come back after the server restarts
//   admin           the admin deletes a user's credential; no request names `hint`;
//                   a burst of events costs the audit log one request
//   webhooks        the admin adds an endpoint (secret shown once), sends a test that a
//                   receiver verifies, sees it delivered; a 410 receiver shows as disabled
//   sign-out        Sign out forgets the token
//   explorer        after a reload and Forget, no secret in local/sessionStorage
// Every request goes to the server only; no uncaught error; no CSP violation.
// Screenshots of each screen at 1440 and 375 px in test-artifacts/.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const BIN = process.env.SESAME_BIN || path.join(repo, 'target', 'debug', 'sesame-vault');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.ARTIFACTS || path.join(repo, 'playground', 'test-artifacts');
const OVERALL_TIMEOUT_MS = 300_000;

const t0 = Date.now();
const log = (...args) => console.log(`[settings-test +${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...args);
class TestFailure extends Error {}
const fail = (message) => {
  throw new TestFailure(message);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const KEYS = {
  ANTHROPIC: ['sk-ant-api03-BROWSERfirstAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1111', 'sk-ant-api03-BROWSERsecondBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB2222'],
  OPENAI: ['sk-proj-BROWSERfirstAAAAAAAAAAAAAAAA3333', 'sk-proj-BROWSERsecondBBBBBBBBBBBBBBB4444'],
  GOOGLE: ['AIzaBROWSERfirstAAAAAAAAAAAAAAAAAAA5555', 'AIzaBROWSERsecondBBBBBBBBBBBBBBBBBB6666'],
  GITHUB: [
    'github_pat_11BROWSERfirstAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA7777',
    'github_pat_11BROWSERsecondBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB8888',
  ],
};
const SYSTEM_GEMINI_KEY = 'AIzaSYSTEMkeyCCCCCCCCCCCCCCCCCCCCCC9999';
const CLAUDE_TOKEN = 'sk-ant-oat01-BROWSERsetupTokenAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
const GITHUB_TOKEN = 'gho_BROWSERdeviceToken1234567890abcdef';

function b64url(text) {
  return Buffer.from(text).toString('base64url');
}
function jwt(claims) {
  return `${b64url('{"alg":"RS256","typ":"JWT"}')}.${b64url(JSON.stringify(claims))}.${b64url('signature')}`;
}
const CODEX_AUTH_JSON = JSON.stringify(
  {
    auth_mode: 'chatgpt',
    OPENAI_API_KEY: null,
    tokens: {
      id_token: jwt({ email: 'me@example.com', 'https://api.openai.com/auth': { chatgpt_account_id: 'acct-browser' } }),
      access_token: jwt({ exp: Math.floor(Date.now() / 1000) + 30 * 86400, 'https://api.openai.com/auth': { chatgpt_account_id: 'acct-browser' } }),
      refresh_token: 'rt_BROWSERrefreshToken1234567890',
      account_id: 'acct-browser',
    },
    last_refresh: new Date().toISOString(),
  },
  null,
  2,
);

// ---------------------------------------------------------------- fake providers

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (data += c));
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

/**
 * GitHub's device flow (the first flow is authorized after two pending polls,
 * later ones stay pending), OpenAI's device login (the first is denied, later
 * ones stay pending), Anthropic's token endpoint (code "good-code" only).
 */
async function startFakeProviders() {
  // `refused`: credentials the fake providers' APIs answer as dead; `checks` and `revoked` count.
  const calls = { github: 0, githubPolls: {}, openai: 0, anthropic: [], refused: new Set(), checks: [], revoked: [], llm: [] };
  let base = '';
  const server = http.createServer(async (req, res) => {
    const text = await readBody(req);
    const url = new URL(req.url, 'http://127.0.0.1');
    const json = (status, value) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    const form = () => Object.fromEntries(new URLSearchParams(text));
    const body = () => {
      try {
        return JSON.parse(text || '{}');
      } catch {
        return form();
      }
    };
    if (url.pathname === '/github/device/code') {
      calls.github += 1;
      json(200, {
        device_code: `dev-${calls.github}`,
        user_code: calls.github === 1 ? 'ABCD-1234' : `WXYZ-000${calls.github}`,
        verification_uri: `${base}/github/device`,
        expires_in: 900,
        interval: 1,
      });
    } else if (url.pathname === '/github/token') {
      const code = body().device_code;
      calls.githubPolls[code] = (calls.githubPolls[code] || 0) + 1;
      if (code === 'dev-1' && calls.githubPolls[code] > 2) json(200, { access_token: GITHUB_TOKEN, token_type: 'bearer', scope: 'read:user' });
      else json(400, { error: 'authorization_pending' });
    } else if (url.pathname === '/openai/api/accounts/deviceauth/usercode') {
      calls.openai += 1;
      json(200, { device_auth_id: `auth-${calls.openai}`, user_code: `OPEN-00${calls.openai}`, interval: '1' });
    } else if (url.pathname === '/openai/api/accounts/deviceauth/token') {
      const id = body().device_auth_id;
      if (id === 'auth-1') json(400, { error: 'access_denied' });
      else json(403, { error: 'pending' });
    } else if (url.pathname === '/anthropic/token') {
      const b = body();
      calls.anthropic.push(b.code);
      if (b.code !== 'good-code') json(400, { error: 'invalid_grant' });
      else
        json(200, {
          access_token: 'sk-ant-oat01-BROWSERfromFlowAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
          refresh_token: 'sk-ant-ort01-BROWSERrefreshAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
          expires_in: 28800,
          scope: 'user:inference user:profile',
        });
    } else if (url.pathname.startsWith('/api/')) {
      // The providers' APIs a check asks (GET) and GitHub's revocation endpoint.
      const bearer = (req.headers.authorization || '').replace(/^Bearer /, '');
      const presented = req.headers['x-api-key'] || req.headers['x-goog-api-key'] || bearer;
      if (req.method === 'POST' && url.pathname === '/api/github/credentials/revoke') {
        calls.revoked.push(...(body().credentials || []));
        json(202, {});
        return;
      }
      calls.checks.push(url.pathname);
      if (!calls.refused.has(presented)) json(200, { data: [], login: 'browser-test', copilot_plan: 'individual' });
      else if (url.pathname.startsWith('/api/google/'))
        json(400, { error: { code: 400, status: 'INVALID_ARGUMENT', details: [{ reason: 'API_KEY_INVALID' }] } });
      else if (url.pathname.startsWith('/api/github/')) json(401, { message: 'Bad credentials' });
      else json(401, { type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } });
    } else if (url.pathname.startsWith('/llm/')) {
      // The model APIs behind the egress proxy (the usage journey): answers
      // with the token usage each provider reports, and notes the key.
      calls.llm.push({ path: url.pathname, key: req.headers['x-goog-api-key'] || (req.headers.authorization || '').replace(/^Bearer /, '') });
      if (url.pathname.startsWith('/llm/google/'))
        json(200, { candidates: [{ content: { parts: [{ text: 'pong' }] } }], usageMetadata: { promptTokenCount: 1200, candidatesTokenCount: 345 } });
      else json(200, { id: 'resp_fake', output: [], usage: { input_tokens: 5400, output_tokens: 812 } });
    } else if (url.pathname === '/openai/oauth/revoke') {
      calls.revoked.push(form().token);
      json(200, {});
    } else json(404, { error: 'not_found' });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${server.address().port}`;
  return { server, base, calls };
}

// ---------------------------------------------------------------- the server

function startServer(dataDir, providers, listen = '127.0.0.1:0', firstRun = true) {
  if (!existsSync(BIN)) fail(`no server binary at ${BIN}: run cargo build first (or set SESAME_BIN)`);
  const env = {
    PATH: process.env.PATH || '/usr/bin:/bin',
    SESAME_DATA_DIR: dataDir,
    SESAME_LISTEN: listen,
    SESAME_OAUTH__GITHUB__DEVICE_AUTHORIZATION_URL: `${providers}/github/device/code`,
    SESAME_OAUTH__GITHUB__TOKEN_URL: `${providers}/github/token`,
    SESAME_OAUTH__OPENAI__ISSUER: `${providers}/openai`,
    SESAME_OAUTH__ANTHROPIC__AUTHORIZE_URL: `${providers}/anthropic/authorize`,
    SESAME_OAUTH__ANTHROPIC__TOKEN_URL: `${providers}/anthropic/token`,
    SESAME_PROVIDERS__ANTHROPIC__API_URL: `${providers}/api/anthropic`,
    SESAME_PROVIDERS__OPENAI__API_URL: `${providers}/api/openai`,
    SESAME_PROVIDERS__OPENAI__CHATGPT_URL: `${providers}/api/chatgpt`,
    SESAME_PROVIDERS__GOOGLE__API_URL: `${providers}/api/google`,
    SESAME_PROVIDERS__GITHUB__API_URL: `${providers}/api/github`,
    // No cooldown between checks of one credential: the provider-check
    // journey clicks Check twice in a row.
    SESAME_CHECKS__COOLDOWN: '0s',
    // The expiry scan every 2 s, so a badge changes within the test.
    SESAME_SCHEDULER__EXPIRY_SCAN: '*/2 * * * * *',
    // The webhooks journey's receiver is on 127.0.0.1; retries come quickly.
    SESAME_WEBHOOKS__ALLOW_PRIVATE: 'true',
    SESAME_WEBHOOKS__RETRY_MIN: '1s',
    // The egress proxy (the usage journey), its providers' APIs on the fake.
    SESAME_PROXY__LISTEN: '127.0.0.1:0',
    SESAME_PROXY__UPSTREAMS: `generativelanguage.googleapis.com=${providers}/llm/google,chatgpt.com=${providers}/llm/chatgpt`,
    GEMINI_API_KEY: SYSTEM_GEMINI_KEY,
  };
  const child = spawn(BIN, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = [];
  const state = { child, output };
  state.ready = new Promise((resolve, reject) => {
    let buffered = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        output.push(`stdout: ${line}`);
        const token = line.match(/^Admin token \(shown once, keep it safe\): (sv_\S+)/);
        if (token) state.adminToken = token[1];
        const listening = line.match(/^sesame-vault listening on (http:\/\/127\.0\.0\.1:\d+)/);
        if (listening) state.baseUrl = listening[1];
        const proxy = line.match(/^sesame-vault egress proxy on (http:\/\/\S+)/);
        if (proxy) state.proxyUrl = proxy[1];
        if (/^Credentials app: http:\/\/\S+\/settings/.test(line)) state.printedSettings = true;
        if (state.baseUrl && (state.adminToken || !firstRun) && state.printedSettings) resolve();
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => output.push(...chunk.trimEnd().split('\n').map((l) => `stderr: ${l}`)));
    child.on('error', (e) => reject(new TestFailure(`cannot start ${BIN}: ${e.message}`)));
    child.on('exit', (code, signal) => reject(new TestFailure(`the server exited (code ${code}, signal ${signal})`)));
  });
  return state;
}

/** One HTTPS request through the vault's egress proxy (CONNECT, then TLS trusting its CA). */
async function throughProxy(proxyUrl, ca, host, path, headers, body) {
  const proxy = new URL(proxyUrl);
  const connect = http.request({ host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: `${host}:443` });
  connect.end();
  const socket = await new Promise((resolve, reject) => {
    connect.on('connect', (res, sock) => (res.statusCode === 200 ? resolve(sock) : reject(new TestFailure(`CONNECT ${host}: ${res.statusCode}`))));
    connect.on('error', reject);
  });
  // HTTP/1.1 by hand on the TLS socket: one request, then the server closes.
  const secure = tls.connect({ socket, servername: host, ca });
  await new Promise((resolve, reject) => {
    secure.once('secureConnect', resolve);
    secure.once('error', reject);
  });
  const head = [`POST ${path} HTTP/1.1`, `host: ${host}`, 'content-type: application/json', `content-length: ${Buffer.byteLength(body)}`, 'connection: close'];
  for (const [name, value] of Object.entries(headers)) head.push(`${name}: ${value}`);
  secure.write(`${head.join('\r\n')}\r\n\r\n${body}`);
  let raw = '';
  secure.setEncoding('utf8');
  for await (const chunk of secure) raw += chunk;
  const status = Number(raw.split(' ', 2)[1]);
  return { status, text: raw.slice(raw.indexOf('\r\n\r\n') + 4) };
}

async function stopProcess(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await gone;
  clearTimeout(timer);
}

// ---------------------------------------------------------------- helpers

async function gql(base, token, query, variables) {
  const res = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await res.json();
  if (body.errors?.length) fail(`${query.slice(0, 60)}… failed: ${body.errors.map((e) => e.message).join('; ')}`);
  return body.data;
}

async function shoot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const size = page.viewportSize();
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(ARTIFACTS, `settings-${name}-1440.png`), fullPage: true });
  await page.setViewportSize({ width: 375, height: 812 });
  await sleep(150);
  await page.screenshot({ path: path.join(ARTIFACTS, `settings-${name}-375.png`), fullPage: true });
  // Nothing wider than the phone: no sideways scrolling at 375 px.
  const wide = await page.evaluate(() => {
    if (document.documentElement.scrollWidth <= window.innerWidth) return null;
    return [...document.querySelectorAll('body *')]
      .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5)
      .slice(0, 5)
      .map((el) => `${el.tagName.toLowerCase()}.${el.className} (${Math.round(el.getBoundingClientRect().right)}px)`);
  });
  if (wide && !name.startsWith('explorer')) fail(`${name} is wider than 375 px: ${wide.join(', ')}`);
  await page.setViewportSize(size);
  await sleep(100);
}

const report = { seen: null, serverOutput: [] };
const journeys = [];

async function journey(name, fn) {
  const started = Date.now();
  try {
    await fn();
  } catch (e) {
    e.message = `journey ${name}: ${e.message}`;
    throw e;
  }
  journeys.push(name);
  log(`journey ${name}: passed (${((Date.now() - started) / 1000).toFixed(1)}s)`);
}

// ---------------------------------------------------------------- main

async function main() {
  const cleanup = [];
  const tmp = mkdtempSync(path.join(tmpdir(), 'sesame-settings-'));
  cleanup.push(() => rmSync(tmp, { recursive: true, force: true }));
  const seen = { requests: [], websockets: [], console: [], pageErrors: [] };
  report.seen = seen;
  try {
    const providers = await startFakeProviders();
    // Drop the server's idle keep-alive connections first: close() waits for them.
    cleanup.push(() => providers.server.closeAllConnections());
    cleanup.push(() => new Promise((r) => providers.server.close(r)));
    const server = startServer(path.join(tmp, 'data'), providers.base);
    report.server = server;
    cleanup.push(() => stopProcess(server.child));
    await Promise.race([server.ready, sleep(60_000).then(() => fail('the server did not start within 60s'))]);
    const base = server.baseUrl;
    const admin = server.adminToken;
    const serverHost = new URL(base).host;
    log(`server at ${base}; it printed the /settings URL`);

    const profile = path.join(tmp, 'chromium-profile');
    mkdirSync(profile);
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      timeout: 60_000,
      viewport: { width: 1440, height: 900 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-dev-shm-usage',
      ],
    });
    cleanup.unshift(() => context.close());
    context.setDefaultTimeout(15_000);
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
    context.on('request', (r) => seen.requests.push({ url: r.url(), body: r.postData() || '', at: Date.now() }));
    const page = context.pages()[0] || (await context.newPage());
    page.on('websocket', (ws) => {
      seen.websockets.push(ws.url());
      ws.on('framesent', (f) => seen.requests.push({ url: ws.url(), body: typeof f.payload === 'string' ? f.payload : '', at: Date.now() }));
    });
    page.on('console', (m) => seen.console.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => seen.pageErrors.push(String(e && e.stack ? e.stack : e)));
    page.on('dialog', (d) => d.dismiss());

    const row = (provider) => page.locator(`#api-key-${provider}`);
    const agentCard = (agent) => page.locator(`#agent-${agent}`);
    const myCredentials = async (token = admin) =>
      (await gql(base, token, '{ myCredentials { id kind provider agent status hint } }')).myCredentials;
    const openAgent = async (agent) => {
      await page.goto(`${base}/settings#agents`);
      const toggle = agentCard(agent).locator('button.disclosure');
      await toggle.waitFor();
      if ((await toggle.getAttribute('aria-expanded')) !== 'true') await toggle.click();
    };
    const chooseMethod = (agent, label) => agentCard(agent).locator('fieldset.segmented label', { hasText: label }).first().click();

    // ---- sign in
    await journey('sign-in', async () => {
      const response = await page.goto(`${base}/settings`);
      if (response.status() !== 200) fail(`GET /settings answered ${response.status()}`);
      const csp = response.headers()['content-security-policy'] || '';
      if (!csp.includes("default-src 'self'")) fail(`GET /settings has no restrictive CSP: "${csp}"`);
      await page.getByLabel('Personal token').waitFor();
      await shoot(page, 'signin');
      await page.getByLabel('Personal token').fill('sv_not-a-real-token');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.locator('.field-error', { hasText: /not accepted/i }).waitFor();
      await page.getByLabel('Personal token').fill(admin);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.locator('#api-keys-title').waitFor();
      await page.getByRole('button', { name: /Account:/ }).click();
      const who = await page.locator('#signed-in-as').textContent();
      if (who !== 'admin@localhost') fail(`the account menu shows ${who}`);
      await page.keyboard.press('Escape');
      // Keyboard: every control is reachable, with a visible focus ring.
      await page.locator('body').click({ position: { x: 5, y: 300 } });
      const rings = [];
      for (let i = 0; i < 8; i++) {
        await page.keyboard.press('Tab');
        rings.push(
          await page.evaluate(() => {
            const el = document.activeElement;
            const style = getComputedStyle(el);
            return { what: `${el.tagName} ${el.textContent.trim().slice(0, 20)}`, ring: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2 };
          }),
        );
      }
      const noRing = rings.filter((r) => !r.ring && r.what !== 'BODY ');
      if (noRing.length) fail(`focused without a visible focus ring: ${noRing.map((r) => r.what).join(', ')}`);
      const stored = await page.evaluate(() => ({ local: JSON.stringify(localStorage), session: sessionStorage.getItem('sesame-vault:token') }));
      if (stored.session !== admin) fail('the token is not kept in sessionStorage');
      if (stored.local.includes('sv_')) fail('the token is in localStorage');
    });

    // ---- API keys: save / replace / remove for each provider
    await journey('api-keys', async () => {
      const google = await row('GOOGLE').textContent();
      if (!/system key \(GEMINI_API_KEY\)/.test(google)) fail(`the Google row does not say the system key is used: ${google}`);
      for (const provider of Object.keys(KEYS)) {
        const [first, second] = KEYS[provider];
        const input = row(provider).locator('input[type=password]');
        await input.fill(first);
        await row(provider).getByRole('button', { name: 'Save' }).click();
        await row(provider).locator('code.hint').waitFor();
        if ((await input.inputValue()) !== '') fail(`${provider}: the key field is not cleared after saving`);
        const hint1 = await row(provider).locator('code.hint').textContent();
        if (hint1.includes(first.slice(12, 30))) fail(`${provider}: the hint shows the key: ${hint1}`);
        if (provider === 'ANTHROPIC') await shoot(page, 'api-keys');
        await input.fill(second);
        await row(provider).getByRole('button', { name: 'Replace' }).click();
        await page.waitForFunction(
          ([p, h]) => document.querySelector(`#api-key-${p} code.hint`)?.textContent !== h,
          [provider, hint1],
        );
        const creds = (await myCredentials()).filter((c) => c.kind === 'API_KEY' && c.provider === provider);
        if (creds.length !== 1) fail(`${provider}: ${creds.length} keys after replace`);
        await row(provider).getByRole('button', { name: 'Remove' }).click();
        const dialog = page.locator('dialog[open]');
        await dialog.waitFor();
        await dialog.getByRole('button', { name: 'Remove' }).click();
        await row(provider).locator('.fallback').waitFor();
        if ((await myCredentials()).some((c) => c.kind === 'API_KEY' && c.provider === provider)) fail(`${provider}: the key is still stored`);
      }
      // Save one Anthropic key to keep (Remove Credentials then names it as the fallback).
      await row('ANTHROPIC').locator('input[type=password]').fill(KEYS.ANTHROPIC[0]);
      await row('ANTHROPIC').getByRole('button', { name: 'Save' }).click();
      await row('ANTHROPIC').locator('code.hint').waitFor();
    });

    // ---- a bad key: the server's message at the field, nothing changed
    await journey('bad-key', async () => {
      const before = JSON.stringify(await myCredentials());
      const input = row('OPENAI').locator('input[type=password]');
      await input.fill('sk-ant-api03-thisIsAnAnthropicKeyAAAAAAAAAAAAAAAAAAAAAAAA');
      await row('OPENAI').getByRole('button', { name: 'Save' }).click();
      const error = row('OPENAI').locator('.field-error');
      await error.waitFor();
      const text = await error.textContent();
      if (!/Anthropic key/.test(text)) fail(`the field does not show the server's message: ${text}`);
      if ((await input.getAttribute('aria-invalid')) !== 'true') fail('the field is not marked invalid');
      if (JSON.stringify(await myCredentials()) !== before) fail('a refused key changed the stored credentials');
      await shoot(page, 'api-keys-error');
    });

    // ---- checked with the provider: refused on save, then a working key that later stops working
    await journey('provider-check', async () => {
      const key = KEYS.OPENAI[0];
      const input = row('OPENAI').locator('input[type=password]');
      const before = JSON.stringify(await myCredentials());
      providers.calls.refused.add(key);
      await input.fill(key);
      await row('OPENAI').getByRole('button', { name: 'Save' }).click();
      const error = row('OPENAI').locator('.field-error');
      await error.waitFor();
      const text = await error.textContent();
      if (!/OpenAI/.test(text) || text.includes(key)) fail(`a refused key: the field says ${text}`);
      if (JSON.stringify(await myCredentials()) !== before) fail('a key the provider refused was stored');
      providers.calls.refused.delete(key);
      await row('OPENAI').getByRole('button', { name: 'Save' }).click();
      await row('OPENAI').locator('code.hint').waitFor();
      await row('OPENAI').locator('[data-check="VALID"]').waitFor();
      // The key stops working at the provider: Check says so, and the row shows it.
      providers.calls.refused.add(key);
      await row('OPENAI').getByRole('button', { name: 'Check' }).click();
      await row('OPENAI').locator('.badge', { hasText: 'Refused by provider' }).waitFor();
      await row('OPENAI').locator('[data-check="INVALID"]').waitFor();
      const stored = (await myCredentials()).find((c) => c.kind === 'API_KEY' && c.provider === 'OPENAI');
      if (!stored || stored.status !== 'INVALID') fail(`after a refused check the key is ${stored && stored.status}`);
      await shoot(page, 'api-keys-check');
      providers.calls.refused.delete(key);
      await row('OPENAI').getByRole('button', { name: 'Check' }).click();
      await row('OPENAI').locator('[data-check="VALID"]').waitFor();
      await row('OPENAI').locator('.badge', { hasText: 'Active' }).waitFor();
      await row('OPENAI').getByRole('button', { name: 'Remove' }).click();
      await page.locator('dialog[open]').getByRole('button', { name: 'Remove' }).click();
      await row('OPENAI').locator('.fallback').waitFor();
    });

    // ---- Claude setup-token
    await journey('claude-token', async () => {
      await openAgent('CLAUDE_CODE');
      await chooseMethod('CLAUDE_CODE', 'Paste a setup-token');
      const input = agentCard('CLAUDE_CODE').getByLabel('Setup token');
      await input.fill(CLAUDE_TOKEN);
      await agentCard('CLAUDE_CODE').getByRole('button', { name: 'Save Credentials' }).click();
      await agentCard('CLAUDE_CODE').locator('.badge', { hasText: 'Authenticated' }).waitFor();
      await agentCard('CLAUDE_CODE').locator('.cred code.hint').waitFor();
      if ((await input.inputValue()) !== '') fail('the setup-token field is not cleared');
      const sub = (await myCredentials()).find((c) => c.kind === 'SUBSCRIPTION' && c.agent === 'CLAUDE_CODE');
      if (!sub) fail('no Claude Code subscription stored');
      await shoot(page, 'agents');
      // Remove Credentials says what Claude Code uses afterwards.
      await agentCard('CLAUDE_CODE').getByRole('button', { name: 'Remove Credentials' }).click();
      const dialog = page.locator('dialog[open]');
      const body = await dialog.textContent();
      if (!/your Anthropic API key/.test(body)) fail(`Remove Credentials does not name the fallback: ${body}`);
      await dialog.getByRole('button', { name: 'Cancel' }).click();
    });

    // ---- Codex auth.json
    await journey('codex-authjson', async () => {
      await openAgent('CODEX');
      await chooseMethod('CODEX', 'auth.json or access token');
      await agentCard('CODEX').getByLabel('Contents of ~/.codex/auth.json').fill(CODEX_AUTH_JSON);
      await agentCard('CODEX').getByRole('button', { name: 'Save Credentials' }).click();
      await agentCard('CODEX').locator('.badge', { hasText: 'Authenticated' }).waitFor();
      const sub = (await myCredentials()).find((c) => c.kind === 'SUBSCRIPTION' && c.agent === 'CODEX');
      if (!sub) fail('no Codex subscription stored');
    });

    // ---- Copilot: a classic ghp_ token is refused with the server's message at the field
    await journey('copilot-classic-token', async () => {
      await openAgent('COPILOT');
      await chooseMethod('COPILOT', 'Paste a fine-grained token');
      await agentCard('COPILOT').getByLabel('Fine-grained token', { exact: true }).fill('ghp_CLASSICtoken1234567890abcdefABCDEF1234');
      await agentCard('COPILOT').getByRole('button', { name: 'Save Credentials' }).click();
      const error = agentCard('COPILOT').locator('.field-error');
      await error.waitFor();
      if (!/ghp_/.test(await error.textContent())) fail(`the refusal is not the server's: ${await error.textContent()}`);
      if ((await myCredentials()).some((c) => c.agent === 'COPILOT')) fail('a refused token was stored');
    });

    // ---- Copilot device flow to AUTHORIZED with live status
    await journey('copilot-device', async () => {
      await openAgent('COPILOT');
      await chooseMethod('COPILOT', 'Connect with GitHub');
      await agentCard('COPILOT').getByRole('button', { name: 'Connect with GitHub' }).click();
      const code = agentCard('COPILOT').locator('.user-code');
      await code.waitFor();
      if ((await code.textContent()) !== 'ABCD-1234') fail(`the user code is ${await code.textContent()}`);
      await agentCard('COPILOT').getByText('Waiting for you to approve').waitFor();
      const link = await agentCard('COPILOT').locator('.flow-panel a').first().getAttribute('href');
      if (!link.startsWith(`${providers.base}/github/device`)) fail(`the verification link is ${link}`);
      await agentCard('COPILOT').getByRole('button', { name: 'Copy code' }).click();
      await shoot(page, 'device-flow');
      // It closes itself on AUTHORIZED, with the badge and a notice.
      await agentCard('COPILOT').locator('.flow-panel').waitFor({ state: 'detached', timeout: 20_000 });
      await agentCard('COPILOT').locator('.badge', { hasText: 'Authenticated' }).waitFor();
      await page.locator('.notice', { hasText: 'Copilot is signed in with GitHub' }).waitFor();
      await page.emulateMedia({ colorScheme: 'dark' });
      await shoot(page, 'agents-dark');
      await page.emulateMedia({ colorScheme: 'light' });
      if ((providers.calls.githubPolls['dev-1'] || 0) < 3) fail('AUTHORIZED before the provider authorized');
      const subscribed = seen.requests.some((r) => r.url.includes('/graphql/ws') && r.body.includes('deviceFlowStatus'));
      if (!subscribed) fail('the page did not subscribe to deviceFlowStatus');
      // Remove Credentials: the token the sign-in obtained is revoked at GitHub too.
      await agentCard('COPILOT').getByRole('button', { name: 'Remove Credentials' }).click();
      const dialog = page.locator('dialog[open]');
      if (!/its subscription credential/.test(await dialog.textContent())) fail(`the dialog: ${await dialog.textContent()}`);
      await dialog.getByRole('button', { name: 'Remove Credentials' }).click();
      await page.locator('.notice', { hasText: 'revoked at the provider' }).waitFor();
      if (!providers.calls.revoked.includes(GITHUB_TOKEN)) fail('the GitHub token was not revoked at GitHub');
      if ((await myCredentials()).some((c) => c.agent === 'COPILOT')) fail('Copilot credentials remain after Remove');
    });

    // ---- OpenAI device flow DENIED, then Retry
    await journey('openai-denied', async () => {
      await openAgent('CODEX');
      await chooseMethod('CODEX', 'Sign in with ChatGPT');
      await agentCard('CODEX').getByRole('button', { name: 'Sign in with ChatGPT' }).click();
      const final = agentCard('CODEX').locator('.flow-final[data-status="DENIED"]');
      await final.waitFor({ timeout: 20_000 });
      const text = await final.textContent();
      if (!/denied/i.test(text) || !/declined at OpenAI/.test(text)) fail(`the DENIED message is not readable: ${text}`);
      await shoot(page, 'device-denied');
      await agentCard('CODEX').getByRole('button', { name: 'Retry' }).click();
      await agentCard('CODEX').locator('.user-code', { hasText: 'OPEN-002' }).waitFor();
      await agentCard('CODEX').getByRole('button', { name: 'Cancel' }).click();
      await agentCard('CODEX').locator('.flow-panel').waitFor({ state: 'detached' });
    });

    // ---- Anthropic code flow: wrong, then right code#state
    await journey('anthropic-code', async () => {
      await gql(base, admin, 'mutation { removeAgentCredentials(agent: CLAUDE_CODE) }');
      await openAgent('CLAUDE_CODE');
      await chooseMethod('CLAUDE_CODE', 'Sign in with Claude');
      await agentCard('CLAUDE_CODE').getByRole('button', { name: 'Sign in with Claude' }).click();
      const open = agentCard('CLAUDE_CODE').getByRole('link', { name: 'Open the Anthropic sign-in page' });
      await open.waitFor();
      const url = new URL(await open.getAttribute('href'));
      if (!url.href.startsWith(`${providers.base}/anthropic/authorize`)) fail(`the authorize URL is ${url.href}`);
      const state = url.searchParams.get('state');
      if (!state) fail('the authorize URL has no state');
      const input = agentCard('CLAUDE_CODE').getByLabel('Code');
      await input.fill('good-code#not-the-state');
      await agentCard('CLAUDE_CODE').getByRole('button', { name: 'Complete' }).click();
      const error = agentCard('CLAUDE_CODE').locator('.field-error');
      await error.waitFor();
      if (!/state does not match/.test(await error.textContent())) fail(`wrong state: ${await error.textContent()}`);
      if ((await myCredentials()).some((c) => c.agent === 'CLAUDE_CODE')) fail('a wrong state saved a credential');
      await shoot(page, 'code-flow');
      // A reload keeps the sign-in: it is listed, and resumes with the same URL (same state).
      await page.reload();
      await page.locator('.banner', { hasText: 'Sign-ins in progress' }).waitFor();
      await open.waitFor();
      const resumed = new URL(await open.getAttribute('href'));
      if (resumed.searchParams.get('state') !== state) fail(`the resumed sign-in has another URL: ${resumed.href}`);
      if (resumed.searchParams.get('code_challenge') !== url.searchParams.get('code_challenge')) {
        fail('the resumed sign-in has another PKCE challenge');
      }
      await input.fill(`good-code#${state}`);
      await agentCard('CLAUDE_CODE').getByRole('button', { name: 'Complete' }).click();
      await agentCard('CLAUDE_CODE').locator('.flow-panel').waitFor({ state: 'detached' });
      await agentCard('CLAUDE_CODE').locator('.badge', { hasText: 'Authenticated' }).waitFor();
      if (!(await myCredentials()).some((c) => c.agent === 'CLAUDE_CODE')) fail('the code flow saved no credential');
    });

    // ---- a pending sign-in is shown again after a reload
    // ---- usage: two tasks with proxy delivery spend tokens; the person sees them under Usage
    await journey('usage', async () => {
      if (!server.proxyUrl) fail('the server did not print its egress proxy');
      const runner = JSON.parse(
        execFileSync(BIN, ['token', 'create', '--runner', '--name', 'browser-runner', '--json'], {
          env: { PATH: process.env.PATH, SESAME_DATA_DIR: path.join(tmp, 'data') },
        }).toString(),
      ).token;
      const me = (await gql(base, admin, '{ me { id } }')).me.id;
      const issue = async (agent, task) =>
        (
          await gql(
            base,
            runner,
            'mutation($u: ID!, $a: Agent!, $t: String!) { issueTaskCredentials(userId: $u, agent: $a, taskId: $t, delivery: PROXY) { delivery env { name value } files { path content } } }',
            { u: me, a: agent, t: task },
          )
        ).issueTaskCredentials;
      const gemini = await issue('GEMINI', 'browser-usage-1');
      if (gemini.delivery !== 'PROXY') fail(`delivery ${gemini.delivery}`);
      const ca = gemini.files.find((f) => f.path === '.sesame/proxy-ca.pem').content;
      const key = gemini.env.find((e) => e.name === 'GEMINI_API_KEY').value;
      if (key.includes(SYSTEM_GEMINI_KEY) || !key.includes('svp_')) fail(`GEMINI_API_KEY is not a placeholder: ${key}`);
      const asked = await throughProxy(server.proxyUrl, ca, 'generativelanguage.googleapis.com', '/v1beta/models/gemini-2.5-pro:generateContent', { 'x-goog-api-key': key }, '{}');
      if (asked.status !== 200) fail(`through the proxy: ${asked.status} ${asked.text}`);
      const codex = await issue('CODEX', 'browser-usage-2');
      const auth = JSON.parse(codex.files.find((f) => f.path === '.codex/auth.json').content);
      const codexAsked = await throughProxy(server.proxyUrl, ca, 'chatgpt.com', '/backend-api/codex/responses', { authorization: `Bearer ${auth.tokens.access_token}` }, '{}');
      if (codexAsked.status !== 200) fail(`Codex through the proxy: ${codexAsked.status} ${codexAsked.text}`);
      const received = providers.calls.llm.map((c) => c.key);
      if (!received.includes(SYSTEM_GEMINI_KEY)) fail(`the provider did not receive the real key: ${received.join(', ')}`);
      if (received.some((k) => k.includes('svp_'))) fail('a placeholder reached the provider');
      // The proxy adds usage up every second.
      await sleep(1500);
      await page.goto(`${base}/settings#usage`);
      await page.locator('table.usage tbody tr').nth(1).waitFor();
      const text = await page.locator('#main').innerText();
      for (const want of ['Gemini', 'System-wide key', '1,200', '345', 'Codex', 'Your subscription', '5,400', '812']) {
        if (!text.includes(want)) fail(`Usage does not show ${want}:\n${text}`);
      }
      await shoot(page, 'usage');
    });

    await journey('resume', async () => {
      await openAgent('COPILOT');
      await chooseMethod('COPILOT', 'Connect with GitHub');
      await agentCard('COPILOT').getByRole('button', { name: 'Connect with GitHub' }).click();
      const code = await agentCard('COPILOT').locator('.user-code').textContent();
      await page.reload();
      await page.locator('.banner', { hasText: 'Sign-ins in progress' }).waitFor();
      await agentCard('COPILOT').locator('.user-code', { hasText: code }).waitFor();
      await agentCard('COPILOT').getByRole('button', { name: 'Cancel' }).click();
      await agentCard('COPILOT').locator('.flow-panel').waitFor({ state: 'detached' });
    });

    // ---- OpenCode's Manage Providers: Connect → Use Subscription / Use API Key
    await journey('opencode', async () => {
      await openAgent('OPENCODE');
      const anthropic = agentCard('OPENCODE').locator('.provider-row[data-provider="ANTHROPIC"]');
      await anthropic.getByRole('button', { name: 'Connect' }).click();
      await anthropic.getByRole('button', { name: 'Sign in with Claude' }).waitFor();
      await anthropic.locator('label', { hasText: 'Use API Key' }).click();
      await anthropic.locator('code.hint').waitFor();
      await shoot(page, 'opencode');
    });

    // ---- an agent that takes API keys only: its note from the catalog, its key inline
    await journey('gemini', async () => {
      await openAgent('GEMINI');
      const card = agentCard('GEMINI');
      await card.locator('.agent-note', { hasText: 'API key only' }).waitFor();
      if (await card.locator('.segmented').count()) fail('one method offered as a choice');
      await card.getByLabel('Google API key').waitFor();
      await shoot(page, 'gemini');
    });

    // ---- a badge changes live when the scheduler marks a key expiring
    await journey('live-expiring', async () => {
      await page.goto(`${base}/settings#api-keys`);
      await page.locator('.live-live').waitFor();
      const loads = seen.requests.filter((r) => r.url === `${base}/settings`).length;
      const expiresAt = new Date(Date.now() + 3 * 86400_000).toISOString();
      await gql(base, admin, 'mutation($k: String!, $e: DateTime) { setApiKey(provider: OPENAI, key: $k, expiresAt: $e) { id } }', {
        k: KEYS.OPENAI[0],
        e: expiresAt,
      });
      await row('OPENAI').locator('.badge', { hasText: 'Expiring soon' }).waitFor({ timeout: 20_000 });
      await page.locator('.notice', { hasText: 'OpenAI API key is expiring soon' }).waitFor();
      if (seen.requests.filter((r) => r.url === `${base}/settings`).length !== loads) fail('the page reloaded');
    });

    // ---- live updates reconnect after a drop (the server restarts on the same port)
    await journey('reconnect', async () => {
      await page.goto(`${base}/settings#api-keys`);
      await page.locator('.live-live').waitFor();
      await stopProcess(report.server.child);
      await page.locator('.live-reconnecting').waitFor({ timeout: 10_000 });
      await shoot(page, 'reconnecting');
      const again = startServer(path.join(tmp, 'data'), providers.base, serverHost, false);
      report.server = again;
      cleanup.push(() => stopProcess(again.child));
      await Promise.race([again.ready, sleep(60_000).then(() => fail('the server did not restart within 60s'))]);
      await page.locator('.live-live').waitFor({ timeout: 30_000 });
      // An event after the reconnect still reaches the page.
      await gql(base, admin, 'mutation($k: String!) { setApiKey(provider: GITHUB, key: $k) { id } }', { k: KEYS.GITHUB[0] });
      await row('GITHUB').locator('code.hint').waitFor({ timeout: 10_000 });
    });

    // ---- admin: delete a user's credential; no request names `hint`
    let userToken;
    await journey('admin', async () => {
      await page.goto(`${base}/settings#admin`);
      await page.locator('#admin-title').waitFor();
      const from = Date.now();
      await page.getByLabel('Email', { exact: true }).fill('person@example.com');
      await page.getByRole('button', { name: 'Create' }).click();
      const tokenField = page.getByLabel('New token');
      await tokenField.waitFor();
      userToken = await tokenField.inputValue();
      if (!userToken.startsWith('sv_')) fail(`the new token is ${userToken}`);
      await page.getByRole('button', { name: 'Copy', exact: true }).click();
      await page.getByRole('button', { name: 'Done' }).click();
      await gql(base, userToken, 'mutation($k: String!) { setApiKey(provider: ANTHROPIC, key: $k) { id } }', { k: KEYS.ANTHROPIC[1] });
      await page.getByLabel('Search by email').fill('person@');
      await page.locator('.user-button', { hasText: 'person@example.com' }).click();
      const cred = page.locator('.admin-creds .cred', { hasText: 'Anthropic API key' });
      await cred.waitFor();
      await shoot(page, 'admin');
      await cred.getByRole('button', { name: 'Delete' }).click();
      const dialog = page.locator('dialog[open]');
      await dialog.getByRole('button', { name: 'Delete' }).click();
      await page.locator('.user-creds', { hasText: 'No credentials.' }).waitFor();
      if ((await myCredentials(userToken)).length !== 0) fail("the person's credential was not deleted");
      await page.locator('.audit tbody tr', { hasText: 'person@example.com' }).first().waitFor();
      // A burst of someone else's credential events costs the audit log one
      // request for its newest page (at most one a second), not one each.
      const audits = () => seen.requests.filter((r) => /\bauditLog\b/.test(r.body)).length;
      const auditsBefore = audits();
      const rowsBefore = await page.locator('.audit tbody tr').count();
      await Promise.all(
        [...KEYS.OPENAI, ...KEYS.GOOGLE, ...KEYS.GITHUB].map((k, i) =>
          gql(base, userToken, `mutation($k: String!) { setApiKey(provider: ${['OPENAI', 'OPENAI', 'GOOGLE', 'GOOGLE', 'GITHUB', 'GITHUB'][i]}, key: $k) { id } }`, { k }),
        ),
      );
      await page.waitForFunction((n) => document.querySelectorAll('.audit tbody tr').length >= n + 6, rowsBefore, { timeout: 10_000 });
      await sleep(1500);
      const auditRequests = audits() - auditsBefore;
      if (auditRequests > 2) fail(`6 credential events made the audit log ask ${auditRequests} times`);
      log(`audit log: 6 events, ${auditRequests} request(s)`);
      await sleep(500);
      const named = seen.requests.filter((r) => r.at >= from && /\bhint\b/.test(r.body));
      if (named.length) fail(`the admin page sent requests naming hint:\n  ${named.map((r) => r.body.slice(0, 200)).join('\n  ')}`);
      const sent = seen.requests.filter((r) => r.at >= from && r.body).length;
      log(`admin page: ${sent} requests, none names hint`);
    });

    // ---- admin: webhooks (an endpoint, its secret once, a test a receiver verifies, health)
    await journey('webhooks', async () => {
      const hits = [];
      const receiver = http.createServer((req, res) => {
        let body = '';
        req.on('data', (c) => (body += c));
        req.on('end', () => {
          hits.push({ path: req.url, id: req.headers['webhook-id'], ts: req.headers['webhook-timestamp'], sig: req.headers['webhook-signature'], body });
          res.writeHead(req.url === '/gone' ? 410 : 200, { 'content-type': 'text/plain' });
          res.end(req.url === '/gone' ? 'gone' : 'thanks');
        });
      });
      await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
      cleanup.unshift(() => new Promise((r) => (receiver.closeAllConnections(), receiver.close(r))));
      const hookBase = `http://127.0.0.1:${receiver.address().port}`;
      const from = Date.now();
      await page.goto(`${base}/settings#admin`);
      await page.locator('#webhooks-title').waitFor();
      await page.getByLabel('URL', { exact: true }).fill(`${hookBase}/hooks`);
      await page.getByLabel('Description (optional)').fill('Tell people when a login needs them');
      await page.getByRole('button', { name: 'Add endpoint' }).click();
      const secretField = page.getByLabel('Signing secret');
      await secretField.waitFor();
      const secret = await secretField.inputValue();
      if (!/^whsec_[A-Za-z0-9+/=]{40,}$/.test(secret)) fail(`the signing secret is ${secret}`);
      await page.locator('.webhooks').getByRole('button', { name: 'Done' }).click();
      if (await page.getByLabel('Signing secret').count()) fail('the secret is still shown after Done');
      const hook = page.locator('.webhook', { hasText: `${hookBase}/hooks` });
      await hook.locator('.badge', { hasText: 'Healthy' }).waitFor();
      await hook.getByRole('button', { name: 'Send test' }).click();
      await hook.locator('.deliveries .badge', { hasText: 'Delivered' }).waitFor({ timeout: 15_000 });
      const test = hits.find((h) => h.path === '/hooks');
      if (!test) fail('the receiver got nothing');
      const { createHmac } = await import('node:crypto');
      const expected = `v1,${createHmac('sha256', Buffer.from(secret.slice(6), 'base64')).update(`${test.id}.${test.ts}.${test.body}`).digest('base64')}`;
      if (!test.sig.split(' ').includes(expected)) fail(`the test delivery does not verify: ${test.sig}`);
      if (JSON.parse(test.body).type !== 'TEST') fail(`the test body is ${test.body}`);
      // A receiver that answers 410 Gone: the endpoint shows as disabled, with why.
      const gone = await gql(base, admin, 'mutation($i: WebhookInput!) { createWebhook(input: $i) { webhook { id } } }', {
        i: { url: `${hookBase}/gone`, events: ['NEEDS_REAUTH', 'EXPIRED', 'INVALID'] },
      });
      await gql(base, admin, 'mutation($id: ID!) { sendTestWebhook(id: $id) }', { id: gone.createWebhook.webhook.id });
      const deadline = Date.now() + 10_000;
      while (!hits.some((h) => h.path === '/gone') && Date.now() < deadline) await sleep(200);
      await sleep(500);
      await page.reload();
      const goneHook = page.locator('.webhook', { hasText: `${hookBase}/gone` });
      await goneHook.locator('.badge', { hasText: 'Disabled' }).waitFor();
      await goneHook.locator('.status-message', { hasText: '410' }).waitFor();
      await goneHook.getByRole('button', { name: 'Enable' }).waitFor();
      await page.locator('.webhook', { hasText: `${hookBase}/hooks` }).getByRole('button', { name: 'Recent deliveries' }).click();
      await page.locator('.webhook', { hasText: `${hookBase}/hooks` }).locator('.deliveries .badge', { hasText: 'Delivered' }).waitFor();
      await page.locator('#webhooks-title').scrollIntoViewIfNeeded();
      await shoot(page, 'webhooks');
      // (The reload's overview asks for the admin's own credentials' hints: not this screen's.)
      const named = seen.requests.filter((r) => r.at >= from && (/whsec_/.test(r.body) || (/ebhook/.test(r.body) && /\bhint\b/.test(r.body))));
      if (named.length) fail(`the webhooks screen sent a request naming hint or a secret:\n  ${named.map((r) => r.body.slice(0, 200)).join('\n  ')}`);
      log(`webhooks: secret shown once, test delivered and verified, 410 endpoint disabled`);
    });

    // ---- Sign out forgets the token
    await journey('sign-out', async () => {
      await page.getByRole('button', { name: /Account:/ }).click();
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByLabel('Personal token').waitFor();
      const stored = await page.evaluate(() => JSON.stringify({ ...localStorage, ...sessionStorage }));
      if (stored.includes('sv_')) fail(`Sign out left the token in storage: ${stored}`);
      await page.reload();
      await page.getByLabel('Personal token').waitFor();
    });

    // ---- explorer: after a reload and Forget, no secret in storage
    await journey('explorer', async () => {
      const secret = 'sk-ant-api03-EXPLORERsecretAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
      await page.goto(`${base}/`);
      await page.waitForSelector('#sesame-token');
      await page.fill('#sesame-token', admin);
      await page.press('#sesame-token', 'Enter');
      await page.waitForFunction(() => /admin@localhost/.test(document.querySelector('#sesame-token-status')?.textContent || ''));
      // Paste a key into the variables editor, as a person trying setApiKey would.
      await page.locator('.graphiql-tab', { hasText: 'setApiKey' }).first().click();
      await page.waitForSelector('.graphiql-editor-tool .CodeMirror');
      await page.evaluate((s) => {
        const cm = document.querySelector('.graphiql-editor-tool .CodeMirror').CodeMirror;
        cm.setValue(JSON.stringify({ provider: 'ANTHROPIC', key: s }, null, 2));
      }, secret);
      await sleep(800);
      await shoot(page, 'explorer');
      const dump = () => page.evaluate(() => JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage } }));
      let stored = await dump();
      if (stored.includes(secret)) fail('the explorer stored a pasted key');
      await page.reload();
      await page.waitForSelector('#sesame-token');
      stored = await dump();
      if (stored.includes(secret)) fail('a pasted key survived a reload in storage');
      await page.getByRole('button', { name: 'Forget' }).click();
      await sleep(500);
      stored = await dump();
      for (const s of [secret, admin, 'sv_', 'sk-']) if (stored.includes(s)) fail(`after Forget the storage still holds a secret: ${stored}`);
      log(`explorer storage after reload and Forget: ${stored}`);
    });

    // ---- nothing but the server, no uncaught error, no CSP violation
    const offHost = [...seen.requests.map((r) => r.url), ...seen.websockets].filter((u) => {
      const url = new URL(u);
      return url.protocol !== 'data:' && url.protocol !== 'blob:' && url.host !== serverHost;
    });
    if (offHost.length) fail(`the pages contacted other hosts:\n  ${[...new Set(offHost)].join('\n  ')}`);
    if (seen.pageErrors.length) fail(`uncaught errors:\n  ${seen.pageErrors.join('\n  ')}`);
    // Expected: the refused sign-in (401) and the refused WebSocket while the server restarts.
    const bad = seen.console.filter(
      (m) => /^error:|Content Security Policy/i.test(m) && !/status of 401|ERR_CONNECTION_REFUSED/.test(m),
    );
    if (bad.length) fail(`console errors:\n  ${bad.join('\n  ')}`);
    log(`${seen.requests.length} requests and ${seen.websockets.length} WebSocket(s), all to ${serverHost}`);
  } finally {
    for (const step of cleanup) {
      try {
        await step();
      } catch {
        // best effort
      }
    }
  }
}

const watchdog = setTimeout(() => {
  console.error(`settings test: FAILED: no result within ${OVERALL_TIMEOUT_MS / 1000}s (passed: ${journeys.join(', ')})`);
  process.exit(1);
}, OVERALL_TIMEOUT_MS);

main()
  .then(() => {
    clearTimeout(watchdog);
    log(`PASSED: ${journeys.join(', ')}`);
    process.exit(0);
  })
  .catch((e) => {
    clearTimeout(watchdog);
    console.error(`\nsettings test: FAILED: ${e instanceof TestFailure ? e.message : e.stack || e}`);
    console.error(`passed before it: ${journeys.join(', ') || 'none'}`);
    const out = report.server?.output || [];
    if (out.length) console.error(`\nlast server output:\n  ${out.slice(-20).join('\n  ')}`);
    if (report.seen?.console?.length) console.error(`\nbrowser console:\n  ${report.seen.console.slice(-20).join('\n  ')}`);
    if (report.seen?.pageErrors?.length) console.error(`\npage errors:\n  ${report.seen.pageErrors.join('\n  ')}`);
    process.exit(1);
  });
