#!/usr/bin/env node
// Seeds a fresh sesame-vault for .ci/agent-clis-proxy: one user per scenario,
// each holding exactly the one credential the scenario runs on, so which
// credential task-env picks is never in doubt.
//
//   node seed-proxy.mjs <server-url> <admin-token> <chatgpt-account-id> <out.json>
//
// Writes <out.json>: {"<scenario>": {"user", "agent", "provider", "secrets": [...]}}
// where secrets are every secret value stored (the REAL ones: the fake must
// receive the first, and none may appear in the task's environment or home).
// The values are made up but shaped like the real ones. The ChatGPT login's
// access token has EXPIRED (its JWT exp is in the past), so Codex refreshes
// it at auth.openai.com, which the egress proxy answers itself.
import { writeFileSync } from "node:fs";

const [url, adminToken, accountId, out] = process.argv.slice(2);
if (!url || !adminToken || !accountId || !out) {
  console.error("usage: node seed-proxy.mjs <server-url> <admin-token> <chatgpt-account-id> <out.json>");
  process.exit(2);
}

async function gql(token, query, variables = {}) {
  const res = await fetch(`${url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await res.json().catch(() => null);
  if (!res.ok || !body || body.errors) {
    throw new Error(`GraphQL ${res.status}: ${JSON.stringify(body?.errors ?? body)}\nquery: ${query.slice(0, 80)}`);
  }
  return body.data;
}

const b64url = (value) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");
// A random signature (32 bytes, so it decodes strictly as base64url).
const jwt = (claims) =>
  `${b64url({ alg: "none", typ: "JWT" })}.${b64url(claims)}.${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url")}`;
// A JWT placeholder keeps header and claims (not secret): its signature is what must not leak.
const sig = (token) => token.split(".")[2];
const rand = (n) => Buffer.from(crypto.getRandomValues(new Uint8Array(n))).toString("base64url").slice(0, n);

const now = Math.floor(Date.now() / 1000);
const openaiAuth = { chatgpt_account_id: accountId, chatgpt_plan_type: "plus", chatgpt_user_id: "user-fake", user_id: "user-fake" };

const save = `mutation($i: SubscriptionCredentialInput!) { saveSubscriptionCredential(input: $i) { id } }`;
const setKey = `mutation($p: Provider!, $k: String!) { setApiKey(provider: $p, key: $k) { id } }`;

const scenarios = {};
async function person(name, agent, provider, store) {
  const { createUser } = await gql(adminToken, `mutation($e: String!) { createUser(email: $e) { user { id } token } }`, {
    e: `${name}@example.com`,
  });
  const secrets = await store(createUser.token);
  scenarios[name] = { user: createUser.user.id, agent, provider, secrets };
}
const apiKey = (provider, key) => async (token) => {
  await gql(token, setKey, { p: provider, k: key });
  return [key];
};

await person("claude-key", "CLAUDE_CODE", "ANTHROPIC", apiKey("ANTHROPIC", `sk-ant-api03-${rand(93)}-${rand(6)}AA`));
await person("claude-sub", "CLAUDE_CODE", "ANTHROPIC", async (token) => {
  const access = `sk-ant-oat01-${rand(95)}-${rand(6)}AA`;
  const refresh = `sk-ant-ort01-${rand(95)}-${rand(6)}AA`;
  await gql(token, save, {
    i: { agent: "CLAUDE_CODE", accessToken: access, refreshToken: refresh, expiresAt: new Date((now + 8 * 3600) * 1000).toISOString() },
  });
  return [access, refresh];
});
await person("codex-key", "CODEX", "OPENAI", apiKey("OPENAI", `sk-proj-${rand(156)}`));
await person("codex-sub", "CODEX", "OPENAI", async (token) => {
  const tokens = {
    id_token: jwt({
      iss: "https://auth.openai.com",
      aud: ["app_EMoamEEZ73f0CkXaXp7hrann"],
      sub: `auth0|${rand(24)}`,
      email: "codex-sub@example.com",
      email_verified: true,
      iat: now - 7200,
      exp: now - 3600,
      "https://api.openai.com/auth": openaiAuth,
    }),
    access_token: jwt({
      iss: "https://auth.openai.com",
      aud: ["https://api.openai.com/v1"],
      iat: now - 7200,
      exp: now - 60, // expired: Codex refreshes first
      "https://api.openai.com/auth": openaiAuth,
    }),
    refresh_token: `rt_${rand(43)}.${rand(43)}`,
    account_id: accountId,
  };
  const authJson = { auth_mode: "chatgpt", OPENAI_API_KEY: null, tokens, last_refresh: new Date((now - 7200) * 1000).toISOString() };
  await gql(token, save, { i: { agent: "CODEX", authJson: JSON.stringify(authJson) } });
  return [tokens.access_token, tokens.refresh_token, sig(tokens.access_token), sig(tokens.id_token)];
});
await person("gemini-key", "GEMINI", "GOOGLE", apiKey("GOOGLE", `AIza${rand(35)}`));
await person("copilot", "COPILOT", "GITHUB", async (token) => {
  const pat = `github_pat_${rand(22)}_${rand(59)}`;
  await gql(token, save, { i: { agent: "COPILOT", token: pat } });
  return [pat];
});
await person("opencode-key", "OPENCODE", "ANTHROPIC", apiKey("ANTHROPIC", `sk-ant-api03-${rand(93)}-${rand(6)}AA`));
await person("opencode-oauth", "OPENCODE", "OPENAI", async (token) => {
  const access = jwt({ iss: "https://auth.openai.com", iat: now, exp: now + 10 * 24 * 3600, "https://api.openai.com/auth": openaiAuth });
  const refresh = `rt_${rand(43)}.${rand(43)}`;
  await gql(token, save, { i: { agent: "OPENCODE", provider: "OPENAI", accessToken: access, refreshToken: refresh } });
  return [access, refresh, sig(access)];
});

writeFileSync(out, JSON.stringify(scenarios, null, 2), { mode: 0o600 });
