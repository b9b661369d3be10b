#!/usr/bin/env node
// Seeds a fresh sesame-vault for .ci/agent-clis: creates a user and stores,
// as that user, realistic (fake) logins for each agent CLI under test.
//
//   node seed.mjs <server-url> <admin-token>   → prints "<user-id> <min-user-id> <keys-user-id>"
//
// The tokens are made up but shaped like the real ones (ChatGPT id/access
// tokens are unsigned JWTs with the real claim layout and a future exp), so
// the CLIs' offline status commands judge exactly the files sesame-vault writes.
//
// user:     CODEX from a whole auth.json, CLAUDE_CODE from a `claude setup-token`
//           token, OPENCODE+OPENAI from access + refresh tokens, an ANTHROPIC API key.
// min-user: the least each login can be stored from: CODEX from an access token
//           and refresh token only (no id_token), CLAUDE_CODE from an access
//           token, refresh token and expiry (what the sign-in flow stores).
// keys-user: an API key for each of Anthropic, OpenAI and Google, and nothing
//           else (Aider and Crush take API keys only).

const [url, adminToken] = process.argv.slice(2);
if (!url || !adminToken) {
  console.error("usage: node seed.mjs <server-url> <admin-token>");
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
    throw new Error(`GraphQL ${res.status}: ${JSON.stringify(body)}\nquery: ${query}`);
  }
  return body.data;
}

const b64url = (value) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");
// Unsigned (alg none) but with a non-empty signature part, as a real JWT has.
const jwt = (claims) => `${b64url({ alg: "none", typ: "JWT" })}.${b64url(claims)}.${b64url("fake-signature")}`;
const rand = (n) => Buffer.from(crypto.getRandomValues(new Uint8Array(n))).toString("base64url").slice(0, n);

const email = "cli@example.com";
const now = Math.floor(Date.now() / 1000);
const exp = now + 10 * 24 * 3600; // ten days ahead: nothing is due for a refresh
const accountId = crypto.randomUUID();
const userId = `user-${rand(24)}`;
const openaiAuth = {
  chatgpt_account_id: accountId,
  chatgpt_plan_type: "plus",
  chatgpt_user_id: userId,
  user_id: userId,
};

// ~/.codex/auth.json as `codex login` writes it.
const codexAuth = {
  auth_mode: "chatgpt",
  OPENAI_API_KEY: null,
  tokens: {
    id_token: jwt({
      iss: "https://auth.openai.com",
      aud: ["app_EMoamEEZ73f0CkXaXp7hrann"],
      sub: `auth0|${rand(24)}`,
      email,
      email_verified: true,
      iat: now,
      exp: now + 3600,
      auth_time: now,
      "https://api.openai.com/auth": openaiAuth,
    }),
    access_token: jwt({
      iss: "https://auth.openai.com",
      aud: ["https://api.openai.com/v1"],
      sub: `auth0|${rand(24)}`,
      iat: now,
      exp,
      scp: ["openid", "profile", "email", "offline_access"],
      "https://api.openai.com/auth": openaiAuth,
      "https://api.openai.com/profile": { email, email_verified: true },
    }),
    refresh_token: `rt_${rand(43)}.${rand(43)}`,
    account_id: accountId,
  },
  last_refresh: new Date(now * 1000).toISOString(),
};

// OpenCode's OpenAI login: same kind of tokens, given as access + refresh.
const opencodeAccess = jwt({
  iss: "https://auth.openai.com",
  aud: ["https://api.openai.com/v1"],
  iat: now,
  exp,
  "https://api.openai.com/auth": openaiAuth,
});

const { createUser } = await gql(adminToken, `mutation($e: String!) { createUser(email: $e) { user { id } token } }`, {
  e: email,
});
const token = createUser.token;
const save = `mutation($i: SubscriptionCredentialInput!) { saveSubscriptionCredential(input: $i) { id } }`;
await gql(token, save, { i: { agent: "CODEX", authJson: JSON.stringify(codexAuth) } });
await gql(token, save, { i: { agent: "CLAUDE_CODE", token: `sk-ant-oat01-${rand(95)}-${rand(6)}AA` } });
await gql(token, save, {
  i: { agent: "OPENCODE", provider: "OPENAI", accessToken: opencodeAccess, refreshToken: `rt_${rand(43)}.${rand(43)}` },
});
await gql(token, `mutation($k: String!) { setApiKey(provider: ANTHROPIC, key: $k) { id } }`, {
  k: `sk-ant-api03-${rand(93)}-${rand(6)}AA`,
});

const min = (
  await gql(adminToken, `mutation($e: String!) { createUser(email: $e) { user { id } token } }`, {
    e: "cli-min@example.com",
  })
).createUser;
await gql(min.token, save, {
  i: { agent: "CODEX", accessToken: opencodeAccess, refreshToken: `rt_${rand(43)}.${rand(43)}` },
});
await gql(min.token, save, {
  i: {
    agent: "CLAUDE_CODE",
    accessToken: `sk-ant-oat01-${rand(95)}-${rand(6)}AA`,
    refreshToken: `sk-ant-ort01-${rand(95)}-${rand(6)}AA`,
    expiresAt: new Date((now + 8 * 3600) * 1000).toISOString(),
  },
});
const keys = (
  await gql(adminToken, `mutation($e: String!) { createUser(email: $e) { user { id } token } }`, {
    e: "cli-keys@example.com",
  })
).createUser;
for (const [provider, key] of [
  ["ANTHROPIC", `sk-ant-api03-${rand(93)}-${rand(6)}AA`],
  ["OPENAI", `sk-proj-${rand(156)}`],
  ["GOOGLE", `AIza${rand(35)}`],
]) {
  await gql(keys.token, `mutation($p: Provider!, $k: String!) { setApiKey(provider: $p, key: $k) { id } }`, {
    p: provider,
    k: key,
  });
}
console.log(`${createUser.user.id} ${min.user.id} ${keys.user.id}`);
