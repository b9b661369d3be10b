//! Typed GraphQL calls for what the integration tests and the load tool
//! repeat: one document per operation, written once. A test that sends an
//! odd document on purpose (a hostile one, a selection it checks field by
//! field) keeps its own text.

use anyhow::{anyhow, Result};
use serde_json::{json, Value};
use sesame_vault::domain::{Agent, Provider};

use crate::{graphql_ok, post_graphql};

/// A GraphQL-over-HTTP client for one server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

const SET_API_KEY: &str = "mutation($p: Provider!, $k: String!) { setApiKey(provider: $p, key: $k) { id } }";
const SAVE_SUBSCRIPTION: &str =
    "mutation($i: SubscriptionCredentialInput!) { saveSubscriptionCredential(input: $i) { id } }";
const MY_CREDENTIAL_IDS: &str = "{ myCredentials { id } }";
const REMOVE_CREDENTIAL: &str = "mutation($id: ID!) { removeCredential(id: $id) }";
const ISSUE_TASK: &str = "mutation($u: ID!, $a: Agent!, $p: Provider, $t: String!, $d: Delivery) { \
    issueTaskCredentials(userId: $u, agent: $a, provider: $p, taskId: $t, delivery: $d) { \
    source credentialId provider expiresAt delivery env { name value homePath } files { path mode content } } }";

impl Client {
    /// Talks to `base` (`http://127.0.0.1:PORT`) through `http`.
    pub fn new(http: reqwest::Client, base: impl Into<String>) -> Client {
        Client { http, base: base.into() }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// POSTs a request body (with the token, unless empty); the HTTP status
    /// and the JSON response.
    pub async fn post(&self, token: &str, body: &Value) -> Result<(u16, Value)> {
        post_graphql(&self.http, &self.base, token, body).await
    }

    /// Runs an operation that must succeed; its `data`.
    pub async fn ok(&self, token: &str, query: &str, variables: Value) -> Result<Value> {
        graphql_ok(&self.http, &self.base, token, query, variables).await
    }

    /// `createUser` as `admin`: the person's id and first token.
    pub async fn create_user(&self, admin: &str, email: &str) -> Result<(String, String)> {
        crate::create_user(&self.http, &self.base, admin, email).await
    }

    /// `setApiKey`: the credential's id.
    pub async fn set_api_key(&self, token: &str, provider: Provider, key: &str) -> Result<String> {
        let data = self.ok(token, SET_API_KEY, json!({ "p": provider, "k": key })).await?;
        id_in(&data["setApiKey"], "setApiKey")
    }

    /// `saveSubscriptionCredential` with `input` (a
    /// `SubscriptionCredentialInput` as JSON): the credential's id.
    pub async fn save_subscription(&self, token: &str, input: Value) -> Result<String> {
        let data = self.ok(token, SAVE_SUBSCRIPTION, json!({ "i": input })).await?;
        id_in(&data["saveSubscriptionCredential"], "saveSubscriptionCredential")
    }

    /// The ids of the caller's credentials (`myCredentials`).
    pub async fn my_credential_ids(&self, token: &str) -> Result<Vec<String>> {
        let data = self.ok(token, MY_CREDENTIAL_IDS, json!({})).await?;
        let list = data["myCredentials"].as_array().ok_or_else(|| anyhow!("myCredentials returned no list"))?;
        list.iter().map(|c| id_in(c, "myCredentials")).collect()
    }

    /// `removeCredential` (the owner's removal).
    pub async fn remove_credential(&self, token: &str, id: &str) -> Result<()> {
        self.ok(token, REMOVE_CREDENTIAL, json!({ "id": id })).await.map(drop)
    }

    /// `issueTaskCredentials` as a runner: the issued object (source,
    /// credentialId, provider, expiresAt, env, files with their modes).
    pub async fn issue_task(
        &self,
        runner: &str,
        user: &str,
        agent: Agent,
        provider: Option<Provider>,
        task: &str,
    ) -> Result<Value> {
        let variables = json!({ "u": user, "a": agent, "p": provider, "t": task });
        let mut data = self.ok(runner, ISSUE_TASK, variables).await?;
        Ok(data["issueTaskCredentials"].take())
    }

    /// `issueTaskCredentials` with `delivery: PROXY`: placeholders for the
    /// vault's egress proxy.
    pub async fn issue_task_proxied(
        &self,
        runner: &str,
        user: &str,
        agent: Agent,
        provider: Option<Provider>,
        task: &str,
    ) -> Result<Value> {
        let variables = json!({ "u": user, "a": agent, "p": provider, "t": task, "d": "PROXY" });
        let mut data = self.ok(runner, ISSUE_TASK, variables).await?;
        Ok(data["issueTaskCredentials"].take())
    }
}

fn id_in(object: &Value, what: &str) -> Result<String> {
    object["id"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("{what} returned no id: {object}"))
}
