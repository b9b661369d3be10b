// The Credentials app's only way to the server: the public GraphQL API over
// HTTP (POST /graphql) and its subscriptions over /graphql/ws (graphql-ws).
import { createClient } from 'graphql-ws';

export const HTTP_URL = new URL('graphql', document.baseURI).href;
export const WS_URL = (() => {
  const url = new URL('graphql/ws', document.baseURI);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
})();

// The token lives in this tab's sessionStorage only (shared with the explorer
// at /, so moving between the two keeps you signed in); Sign out removes it.
export const TOKEN_KEY = 'sesame-vault:token';

export function readToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

export function writeToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    // Earlier versions of the explorer kept it in localStorage: never leave it there.
    localStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage disabled: the token lives as long as the page.
  }
}

/** Accepts a bare token or a pasted `Bearer …` header value. */
export function normalizeToken(value) {
  return value.trim().replace(/^bearer\s+/i, '');
}

/** An error the server answered, with its stable code (extensions.code). */
export class ApiError extends Error {
  constructor(message, code) {
    // Shown as a sentence under the field it is about.
    const text = String(message || 'Something went wrong.');
    super(text.charAt(0).toUpperCase() + text.slice(1));
    this.code = code || 'INTERNAL';
  }
}

export function createApi(token, onUnauthenticated) {
  async function request(query, variables) {
    let response;
    try {
      response = await fetch(HTTP_URL, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
        body: JSON.stringify({ query, variables }),
      });
    } catch {
      throw new ApiError('Cannot reach the server. Check your connection and try again.', 'NETWORK');
    }
    let body;
    try {
      body = await response.json();
    } catch {
      throw new ApiError(`The server answered ${response.status} without a GraphQL response.`, 'INTERNAL');
    }
    if (body.errors && body.errors.length) {
      const first = body.errors[0];
      const code = first.extensions && first.extensions.code;
      if (code === 'UNAUTHENTICATED' && onUnauthenticated) onUnauthenticated(first.message);
      throw new ApiError(first.message, code);
    }
    return body.data;
  }

  let ws = null;
  const listeners = new Set();
  function socket() {
    if (!ws) {
      ws = createClient({
        url: WS_URL,
        lazy: true,
        keepAlive: 20_000,
        // Reconnect after a drop, for as long as the page is open.
        retryAttempts: Number.POSITIVE_INFINITY,
        shouldRetry: () => true,
        retryWait: async (retries) => {
          await new Promise((r) => setTimeout(r, Math.min(1000 * 2 ** retries, 15_000)));
        },
        connectionParams: { Authorization: `Bearer ${token}` },
        on: {
          connected: () => listeners.forEach((l) => l('connected')),
          closed: () => listeners.forEach((l) => l('closed')),
        },
      });
    }
    return ws;
  }

  /** Subscribes; returns the function that ends the subscription. */
  function subscribe(query, variables, { next, error, complete }) {
    return socket().subscribe(
      { query, variables },
      {
        next: (result) => {
          if (result.errors && result.errors.length) {
            const first = result.errors[0];
            error && error(new ApiError(first.message, first.extensions && first.extensions.code));
          } else next(result.data);
        },
        error: (e) => {
          if (Array.isArray(e) && e.length) error && error(new ApiError(e[0].message, e[0].extensions && e[0].extensions.code));
          else error && error(new ApiError('The live connection was closed.', 'NETWORK'));
        },
        complete: () => complete && complete(),
      },
    );
  }

  function onConnection(listener) {
    listeners.add(listener);
    return () => listeners.delete(listener);
  }

  function dispose() {
    listeners.clear();
    if (ws) ws.dispose();
    ws = null;
  }

  return { request, subscribe, onConnection, dispose };
}

// ---------------------------------------------------------------- operations
// Never `hint` in anything an admin screen sends: admins may not read it.

export const Q_ME = `query me { me { id email role } }`;

export const CREDENTIAL_FIELDS = `id kind provider agent status statusMessage hint hasRefreshToken createdAt updatedAt expiresAt lastUsedAt lastCheckedAt check { result message at }`;

export const Q_OVERVIEW = `query overview {
  agents {
    agent name note subscriptionPlans { provider name }
    methods { method provider label envVar tokenPrefixes instructions tokenLabel authFile acceptsRefreshToken }
  }
  providers { provider name apiKeyEnvVar }
  systemKeys { provider envVar configured check { result message at } }
  myCredentials { ${CREDENTIAL_FIELDS} }
  myPendingDeviceFlows { id agent provider status userCode verificationUri verificationUriComplete expiresAt interval message }
  myPendingAuthorizationFlows { id agent provider status authorizeUrl expiresAt }
}`;

export const Q_MY_USAGE = `query myUsage { myUsage { agent provider source tasks requests inputTokens outputTokens lastTaskAt } }`;

export const Q_MY_CREDENTIALS = `query myCredentials { myCredentials { ${CREDENTIAL_FIELDS} } }`;

