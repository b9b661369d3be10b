// Browser test of the playground at `/`, against the real server binary.
//
//   node playground/tests/browser.mjs
//
// Environment: SESAME_BIN (default <repo>/target/debug/sesame-vault),
// CHROMIUM (default /usr/bin/chromium), ARTIFACTS (default
// playground/test-artifacts).
//
// 1. A fake GitHub device-flow provider (HTTP on 127.0.0.1:0).
// 2. The server on 127.0.0.1:0 with a fresh data directory, pointed at it.
// 3. Headless Chromium (playwright-core); every request the page makes must
//    go to the server.
// 4. The token field takes the admin token; the preloaded `me` tab runs and
//    shows admin@localhost.
// 5. startDeviceFlow, then the deviceFlowStatus subscription streams
//    PENDING … AUTHORIZED into the result pane.
// 6. A screenshot in test-artifacts/playground.png. Exit code 0 only if all
//    of it passed.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSchema, parse, validate } from 'graphql';
import { chromium } from 'playwright-core';
import { defaultTabs } from '../src/examples.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const BIN = process.env.SESAME_BIN || path.join(repo, 'target', 'debug', 'sesame-vault');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.ARTIFACTS || path.join(repo, 'playground', 'test-artifacts');
const SCREENSHOT = path.join(ARTIFACTS, 'playground.png');

const GITHUB_TOKEN = 'gho_TESTtoken1234567890abcdefABCDEF12';
const PENDING_POLLS = 2;
const OVERALL_TIMEOUT_MS = 180_000;

const t0 = Date.now();
const log = (...args) => console.log(`[browser-test +${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...args);

class TestFailure extends Error {}
const fail = (message) => {
  throw new TestFailure(message);
};

async function waitFor(what, timeoutMs, probe, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > deadline) fail(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

// ---------------------------------------------------------------- 0. the examples

/** Every preloaded example must be valid against schema/schema.graphql. */
function checkExamples() {
  const schema = buildSchema(readFileSync(path.join(repo, 'schema', 'schema.graphql'), 'utf8'));
  const names = [];
  for (const tab of defaultTabs) {
    const doc = parse(tab.query);
    const errors = validate(schema, doc);
    if (errors.length) fail(`a preloaded example does not match schema/schema.graphql: ${errors.map(String).join('; ')}`);
    if (tab.variables) JSON.parse(tab.variables);
    names.push(...doc.definitions.map((d) => d.name?.value));
  }
  for (const wanted of ['me', 'myCredentials', 'setApiKey', 'startDeviceFlow', 'deviceFlowStatus', 'adminListing']) {
    if (!names.includes(wanted)) fail(`the preloaded examples lack the ${wanted} operation`);
  }
  log(`preloaded examples valid against schema/schema.graphql: ${names.join(', ')}`);
}

// ---------------------------------------------------------------- 1. fake provider

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => (data += chunk));
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

function parseBody(req, text) {
  const type = (req.headers['content-type'] || '').toLowerCase();
  if (type.includes('json')) {
    try {
      return JSON.parse(text || '{}');
    } catch {
      return {};
    }
  }
  return Object.fromEntries(new URLSearchParams(text));
}

async function startFakeGithub() {
  const calls = { deviceCode: [], token: [], other: [] };
  let base = '';
  const server = http.createServer(async (req, res) => {
    const body = parseBody(req, await readBody(req));
    const url = new URL(req.url, 'http://127.0.0.1');
    const json = (status, value) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    if (req.method === 'POST' && url.pathname === '/login/device/code') {
      calls.deviceCode.push(body);
      json(200, {
        device_code: 'dev-123',
        user_code: 'ABCD-1234',
        verification_uri: `${base}/login/device`,
        expires_in: 900,
        interval: 1,
      });
    } else if (req.method === 'POST' && url.pathname === '/login/oauth/access_token') {
      calls.token.push(body);
      if (calls.token.length <= PENDING_POLLS) {
        json(400, { error: 'authorization_pending', error_description: 'The authorization request is still pending.' });
      } else {
        json(200, { access_token: GITHUB_TOKEN, token_type: 'bearer', scope: 'read:user' });
      }
    } else {
      calls.other.push(`${req.method} ${req.url}`);
      json(404, { error: 'not_found' });
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${server.address().port}`;
  return { server, base, calls };
}

