// The example operations the playground opens with (one GraphiQL tab each).
// Only names from schema/schema.graphql; `npm run build` does not check them,
// the browser test and the server's schema do.

const intro = `# sesame-vault playground
#
# Paste your token (sv_...) into the Token field above. It is sent as
# "Authorization: Bearer ..." with every request to /graphql and in the
# connection_init payload of subscriptions (/graphql/ws), and kept only in
# this browser's localStorage.
#
# Run an operation with Ctrl-Enter or the play button; the other tabs hold
# more examples.
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
    query: `# Sign an agent in with a device code:
# 1. Run startDeviceFlow, open verificationUri and enter userCode.
# 2. Copy the returned id into the variables below, then run
#    deviceFlowStatus: its events stream in live until a final status.
mutation startDeviceFlow {
  startDeviceFlow(agent: COPILOT, provider: GITHUB) {
    id
    userCode
    verificationUri
    verificationUriComplete
    expiresAt
    interval
    status
  }
}

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
];
