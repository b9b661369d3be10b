// The example operations the playground opens with (one GraphiQL tab each).
// Only names from schema/schema.graphql; `npm run build` does not check them,
// the browser test and the server's schema do.

const intro = `# sesame-vault playground
#
# Paste your token (sv_...) into the Token field above. It is sent as
# "Authorization: Bearer ..." with every request to /graphql and in the
# connection_init payload of subscriptions (/graphql/ws), and kept only in
# this tab's sessionStorage. The editors live in memory: what you paste here
# is gone after a reload, and Forget clears everything the page stored.
#
# Each tab holds one operation: run it with Ctrl-Enter or the play button.
# The Credentials app at /settings does all of this with forms.
`;

export const defaultTabs = [
  {
    query: `${intro}
query me {
  me {
    id
    email
    role
    createdAt
  }
}
`,
  },
  {
    query: `# Your own credentials: metadata and the masked hint, never the secret.
query myCredentials {
  myCredentials {
    id
    kind
    provider
    agent
    status
    statusMessage
    hint
    hasRefreshToken
    expiresAt
    lastUsedAt
    updatedAt
  }
}
`,
  },
  {
    query: `# Sets (or replaces, keeping its id) your API key for a provider.
# Put the real key in the variables below; only a masked hint comes back.
mutation setApiKey($provider: Provider!, $key: String!, $expiresAt: DateTime) {
  setApiKey(provider: $provider, key: $key, expiresAt: $expiresAt) {
    id
    kind
    provider
    status
    hint
    expiresAt
    updatedAt
  }
}
`,
    variables: `{
  "provider": "ANTHROPIC",
  "key": "sk-ant-api03-… paste your key here"
}
`,
  },
  {
    query: `# Saves (or replaces) a subscription credential for an agent:
# a Claude setup-token (claude setup-token, starts with sk-ant-oat01-),
# a Copilot token ({"agent": "COPILOT", "token": "github_pat_..."}), or Codex's
# ~/.codex/auth.json ({"agent": "CODEX", "authJson": "{...}"}) or its
# accessToken (+ optional refreshToken).
mutation saveSubscriptionCredential($input: SubscriptionCredentialInput!) {
  saveSubscriptionCredential(input: $input) {
    id
    kind
    agent
    provider
    status
    hint
    hasRefreshToken
    expiresAt
  }
}
`,
    variables: `{
  "input": {
    "agent": "CLAUDE_CODE",
    "token": "sk-ant-oat01-… paste your setup-token here"
  }
}
`,
  },
  {
    query: `# Removes one of your credentials (an API key or a subscription), by id
# (from myCredentials).
mutation removeCredential($id: ID!) {
  removeCredential(id: $id)
}
`,
    variables: `{
  "id": "paste the id from myCredentials"
}
`,
  },
  {
    query: `# Agent Credentials -> Remove Credentials: every subscription credential of
# one agent. The agent then uses your API key for its provider, or the
# system key, if there is one.
mutation removeAgentCredentials($agent: Agent!) {
  removeAgentCredentials(agent: $agent)
}
`,
    variables: `{
  "agent": "CLAUDE_CODE"
}
`,
  },
  {
    query: `# Sign an agent in with a device code (Copilot with GitHub; Codex or
# OpenCode with OPENAI): open verificationUri and enter userCode, then run
# the deviceFlowStatus tab with the returned id.
mutation startDeviceFlow($agent: Agent!, $provider: Provider!) {
  startDeviceFlow(agent: $agent, provider: $provider) {
    id
    userCode
    verificationUri
    verificationUriComplete
    expiresAt
    interval
    status
  }
}
`,
    variables: `{
  "agent": "COPILOT",
  "provider": "GITHUB"
}
`,
  },
  {
    query: `# The device sign-in's events, live until a final status (AUTHORIZED,
# DENIED, EXPIRED, FAILED, CANCELLED). Paste the id from startDeviceFlow.
subscription deviceFlowStatus($id: ID!) {
  deviceFlowStatus(id: $id) {
    id
    status
    userCode
    interval
    message
    expiresAt
    credential {
      id
      provider
      agent
      status
      expiresAt
    }
  }
}
`,
    variables: `{
  "id": "paste the id from startDeviceFlow"
}
`,
  },
  {
    query: `# Anthropic's code flow (Claude Code, OpenCode): open authorizeUrl, sign in,
# copy the code the page shows (code#state), then run completeAuthorizationFlow.
mutation startAuthorizationFlow($agent: Agent!, $provider: Provider!) {
  startAuthorizationFlow(agent: $agent, provider: $provider) {
    id
    authorizeUrl
    expiresAt
    status
  }
}
`,
    variables: `{
  "agent": "CLAUDE_CODE",
  "provider": "ANTHROPIC"
}
`,
  },
  {
    query: `# Completes the code flow with what the sign-in page showed: code#state.
# A state that does not match changes nothing.
mutation completeAuthorizationFlow($id: ID!, $code: String!) {
  completeAuthorizationFlow(id: $id, code: $code) {
    id
    agent
    provider
    status
    expiresAt
  }
}
`,
    variables: `{
  "id": "paste the id from startAuthorizationFlow",
  "code": "paste code#state here"
}
`,
  },
  {
    query: `# Ends a sign-in in progress (device or code flow) at once.
mutation cancelFlow($id: ID!) {
  cancelFlow(id: $id)
}
`,
    variables: `{
  "id": "paste the flow id"
}
`,
  },
  {
    query: `# ADMIN only: every user and the metadata of every credential.
# Admins can delete credentials (deleteCredential) but never read them.
query adminListing {
  users(first: 50) {
    nodes {
      id
      email
      role
      createdAt
    }
    nextCursor
  }
  credentials(first: 50) {
    nodes {
      id
      owner {
        email
      }
      kind
      provider
      agent
      status
      statusMessage
      expiresAt
      lastUsedAt
    }
    nextCursor
  }
}
`,
  },
  {
    query: `# Live credential events (created, updated, expiring, removed...).
# Yours; an admin receives everyone's, metadata only.
subscription credentialEvents {
  credentialEvents {
    at
    kind
    credentialId
    ownerId
    provider
    agent
    status
    message
  }
}
`,
  },
  {
    query: `# ADMIN only: create a person; their token is shown once.
mutation createUser($email: String!, $role: Role) {
  createUser(email: $email, role: $role) {
    token
    user {
      id
      email
      role
    }
  }
}
`,
    variables: `{
  "email": "someone@example.com",
  "role": "USER"
}
`,
  },
  {
    query: `# ADMIN only: delete someone's credential without reading it.
mutation deleteCredential($id: ID!) {
  deleteCredential(id: $id)
}
`,
    variables: `{
  "id": "paste a credential id from adminListing"
}
`,
  },
];