// ---------------------------------------------------------------- 2. the server

function startServer(dataDir, providerBase) {
  if (!existsSync(BIN)) fail(`no server binary at ${BIN}: run cargo build first (or set SESAME_BIN)`);
  const env = {
    PATH: process.env.PATH || '/usr/bin:/bin',
    SESAME_DATA_DIR: dataDir,
    SESAME_LISTEN: '127.0.0.1:0',
    // No test key ever reaches a real provider: checks off, provider APIs at a closed local port.
    SESAME_CHECKS__ON_SAVE: 'false',
    SESAME_SCHEDULER__CHECKS: '',
    SESAME_PROVIDERS__ANTHROPIC__API_URL: 'http://127.0.0.1:9',
    SESAME_PROVIDERS__OPENAI__API_URL: 'http://127.0.0.1:9',
    SESAME_PROVIDERS__OPENAI__CHATGPT_URL: 'http://127.0.0.1:9',
    SESAME_PROVIDERS__GOOGLE__API_URL: 'http://127.0.0.1:9',
    SESAME_PROVIDERS__GITHUB__API_URL: 'http://127.0.0.1:9',
    SESAME_OAUTH__GITHUB__DEVICE_AUTHORIZATION_URL: `${providerBase}/login/device/code`,
    SESAME_OAUTH__GITHUB__TOKEN_URL: `${providerBase}/login/oauth/access_token`,
  };
  const child = spawn(BIN, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = [];
  let adminToken;
  let baseUrl;
  let exited;
  const ready = new Promise((resolve, reject) => {
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
        if (token) adminToken = token[1];
        const listening = line.match(/^sesame-vault listening on (http:\/\/127\.0\.0\.1:\d+)/);
        if (listening) {
          baseUrl = listening[1];
          if (adminToken) resolve();
          else reject(new TestFailure('the server printed its address but no admin token before it'));
        }
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => output.push(...chunk.trimEnd().split('\n').map((l) => `stderr: ${l}`)));
    child.on('error', (e) => reject(new TestFailure(`cannot start ${BIN}: ${e.message}`)));
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      reject(new TestFailure(`the server exited (code ${code}, signal ${signal}) before it listened`));
    });
  });
  return {
    child,
    output,
    ready,
    get adminToken() {
      return adminToken;
    },
    get baseUrl() {
      return baseUrl;
    },
    get exited() {
      return exited;
    },
  };
}

async function stopProcess(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await gone;
  clearTimeout(timer);
}

// ---------------------------------------------------------------- 3–5. the page

const QUERY_EDITOR = '.graphiql-query-editor .CodeMirror';
const RESULT_EDITOR = '.result-window .CodeMirror';

/** The text of a CodeMirror editor (its public API hangs off the DOM node). */
function editorValue(page, selector) {
  return page.evaluate((sel) => {
    const el = document.querySelector(sel);
    if (!el) return null;
    return el.CodeMirror ? el.CodeMirror.getValue() : el.innerText;
  }, selector);
}

/** The title of the active tab (GraphiQL names it after the operation). */
function activeTabTitle(page) {
  return page.evaluate(() => {
    const tab = document.querySelector('.graphiql-tab-active .graphiql-tab-button');
    return tab ? tab.textContent.trim() : null;
  });
}

/**
 * Replaces the query editor's text as a user would (select all, type), then
 * waits until GraphiQL has parsed it: the active tab takes the name of the
 * (single, named) operation, which is also what execute will run.
 */
async function setQuery(page, text) {
  const name = text.match(/^\s*(?:query|mutation|subscription)\s+(\w+)/)?.[1];
  if (!name) fail(`setQuery needs one named operation: ${text}`);
  await page.click(`${QUERY_EDITOR} .CodeMirror-lines`);
  await page.keyboard.press('ControlOrMeta+a');
  await page.keyboard.press('Delete');
  // insertText types the text in one input event: no auto-closed brackets,
  // no autocompletion popups.
  await page.keyboard.insertText(text);
  const value = await editorValue(page, QUERY_EDITOR);
  if (value !== text) fail(`the query editor holds ${JSON.stringify(value)} instead of ${JSON.stringify(text)}`);
  await page.keyboard.press('Escape');
  await waitFor(`GraphiQL to pick up operation ${name}`, 5_000, async () => (await activeTabTitle(page)) === name);
}

