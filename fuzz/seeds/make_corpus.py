#!/usr/bin/env python3
"""Writes the seed corpora (fuzz/corpus/<target>/) from the unit and
integration tests' own samples: the same keys, tokens, files and documents,
each secret carrying the tests' marker. Run from fuzz/: python3 seeds/make_corpus.py"""
import base64, hashlib, json, os

MARK = "Zq7XsEcReTmArK9"
NOW = 1748779200  # 2025-06-01T12:00:00Z, the unit tests' now()
ACCOUNT = "7f1c2d3e-0000-4000-8000-123456789abc"
AUTH = "https://api.openai.com/auth"

def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

def jwt(claims):
    return ".".join([b64(b'{"alg":"RS256","typ":"JWT"}'), b64(json.dumps(claims).encode()), b64(f"signature-{MARK}".encode())])

anthropic_key = f"sk-ant-api03-{MARK}abcdefghij-_XYZ0123456789AA"
claude_token = f"sk-ant-oat01-{MARK}abcdefghij-_XYZ0123456789AA"
claude_refresh = f"sk-ant-ort01-{MARK}abcdefghij-_XYZ0123456789AA"
openai_key = f"sk-proj-{MARK}abcdefghij_XYZ0123456789"
google_key = f"AIza{MARK}abcdefghij-_01234567"
github_pat = f"github_pat_11ABCDEFG0{MARK}abcdefghijklmnopqrstuvwxyz0123456789"
gho = f"gho_{MARK}0123456789abcdef"
codex_access = jwt({"aud": ["https://api.openai.com/v1"], "exp": NOW + 864000, "iat": NOW, "iss": "https://auth.openai.com",
                    "scp": ["openid"], AUTH: {"chatgpt_account_id": ACCOUNT, "chatgpt_plan_type": "pro"}, "sub": "auth0|abc"})
expired_access = jwt({"exp": NOW - 60, AUTH: {"chatgpt_account_id": ACCOUNT}})
codex_id = jwt({"email": "person@example.com", "exp": NOW + 3600, AUTH: {"chatgpt_account_id": ACCOUNT}})
refresh_rt = f"rt_{MARK}.abcdefghijklmnop0123456789"

def auth_json(access, id_token, refresh, **extra):
    d = {"auth_mode": "chatgpt", "OPENAI_API_KEY": None,
         "tokens": {"id_token": id_token, "access_token": access, "refresh_token": refresh, "account_id": ACCOUNT},
         "last_refresh": "2025-05-30T08:15:42.123456Z"}
    d.update(extra)
    return json.dumps(d, indent=2)

def write(target, items):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    for item in items:
        data = item if isinstance(item, bytes) else item.encode()
        with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
            f.write(data)

# Agents: 0 Claude Code, 1 Codex, 2 Copilot, 3 Gemini, 4 OpenCode.
# Providers: 0 Anthropic, 1 OpenAI, 2 Google, 3 GitHub, 4 none.
def save(agent, provider, expiry, token="", access="", refresh="", auth="", key=""):
    return bytes([agent, provider, expiry]) + "\0".join([token, access, refresh, auth, key]).encode()

write("credentials", [
    save(0, 0, 0, token=claude_token, key=anthropic_key),
    save(0, 0, 200, access=claude_token, refresh=claude_refresh),
    save(0, 4, 0, token=f"{claude_token}\n", key=f"  {anthropic_key}\n"),
    save(0, 0, 0, token=anthropic_key, key=claude_token),
    save(1, 1, 0, auth=auth_json(codex_access, codex_id, refresh_rt), key=openai_key),
    save(1, 1, 0, auth=auth_json(expired_access, codex_id, refresh_rt)),
    save(1, 1, 0, auth=auth_json(codex_access, "", "")),
    save(1, 1, 0, auth=json.dumps({"auth_mode": "apikey", "OPENAI_API_KEY": openai_key})),
    save(1, 1, 0, access=codex_access, refresh=refresh_rt, key=f"sk-{MARK}0123456789abcdef"),
    save(1, 1, 0, access="jwt:" + json.dumps({"exp": NOW + 3600, AUTH: {"chatgpt_account_id": ACCOUNT}}), refresh=refresh_rt),
    save(1, 1, 100, token=codex_access[:40]),
    save(2, 3, 0, token=github_pat, key=github_pat),
    save(2, 3, 0, token=gho, key=f"ghp_{MARK}0123456789abcdef"),
    save(3, 2, 0, token=google_key, key=google_key),
    save(4, 0, 0, token=claude_token, key=anthropic_key),
    save(4, 1, 0, auth=auth_json(codex_access, codex_id, refresh_rt)),
    save(4, 1, 0, access=codex_access, refresh=refresh_rt),
    save(4, 4, 0, token=claude_token),
    save(0, 0, 0, token=f"\u201c{claude_token}\u201d", key='{"a":"b"}'),
])

# (agent, provider) pairs in registry order: 0 Claude/Anthropic, 1 Codex/OpenAI,
# 2 Copilot/GitHub, 3 Gemini/Google, 4 OpenCode/Anthropic, 5 OpenCode/OpenAI, ...
claude_file = json.dumps({"claudeAiOauth": {"accessToken": claude_token, "refreshToken": claude_refresh,
                                            "expiresAt": (NOW + 3600) * 1000, "scopes": ["user:inference"],
                                            "subscriptionType": "max"}})