export const M_SET_API_KEY = `mutation setApiKey($provider: Provider!, $key: String!) {
  setApiKey(provider: $provider, key: $key) { ${CREDENTIAL_FIELDS} }
}`;

export const M_REMOVE_CREDENTIAL = `mutation removeCredential($id: ID!) { removeCredential(id: $id) }`;

export const M_SAVE_SUBSCRIPTION = `mutation saveSubscriptionCredential($input: SubscriptionCredentialInput!) {
  saveSubscriptionCredential(input: $input) { ${CREDENTIAL_FIELDS} }
}`;

export const M_DISCONNECT_AGENT = `mutation disconnectAgent($agent: Agent!) {
  disconnectAgent(agent: $agent) {
    agent
    removed { id provider kind agent revocation { result message } }
    remaining { source provider credentialId envVar }
  }
}`;

export const M_CHECK_CREDENTIAL = `mutation checkCredential($id: ID!) { checkCredential(id: $id) { ${CREDENTIAL_FIELDS} } }`;

const FLOW_FIELDS = `id agent provider status userCode verificationUri verificationUriComplete expiresAt interval message`;

export const M_START_DEVICE = `mutation startDeviceFlow($agent: Agent!, $provider: Provider!) {
  startDeviceFlow(agent: $agent, provider: $provider) { ${FLOW_FIELDS} }
}`;

export const S_DEVICE_STATUS = `subscription deviceFlowStatus($id: ID!) {
  deviceFlowStatus(id: $id) { ${FLOW_FIELDS} credential { id } }
}`;

export const M_CANCEL_FLOW = `mutation cancelFlow($id: ID!) { cancelFlow(id: $id) }`;

export const M_START_AUTHORIZATION = `mutation startAuthorizationFlow($agent: Agent!, $provider: Provider!) {
  startAuthorizationFlow(agent: $agent, provider: $provider) { id agent provider authorizeUrl expiresAt status }
}`;

export const M_COMPLETE_AUTHORIZATION = `mutation completeAuthorizationFlow($id: ID!, $code: String!) {
  completeAuthorizationFlow(id: $id, code: $code) { id status }
}`;

export const S_EVENTS = `subscription credentialEvents($after: ID) { credentialEvents(after: $after) { id at kind credentialId ownerId provider agent status message } }`;

// Admin: metadata only, never `hint`.
export const Q_USERS = `query users($first: Int, $after: String) {
  users(first: $first, after: $after) { nodes { id email role createdAt } nextCursor }
}`;

export const Q_USER_CREDENTIALS = `query userCredentials($ownerId: ID!, $after: String) {
  credentials(ownerId: $ownerId, first: 100, after: $after) {
    nodes { id kind provider agent status statusMessage createdAt updatedAt expiresAt lastUsedAt }
    nextCursor
  }
}`;

export const M_DELETE_CREDENTIAL = `mutation deleteCredential($id: ID!) { deleteCredential(id: $id) }`;
export const M_DELETE_USER_CREDENTIALS = `mutation deleteUserCredentials($userId: ID!) { deleteUserCredentials(userId: $userId) }`;
export const M_CREATE_USER = `mutation createUser($email: String!, $role: Role) {
  createUser(email: $email, role: $role) { token user { id email role createdAt } }
}`;

export const Q_AUDIT = `query auditLog($after: String) {
  auditLog(first: 50, after: $after, newestFirst: true) {
    nodes { id at action actorKind actorId actorEmail ownerId ownerEmail provider agent credentialId detail }
    nextCursor
  }
}`;

// Admin: webhooks. Never a secret except the one `createWebhook` / `rotateWebhookSecret` show once.
const WEBHOOK_FIELDS = `id url events description enabled disabledReason failingSince previousSecretUntil pending dropped createdAt`;

export const Q_WEBHOOKS = `query webhooks { webhooks { ${WEBHOOK_FIELDS} } }`;

export const Q_WEBHOOK_DELIVERIES = `query webhookDeliveries($id: ID!, $after: String) {
  webhookDeliveries(id: $id, after: $after, first: 10) {
    cursor eventId type attempt statusCode durationMs outcome nextAttemptAt createdAt answerExcerpt
  }
}`;

export const M_CREATE_WEBHOOK = `mutation createWebhook($input: WebhookInput!) {
  createWebhook(input: $input) { secret webhook { ${WEBHOOK_FIELDS} } }
}`;

export const M_UPDATE_WEBHOOK = `mutation updateWebhook($id: ID!, $input: WebhookUpdate!) {
  updateWebhook(id: $id, input: $input) { ${WEBHOOK_FIELDS} }
}`;

export const M_ROTATE_WEBHOOK_SECRET = `mutation rotateWebhookSecret($id: ID!) {
  rotateWebhookSecret(id: $id) { secret webhook { ${WEBHOOK_FIELDS} } }
}`;

export const M_DELETE_WEBHOOK = `mutation deleteWebhook($id: ID!) { deleteWebhook(id: $id) }`;
export const M_SEND_TEST_WEBHOOK = `mutation sendTestWebhook($id: ID!) { sendTestWebhook(id: $id) }`;