async function execute(page) {
  const button = page.locator('.graphiql-execute-button');
  await button.waitFor({ state: 'visible', timeout: 10_000 });
  await button.click();
}

function buttonLabel(page) {
  return page.getAttribute('.graphiql-execute-button', 'aria-label');
}

function sentMessages(seen, from = 0) {
  return seen.wsFramesSent.slice(from).map((f) => {
    try {
      return JSON.parse(f);
    } catch {
      return {};
    }
  });
}

/** Waits for the result pane to hold JSON different from `previous`; returns it parsed. */
async function nextResult(page, previous, what, timeoutMs = 15_000) {
  const text = await waitFor(`the result of ${what}`, timeoutMs, async () => {
    const value = await editorValue(page, RESULT_EDITOR);
    if (!value || value === previous) return null;
    try {
      JSON.parse(value);
      return value;
    } catch {
      return null;
    }
  });
  return { text, json: JSON.parse(text) };
}

function errorSummary(json) {
  return (json.errors || []).map((e) => `${(e.extensions && e.extensions.code) || '?'}: ${e.message}`).join('; ');
}

// ---------------------------------------------------------------- main

const report = { seen: {}, serverOutput: [] };

async function main() {
  const cleanup = [];
  const tmp = mkdtempSync(path.join(tmpdir(), 'sesame-browser-'));
  cleanup.push(() => rmSync(tmp, { recursive: true, force: true }));
  let server;
  let page;
  const seen = { requests: [], websockets: [], wsFramesSent: [], console: [], pageErrors: [] };
  try {
    checkExamples();
    const github = await startFakeGithub();
    // Drop the server's idle keep-alive connections first: close() waits for them.
    cleanup.push(() => github.server.closeAllConnections());
    cleanup.push(() => new Promise((r) => github.server.close(r)));
    log(`fake GitHub provider at ${github.base}`);

    // ---- 2
    server = startServer(path.join(tmp, 'data'), github.base);
    cleanup.push(() => stopProcess(server.child));
    await Promise.race([
      server.ready,
      new Promise((_, reject) =>
        setTimeout(() => reject(new TestFailure('the server did not print its address within 60s')), 60_000),
      ),
    ]);
    const base = server.baseUrl;
    const serverHost = new URL(base).host;
    log(`server at ${base}, admin token ${server.adminToken.slice(0, 6)}…`);

    // ---- 3
    const profile = path.join(tmp, 'chromium-profile');
    mkdirSync(profile);
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      timeout: 60_000,
      viewport: { width: 1400, height: 900 },
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
    context.on('request', (r) => seen.requests.push(r.url()));
    page = context.pages()[0] || (await context.newPage());
    page.on('websocket', (ws) => {
      seen.websockets.push(ws.url());
      ws.on('framesent', (f) => seen.wsFramesSent.push(typeof f.payload === 'string' ? f.payload : '<binary>'));
    });
    page.on('console', (m) => seen.console.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => seen.pageErrors.push(String(e && e.stack ? e.stack : e)));

    // ---- 3 (the assertion): nothing but the server, no CSP violation, no uncaught error.
    const checkPage = () => {
      const offHost = [...seen.requests, ...seen.websockets].filter((u) => {
        const url = new URL(u);
        if (url.protocol === 'data:' || url.protocol === 'blob:') return false;
        return url.host !== serverHost;
      });
      if (offHost.length) fail(`the page contacted other hosts than ${serverHost}:\n  ${offHost.join('\n  ')}`);
      if (seen.pageErrors.length) fail(`uncaught errors in the page:\n  ${seen.pageErrors.join('\n  ')}`);
      const cspViolations = seen.console.filter((m) => /Content Security Policy/i.test(m));
      if (cspViolations.length) fail(`Content-Security-Policy violations:\n  ${cspViolations.join('\n  ')}`);
      log(`${seen.requests.length} requests and ${seen.websockets.length} WebSocket(s), all to ${serverHost}`);
    };

    // ---- 4
    const response = await page.goto(`${base}/`, { waitUntil: 'load', timeout: 30_000 });
    if (!response || response.status() !== 200) fail(`GET / answered ${response && response.status()}`);
    const csp = response.headers()['content-security-policy'] || '';
    if (!csp.includes("default-src 'self'")) fail(`GET / has no restrictive Content-Security-Policy: "${csp}"`);
    await page.waitForSelector('#sesame-token', { timeout: 20_000 });
    await page.waitForSelector(QUERY_EDITOR, { timeout: 20_000 });
    log('playground loaded');

    const firstTab = await editorValue(page, QUERY_EDITOR);
    if (!/query me\b/.test(firstTab || '')) fail(`the first tab is not the preloaded \`me\` example: ${firstTab}`);

    await page.fill('#sesame-token', server.adminToken);
    await page.press('#sesame-token', 'Enter');
    await waitFor('the token field to accept the admin token', 10_000, async () => {
      const status = await page.textContent('#sesame-token-status');
      if (/not accepted/i.test(status || '')) fail(`the playground refused the admin token: ${status}`);
      return (status || '').includes('admin@localhost');
    });
    const stored = await page.evaluate(() => sessionStorage.getItem('sesame-vault:token'));
    if (stored !== server.adminToken) fail('the token is not kept in sessionStorage');
    if (await page.evaluate(() => JSON.stringify(localStorage).includes('sv_'))) fail('the token is in localStorage');

    let before = await editorValue(page, RESULT_EDITOR);
    await execute(page);
    const me = await nextResult(page, before, 'me');
    if (!me.text.includes('admin@localhost')) fail(`\`me\` did not show admin@localhost: ${me.text}`);
    if (me.json.data?.me?.role !== 'ADMIN') fail(`\`me\` is not the ADMIN: ${me.text}`);
    log('me → admin@localhost (ADMIN)');

    // ---- 4b: a live subscription over the WebSocket (credentialEvents),
    // fed by mutations this test sends to the server directly.
    await setQuery(page, 'subscription credentialEvents { credentialEvents { kind provider credentialId } }');
    before = await editorValue(page, RESULT_EDITOR);
    const framesBefore = seen.wsFramesSent.length;
    await execute(page);
    await waitFor('the page to subscribe over /graphql/ws', 10_000, async () =>
      sentMessages(seen, framesBefore).some((m) => m.type === 'subscribe'),
    );
    const init = sentMessages(seen).find((m) => m.type === 'connection_init');
    if (!init) fail('the page sent no connection_init over the WebSocket');
    if (init.payload?.Authorization !== `Bearer ${server.adminToken}`) {
      fail('connection_init does not carry {"Authorization": "Bearer <token>"} with the token from the field');
    }
    let event;
    for (let attempt = 1; attempt <= 3 && !event; attempt++) {
      // The server registers the subscription shortly after `subscribe`: retry rather than race.
      await new Promise((r) => setTimeout(r, 300));
      const res = await fetch(`${base}/graphql`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${server.adminToken}` },
        body: JSON.stringify({
          query: 'mutation($key: String!) { setApiKey(provider: ANTHROPIC, key: $key) { id } }',
          variables: { key: `sk-ant-api03-browserTest${attempt}-${'x'.repeat(40)}` },
        }),
      });
      const body = await res.json();
      if (!body.data?.setApiKey?.id) fail(`setApiKey (to cause an event) failed: ${JSON.stringify(body)}`);
      const deadline = Date.now() + 3_000;
      while (!event && Date.now() < deadline) {
        const value = await editorValue(page, RESULT_EDITOR);
        if (value && value !== before && /"credentialEvents"/.test(value)) event = JSON.parse(value);
        else await new Promise((r) => setTimeout(r, 100));
      }
    }
    if (!event) fail('no credentialEvents event reached the result pane');
    const kind = event.data?.credentialEvents?.kind;
    if (!['CREATED', 'UPDATED'].includes(kind)) fail(`unexpected credential event: ${JSON.stringify(event)}`);
    log(`credentialEvents → ${kind} (live, over ${seen.websockets.join(', ')})`);
    if (!/^Stop/.test((await buttonLabel(page)) || '')) fail('the subscription is not running any more');
    await page.click('.graphiql-execute-button');
    await waitFor('the subscription to stop', 5_000, async () => /^Execute/.test((await buttonLabel(page)) || ''));

    // ---- 5
    await setQuery(page, 'mutation startDeviceFlow { startDeviceFlow(agent: COPILOT, provider: GITHUB) { id userCode status } }');
    before = await editorValue(page, RESULT_EDITOR);
    await execute(page);
    const started = await nextResult(page, before, 'startDeviceFlow');
    if (started.json.errors?.length) {
      const codes = started.json.errors.map((e) => e.extensions?.code);
      if (codes.includes('UNAVAILABLE')) {
        checkPage();
        fail(
          `DEVICE FLOW UNAVAILABLE: startDeviceFlow answered UNAVAILABLE (${errorSummary(started.json)}). ` +
            'The server does not implement the device flow yet. Everything before it passed: page, token field, ' +
            '`me`, a live credentialEvents subscription, only same-host requests, no CSP violation.',
        );
      }
      fail(`startDeviceFlow failed: ${errorSummary(started.json)}`);
    }
    const flow = started.json.data?.startDeviceFlow;
    if (!flow?.id) fail(`startDeviceFlow returned no id: ${started.text}`);
    if (flow.userCode !== 'ABCD-1234') fail(`startDeviceFlow's userCode is ${flow.userCode}, not the provider's ABCD-1234`);
    if (github.calls.deviceCode.length !== 1) fail(`the provider saw ${github.calls.deviceCode.length} device-code requests`);
    log(`startDeviceFlow → ${flow.id} (${flow.status}, ${flow.userCode})`);

    await setQuery(page, `subscription deviceFlowStatus { deviceFlowStatus(id: "${flow.id}") { status userCode interval } }`);
    before = await editorValue(page, RESULT_EDITOR);
    const statuses = [];
    await execute(page);
    await waitFor(
      'the subscription to show AUTHORIZED',
      30_000,
      async () => {
        const value = await editorValue(page, RESULT_EDITOR);
        if (!value || value === before) return false;
        let json;
        try {
          json = JSON.parse(value);
        } catch {
          return false;
        }
        if (json.errors?.length) {
          const codes = json.errors.map((e) => e.extensions?.code);
          if (codes.includes('UNAVAILABLE')) fail(`DEVICE FLOW UNAVAILABLE: deviceFlowStatus answered ${errorSummary(json)}`);
          fail(`deviceFlowStatus failed: ${errorSummary(json)}`);
        }
        const status = json.data?.deviceFlowStatus?.status;
        if (status && statuses[statuses.length - 1] !== status) {
          statuses.push(status);
          log(`deviceFlowStatus → ${status}`);
        }
        if (status && !['PENDING', 'AUTHORIZED'].includes(status)) {
          fail(`the flow ended ${status}: ${value}`);
        }
        return status === 'AUTHORIZED';
      },
      50,
    );
    if (statuses[0] !== 'PENDING') fail(`the subscription showed ${statuses.join(' → ')}, not PENDING first`);
    if (github.calls.token.length < PENDING_POLLS + 1) {
      fail(`AUTHORIZED after only ${github.calls.token.length} token polls of the provider`);
    }
    log(`subscription streamed ${statuses.join(' → ')}`);

    checkPage();
  } finally {
    if (page) {
      try {
        mkdirSync(ARTIFACTS, { recursive: true });
        await page.screenshot({ path: SCREENSHOT, fullPage: true, timeout: 10_000 });
        log(`screenshot: ${path.relative(process.cwd(), SCREENSHOT)}`);
      } catch (e) {
        log(`no screenshot: ${e.message}`);
      }
    }
    // Context for whoever reads a failure in the CI log.
    report.seen = seen;
    report.serverOutput = server ? server.output : [];
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
  console.error(`browser test: FAILED: no result within ${OVERALL_TIMEOUT_MS / 1000}s`);
  process.exit(1);
}, OVERALL_TIMEOUT_MS);

main()
  .then(() => {
    clearTimeout(watchdog);
    log('PASSED');
    process.exit(0);
  })
  .catch((e) => {
    clearTimeout(watchdog);
    const ctx = report;
    console.error(`\nbrowser test: FAILED: ${e instanceof TestFailure ? e.message : e.stack || e}`);
    if (ctx.serverOutput?.length) console.error(`\nlast server output:\n  ${ctx.serverOutput.slice(-25).join('\n  ')}`);
    if (ctx.seen?.console?.length) console.error(`\nbrowser console:\n  ${ctx.seen.console.slice(-25).join('\n  ')}`);
    if (ctx.seen?.pageErrors?.length) console.error(`\npage errors:\n  ${ctx.seen.pageErrors.join('\n  ')}`);
    process.exit(e instanceof TestFailure && /DEVICE FLOW UNAVAILABLE/.test(e.message) ? 3 : 1);
  });