def opencode(id_, access, refresh, expires, **extra):
    entry = {"type": "oauth", "access": access, "refresh": refresh, "expires": expires}
    entry.update(extra)
    return json.dumps({id_: entry, "github-copilot": {"type": "oauth", "refresh": "x", "access": "y", "expires": 0}})
write("returned_files", [
    bytes([0, 0]) + claude_file.encode(),
    bytes([0, 0]) + json.dumps({"claudeAiOauth": {"accessToken": claude_token}}).encode(),
    bytes([0, 0]) + json.dumps({"claudeAiOauth": {"accessToken": f"{claude_token} x", "expiresAt": -1}}).encode(),
    bytes([0, 1]) + claude_file.encode(),
    bytes([1, 0]) + auth_json(codex_access, codex_id, refresh_rt).encode(),
    bytes([1, 0]) + auth_json(codex_access, jwt({"alg": "none"}), "").encode(),
    bytes([1, 0]) + json.dumps({"auth_mode": "apikey", "OPENAI_API_KEY": openai_key, "tokens": None}).encode(),
    bytes([1, 0]) + auth_json(expired_access, codex_id, refresh_rt, last_refresh="not a date").encode(),
    bytes([4, 0]) + opencode("anthropic", claude_token, claude_refresh, (NOW + 3600) * 1000).encode(),
    bytes([5, 0]) + opencode("openai", codex_access, refresh_rt, (NOW + 3600) * 1000, accountId=ACCOUNT).encode(),
    bytes([5, 0]) + opencode("openai", codex_access, refresh_rt, 0, accountId="someone-else").encode(),
    bytes([5, 0]) + json.dumps({"openai": {"type": "api", "key": openai_key}}).encode(),
    bytes([1, 0]) + b'{"tokens": {"access_token": "' + MARK.encode() + b'", "refresh_token": 12}}',
])

docs = [
    "{ me { id email role } }",
    "query { __typename }",
    '{ __schema { types { fields { args { name } } } } }',
    "query Q1 { __typename }\nquery Q2 { __typename }",
    f'mutation {{ setApiKey(provider: ANTHROPIC, key: "{anthropic_key}") {{ id }} }}',
    f'mutation {{ setApiKey(provider: ANTHROPIC, key: "{anthropic_key}" oops) {{ id }} }}',
    f'mutation {{ setApiKey(provider: ghp_{MARK}BBBB, key: "x") {{ id }} }}',
    'mutation($a: Agent! = "CLAUDE_CODE") { removeAgentCredentials(agent: $a) }',
    "query($b: Boolean = true) { me @include(if: $b) { email } }",
    "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
    "query { ...F2 }\nfragment F0 on Query { __typename }\nfragment F1 on Query { ...F0 ...F0 ...F0 }\nfragment F2 on Query { ...F1 ...F1 ...F1 }",
    "{ __typename(x: " + "[" * 70 + "]" * 70 + ") }",
    '{ a(x: """\\""" {{{ """) }',
    "# comment (((\n{ a }",
    '{ a(x: "open',
    'subscription { credentialEvents { kind } }',
    "{ " + " ".join(f"a{i}: __typename" for i in range(30)) + " }",
]
write("gate_prescan", docs)
write("gate_request", docs + [
    "query($n: Int) { auditLog(first: $n) { nodes { id } } }\0" + json.dumps({"n": anthropic_key}),
    "mutation($t: String!) { saveSubscriptionCredential(input: { agent: CLAUDE_CODE, accessToken: $t }) { id } }\0"
    + json.dumps({"t": claude_token}),
    "query A { __typename } query B { me { id } }\0{}\0B",
    "query($b: Boolean!) { me @include(if: $b) { id } }\0{}",
    '{ agents { agent name } }',
])
from urllib.parse import urlencode
write("http_get", [
    urlencode({"query": d}) for d in docs[:12]
] + [
    urlencode({"query": "query A { __typename } mutation B { logout }", "operationName": "A"}),
    urlencode({"query": "query($n: Int) { __typename }", "variables": json.dumps({"n": 1})}),
    urlencode({"query": "{ __typename }", "variables": "{" + anthropic_key}),
    "query=%zz&&=",
])

def frames(setting, *fs):
    return bytes([setting]) + b"\0".join(f if isinstance(f, bytes) else json.dumps(f).encode() for f in fs)
init = {"type": "connection_init", "payload": {"Authorization": f"Bearer sv_{MARK}"}}
sub = lambda i, q="subscription { credentialEvents { kind } }": {"id": i, "type": "subscribe", "payload": {"query": q}}
write("ws_messages", [
    frames(0, init, sub("1"), {"id": "1", "type": "complete"}),
    frames(0, init, sub("1"), sub("1")),
    frames(0, init, *[sub(str(i)) for i in range(12)]),
    frames(0, init, init),
    frames(0, init, {"type": "ping"}, {"type": "pong"}, b"\x02", b"\x01binary"),
    frames(1, init, {"id": "a", "type": "start", "payload": {"query": "{ __typename }"}}, {"id": "a", "type": "stop"},
           {"type": "connection_terminate"}),
    frames(0, init, sub("x" * 200)),
    frames(2, init, b"\x04Space limit exceeded: Message too long"),
    frames(0, init, b"\x04UTF-8 encoding error"),
    frames(0, b"\x01", init),
    frames(0, init, b"not json", sub("2")),
    frames(0, init, b"\x03", sub("3")),
    frames(1, b'{"type":"complete","id":"7"}'),
])
